"""The weekly report's shell: read one week's rows from the ledger and compute the report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from jobs.core.records import AnomalyRecord, RunRecord, SessionOutcome
from jobs.reports.weekly import LedgerRows, Links, compute_weekly
from jobs.reports.weekly_rows import WeeklyReport
from jobs.reports.weeks import TREND_WEEKS, monday_of, week_bounds

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
