"""Run reports built as a run builds them, from decisions: for the tests of what reads one
(the ledger, the alerts, the metrics, the status)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobs.core.model import Anomaly, Decision
from jobs.core.runreport import RunReport


def created(session_id: str, paid_at: str, account: str = "acct_1", **fields: Any) -> Decision:
    values: dict[str, Any] = {
        "tenant": "tenant-a", "subscription_ids": (f"subscription-{session_id}",),
        "user_id": "user-u1", "pass_id": "pass-10", "pass_name": "10 classes",
        "email": "a@example.com", "amount": 120.0, "currency": "nok", **fields}
    return Decision(session_id, account, "created", paid_at=paid_at, **values)


def present(session_id: str, paid_at: str, account: str = "acct_1", **fields: Any) -> Decision:
    values: dict[str, Any] = {"tenant": "tenant-a", "amount": 90.0, "currency": "nok",
                              **fields}
    return Decision(session_id, account, "already_present", paid_at=paid_at, **values)


def manual(session_id: str, reason: str, account: str = "platform", **fields: Any) -> Decision:
    return Decision(session_id, account, "needs_manual", reason=reason, **fields)


def pending(session_id: str, account: str = "acct_1", **fields: Any) -> Decision:
    return Decision(session_id, account, "pending", reason="async_payment", **fields)


def failed(session_id: str, error: str, account: str = "acct_1") -> Decision:
    return Decision(session_id, account, "failed", detail=error)


def run_report(run_id: str, *, since: str, until: str, dry_run: bool = False,
               decisions: Iterable[Decision] = (),
               accounts: Mapping[str, str | None] | None = None,
               errors: Mapping[str, str] | None = None,
               anomalies: Iterable[Anomaly] = (), cap_exceeded: bool = False,
               error: str | None = None) -> RunReport:
    """`accounts`: account -> tenant (the platform alone by default); `errors`: the accounts
    that could not be read."""
    report = RunReport(run_id=run_id, started_at=since, since=since, until=until,
                       dry_run=dry_run, finished_at=until, cap_exceeded=cap_exceeded,
                       error=error)
    for name, tenant in (accounts if accounts is not None else {"platform": None}).items():
        report.account(name, tenant)
    for name, why in (errors or {}).items():
        report.account(name).error = why
    for decision in decisions:
        report.add(decision)
    report.anomalies.extend(anomalies)
    return report
