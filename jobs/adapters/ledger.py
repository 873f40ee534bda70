"""The run ledger: runs, session outcomes, pending async payments, watermarks, alerts.

By default the ledger is local state under RECONCILER_STATE_DIR (SQLite); it keeps e-mail
addresses of purchases that need a person, so its directory is 0700 and its file 0600. With
RECONCILER_DATABASE_URL it lives in PostgreSQL instead. The SQL here is shared by both (see
`jobs.adapters.ledger_db` for the few rules that keeps it portable); the schema lives in
`jobs.adapters.ledger_schema`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from jobs.adapters.ledger_db import Conn, LedgerDb, PostgresDb, SqliteDb
from jobs.adapters.ledger_schema import (
    FINAL_RUN_STATUSES,
    MIGRATIONS,
    OUTCOMES,
    AnomalyRecord,
    PendingSession,
    RunRecord,
    SessionOutcome,
    UnsentReport,
    Watermark,
    to_datetime,
    to_epoch,
)
from jobs.core.errors import ConfigError

LEDGER_FILE = "ledger.sqlite"
DAY = 86400.0

RunStatus = Literal["ok", "partial", "failed", "interrupted"]


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


# Sessions go in many rows per statement: each statement costs one step of SQLite, and
# every step releases Python's GIL and waits to take it back. Row by row, a run's planning
# threads spent more time queueing for the GIL than SQLite spent writing.
_COLUMNS = ("session_id", "account", "tenant", "outcome", "reason", "detail", "amount",
            "currency", "email", "pass_id", "pass_name", "subscription_id", "user_id", "paid_at")
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

_SESSION_FIELDS = ("tenant", "amount", "currency", "email", "pass_id", "pass_name",
                   "subscription_id", "user_id")


def _observation(item: Mapping[str, Any], key: str, outcome: str) -> dict[str, Any] | None:
    """One report item as a row of `_UPSERT_SESSIONS`; None for one without a session id
    (a malformed session cannot be tracked)."""
    session_id = item.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        return None
    row: dict[str, Any] = {name: item.get(name) for name in _SESSION_FIELDS}
    if row["subscription_id"] is None and item.get("subscription_ids"):
        row["subscription_id"] = item["subscription_ids"][0]  # present rows list them
    row.update(
        session_id=session_id,
        account=item.get("account") or "platform",
        outcome=outcome,
        reason=item.get("reason"),
        detail=item.get("error") if key == "failed" else item.get("detail"),
        paid_at=to_epoch(item.get("paid_at")),
    )
    return row


def _observations(report: Mapping[str, Any], dry_run: bool) -> Iterator[dict[str, Any]]:
    """One row per session named in the report's lists, one at a time.

    A session is in one list only (the report counts each once); were it in two, the later
    list's upsert wins, and `created` comes last as the strongest fact."""
    lists: tuple[tuple[str, str], ...] = (
        ("pending", "pending"),
        ("failed", "failed"),
        ("needs_manual", "needs_manual"),
        ("created", "would_create" if dry_run else "created"),
    )
    for key, outcome in lists:
        for item in report.get(key) or ():
            row = _observation(item, key, outcome)
            if row is not None:
                yield row


class Ledger:
    """The run ledger over one SQLite file or one PostgreSQL database; safe to share between
    threads of one process."""

    def __init__(self, where: Path | LedgerDb, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        if isinstance(where, Path):
            if not where.exists():
                # Create it private before SQLite does (its WAL files copy these permissions).
                os.close(os.open(where, os.O_CREAT | os.O_WRONLY, 0o600))
            where = SqliteDb(where)
        self._db: LedgerDb = where
        # The file (SQLite), whose directory also keeps unsent reports; None in PostgreSQL,
        # where unsent reports are kept in the database (no local state at all).
        self.path: Path | None = where.path if isinstance(where, SqliteDb) else None
        try:
            self.schema_version = where.migrate(MIGRATIONS)
        except BaseException:
            where.close()
            raise

    @classmethod
    def open(cls, state_dir: Path, *, clock: Callable[[], datetime] = utc_now) -> Ledger:
        """Open (creating if needed) `state_dir/ledger.sqlite`; the directory is made 0700."""
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            return cls(state_dir / LEDGER_FILE, clock=clock)
        except OSError as e:
            raise ConfigError(
                f"RECONCILER_STATE_DIR {state_dir} is not usable: {e.strerror or e}") from e

    @classmethod
    def connect(cls, url: str, *, clock: Callable[[], datetime] = utc_now) -> Ledger:
        """Open the ledger in the PostgreSQL database at `url`, migrating it if needed."""
        return cls(PostgresDb(url), clock=clock)

    @classmethod
    def for_settings(cls, state_dir: Path, database_url: str | None, *,
                     clock: Callable[[], datetime] = utc_now) -> Ledger:
        """PostgreSQL when a database URL is set, else the state directory's SQLite file."""
        if database_url:
            return cls.connect(database_url, clock=clock)
        return cls.open(state_dir, clock=clock)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @property
    def db(self) -> LedgerDb:
        return self._db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        with self._db.tx() as conn:
            yield conn

    def _query(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> list[Any]:
        return self._db.query(sql, params)

    def _now(self) -> float:
        return to_epoch(self._clock()) or 0.0

    # ---- runs ----------------------------------------------------------------------------

    def start_run(self, run_id: str, kind: str, since: datetime, until: datetime,
                  dry_run: bool, accounts: list[str], *, pid: int | None = None) -> None:
        """Record a run as `running`, owned by `pid` (this process by default)."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, kind, since, until, dry_run, accounts, pid,"
                " started_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                (run_id, kind, to_epoch(since), to_epoch(until), int(dry_run),
                 json.dumps(list(accounts)), os.getpid() if pid is None else pid, self._now()),
            )

    def finish_run(self, run_id: str, status: RunStatus, report: Mapping[str, Any] | None,
                   error: str | None) -> None:
        """Close a run with its honest status, the report's counts and per-account errors."""
        if status not in FINAL_RUN_STATUSES:
            raise ValueError(f"not a final run status: {status!r}")
        counts = account_errors = None
        if report is not None:
            counts = json.dumps(dict(report.get("counts") or {}))
            account_errors = json.dumps({
                a.get("account"): a["error"] for a in report.get("accounts") or () if a.get("error")
            })
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, counts = ?, account_errors = ?,"
                " error = ? WHERE run_id = ?",
                (status, self._now(), counts, account_errors, error, run_id),
            )
            if cursor.rowcount != 1:
                raise LookupError(f"run {run_id} was never started in the ledger")

    def reap_stale_runs(self, alive: Callable[[int], bool]) -> list[str]:
        """Mark `running` runs whose process is gone as `interrupted`; return their ids.

        While holding the run lock every other `running` row is stale, so a caller that holds it
        can pass `lambda pid: pid == os.getpid()` and also catch a reused pid.
        """
        with self._tx() as conn:
            stale = [
                (row["run_id"], row["pid"])
                for row in conn.execute("SELECT run_id, pid FROM runs WHERE status = 'running'")
                if not alive(row["pid"])
            ]
            for run_id, pid in stale:
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ?, error = ?"
                    " WHERE run_id = ?",
                    (self._now(), f"process {pid} ended before the run finished", run_id),
                )
        return [run_id for run_id, _ in stale]

    def run(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return RunRecord.from_row(rows[0]) if rows else None

    def recent_runs(self, limit: int = 10) -> list[RunRecord]:
        """The latest runs, newest first."""
        rows = self._query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [RunRecord.from_row(r) for r in rows]

    def runs_between(self, start: datetime, end: datetime) -> list[RunRecord]:
        """Runs started in [start, end), oldest first (dry runs included; see `dry_run`)."""
        rows = self._query(
            "SELECT * FROM runs WHERE started_at >= ? AND started_at < ? ORDER BY started_at",
            (to_epoch(start), to_epoch(end)),
        )
        return [RunRecord.from_row(r) for r in rows]

    def last_success(self) -> RunRecord | None:
        """The latest real (not dry) run that finished `ok`."""
        rows = self._query(
            "SELECT * FROM runs WHERE status = 'ok' AND dry_run = 0"
            " ORDER BY finished_at DESC LIMIT 1"
        )
        return RunRecord.from_row(rows[0]) if rows else None

    def consecutive_failures(self) -> int:
        """How many of the latest finished real runs in a row `failed` or were `interrupted`."""
        rows = self._query(
            "SELECT status FROM runs WHERE status != 'running' AND dry_run = 0"
            " ORDER BY started_at DESC"
        )
        count = 0
        for row in rows:
            if row["status"] not in ("failed", "interrupted"):
                break
            count += 1
        return count

    # ---- outcomes ------------------------------------------------------------------------

    def record_present(self, run_id: str, items: Iterable[Mapping[str, Any]]) -> None:
        """Upsert sessions found already present (`jobs.core.runreport.present_row` items).

        Called as a run finds them, a page at a time: a deep pass finds every purchase of
        its window present, and the report does not carry them to the end of the run."""
        with self._tx() as conn:
            self._run_dry(conn, run_id)
            now = self._now()
            rows = (row for item in items
                    if (row := _observation(item, "present", "already_present")) is not None)
            self._upsert_sessions(conn, rows, run_id, now)

    def record_report(self, report: Mapping[str, Any]) -> None:
        """Upsert every session and anomaly of a run report (design.md shape).

        first_seen_at / first_outcome / first_run_id and created_at are set once. A dry run's
        `created` entries are recorded as `would_create` and never set created_at. Pending rows
        follow the sessions: added for `pending`, dropped for any other outcome; pending rows
        older than 30 days are expired afterwards.
        """
        run_id = report["run_id"]
        with self._tx() as conn:
            dry_run = bool(report.get("dry_run")) or self._run_dry(conn, run_id)
            now = self._now()
            self._upsert_sessions(conn, _observations(report, dry_run), run_id, now)
            for anomaly in report.get("anomalies") or ():
                conn.execute(_UPSERT_ANOMALY, {
                    "kind": anomaly["kind"],
                    "session_id": anomaly.get("session_id") or "",
                    "subscription_ids": json.dumps(list(anomaly.get("subscription_ids") or [])),
                    "detail": anomaly.get("detail"),
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
    def _upsert_sessions(conn: Conn, rows: Iterable[dict[str, Any]],
                         run_id: str, now: float) -> None:
        """Sessions' outcomes, in order (a session named twice: the later row wins); a
        session's pending row follows its last outcome (kept only while pending). `rows`
        is read once, a statement's worth at a time: a report's rows are never all held."""
        last: dict[str, tuple[str, str, str | None]] = {}  # outcome, account, reason

        def values() -> Iterator[tuple[Any, ...]]:
            for row in rows:
                last[row["session_id"]] = (row["outcome"], row["account"], row["reason"])
                created = (now, run_id) if row["outcome"] == "created" else (None, None)
                yield (*(row[c] for c in _COLUMNS), now, row["outcome"], run_id, now, run_id,
                       *created)

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

    # ---- watermarks ----------------------------------------------------------------------

    def watermark(self, account: str, kind: str = "quick") -> datetime | None:
        rows = self._query(
            "SELECT until FROM watermarks WHERE account = ? AND kind = ?", (account, kind)
        )
        return to_datetime(rows[0]["until"]) if rows else None

    def advance_watermark(self, account: str, until: datetime, kind: str = "quick",
                          run_id: str | None = None) -> bool:
        """Move the watermark to `until` if that is later; return whether it moved."""
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO watermarks (account, kind, until, run_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, kind) DO UPDATE SET"
                " until = excluded.until, run_id = excluded.run_id,"
                " updated_at = excluded.updated_at WHERE excluded.until > watermarks.until",
                (account, kind, to_epoch(until), run_id, self._now()),
            )
        return cursor.rowcount == 1

    def advance_watermarks_from_report(self, report: Mapping[str, Any], kind: str) -> list[str]:
        """Advance to the window's end every account read and written without error.

        Nothing moves for a dry run (nothing was written); an account moves only if it has no
        read error and no `failed` session.
        """
        if report.get("dry_run"):
            return []
        until = to_datetime(float(to_epoch(report["window"]["until"]) or 0.0))
        # A write that failed is retried from the watermark; a malformed session is not (no
        # retry mends it: it stays in the ledger as needing a person), so it must not pin the
        # account's watermark and make every later quick pass re-read a growing window.
        failed = {item.get("account") for item in report.get("failed") or ()
                  if not str(item.get("error") or "").startswith("malformed session")}
        clean = [
            a["account"] for a in report.get("accounts") or ()
            if not a.get("error") and a["account"] not in failed
        ]
        return [a for a in clean if self.advance_watermark(a, until, kind, report.get("run_id"))]

    def watermarks(self) -> list[Watermark]:
        rows = self._query("SELECT * FROM watermarks ORDER BY account, kind")
        return [
            Watermark(r["account"], r["kind"], to_datetime(r["until"]), r["run_id"],
                      to_datetime(r["updated_at"]))
            for r in rows
        ]

    def sold_since(self, since: datetime) -> set[str]:
        """Accounts with a purchase paid since `since` (the quick pass's rhythm). A purchase
        is first seen after it is paid, so the first-seen index narrows the search."""
        cutoff = to_epoch(since)
        rows = self._query("SELECT DISTINCT account FROM sessions WHERE first_seen_at >= ?"
                           " AND paid_at >= ?", (cutoff, cutoff))
        return {r["account"] for r in rows}

    # ---- alerts and kept reports ---------------------------------------------------------

    def alert_sent(self, key: str) -> bool:
        rows = self._query("SELECT sent FROM alerts WHERE key = ?", (key,))
        return bool(rows and rows[0]["sent"])

    def record_alert(self, key: str, kind: str, sent: bool, detail: str | None = None) -> None:
        """Remember an alert attempt; once sent, a key stays sent."""
        now = self._now()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO alerts (key, kind, sent, detail, first_at, last_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " sent = CASE WHEN excluded.sent > alerts.sent THEN excluded.sent"
                " ELSE alerts.sent END, detail = excluded.detail,"
                " last_at = excluded.last_at, attempts = alerts.attempts + 1",
                (key, kind, int(sent), detail, now, now),
            )

    def keep_unsent_report(self, path: Path, error: str, message: bytes | None = None) -> None:
        """Remember a report that could not be mailed: a file, or (`message`) the message
        itself, for a ledger with no directory beside it."""
        kept = None if message is None else base64.b64encode(message).decode("ascii")
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO unsent_reports (path, error, kept_at, message) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (path) DO UPDATE SET error = excluded.error,"
                " message = COALESCE(excluded.message, unsent_reports.message)",
                (str(path), error, self._now(), kept),
            )

    def unsent_message(self, path: Path) -> bytes | None:
        """The message kept in the ledger for an unsent report, if it was kept there."""
        rows = self._query("SELECT message FROM unsent_reports WHERE path = ?", (str(path),))
        return base64.b64decode(rows[0]["message"]) if rows and rows[0]["message"] else None

    def unsent_reports(self) -> list[UnsentReport]:
        rows = self._query("SELECT * FROM unsent_reports ORDER BY kept_at, path")
        return [UnsentReport(Path(r["path"]), r["error"], to_datetime(r["kept_at"])) for r in rows]

    def forget_unsent_report(self, path: Path) -> None:
        """Drop a kept report once it has been sent."""
        with self._tx() as conn:
            conn.execute("DELETE FROM unsent_reports WHERE path = ?", (str(path),))


    # ---- retention -----------------------------------------------------------------------

    def prune(self, keep: timedelta) -> dict[str, int]:
        """Forget what is older than `keep`: finished runs, sessions last seen before then,
        anomalies and alert records; kept whatever its age: purchases that still need a
        person, pending payments, and the runs they point at. Returns the rows deleted per
        table. Plain SQL with `?` parameters, one transaction."""
        cutoff = self._now() - keep.total_seconds()
        # The runs any remaining row points at, computed once (not per run).
        referenced = (
            "SELECT first_run_id FROM sessions UNION SELECT last_run_id FROM sessions"
            " UNION SELECT created_run_id FROM sessions WHERE created_run_id IS NOT NULL"
            " UNION SELECT first_run_id FROM anomalies UNION SELECT last_run_id FROM anomalies")
        steps = (
            ("anomalies", "DELETE FROM anomalies WHERE last_seen_at < ?"),
            ("sessions", "DELETE FROM sessions WHERE last_seen_at < ?"
                         " AND outcome <> 'needs_manual'"
                         " AND session_id NOT IN (SELECT session_id FROM pending)"),
            ("alerts", "DELETE FROM alerts WHERE last_at < ?"),
            ("runs", "DELETE FROM runs WHERE started_at < ? AND status <> 'running'"
                     f" AND run_id NOT IN ({referenced})"),
        )
        deleted: dict[str, int] = {}
        with self._tx() as conn:
            for table, sql in steps:
                deleted[table] = conn.execute(sql, (cutoff,)).rowcount
        return deleted
