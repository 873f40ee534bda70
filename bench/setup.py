"""One benchmark world in both stand-ins, with the benchmark's latencies and rate limits.

The Stripe stand-in runs in this process, loaded straight from the generated world (no
450 MB JSON file to write and parse at 100,000 sessions); the reconciler still talks to it
over HTTP from its own process. The Sanity stand-in is the Node server, reloaded with a
fresh copy of the dataset before every run.
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jobs.core.classify import needs_line_items, parse_session
from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import ROUTES, StripeStandIn, sort_created
from sandbox.world.generate import World, generate

PLATFORM = "platform"
PAGE = 100


@dataclass(frozen=True)
class Limits:
    """The stand-ins' emulated latency and Stripe's rate limits."""

    stripe_latency_s: float = 0.05
    sanity_latency_s: float = 0.02
    endpoint_rate: float = 25.0  # requests/s per operation
    global_rate: float = 100.0  # requests/s in all


@dataclass
class BenchWorld:
    """A generated world and what an ideal reader has to fetch from it."""

    world: World
    sanity_ndjson: str
    complete: dict[str, int]  # complete sessions in the window, per account the job reads
    keyless: dict[str, int]  # of those, sessions whose own metadata lacks a pass key
    generate_s: float

    @property
    def since(self) -> int:
        return self.world.since

    @property
    def until(self) -> int:
        return self.world.until

    @property
    def sessions(self) -> int:
        """Complete sessions in the window (what the job lists)."""
        return sum(self.complete.values())

    @property
    def pages(self) -> int:
        """Session-list pages an ideal reader needs: full pages, one per account at least."""
        return sum(max(1, math.ceil(n / PAGE)) for n in self.complete.values())

    @property
    def line_items(self) -> int:
        """Line-items requests a reader asking session by session needs (the naive one)."""
        return sum(self.keyless.values())

    @property
    def product_requests(self) -> int:
        """Products requests an ideal reader needs: a keyless session's line items come
        with the listing, their products by id, up to 100 per request, per account."""
        return sum(math.ceil(n / PAGE) for n in self.keyless.values())

    @property
    def expected_created(self) -> int:
        return int(self.world.truth["summary"]["outcomes"].get("created", 0))


def build_world(seed: int, sessions: int, schools: int, now: int) -> BenchWorld:
    started = time.perf_counter()
    world = generate(seed, sessions=sessions, schools=schools, now=now)
    # The benchmark emulates Stripe's live-mode limits (100/s in all; test mode allows 25),
    # so the reconciler runs with the stand-in's live key, and the sessions must be live
    # data: a key meeting data of the other mode refuses to write.
    for lists in world.stripe["data"].values():
        for raw in lists.get("checkout_sessions", []):
            raw["livemode"] = True
    ndjson = "".join(json.dumps(doc, separators=(",", ":")) + "\n" for doc in world.sanity)
    connected = sorted(
        str(doc["stripeConnect"]["accountId"]) for doc in world.sanity
        if doc.get("_type") == "tenant" and isinstance(doc.get("stripeConnect"), dict)
        and doc["stripeConnect"].get("accountId"))
    accounts = [PLATFORM, *connected]
    data = world.stripe["data"]
    complete: dict[str, int] = {}
    keyless: dict[str, int] = {}
    for account in accounts:
        listed = [s for s in data.get(account, {}).get("checkout_sessions", [])
                  if s.get("status") == "complete" and world.since <= sort_created(s) < world.until]
        complete[account] = len(listed)
        # The architecture's rule (jobs.core.classify): line items only for a session whose own
        # metadata lacks a key.
        keyless[account] = sum(
            1 for raw in listed
            if not isinstance(parsed := parse_session(raw, account, world.now), str)
            and needs_line_items(parsed))
    return BenchWorld(world, ndjson, complete, keyless, time.perf_counter() - started)


@dataclass
class StandIns:
    stripe: StripeStandIn
    sanity: SanityStandIn
    limits: Limits

    def fresh(self, ndjson: str) -> None:
        """A fresh copy of the Sanity data, empty logs, the limits set anew (full buckets)."""
        self.sanity.set_latency(0)
        self.sanity.load_ndjson(ndjson)
        self.sanity.reset_log()
        self.sanity.set_latency(self.limits.sanity_latency_s * 1000)
        controls = self.stripe.controls
        controls.reset_log()
        controls.set_latency(self.limits.stripe_latency_s)
        for route in ROUTES:
            controls.set_rate_limit(self.limits.endpoint_rate, route.op)
        controls.set_rate_limit(self.limits.global_rate, None)

    def snapshot(self) -> dict[str, Any]:
        """Cumulative figures of both stand-ins (subtract two snapshots for one run)."""
        stripe = self.stripe.controls.stats()
        sanity = self.sanity.stats()
        return {"stripe_cpu_s": float(stripe["cpu_seconds"]),
                "sanity_cpu_s": float(sanity["cpuSeconds"]),
                "sanity_documents": int(sanity["documents"])}

    def counts(self) -> dict[str, Any]:
        """Requests seen since `fresh`: Stripe by endpoint and 429s, Sanity by kind."""
        stripe = self.stripe.controls.stats()
        log = self.sanity.log()
        return {
            "stripe_requests": int(stripe["total"]),
            "stripe_by_endpoint": dict(stripe["requests"]),
            "stripe_429": int(stripe["rate_limited"]),
            "sanity_queries": sum(1 for e in log if e.get("kind") == "query"),
            "sanity_transactions": sum(1 for e in log if e.get("kind") == "mutate"),
            "sanity_query_ms": round(sum(float(e.get("queryMs") or 0) for e in log), 1),
        }


@contextmanager
def stand_ins(bench: BenchWorld, limits: Limits) -> Iterator[StandIns]:
    now = float(bench.world.now)
    stripe = StripeStandIn(bench.world.stripe, now=lambda: now)
    # The loaded world is millions of long-lived objects: keep them out of every later
    # collection, or gen-2 passes stall the stand-in's answers.
    gc.collect()
    gc.freeze()
    sanity = SanityStandIn(None)
    try:
        stripe.start()
        sanity.start()
        yield StandIns(stripe, sanity, limits)
    finally:
        sanity.stop()
        stripe.stop()
        gc.unfreeze()
