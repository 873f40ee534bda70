"""The live mode's figures from purchases, subscriptions and the request log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.live_feed import Purchase
from bench.live_metrics import measure, percentile, table

T0 = 1_800_000_000.0


def purchase(n: int) -> Purchase:
    return Purchase("acct_a", f"cs_{n}", f"pi_{n}", T0 + n, "pass-1", "tenant-a", "user-1", {})


def sub(n: int, after_s: int, *, job: bool = True, **fields: Any) -> dict[str, Any]:
    created = datetime.fromtimestamp(T0 + n + after_s, UTC).isoformat().replace("+00:00", "Z")
    return {"_id": f"s{n}-{after_s}", "stripeSessionId": f"cs_{n}", "stripePaymentId": f"pi_{n}",
            "_createdAt": created, "createdViaRecovery": True if job else None,
            "passId": "pass-1", "tenant": "tenant-a", "user": "user-1", **fields}


def test_latency_duplicates_wrong_writes_and_missing_passes_are_counted():
    purchases = [purchase(n) for n in range(4)]
    subs = [sub(0, 60), sub(1, 90), sub(1, 20, job=False),  # a duplicate, the first counts
            sub(2, 120, passId="pass-2")]  # the wrong pass; purchase 3 has none
    log = [{"account": "acct_a", "endpoint": "GET /v1/checkout/sessions"}] * 6 + [
        {"account": "platform", "endpoint": "GET /v1/checkout/sessions"}] * 2
    result = measure("down", "down", 2.0, purchases, subs, log, ["platform", "acct_a"], 120)
    assert (result.purchases, result.with_pass, result.missing) == (4, 3, 1)
    assert (result.p50_s, result.max_s) == (60.0, 120.0)
    assert (result.duplicates, result.wrong, result.by_job, result.by_webhook) == (1, 1, 3, 1)
    assert result.requests_per_account_min == 2.0 and result.busiest_account_min == 3.0
    assert "down" in table([result]).splitlines()[1]


def test_a_subscription_found_by_payment_intent_alone_counts_for_its_purchase():
    found = sub(0, 30, stripeSessionId=None)
    result = measure("slow", "late", 1.0, [purchase(0)], [found], [], ["platform"], 60)
    assert result.with_pass == 1 and result.wrong == 0 and result.p95_s == 30.0


def test_percentile_is_nearest_rank():
    assert percentile([], 95) is None
    assert percentile([float(n) for n in range(1, 21)], 95) == 19.0
    assert percentile([5.0], 50) == 5.0
