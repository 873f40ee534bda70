"""`reconcile status --check`: one verdict for a probe (Nagios, cron, Kubernetes), from the ledger.

Pure over what the ledger returns: healthy (exit 0) or needs a person (exit 1) with one line
saying why. The causes are the ones the alerts use, judged the same way (`jobs.reports.alerts`): no
run
ended `ok` for longer than `alerts.no_success_for`, the last `alerts.failed_runs` runs failed,
or an account the latest run could not read is behind its watermark by more than that (plus
the grace). A ledger that cannot be read is the caller's exit 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from jobs.commands.status import human_duration
from jobs.config.settings import AlertSettings
from jobs.core.records import RunRecord, Watermark
from jobs.reports.alerts import RUNS_READ, failure_streak


class HealthLedger(Protocol):
    """What the check reads from the ledger."""

    def recent_runs(self, limit: int = 10) -> list[RunRecord]: ...
    def last_success(self) -> RunRecord | None: ...
    def watermarks(self) -> list[Watermark]: ...


@dataclass(frozen=True)
class Health:
    exit_code: int  # 0 healthy, 1 needs a person
    line: str


def _ago(now: datetime, then: datetime) -> str:
    return human_duration((now - then).total_seconds())


def no_success_problem(runs: list[RunRecord], last: RunRecord | None, limit: timedelta,
                       now: datetime) -> str | None:
    """Too long without a run that ended `ok` (a ledger without runs counts too: a probe on a
    schedule that never started, or on the wrong state directory, must not say healthy)."""
    if last is not None:
        ended = last.finished_at or last.started_at
        return (f"last successful run {_ago(now, ended)} ago (limit "
                f"{human_duration(limit.total_seconds())})" if now - ended > limit else None)
    real = [r for r in runs if not r.dry_run and r.status != "running"]
    if not real:
        return "no run recorded in the ledger yet"
    first = real[-1].started_at
    if now - first > limit:
        return f"no successful run since the first one {_ago(now, first)} ago"
    return None


def stuck_accounts(watermarks: list[Watermark], latest: RunRecord | None, bound: timedelta,
                   now: datetime) -> list[str]:
    """Accounts whose quick-pass watermark lags more than `bound` and that the latest run could
    not read. An account no run reads any more (a school that left) keeps its old watermark
    without being stuck: it is not named."""
    errors = latest.account_errors if latest is not None else {}
    return [f"{w.account} reconciled only up to {_ago(now, w.until)} ago ({errors[w.account]})"
            for w in watermarks
            if w.kind == "quick" and w.account in errors and now - w.until > bound]


def check_health(ledger: HealthLedger, thresholds: AlertSettings, grace: timedelta,
                 now: datetime) -> Health:
    """The probe's verdict; every cause found is named, most urgent first."""
    runs = ledger.recent_runs(RUNS_READ)
    last = ledger.last_success()
    problems: list[str] = []
    streak = failure_streak(runs)
    if thresholds.failed_runs > 0 and len(streak) >= thresholds.failed_runs:
        latest = streak[0]
        problems.append(f"the last {len(streak)} runs failed (limit {thresholds.failed_runs}): "
                        f"{latest.error or latest.status}")
    if thresholds.no_success_for > timedelta(0):
        found = no_success_problem(runs, last, thresholds.no_success_for, now)
        if found:
            problems.append(found)
    # A quick pass's watermark ends at now - grace; allow the no-success limit beyond that.
    # The latest run that got as far as reading the accounts (a failed run read none).
    reader = next((r for r in runs if not r.dry_run and r.status in ("ok", "partial")), None)
    stuck = stuck_accounts(ledger.watermarks(), reader, thresholds.no_success_for + grace, now)
    if stuck:
        problems.append("stuck behind its watermark: " + ", ".join(stuck))
    if problems:
        return Health(1, "needs attention: " + "; ".join(problems))
    ended = last.finished_at if last is not None else None
    accounts = sum(1 for w in ledger.watermarks() if w.kind == "quick")
    return Health(0, f"ok: last successful run {_ago(now, ended) if ended else '?'} ago, "
                     f"{accounts} account{'s' if accounts != 1 else ''} up to date")
