"""The one retry policy: one request (a page fetch, a transaction) is the unit of retry.

Only `RetriableError` is retried; everything else propagates at once. A server's
`Retry-After` wins over our own backoff (capped), and the sleep is injected so tests
never wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from jobs.core.errors import RetriableError

T = TypeVar("T")

log = structlog.get_logger("jobs.retry")


def backoff_wait(base: float, cap: float,
                 rng: random.Random | None = None) -> Callable[[RetryCallState], float]:
    """Exponential backoff with jitter, replaced by the server's Retry-After when it sent one.
    Without `rng`, the jitter comes from the `random` module (a fresh `Random()` per call
    would read the OS entropy pool for every request, retried or not)."""
    jitter = rng.uniform if rng is not None else random.uniform

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetriableError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), cap)
        exponential: float = base * 2 ** (state.attempt_number - 1)
        return min(cap, exponential * jitter(0.5, 1.0))

    return wait


class RateLimited(Exception):
    """The service answered 429 (carries the translated error): waited out before a retry."""

    def __init__(self, error: RetriableError) -> None:
        super().__init__(str(error))
        self.error = error


def _waiting_out_429s(fn: Callable[[], T], *, what: str, times: int,
                      sleep: Callable[[float], None]) -> Callable[[], T]:
    """`fn` with up to `times` 429s in a row waited out (Retry-After says how long; without it,
    a short backoff capped at 5 s); the last one counts as one failed attempt."""

    def call() -> T:
        for attempt in range(1, times + 1):
            try:
                return fn()
            except RateLimited as limited:
                error = limited.error
                if attempt == times:
                    raise error from limited.__cause__
                wait = error.retry_after if error.retry_after is not None else min(
                    5.0, 0.25 * 2 ** (attempt - 1))
                log.warning("retrying", what=what, attempt=attempt, wait_s=wait,
                            error=str(error))
                sleep(wait)
        raise AssertionError("unreachable")

    return call


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    base: float = 0.5,
    cap: float = 30.0,
    rng: random.Random | None = None,
    rate_limit_attempts: int = 1,
) -> T:
    """Call `fn` until it succeeds, retrying `RetriableError` up to `attempts` calls in all.
    A `RateLimited` from `fn` is waited out up to `rate_limit_attempts` times in a row before
    it counts as one of those attempts (the job sets it high: a 429 never fails a run)."""

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("retrying", what=what, attempt=state.attempt_number, wait_s=round(wait, 3),
                    error=str(error))

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        retry=retry_if_exception_type(RetriableError),
        wait=backoff_wait(base, cap, rng),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(_waiting_out_429s(fn, what=what, times=max(1, rate_limit_attempts),
                                      sleep=sleep))
