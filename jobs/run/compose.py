"""The composition root: every outside system of a process, built once from the settings.

The one module of `jobs.run` that imports `jobs.adapters`: the run's other modules reach the
outside through the ports (`jobs.core.ports`) and the small protocols beside their users, and
the commands take what they need from here. Nothing is built at import time.

The ledger and the run lock: unset `RECONCILER_DATABASE_URL`, the SQLite ledger and a `flock`
in the state directory (one host); set, both in PostgreSQL (any number of hosts, no local
state).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from jobs.adapters import systemd_notify
from jobs.adapters.chat import ChatWebhook, deliver_chat
from jobs.adapters.heartbeat import Heartbeat
from jobs.adapters.http_session import session_from_env
from jobs.adapters.ledger import Ledger
from jobs.adapters.ledger_db import LEADER_LOCK
from jobs.adapters.lock import RunLock
from jobs.adapters.mailer import Mailer, Sender, SendResult, deliver_message, smtp_sender
from jobs.adapters.metrics import Metrics
from jobs.adapters.notice_ledger import NoticeBook
from jobs.adapters.pg_lock import AdvisoryLock
from jobs.adapters.ratelimit import RateBudget
from jobs.adapters.sanity_store import SanityStore
from jobs.adapters.stripe_client import make_client
from jobs.adapters.stripe_source import StripeSource
from jobs.config.settings import Settings
from jobs.core.ports import RunLockLike
from jobs.reports.alerts import Alert, AlertRecords
from jobs.run.leader import POLL, Leadership
from jobs.run.notify import ChatAlerts, make_notify
from jobs.run.service import Notify
from jobs.run.student_mail import NoticeStore, StudentMail

RATE_LIMIT_ATTEMPTS = 50
PROBE_TIMEOUT = 20.0  # seconds: `doctor` asks, it does not wait out a slow service


# ---- Stripe, Sanity, metrics, heartbeat ---------------------------------------------------


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


def build_heartbeat(settings: Settings) -> Heartbeat:
    return Heartbeat(settings.alerts.heartbeat_url)


def build_services(settings: Settings, metrics: Metrics | None = None) -> Services:
    return Services(stripe=build_stripe(settings, metrics=metrics),
                    sanity=build_sanity(settings, metrics=metrics),
                    heartbeat=build_heartbeat(settings))


@dataclass(frozen=True)
class DoctorServices:
    """What `doctor` probes with: short timeouts and few attempts; None where not set up."""

    stripe: StripeSource | None
    probe_stripe: StripeSource | None  # lists one session per account: the access test
    sanity: SanityStore | None


def doctor_services(settings: Settings) -> DoctorServices:
    stripe = probe_stripe = sanity = None
    if not settings.missing("stripe"):
        key = settings.stripe.secret_key
        assert key is not None
        stripe = build_stripe(settings, timeout=PROBE_TIMEOUT)
        # Listing one session per account is the access test: a page of one, two attempts.
        probe_stripe = StripeSource(make_client(key.reveal(), settings.stripe.api_base,
                                                PROBE_TIMEOUT), page_size=1, attempts=2)
    if not settings.missing("sanity"):
        token = settings.sanity.token
        assert token is not None
        sanity = SanityStore(settings.sanity.base_url, settings.sanity.dataset, token.reveal(),
                             settings.sanity.api_version, timeout=PROBE_TIMEOUT, attempts=2)
    return DoctorServices(stripe, probe_stripe, sanity)


# ---- the ledger, the run lock, the leader lock --------------------------------------------


def database_url(settings: Settings) -> str | None:
    url = settings.database.url
    return None if url is None else url.reveal()


def open_ledger(settings: Settings, *,
                clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Ledger:
    return Ledger.for_settings(settings.run.state_dir, database_url(settings), clock=clock)


def run_lock(settings: Settings, kind: str = "run") -> RunLockLike:
    """A new lock object (flock is per open file and an advisory lock per session, so each
    object really competes)."""
    url = database_url(settings)
    if url is not None:
        return AdvisoryLock(url, kind=kind)
    return RunLock(settings.run.state_dir, kind=kind)


def leader_lock(url: str) -> AdvisoryLock:
    """The lock the daemons sharing the database at `url` compete for."""
    return AdvisoryLock(url, name="leader", key=LEADER_LOCK, kind="daemon")


def leadership(url: str, *, poll: float = POLL) -> Leadership:
    """The leadership of one daemon: the leader lock, and systemd told of a live standby."""
    return Leadership(leader_lock(url), systemd_notify.notify, poll=poll)


def leader_of(settings: Settings) -> dict[str, Any] | None:
    """The leading daemon (host, pid, since), for `status`; None when none leads."""
    url = database_url(settings)
    return None if url is None else leader_lock(url).holder()


# ---- alerts, mail and the student e-mails --------------------------------------------------


def build_mailer(settings: Settings) -> Mailer | None:
    """The mailer of the report recipients; None when SMTP is not set up."""
    return None if settings.missing("smtp") else Mailer(settings.smtp)


def build_chat(settings: Settings) -> ChatWebhook | None:
    url = settings.alerts.chat_webhook_url
    return None if url is None else ChatWebhook(url)


def chat_alerts(settings: Settings) -> ChatAlerts | None:
    chat = build_chat(settings)
    if chat is None:
        return None
    webhook = chat

    def post(alerts: Sequence[Alert], ledger: AlertRecords, *,
             key_mode: str | None = None) -> object:
        return deliver_chat(alerts, webhook, ledger, key_mode=key_mode)

    return post


def notifier(settings: Settings) -> Notify | None:
    """The alerts after each run, by mail and chat as configured (None: neither is)."""
    mail = not settings.missing("smtp")
    return make_notify(settings, chat=chat_alerts(settings),
                       mailer=(lambda: Mailer(settings.smtp)) if mail else None)


def students(settings: Settings, ledger: Ledger, sanity: NoticeStore, *,
             sender: Sender | None = None,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> StudentMail:
    """The student e-mails over this ledger and SMTP (`sender`: how one message goes)."""
    # Two attempts: an unreachable server is tried again by the next pass, not here.
    chosen = sender or smtp_sender(settings.smtp, attempts=2)

    def send(message: EmailMessage) -> SendResult:
        return deliver_message(message, chosen)

    return StudentMail(settings, NoticeBook(ledger), sanity, send=send, clock=clock)


def student_mail(settings: Settings, ledger: Ledger, sanity: NoticeStore, *,
                 dry_run: bool) -> StudentMail | None:
    """The student e-mails of a real pass, when `notify.students` is on."""
    if dry_run or not settings.notify.students:
        return None
    return students(settings, ledger, sanity)


@dataclass(frozen=True)
class FailureChannels:
    """Where word of a failed unit goes (`jobs.commands.unit_failed`); None: not set up."""

    heartbeat: Heartbeat
    chat: ChatWebhook | None
    mailer: Mailer | None


def failure_channels(settings: Settings) -> FailureChannels:
    return FailureChannels(build_heartbeat(settings), build_chat(settings),
                           build_mailer(settings))
