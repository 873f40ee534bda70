"""What the limits allow: the lower bound on a run's wall time, and the naive extrapolation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.runs import RunResult
from bench.setup import BenchWorld, Limits

SESSION_LIST = "GET /v1/checkout/sessions"


@dataclass(frozen=True)
class Bound:
    pages_s: float  # session-list pages at their endpoint's limit
    products_s: float  # products requests at their endpoint's limit
    global_s: float  # every request at the global limit
    latency_floor_s: float  # the chain no parallelism removes
    lower_s: float

    @property
    def rate_s(self) -> float:
        return max(self.pages_s, self.products_s, self.global_s)

    @property
    def binding(self) -> str:
        named = {"pages": self.pages_s, "products": self.products_s, "global": self.global_s}
        return max(named, key=lambda k: named[k])

    def to_json(self) -> dict[str, Any]:
        return {"pages_s": round(self.pages_s, 3), "products_s": round(self.products_s, 3),
                "global_s": round(self.global_s, 3), "binding": self.binding,
                "latency_floor_s": round(self.latency_floor_s, 3),
                "lower_s": round(self.lower_s, 3)}


def lower_bound(bench: BenchWorld, limits: Limits) -> Bound:
    """The fastest any reader could finish under the stand-ins' limits and latencies.

    Each endpoint delivers at most `endpoint_rate` requests per second after its limiter's
    initial burst (a full bucket: `endpoint_rate` tokens), and all requests together at
    most `global_rate`. An ideal reader needs the session-list pages (full pages, one per
    account at least, listed with their line items), the products of the sessions whose
    own metadata lacks a key (by id, 100 per request) and one refund list per account. The
    slowest of those streams bounds the run (the pages, in these worlds); the latency floor
    is the chain around it: the catalog query before the first request, then after the
    last one its own latency, a Sanity lookup and a transaction."""
    burst = max(1.0, limits.endpoint_rate)
    pages_s = max(0.0, bench.pages - burst) / limits.endpoint_rate
    products_s = max(0.0, bench.product_requests - burst) / limits.endpoint_rate
    everything = bench.pages + bench.product_requests + len(bench.complete)
    global_s = max(0.0, everything - max(1.0, limits.global_rate)) / limits.global_rate
    floor = limits.sanity_latency_s + limits.stripe_latency_s + 2 * limits.sanity_latency_s
    rate_s = max(pages_s, products_s, global_s)
    return Bound(pages_s, products_s, global_s, floor, rate_s + floor)


def naive_figures(naive: RunResult, bench: BenchWorld) -> dict[str, Any]:
    """The naive run's figures for the whole window: measured when it read everything, else
    extrapolated linearly from its sample (per-session work x sessions / sampled sessions;
    the fixed part, i.e. start-up, catalog and one refund list per account, as measured;
    session-list pages as the full listing needs them)."""
    own = naive.extra["own"]
    sampled = int(own["counts"]["sessions"])
    total = bench.sessions
    factor = total / sampled if sampled else 1.0
    full = sampled >= total
    if full:
        factor = 1.0
    startup_s = max(0.0, naive.wall_s - float(own["total_s"]))
    wall = naive.wall_s if full else (
        startup_s + float(own["fixed_s"]) + float(own["per_session_s"]) * factor)
    by_endpoint = naive.stripe_by_endpoint
    lists = int(by_endpoint.get(SESSION_LIST, 0))
    other_stripe = naive.stripe_requests - lists
    refunds = int(by_endpoint.get("GET /v1/refunds", 0))
    stripe = naive.stripe_requests if full else (
        bench.pages + refunds + (other_stripe - refunds) * factor)
    queries = naive.sanity_queries if full else 1 + (naive.sanity_queries - 1) * factor
    transactions = naive.sanity_transactions * factor
    return {
        "sampled": not full, "sampled_sessions": sampled, "total_sessions": total,
        "factor": round(factor, 3), "wall_s": round(wall, 3),
        "stripe_requests": round(stripe), "sanity_queries": round(queries),
        "sanity_transactions": round(transactions),
        "requests": round(stripe + queries + transactions),
    }
