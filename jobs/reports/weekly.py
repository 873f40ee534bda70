"""The weekly ops report's figures, computed from run-ledger rows.

Everything here is pure (rows in, figures out); `jobs.reports.weekly_ledger` reads the rows, the
parts are in `jobs.reports.weekly_rows`, week arithmetic and the categories in `jobs.reports.weeks`.

How a purchase of the week is counted (a purchase belongs to the week it was first seen in):
- automatic: its subscription was there when the job first saw the paid purchase (the webhook
  did its job);
- repaired: the job created the subscription;
- open: it needs a person now (`needs_manual`, or a failed write);
- fixed by a person: it needed a person and now has its subscription (made by hand);
- fixed elsewhere: missing when first seen, present later, not made by the job (a late webhook,
  the app's own sync, a person);
- still missing: seen only by dry runs, not yet repaired.
Pending (unsettled) payments, expired pending ones and malformed sessions are not purchases.
"Needed a person" = open + fixed by a person + repaired after it first needed a person.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from jobs.core.reasons import explain_anomaly, explain_outcome
from jobs.core.records import AnomalyRecord, RunRecord, SessionOutcome
from jobs.reports.weekly_rows import (
    AnomalyRow,
    CreatedRow,
    Headline,
    MoneyLine,
    NeedsYouRow,
    RepairTimes,
    RunHealth,
    Targets,
    TrendWeek,
    WeeklyReport,
)
from jobs.reports.weeks import (
    CATEGORIES,
    NEEDS_PERSON_OUTCOMES,
    TREND_WEEKS,
    major_units,
    monday_of,
    needed_person,
    percentile,
    purchase_category,
    rate,
    stripe_payment_url,
    week_bounds,
)

# ---- figures -----------------------------------------------------------------------------


def _in(moment: datetime, start: datetime, end: datetime) -> bool:
    return start <= moment < end


def headline(rows: Iterable[SessionOutcome], targets: Targets = Targets()) -> Headline:
    """Counts and rates of one week's rows (rows first seen that week)."""
    counts = dict.fromkeys(CATEGORIES, 0)
    needed = pending = 0
    for row in rows:
        category = purchase_category(row)
        if row.outcome == "pending":
            pending += 1
        if category is None:
            continue
        counts[category] += 1
        needed += needed_person(row, category)
    purchases = sum(counts.values())
    automatic_rate = rate(counts["automatic"], purchases)
    manual_rate = rate(needed, purchases)
    return Headline(
        purchases=purchases, automatic=counts["automatic"], repaired=counts["repaired"],
        needed_person=needed, open=counts["open"], fixed_by_person=counts["fixed_by_person"],
        fixed_elsewhere=counts["fixed_elsewhere"], still_missing=counts["still_missing"],
        pending=pending, automatic_rate=automatic_rate, manual_rate=manual_rate,
        automatic_target_met=None if automatic_rate is None
        else automatic_rate >= targets.automatic_rate,
        manual_target_met=None if manual_rate is None else manual_rate <= targets.manual_rate,
    )


def repair_times(created: Iterable[SessionOutcome], targets: Targets = Targets()) -> RepairTimes:
    """Median, p95 and max of payment-to-repair over the job's creations."""
    seconds = [s for s in (row.repair_seconds for row in created) if s is not None]
    p95 = percentile(seconds, 95)
    return RepairTimes(
        count=len(seconds), median=percentile(seconds, 50), p95=p95,
        max=max(seconds) if seconds else None,
        within_target=sum(1 for s in seconds if s <= targets.repair_seconds),
        target_met=None if p95 is None else p95 <= targets.repair_seconds,
    )


def money_by_currency(rows: Iterable[SessionOutcome]) -> tuple[MoneyLine, ...]:
    """Per currency: all purchases, those the job repaired, those needing a person (open).

    A purchase whose amount is unknown (a failed write carries none) is left out.
    """
    # Summed in hundredths so that 0.1 + 0.2 stays 0.3.
    counts: dict[str, dict[str, int]] = {}
    hundredths: dict[str, dict[str, int]] = {}
    for row in rows:
        category = purchase_category(row)
        if category is None or row.amount is None:
            continue
        currency = (row.currency or "unknown").lower()
        count = counts.setdefault(currency, dict.fromkeys(
            ("purchases", "repaired", "needs_person"), 0))
        total = hundredths.setdefault(currency, dict.fromkeys(
            ("purchases_amount", "repaired_amount", "needs_person_amount"), 0))
        cents = round(float(row.amount) * 100)
        count["purchases"] += 1
        total["purchases_amount"] += cents
        if category == "repaired":
            count["repaired"] += 1
            total["repaired_amount"] += cents
        if category == "open":
            count["needs_person"] += 1
            total["needs_person_amount"] += cents
    return tuple(MoneyLine(currency=c, purchases=n["purchases"],
                           purchases_amount=hundredths[c]["purchases_amount"] / 100,
                           repaired=n["repaired"],
                           repaired_amount=hundredths[c]["repaired_amount"] / 100,
                           needs_person=n["needs_person"],
                           needs_person_amount=hundredths[c]["needs_person_amount"] / 100)
                 for c, n in sorted(counts.items()))


def run_health(runs: Iterable[RunRecord], last_success: RunRecord | None,
               consecutive_failures: int) -> RunHealth:
    """The week's runs by status, plus the latest success and the current failure streak."""
    real = [r for r in runs if not r.dry_run]
    failures = [r for r in real if r.status in ("failed", "interrupted")]
    return RunHealth(
        runs=len(real),
        dry_runs=sum(1 for r in runs if r.dry_run),
        ok=sum(1 for r in real if r.status == "ok"),
        partial=sum(1 for r in real if r.status == "partial"),
        failed=len(failures),
        running=sum(1 for r in real if r.status == "running"),
        last_success_at=last_success.finished_at if last_success else None,
        last_success_run_id=last_success.run_id if last_success else None,
        consecutive_failures=consecutive_failures,
        last_failure=failures[-1].error if failures else None,
    )


def trend(rows: Iterable[SessionOutcome], week_starts: Sequence[date],
          tz: ZoneInfo) -> tuple[TrendWeek, ...]:
    """One TrendWeek per Monday in `week_starts` (oldest first), from rows by first-seen time."""
    bounds = [week_bounds(w, tz) for w in week_starts]
    buckets: list[list[SessionOutcome]] = [[] for _ in week_starts]
    for row in rows:
        for i, (start, end) in enumerate(bounds):
            if _in(row.first_seen_at, start, end):
                buckets[i].append(row)
                break
    out = []
    for monday, bucket in zip(week_starts, buckets, strict=True):
        h = headline(bucket)
        out.append(TrendWeek(
            week_start=monday, purchases=h.purchases, automatic=h.automatic,
            repaired=h.repaired, person=h.open + h.fixed_by_person,
            other=h.fixed_elsewhere + h.still_missing, needed_person=h.needed_person,
            automatic_rate=h.automatic_rate, manual_rate=h.manual_rate,
        ))
    return tuple(out)


def _school(tenant: str | None, names: Mapping[str, str]) -> str | None:
    return names.get(tenant, tenant) if tenant else None


@dataclass(frozen=True)
class Links:
    """How to link a payment into the Stripe dashboard."""

    dashboard_base: str
    key_mode: str

    def payment(self, account: str | None, session_id: str) -> str:
        return stripe_payment_url(self.dashboard_base, account, session_id, self.key_mode)


def needs_you_rows(rows: Iterable[SessionOutcome], start: datetime, end: datetime,
                   links: Links, names: Mapping[str, str]) -> tuple[NeedsYouRow, ...]:
    """One row per purchase needing a person, oldest payment first."""
    seen: dict[str, NeedsYouRow] = {}
    for row in rows:
        if row.outcome not in NEEDS_PERSON_OUTCOMES or row.session_id in seen:
            continue
        words = explain_outcome(row.outcome, row.reason, row.detail)
        seen[row.session_id] = NeedsYouRow(
            session_id=row.session_id, account=row.account, school=_school(row.tenant, names),
            email=row.email, pass_name=row.pass_name or row.pass_id,
            amount=major_units(row.amount),
            currency=row.currency, paid_at=row.paid_at, first_seen_at=row.first_seen_at,
            new_this_week=_in(row.first_seen_at, start, end), outcome=row.outcome,
            reason=row.reason if row.outcome == "needs_manual" and row.reason else words.code,
            title=words.title, meaning=words.meaning, fix=words.fix, detail=row.detail,
            dashboard_url=links.payment(row.account, row.session_id),
        )
    far = datetime.max.replace(tzinfo=start.tzinfo)
    return tuple(sorted(seen.values(), key=lambda r: (r.paid_at or far, r.session_id)))


def created_rows(rows: Iterable[SessionOutcome], links: Links,
                 names: Mapping[str, str]) -> tuple[CreatedRow, ...]:
    """The week's creations by payment time (then session id), as `needs_you_rows` sorts."""
    far = datetime.max.replace(tzinfo=UTC)
    rows = sorted(rows, key=lambda r: (r.paid_at or far, r.session_id))
    return tuple(
        CreatedRow(
            session_id=r.session_id, account=r.account, school=_school(r.tenant, names),
            email=r.email, pass_name=r.pass_name or r.pass_id, amount=major_units(r.amount),
            currency=r.currency, paid_at=r.paid_at, created_at=r.created_at,
            repair_seconds=r.repair_seconds, subscription_id=r.subscription_id,
            dashboard_url=links.payment(r.account, r.session_id),
        )
        for r in rows
    )


def anomaly_rows(records: Iterable[AnomalyRecord], accounts: Mapping[str, str],
                 links: Links) -> tuple[AnomalyRow, ...]:
    """`accounts` maps a session id to its Stripe account (for the link); unknown: no link."""
    out = []
    for a in records:
        words = explain_anomaly(a.kind)
        account = accounts.get(a.session_id or "")
        out.append(AnomalyRow(
            kind=a.kind, title=words.title, meaning=words.meaning, fix=words.fix,
            session_id=a.session_id, subscription_ids=tuple(a.subscription_ids),
            detail=a.detail, times_seen=a.times_seen, first_seen_at=a.first_seen_at,
            dashboard_url=links.payment(account, a.session_id)
            if a.session_id and account else None,
        ))
    return tuple(out)


@dataclass(frozen=True)
class LedgerRows:
    """Everything the weekly report reads from the ledger (what `compute_weekly` is pure over)."""

    first_seen: Sequence[SessionOutcome]  # first seen in the trend's 8 weeks up to the week's end
    created: Sequence[SessionOutcome]  # created during the week
    open_manual: Sequence[SessionOutcome]  # latest outcome needs_manual, any week
    anomalies: Sequence[AnomalyRecord]  # first reported during the week
    anomaly_sessions: Mapping[str, str]  # session id -> account, for the anomalies' links
    runs: Sequence[RunRecord]  # started during the week
    last_success: RunRecord | None
    consecutive_failures: int


def compute_weekly(rows: LedgerRows, week_start: date, now: datetime, *, tz: ZoneInfo,
                   links: Links, webhook_health: Mapping[str, Any] | None = None,
                   tenant_names: Mapping[str, str] | None = None,
                   targets: Targets = Targets()) -> WeeklyReport:
    """The weekly report of the week starting `week_start` (a Monday in `tz`), from ledger rows."""
    week_start = monday_of(week_start)
    start, end = week_bounds(week_start, tz)
    names = tenant_names or {}
    week_rows = [r for r in rows.first_seen if _in(r.first_seen_at, start, end)]
    mondays = [week_start - timedelta(weeks=n) for n in range(TREND_WEEKS - 1, -1, -1)]
    # Failed writes have no query of their own: take those first seen within the trend weeks.
    needing = [*rows.open_manual, *(r for r in rows.first_seen if r.outcome == "failed")]
    return WeeklyReport(
        week_start=week_start,
        week_end=week_start + timedelta(days=7),
        timezone=tz.key,
        generated_at=now,
        complete=now >= end,
        key_mode=links.key_mode,
        targets=targets,
        headline=headline(week_rows, targets),
        repair_time=repair_times(rows.created, targets),
        money=money_by_currency(week_rows),
        runs=run_health(rows.runs, rows.last_success, rows.consecutive_failures),
        needs_you=needs_you_rows(needing, start, end, links, names),
        created=created_rows(rows.created, links, names),
        anomalies=anomaly_rows(rows.anomalies, rows.anomaly_sessions, links),
        trend=trend(rows.first_seen, mondays, tz),
        webhook_health=dict(webhook_health) if webhook_health is not None else None,
    )


