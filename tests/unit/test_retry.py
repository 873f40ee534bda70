import pytest

from jobs.adapters.retry import call_with_retry
from jobs.core.errors import CredentialsRejected, RetriableError


def flaky(failures: list[Exception], value: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return value

    return fn, calls


def test_retry_after_is_honoured_and_capped():
    waits: list[float] = []
    fn, calls = flaky([RetriableError("429", retry_after=7), RetriableError("429", retry_after=90)])
    assert call_with_retry(fn, what="page", sleep=waits.append, cap=30) == "ok"
    assert waits == [7, 30]
    assert calls["n"] == 3


def test_backoff_grows_without_retry_after():
    waits: list[float] = []
    fn, _ = flaky([RetriableError("503"), RetriableError("503"), RetriableError("503")])
    call_with_retry(fn, what="page", sleep=waits.append, base=1.0, cap=100)
    assert len(waits) == 3
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0


def test_gives_up_after_attempts_with_last_error():
    waits: list[float] = []
    errors = [RetriableError(f"fail {i}") for i in range(5)]
    fn, calls = flaky(errors)
    with pytest.raises(RetriableError, match="fail 2"):
        call_with_retry(fn, what="page", attempts=3, sleep=waits.append)
    assert calls["n"] == 3 and len(waits) == 2


def test_other_errors_are_not_retried():
    waits: list[float] = []
    fn, calls = flaky([CredentialsRejected("401")])
    with pytest.raises(CredentialsRejected):
        call_with_retry(fn, what="page", sleep=waits.append)
    assert calls["n"] == 1 and waits == []
