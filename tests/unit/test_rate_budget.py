"""The run's Stripe budget: one bucket for all requests plus one per endpoint."""

from __future__ import annotations

import pytest

from jobs.adapters.ratelimit import RateBudget
from tests.unit.test_ratelimit import FakeTime, waits_of_threads


def test_each_endpoint_keeps_its_own_rate() -> None:
    t = FakeTime()
    budget = RateBudget(global_rate=100, endpoint_rate=10, burst_s=0.1, clock=t.clock,
                        sleep=t.sleep)
    assert budget.acquire("GET /v1/checkout/sessions") == 0  # the burst: one token
    assert budget.acquire("GET /v1/checkout/sessions") == pytest.approx(0.1)
    # Another endpoint has tokens of its own.
    assert budget.acquire("GET /v1/refunds") == 0


def test_the_global_limit_binds_across_endpoints() -> None:
    t = FakeTime()
    budget = RateBudget(global_rate=4, endpoint_rate=4, burst_s=0.25, clock=t.clock,
                        sleep=t.sleep)
    waits = [budget.acquire(f"GET /v1/endpoint_{n}") for n in range(4)]
    assert waits == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_the_rate_holds_over_time_for_one_endpoint() -> None:
    t = FakeTime()
    budget = RateBudget(global_rate=100, endpoint_rate=25, burst_s=0.04, clock=t.clock,
                        sleep=t.sleep)
    for _ in range(101):
        t.now += budget.acquire("GET /v1/checkout/sessions")
    assert t.now - 100.0 == pytest.approx(100 / 25)


def test_threads_share_the_budget() -> None:
    t = FakeTime()
    budget = RateBudget(global_rate=1000, endpoint_rate=10, burst_s=0.1, clock=t.clock,
                        sleep=t.sleep)
    waits = waits_of_threads(lambda: budget.acquire("GET /v1/checkout/sessions"), threads=4,
                             each=5)
    # 20 tokens with the clock standing still: 1 free, then 19 reservations 0.1 s apart.
    assert waits == pytest.approx([0.1 * k for k in range(20)])


def test_a_request_without_endpoint_counts_globally_only() -> None:
    t = FakeTime()
    budget = RateBudget(global_rate=10, endpoint_rate=1, burst_s=0.1, clock=t.clock,
                        sleep=t.sleep)
    assert [budget.acquire() for _ in range(2)] == pytest.approx([0.0, 0.1])


@pytest.mark.parametrize(("rates", "burst_s"), [((0, 1), 0.2), ((1, -1), 0.2), ((1, 1), 0)])
def test_rejects_nonsense(rates: tuple[float, float], burst_s: float) -> None:
    with pytest.raises(ValueError):
        RateBudget(*rates, burst_s=burst_s)
