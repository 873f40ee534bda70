"""The weekly report's parts: plain frozen rows the renderers and the JSON read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jobs.reports.weekly_students import StudentEmails
from jobs.reports.weeks import (
    REPORT_VERSION,
    TARGET_AUTOMATIC_RATE,
    TARGET_MANUAL_RATE,
    TARGET_REPAIR_SECONDS,
)

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
        out: dict[str, Any] = _plain(self)
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
