import threading
from collections.abc import Callable

import pytest

from jobs.adapters.ratelimit import TokenBucket


class FakeTime:
    """A clock that moves only when someone sleeps (thread-safe)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)


def test_burst_passes_at_once_then_one_token_per_interval() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=10, burst=3, clock=t.clock, sleep=t.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0, 0, 0]
    assert bucket.acquire() == pytest.approx(0.1)
    assert bucket.acquire() == pytest.approx(0.2)  # queued behind the reservation before it
    assert t.waits == pytest.approx([0.1, 0.2])


def test_refills_with_time_but_never_beyond_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=2, burst=2, clock=t.clock, sleep=t.sleep)
    bucket.acquire()
    bucket.acquire()
    t.now += 0.5  # one token back
    assert bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.5)
    t.now += 100  # a long pause saves up only `burst` tokens
    assert [bucket.acquire() for _ in range(2)] == [0, 0]
    assert bucket.acquire() > 0


def test_rate_is_kept_over_many_calls() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=25, burst=1, clock=t.clock, sleep=t.sleep)
    for _ in range(101):
        wait = bucket.acquire()
        t.now += wait  # the caller slept that long
    assert t.now - 100.0 == pytest.approx(100 / 25)


def waits_of_threads(acquire: Callable[[], float], threads: int, each: int) -> list[float]:
    """`threads` threads calling `acquire` `each` times at once; every wait, sorted."""
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(each):
            wait = acquire()
            with lock:
                waits.append(wait)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sorted(waits)


def test_threads_share_one_budget() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=10, burst=5, clock=t.clock, sleep=t.sleep)
    waits = waits_of_threads(bucket.acquire, threads=8, each=10)
    # 80 tokens with the clock standing still: 5 free, then 75 reservations 0.1 s apart.
    assert waits == pytest.approx([0.0] * 5 + [0.1 * k for k in range(1, 76)])


def test_real_sleep_is_not_needed_for_the_defaults() -> None:
    bucket = TokenBucket(rate=1000, burst=10)
    assert all(bucket.acquire() == 0 for _ in range(10))


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_rejects_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)
