"""The weekly ops report's figures, computed from run-ledger rows.

Everything here is pure (rows in, figures out) except `build_weekly`, which only reads the ledger
through its named queries and hands the rows to `compute_weekly`.

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

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jobs.adapters.ledger_schema import AnomalyRecord, RunRecord, SessionOutcome
from jobs.core.model import PLATFORM
from jobs.core.reasons import explain_anomaly, explain_outcome
from jobs.reports.weekly_students import StudentEmails

TARGET_AUTOMATIC_RATE = 0.98
TARGET_MANUAL_RATE = 0.02
TARGET_REPAIR_SECONDS = 300.0
TREND_WEEKS = 8
REPORT_VERSION = 1

CATEGORIES = ("automatic", "repaired", "open", "fixed_by_person", "fixed_elsewhere",
              "still_missing")
NEEDS_PERSON_OUTCOMES = ("needs_manual", "failed")


# ---- weeks -------------------------------------------------------------------------------


def monday_of(day: date) -> date:
    """The Monday of the ISO week holding `day`."""
    return day - timedelta(days=day.weekday())


def week_bounds(week_start: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) in `tz`, in UTC (a DST week is 167 or 169 hours).

    UTC because Python compares and subtracts two datetimes of the same zone by wall clock.
    """
    start = datetime.combine(monday_of(week_start), time(0), tzinfo=tz)
    end = datetime.combine(monday_of(week_start) + timedelta(days=7), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def last_complete_week(now: datetime, tz: ZoneInfo) -> date:
    """The Monday of the last week that ended before `now` (in `tz`): the default report week."""
    return monday_of(now.astimezone(tz).date()) - timedelta(days=7)


# ---- pure helpers ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    The "inclusive" definition (numpy's default, Excel's PERCENTILE.INC): p0 is the minimum,
    p100 the maximum, p50 the median. None for no values.
    """
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rate(part: int, whole: int) -> float | None:
    """part / whole, or None when there is nothing to divide."""
    return part / whole if whole else None


def stripe_payment_url(dashboard_base: str, account: str | None, session_id: str,
                       key_mode: str) -> str:
    """The Checkout Session's page in the Stripe dashboard.

    A connected account's object is reached through `/<acct_id>/` (the platform's view of that
    account); test-mode objects live under `/test/`. The session id's own prefix (`cs_test_` /
    `cs_live_`) wins over the key's mode, which is only the fallback.
    """
    if session_id.startswith("cs_test_"):
        mode = "test"
    elif session_id.startswith("cs_live_"):
        mode = "live"
    else:
        mode = key_mode
    parts = [dashboard_base.rstrip("/")]
    if account and account != PLATFORM:
        parts.append(quote(account, safe=""))
    if mode == "test":
        parts.append("test")
    parts += ["checkout", "sessions", quote(session_id, safe="")]
    return "/".join(parts)


def major_units(amount: float | None) -> float | None:
    """An amount in major units (kroner, euros), as the run report and the ledger hold it."""
    return None if amount is None else round(float(amount), 2)


def _is_malformed(row: SessionOutcome) -> bool:
    return row.outcome == "failed" and (row.detail or "").lower().startswith("malformed session")


def purchase_category(row: SessionOutcome) -> str | None:
    """Which of CATEGORIES a ledger row is, or None when it is not (yet) a paid pass purchase."""
    if _is_malformed(row):
        return None
    if row.outcome in NEEDS_PERSON_OUTCOMES:
        return "open"
    if row.created_at is not None or row.outcome == "created":
        return "repaired"
    if row.outcome == "already_present":
        if row.first_outcome in ("already_present", "pending"):
            return "automatic"
        if row.first_outcome in NEEDS_PERSON_OUTCOMES:
            return "fixed_by_person"
        return "fixed_elsewhere"
    if row.outcome == "would_create":
        return "still_missing"
    return None  # pending, pending_expired, ignored


def needed_person(row: SessionOutcome, category: str | None) -> bool:
    """Whether a purchase needed (or needs) a person: open now, or first seen as needs_manual."""
    return category in ("open", "fixed_by_person") or (
        category is not None and row.first_outcome == "needs_manual")


# ---- the report's parts ------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    automatic_rate: float = TARGET_AUTOMATIC_RATE
    manual_rate: float = TARGET_MANUAL_RATE
    repair_seconds: float = TARGET_REPAIR_SECONDS


@dataclass(frozen=True)
class Headline:
    """The week's purchases and what became of them."""

    purchases: int
    automatic: int
    repaired: int
    needed_person: int
    open: int
    fixed_by_person: int
    fixed_elsewhere: int
    still_missing: int
    pending: int  # unsettled payments first seen this week (not purchases yet)
    automatic_rate: float | None
    manual_rate: float | None
    automatic_target_met: bool | None
    manual_target_met: bool | None


@dataclass(frozen=True)
class RepairTimes:
    """Payment to repair, over the subscriptions the job created during the week (seconds)."""

    count: int
    median: float | None
    p95: float | None
    max: float | None
    within_target: int
    target_met: bool | None  # p95 within the target


@dataclass(frozen=True)
class MoneyLine:
    """Amounts in major units (250.0 NOK), as the run report gives them."""

    currency: str
    purchases: int
    purchases_amount: float
    repaired: int
    repaired_amount: float
    needs_person: int
    needs_person_amount: float


@dataclass(frozen=True)
class RunHealth:
    runs: int  # real runs started this week
    dry_runs: int
    ok: int
    partial: int
    failed: int  # failed or interrupted
    running: int
    last_success_at: datetime | None
    last_success_run_id: str | None
    consecutive_failures: int  # now, latest real runs
    last_failure: str | None  # the error of the week's latest failed run


@dataclass(frozen=True)
class NeedsYouRow:
    session_id: str
    account: str
    school: str | None
    email: str | None
    pass_name: str | None
    amount: float | None
    currency: str | None
    paid_at: datetime | None
    first_seen_at: datetime
    new_this_week: bool
    outcome: str
    reason: str
    title: str
    meaning: str
    fix: str
    detail: str | None
    dashboard_url: str


@dataclass(frozen=True)
class CreatedRow:
    session_id: str
    account: str
    school: str | None
    email: str | None
    pass_name: str | None
    amount: float | None
    currency: str | None
    paid_at: datetime | None
    created_at: datetime | None
    repair_seconds: float | None
    subscription_id: str | None
    dashboard_url: str


@dataclass(frozen=True)
class AnomalyRow:
    kind: str
    title: str
    meaning: str
    fix: str
    session_id: str | None
    subscription_ids: tuple[str, ...]
    detail: str | None
    times_seen: int
    first_seen_at: datetime
    dashboard_url: str | None


@dataclass(frozen=True)
class TrendWeek:
    week_start: date
    purchases: int
    automatic: int
    repaired: int
    person: int  # open + fixed by a person (the chart's segments add up to purchases)
    other: int  # fixed elsewhere + still missing
    needed_person: int  # as in the headline (also counts repairs after a person's fix)
    automatic_rate: float | None
    manual_rate: float | None


@dataclass(frozen=True)
class WeeklyReport:
    week_start: date
    week_end: date  # the next Monday (exclusive)
    timezone: str
    generated_at: datetime
    complete: bool  # the week had ended when the report was built
    key_mode: str
    targets: Targets
    headline: Headline
    repair_time: RepairTimes
    money: tuple[MoneyLine, ...]
    runs: RunHealth
    needs_you: tuple[NeedsYouRow, ...]
    created: tuple[CreatedRow, ...]
    anomalies: tuple[AnomalyRow, ...]
    trend: tuple[TrendWeek, ...]
    webhook_health: Mapping[str, Any] | None = None
    version: int = field(default=REPORT_VERSION)
    students: StudentEmails | None = None  # the student e-mails, when they are on or were sent

    @property
    def label(self) -> str:
        """e.g. `2024-W19`."""
        year, week, _ = self.week_start.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data: times as ISO 8601, amounts in major units, rates as 0..1."""
        out = _plain(self)
        out["label"] = self.label
        return out


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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
    lines = {c: {**counts[c], **{k: v / 100 for k, v in hundredths[c].items()}}
             for c in counts}
    return tuple(MoneyLine(currency=c, **v) for c, v in sorted(lines.items()))


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


# ---- the shell: read the ledger ----------------------------------------------------------


class WeeklyLedger(Protocol):
    """The ledger queries the weekly report reads."""

    def outcomes_first_seen_between(self, start: datetime,
                                    end: datetime) -> list[SessionOutcome]: ...
    def created_between(self, start: datetime, end: datetime) -> list[SessionOutcome]: ...
    def open_manual(self) -> list[SessionOutcome]: ...
    def anomalies_between(self, start: datetime, end: datetime) -> list[AnomalyRecord]: ...
    def session(self, session_id: str) -> SessionOutcome | None: ...
    def runs_between(self, start: datetime, end: datetime) -> list[RunRecord]: ...
    def last_success(self) -> RunRecord | None: ...
    def consecutive_failures(self) -> int: ...


def read_rows(ledger: WeeklyLedger, week_start: date, tz: ZoneInfo) -> LedgerRows:
    """The ledger rows of one report week (and its 8-week trend)."""
    start, end = week_bounds(week_start, tz)
    trend_start, _ = week_bounds(monday_of(week_start) - timedelta(weeks=TREND_WEEKS - 1), tz)
    anomalies = ledger.anomalies_between(start, end)
    accounts: dict[str, str] = {}
    for a in anomalies:
        if a.session_id and a.session_id not in accounts:
            row = ledger.session(a.session_id)
            if row is not None:
                accounts[a.session_id] = row.account
    return LedgerRows(
        first_seen=ledger.outcomes_first_seen_between(trend_start, end),
        created=ledger.created_between(start, end),
        open_manual=ledger.open_manual(),
        anomalies=anomalies,
        anomaly_sessions=accounts,
        runs=ledger.runs_between(start, end),
        last_success=ledger.last_success(),
        consecutive_failures=ledger.consecutive_failures(),
    )


def build_weekly(ledger: WeeklyLedger, week_start: date, now: datetime, *, tz: ZoneInfo,
                 dashboard_base: str, key_mode: str,
                 webhook_health: Mapping[str, Any] | None = None,
                 tenant_names: Mapping[str, str] | None = None) -> WeeklyReport:
    """The weekly report for the week starting on `week_start`'s Monday in `tz`.

    `webhook_health` is shown as given (e.g. `doctor`'s findings: undelivered events, endpoint
    problems); `tenant_names` maps tenant ids to school names for display (ids otherwise).
    """
    return compute_weekly(
        read_rows(ledger, week_start, tz), week_start, now, tz=tz,
        links=Links(dashboard_base, key_mode), webhook_health=webhook_health,
        tenant_names=tenant_names,
    )
