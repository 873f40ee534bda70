"""The composition root: real adapters built from settings. Nothing is built at import time."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.adapters.heartbeat import Heartbeat
from jobs.adapters.http_session import session_from_env
from jobs.adapters.metrics import Metrics
from jobs.adapters.ratelimit import RateBudget
from jobs.adapters.sanity_store import SanityStore
from jobs.adapters.stripe_client import make_client
from jobs.adapters.stripe_source import StripeSource
from jobs.config.settings import Settings

RATE_LIMIT_ATTEMPTS = 50


@dataclass(frozen=True)
class Services:
    """The outside systems of one process, each built once from the settings."""

    stripe: StripeSource
    sanity: SanityStore
    heartbeat: Heartbeat


def build_stripe(settings: Settings, *, timeout: float = 80.0,
                 metrics: Metrics | None = None) -> StripeSource:
    key = settings.require("stripe").stripe.secret_key
    assert key is not None
    client = make_client(key.reveal(), settings.stripe.api_base, timeout,
                         on_response=metrics.response_hook("stripe") if metrics else None)
    # One budget for every account, segment and page: Stripe counts our requests together,
    # once against the account's limit and once against the endpoint's.
    budget = RateBudget(global_rate=settings.stripe.requests_per_second,
                        endpoint_rate=min(settings.stripe.endpoint_requests_per_second,
                                          settings.stripe.requests_per_second))
    # A 429 is waited out (Retry-After) many times over before it counts as a failed
    # attempt: being told to slow down must never fail a run.
    return StripeSource(client, bucket=budget, rate_limit_attempts=RATE_LIMIT_ATTEMPTS)


def build_sanity(settings: Settings, *, timeout: float = 30.0,
                 metrics: Metrics | None = None) -> SanityStore:
    sanity = settings.require("sanity").sanity
    assert sanity.token is not None
    http = session_from_env(sanity.base_url,
                            on_response=metrics.response_hook("sanity") if metrics else None)
    return SanityStore(sanity.base_url, sanity.dataset, sanity.token.reveal(),
                       sanity.api_version, timeout=timeout, http=http)


def build_metrics(settings: Settings) -> Metrics | None:
    """The process's metrics registry, when they go anywhere (served or written)."""
    wanted = settings.metrics.listen is not None or settings.metrics.textfile is not None
    return Metrics() if wanted else None


def build_services(settings: Settings, metrics: Metrics | None = None) -> Services:
    return Services(stripe=build_stripe(settings, metrics=metrics),
                    sanity=build_sanity(settings, metrics=metrics),
                    heartbeat=Heartbeat(settings.alerts.heartbeat_url))
