"""What a live run's phase measured: payment to pass, duplicates, wrong writes, Stripe cost.

Pure functions over the purchases made, the subscriptions Sanity holds for them at the end
of the phase, and the Stripe stand-in's request log of the phase.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from bench.live_feed import Purchase

SUBSCRIPTIONS_QUERY = (
    '*[_type == "subscription" && (stripeSessionId in $sids || stripePaymentId in $pis)]'
    '{_id, stripeSessionId, stripePaymentId, _createdAt, createdViaRecovery, passId,'
    ' "tenant": tenant._ref, "user": user._ref}')


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    webhook: str
    minutes: float  # how long purchases arrived
    purchases: int
    with_pass: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    duplicates: int  # purchases with more than one subscription
    wrong: int  # subscriptions with the wrong pass, school, student or payment
    by_job: int  # subscriptions the job created
    by_webhook: int  # subscriptions the webhook created
    missing: int  # purchases without any subscription at the end
    accounts: int  # accounts the job reads (the schools and the platform)
    requests_per_account_min: float  # Stripe requests per account per minute, on average
    busiest_account_min: float  # the same, of the account read most
    requests_by_endpoint: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _unix(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    return datetime.fromisoformat(iso).timestamp()


def measure(phase: str, webhook: str, minutes: float, purchases: Sequence[Purchase],
            subscriptions: Iterable[Mapping[str, Any]], log: Iterable[Mapping[str, Any]],
            accounts: Sequence[str], seconds: float) -> PhaseResult:
    """One phase's figures. `log`: the stand-in's requests during `seconds` of the phase."""
    by_sid = {p.session_id: p for p in purchases}
    by_pi = {p.payment_intent: p for p in purchases}
    found: dict[str, list[Mapping[str, Any]]] = {p.session_id: [] for p in purchases}
    for sub in subscriptions:
        purchase = by_sid.get(sub.get("stripeSessionId")) or by_pi.get(sub.get("stripePaymentId"))
        if purchase is not None and not str(sub.get("_id", "")).startswith("drafts."):
            found[purchase.session_id].append(sub)
    delays: list[float] = []
    wrong = by_job = by_webhook = 0
    for sid, subs in found.items():
        purchase = by_sid[sid]
        stamps = [t for t in (_unix(s.get("_createdAt")) for s in subs) if t is not None]
        if stamps:
            delays.append(max(0.0, min(stamps) - purchase.paid_at))
        for sub in subs:
            by_job += sub.get("createdViaRecovery") is True
            by_webhook += sub.get("createdViaRecovery") is not True
            wrong += (sub.get("passId") != purchase.pass_id or sub.get("tenant") != purchase.tenant
                      or sub.get("user") != purchase.user
                      or sub.get("stripePaymentId") != purchase.payment_intent)
    per_account = Counter(str(e.get("account")) for e in log)
    endpoints = Counter(str(e.get("endpoint")) for e in log)
    minutes_read = max(seconds, 1e-9) / 60
    return PhaseResult(
        phase=phase, webhook=webhook, minutes=round(minutes, 2), purchases=len(purchases),
        with_pass=sum(1 for subs in found.values() if subs),
        p50_s=_round(percentile(delays, 50)), p95_s=_round(percentile(delays, 95)),
        max_s=_round(max(delays, default=None)),
        duplicates=sum(1 for subs in found.values() if len(subs) > 1), wrong=wrong,
        by_job=by_job, by_webhook=by_webhook,
        missing=sum(1 for subs in found.values() if not subs), accounts=len(accounts),
        requests_per_account_min=round(sum(per_account.values()) / len(accounts)
                                       / minutes_read, 2) if accounts else 0.0,
        busiest_account_min=round(max(per_account.values(), default=0) / minutes_read, 2),
        requests_by_endpoint=dict(sorted(endpoints.items())))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


COLUMNS = (("phase", "phase", "{}"), ("webhook", "webhook", "{}"),
           ("purchases", "purchases", "{}"), ("with_pass", "with pass", "{}"),
           ("p50_s", "p50 s", "{:.1f}"), ("p95_s", "p95 s", "{:.1f}"), ("max_s", "max s", "{:.1f}"),
           ("duplicates", "dup", "{}"), ("wrong", "wrong", "{}"), ("by_job", "by job", "{}"),
           ("by_webhook", "by webhook", "{}"), ("missing", "missing", "{}"),
           ("requests_per_account_min", "Stripe req/acct/min", "{:.2f}"),
           ("busiest_account_min", "busiest acct/min", "{:.2f}"))


def table(results: Sequence[PhaseResult]) -> str:
    """The phases as an aligned text table (the README's)."""
    rows = [[title for _, title, _ in COLUMNS]]
    for result in results:
        data = result.to_json()
        rows.append(["-" if data[key] is None else fmt.format(data[key])
                     for key, _, fmt in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.rjust(w) if i > 1 else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip() for row in rows)
