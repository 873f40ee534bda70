"""The ledger's session outcomes, pending payments and anomalies: a run's report written in
batched statements, and the queries the weekly report and the alerts read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple

from jobs.adapters.ledger_base import DAY, LedgerBase
from jobs.adapters.ledger_db import Conn
from jobs.adapters.ledger_schema import OUTCOMES
from jobs.core.model import PLATFORM, Decision
from jobs.core.records import (
    AnomalyRecord,
    PendingSession,
    SessionOutcome,
    to_datetime,
    to_epoch,
)
from jobs.core.runreport import RunReport


class _Row(NamedTuple):
    """One `sessions` row's own columns, in the statement's order."""

    session_id: str
    account: str
    tenant: str | None
    outcome: str
    reason: str | None
    detail: str | None
    amount: float | None
    currency: str | None
    email: str | None
    pass_id: str | None
    pass_name: str | None
    subscription_id: str | None
    user_id: str | None
    paid_at: float | None


_COLUMNS = _Row._fields
# Sessions go in many rows per statement: each statement costs one step of SQLite, and
# every step releases Python's GIL and waits to take it back. Row by row, a run's planning
# threads spent more time queueing for the GIL than SQLite spent writing.
_INSERT_SESSIONS = f"""INSERT INTO sessions ({", ".join(_COLUMNS)}, first_seen_at,
    first_outcome, first_run_id, last_seen_at, last_run_id, created_at, created_run_id)"""
_SESSION_WIDTH = len(_COLUMNS) + 7
# A statement's compiled program grows with its rows (and the driver caches programs):
# 250 rows keep it small while a batch of present rows still takes only a few steps.
_ROWS_PER_STATEMENT = 250
_UPSERT_SESSIONS_TAIL = """
ON CONFLICT (session_id) DO UPDATE SET
    account = excluded.account,
    tenant = COALESCE(excluded.tenant, sessions.tenant),
    outcome = excluded.outcome,
    reason = excluded.reason,
    detail = excluded.detail,
    amount = COALESCE(excluded.amount, sessions.amount),
    currency = COALESCE(excluded.currency, sessions.currency),
    email = COALESCE(excluded.email, sessions.email),
    pass_id = COALESCE(excluded.pass_id, sessions.pass_id),
    pass_name = COALESCE(excluded.pass_name, sessions.pass_name),
    subscription_id = COALESCE(excluded.subscription_id, sessions.subscription_id),
    user_id = COALESCE(excluded.user_id, sessions.user_id),
    paid_at = COALESCE(excluded.paid_at, sessions.paid_at),
    last_seen_at = excluded.last_seen_at,
    last_run_id = excluded.last_run_id,
    created_at = COALESCE(sessions.created_at, excluded.created_at),
    created_run_id = COALESCE(sessions.created_run_id, excluded.created_run_id)
"""
_INSERT_PENDING = ("INSERT INTO pending (session_id, account, reason, first_seen_at,"
                   " last_checked_at)")
_KEEP_PENDING_TAIL = """
ON CONFLICT (session_id) DO UPDATE SET last_checked_at = excluded.last_checked_at,
    reason = excluded.reason
"""
_DROP_PENDING = "DELETE FROM pending WHERE session_id IN "


def _insert_many(conn: Conn, head: str, tail: str, width: int,
                 values: Iterable[tuple[Any, ...]]) -> None:
    """`head VALUES (…), (…), … tail`, up to `_ROWS_PER_STATEMENT` rows a statement, in
    order (a later row's upsert wins over an earlier one's); `values` is consumed a
    statement's worth at a time."""
    row = "(" + ", ".join("?" * width) + ")"
    rows = iter(values)
    while chunk := list(islice(rows, _ROWS_PER_STATEMENT)):
        conn.execute(f"{head} VALUES {', '.join([row] * len(chunk))} {tail}",
                     [v for item in chunk for v in item])

_UPSERT_ANOMALY = """
INSERT INTO anomalies (kind, session_id, subscription_ids, detail, first_seen_at, first_run_id,
    last_seen_at, last_run_id)
VALUES (:kind, :session_id, :subscription_ids, :detail, :now, :run_id, :now, :run_id)
ON CONFLICT (kind, session_id) DO UPDATE SET
    subscription_ids = excluded.subscription_ids,
    detail = excluded.detail,
    last_seen_at = excluded.last_seen_at,
    last_run_id = excluded.last_run_id,
    times_seen = anomalies.times_seen + 1
"""

# What the ledger keeps of a purchase, by the outcome it records: the fields the run
# report has always named for it. E-mail addresses only where a person may act on the
# purchase (created, needs a person); a failed one is known only by its error.
_CREATED = ("tenant", "amount", "currency", "email", "pass_id", "pass_name", "subscription_id",
            "user_id", "paid_at")
_KEPT: dict[str, frozenset[str]] = {
    "created": frozenset(_CREATED),
    "would_create": frozenset(_CREATED),
    "needs_manual": frozenset(("tenant", "amount", "currency", "email", "pass_id", "pass_name",
                               "reason", "detail", "paid_at")),
    "pending": frozenset(("reason", "paid_at")),
    "failed": frozenset(("detail",)),
    "already_present": frozenset(("tenant", "amount", "currency", "subscription_id", "paid_at")),
}


def _row(d: Decision, outcome: str) -> _Row | None:
    """A decision as a `sessions` row recorded as `outcome`; None for one without a session
    id (a malformed session cannot be tracked)."""
    if not d.session_id:
        return None
    kept = _KEPT[outcome]

    def value(name: str, found: Any) -> Any:
        return found if name in kept else None

    return _Row(
        session_id=d.session_id, account=d.account or PLATFORM,
        tenant=value("tenant", d.tenant), outcome=outcome, reason=value("reason", d.reason),
        detail=value("detail", d.detail), amount=value("amount", d.amount),
        currency=value("currency", d.currency), email=value("email", d.email),
        pass_id=value("pass_id", d.pass_id), pass_name=value("pass_name", d.pass_name),
        subscription_id=value("subscription_id",
                              d.subscription_ids[0] if d.subscription_ids else None),
        user_id=value("user_id", d.user_id), paid_at=to_epoch(value("paid_at", d.paid_at)))


def _report_rows(report: RunReport, dry_run: bool) -> Iterator[_Row]:
    """One row per session named in the report's lists, one at a time.

    A session is in one list only (the report counts each once); were it in two, the later
    list's upsert wins, and `created` comes last as the strongest fact."""
    lists: tuple[tuple[list[Decision], str], ...] = (
        (report.pending, "pending"),
        (report.failed, "failed"),
        (report.needs_manual, "needs_manual"),
        (report.created, "would_create" if dry_run else "created"),
    )
    for decisions, outcome in lists:
        for decision in decisions:
            row = _row(decision, outcome)
            if row is not None:
                yield row


class SessionTables(LedgerBase):
    """Session outcomes (one row a session, its first and latest outcome) and anomalies."""

    def record_present(self, run_id: str, decisions: Iterable[Decision]) -> None:
        """Upsert purchases found already present.

        Called as a run finds them, a batch at a time: a deep pass finds every purchase of
        its window present, and the report does not carry them to the end of the run."""
        with self._tx() as conn:
            self._run_dry(conn, run_id)
            now = self._now()
            rows = (row for d in decisions
                    if (row := _row(d, "already_present")) is not None)
            self._upsert_sessions(conn, rows, run_id, now)

    def record_report(self, report: RunReport) -> None:
        """Upsert every session and anomaly of a run report.

        first_seen_at / first_outcome / first_run_id and created_at are set once. A dry run's
        `created` entries are recorded as `would_create` and never set created_at. Pending rows
        follow the sessions: added for `pending`, dropped for any other outcome; pending rows
        older than 30 days are expired afterwards.
        """
        run_id = report.run_id
        with self._tx() as conn:
            dry = report.dry_run or self._run_dry(conn, run_id)
            now = self._now()
            self._upsert_sessions(conn, _report_rows(report, dry), run_id, now)
            for anomaly in report.anomalies:
                conn.execute(_UPSERT_ANOMALY, {
                    "kind": anomaly.kind,
                    "session_id": anomaly.session_id or "",
                    "subscription_ids": json.dumps(list(anomaly.subscription_ids)),
                    "detail": anomaly.detail,
                    "now": now,
                    "run_id": run_id,
                })
        self.expire_pending()

    @staticmethod
    def _run_dry(conn: Conn, run_id: str) -> bool:
        """Whether the run is a dry run; LookupError when it was never started."""
        found = conn.execute("SELECT dry_run FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if found is None:
            raise LookupError(f"run {run_id} was never started in the ledger")
        return bool(found["dry_run"])

    @staticmethod
    def _upsert_sessions(conn: Conn, rows: Iterable[_Row],
                         run_id: str, now: float) -> None:
        """Sessions' outcomes, in order (a session named twice: the later row wins); a
        session's pending row follows its last outcome (kept only while pending). `rows`
        is read once, a statement's worth at a time: a report's rows are never all held."""
        last: dict[str, tuple[str, str, str | None]] = {}  # outcome, account, reason

        def values() -> Iterator[tuple[Any, ...]]:
            for row in rows:
                last[row.session_id] = (row.outcome, row.account, row.reason)
                created = (now, run_id) if row.outcome == "created" else (None, None)
                yield (*row, now, row.outcome, run_id, now, run_id, *created)

        _insert_many(conn, _INSERT_SESSIONS, _UPSERT_SESSIONS_TAIL, _SESSION_WIDTH, values())
        settled = iter([sid for sid, (outcome, _, _) in last.items() if outcome != "pending"])
        while chunk := list(islice(settled, _ROWS_PER_STATEMENT)):
            conn.execute(_DROP_PENDING + "(" + ", ".join("?" * len(chunk)) + ")", chunk)
        _insert_many(conn, _INSERT_PENDING, _KEEP_PENDING_TAIL, 5, (
            (sid, account, reason, now, now)
            for sid, (outcome, account, reason) in last.items() if outcome == "pending"))

    def session(self, session_id: str) -> SessionOutcome | None:
        rows = self._query("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        return SessionOutcome.from_row(rows[0]) if rows else None

    def outcomes_first_seen_between(self, start: datetime, end: datetime) -> list[SessionOutcome]:
        """Sessions first seen in [start, end): the weekly report's purchases of that week."""
        rows = self._query(
            "SELECT * FROM sessions WHERE first_seen_at >= ? AND first_seen_at < ?"
            " ORDER BY first_seen_at, session_id",
            (to_epoch(start), to_epoch(end)),
        )
        return [SessionOutcome.from_row(r) for r in rows]

    def created_between(self, start: datetime, end: datetime) -> list[SessionOutcome]:
        """Sessions whose subscription this job created in [start, end)."""
        rows = self._query(
            "SELECT * FROM sessions WHERE created_at >= ? AND created_at < ?"
            " ORDER BY created_at, session_id",
            (to_epoch(start), to_epoch(end)),
        )
        return [SessionOutcome.from_row(r) for r in rows]

    def open_manual(self) -> list[SessionOutcome]:
        """Sessions whose latest outcome is `needs_manual` (the ops "needs you" rows)."""
        rows = self._query(
            "SELECT * FROM sessions WHERE outcome = 'needs_manual' ORDER BY paid_at, session_id"
        )
        return [SessionOutcome.from_row(r) for r in rows]

    def anomalies_between(self, start: datetime, end: datetime) -> list[AnomalyRecord]:
        """Anomalies first reported in [start, end)."""
        rows = self._query(
            "SELECT * FROM anomalies WHERE first_seen_at >= ? AND first_seen_at < ?"
            " ORDER BY first_seen_at, kind, session_id",
            (to_epoch(start), to_epoch(end)),
        )
        return [AnomalyRecord.from_row(r) for r in rows]

    # ---- pending async payments ----------------------------------------------------------

    def pending_sessions(self, max_age_days: int = 30) -> list[tuple[str, str, datetime]]:
        """(account, session_id, first_seen) of pending sessions first seen < max_age_days ago."""
        cutoff = self._now() - max_age_days * DAY
        rows = self._query(
            "SELECT account, session_id, first_seen_at FROM pending WHERE first_seen_at > ?"
            " ORDER BY account, first_seen_at, session_id",
            (cutoff,),
        )
        return [(r["account"], r["session_id"], to_datetime(r["first_seen_at"])) for r in rows]

    def pending_rows(self) -> list[PendingSession]:
        """Every pending row, oldest first (for `status`)."""
        rows = self._query("SELECT * FROM pending ORDER BY first_seen_at, session_id")
        return [
            PendingSession(r["account"], r["session_id"], r["reason"],
                           to_datetime(r["first_seen_at"]), to_datetime(r["last_checked_at"]))
            for r in rows
        ]

    def expire_pending(self, max_age_days: int = 30) -> list[str]:
        """Drop pending rows first seen >= max_age_days ago, recording outcome pending_expired."""
        cutoff = self._now() - max_age_days * DAY
        with self._tx() as conn:
            expired = [r["session_id"] for r in conn.execute(
                "SELECT session_id FROM pending WHERE first_seen_at <= ?", (cutoff,))]
            for session_id in expired:
                conn.execute(
                    "UPDATE sessions SET outcome = 'pending_expired', detail = ?"
                    " WHERE session_id = ?",
                    (f"payment not settled within {max_age_days} days", session_id),
                )
                conn.execute("DELETE FROM pending WHERE session_id = ?", (session_id,))
        return expired

    def settle_pending(self, session_id: str, outcome: str, reason: str | None = None) -> bool:
        """Close a pending row the report cannot name (e.g. re-checked and now `ignored`)."""
        if outcome not in OUTCOMES or outcome == "pending":
            raise ValueError(f"not a settled outcome: {outcome!r}")
        with self._tx() as conn:
            gone = conn.execute("DELETE FROM pending WHERE session_id = ?", (session_id,))
            if gone.rowcount:
                conn.execute(
                    "UPDATE sessions SET outcome = ?, reason = ?, last_seen_at = ?"
                    " WHERE session_id = ?",
                    (outcome, reason, self._now(), session_id),
                )
        return bool(gone.rowcount)
