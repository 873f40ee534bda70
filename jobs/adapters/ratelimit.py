"""Shared token buckets: keep our Stripe calls under a configured share of Stripe's limits.

Stripe counts every request twice: against the account's limit for all requests and against
the limit of its endpoint (each operation, e.g. `GET /v1/checkout/sessions`, on its own).
`RateBudget` is one bucket for all requests plus one per endpoint, shared by every thread
of a run; `TokenBucket` is the single bucket both are made of.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Budget(Protocol):
    """What an adapter needs of a rate budget: one token per request, waited for."""

    def acquire(self, endpoint: str | None = None) -> float: ...


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `acquire()` blocks until one is ours.

    Thread-safe. A caller reserves its token under the lock (the balance may go negative)
    and sleeps outside it, so waiting callers queue fairly and never hold each other up
    while sleeping. Clock and sleep are injected so tests never wait.
    """

    def __init__(self, rate: float, burst: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def acquire(self, endpoint: str | None = None) -> float:
        """Take one token, sleeping first if none is there; returns the seconds waited.
        `endpoint` is ignored: one bucket counts every request alike."""
        with self._lock:
            wait = self._reserve(self._clock())
        if wait > 0:
            self._sleep(wait)
        return wait

    def _reserve(self, now: float) -> float:
        """Take a token (the balance may go negative); the seconds until it is really ours.
        The caller holds the lock."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateBudget:
    """One run's Stripe budget: `global_rate` for all requests and `endpoint_rate` for each
    endpoint, each with `burst_s` seconds' worth of tokens saved up at most.

    A request takes a token from both buckets at once and waits for the later of the two,
    so neither limit is ever exceeded and no thread holds a lock while it sleeps. The burst
    stays small on purpose: requests reach Stripe with jittered delays, and a bucket that
    runs well inside Stripe's own keeps them from arriving in a clump Stripe would refuse
    (a one-second burst at the full limit drew 429s from the stand-in).
    """

    def __init__(self, global_rate: float, endpoint_rate: float, *, burst_s: float = 0.2,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if global_rate <= 0 or endpoint_rate <= 0:
            raise ValueError("rates must be > 0")
        if burst_s <= 0:
            raise ValueError("burst_s must be > 0")
        self.global_rate = float(global_rate)
        self.endpoint_rate = float(endpoint_rate)
        self._burst_s = burst_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._global = self._bucket(self.global_rate)
        self._endpoints: dict[str, TokenBucket] = {}

    def _bucket(self, rate: float) -> TokenBucket:
        return TokenBucket(rate, max(1.0, rate * self._burst_s), clock=self._clock,
                           sleep=self._sleep)

    def acquire(self, endpoint: str | None = None) -> float:
        """Take a token for one request to `endpoint` (None: counted only globally);
        returns the seconds waited."""
        with self._lock:
            now = self._clock()
            wait = self._global._reserve(now)
            if endpoint is not None:
                bucket = self._endpoints.get(endpoint)
                if bucket is None:
                    bucket = self._endpoints[endpoint] = self._bucket(self.endpoint_rate)
                wait = max(wait, bucket._reserve(now))
        if wait > 0:
            self._sleep(wait)
        return wait
