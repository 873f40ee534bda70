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
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from jobs.adapters.ledger_base import LEDGER_FILE, utc_now
from jobs.adapters.ledger_db import PostgresDb
from jobs.adapters.ledger_schema import FINAL_RUN_STATUSES
from jobs.adapters.ledger_sessions import SessionTables
from jobs.adapters.ledger_watermarks import WatermarkTables
from jobs.core.errors import ConfigError
from jobs.core.records import RunRecord, RunStatus, UnsentReport, to_datetime, to_epoch
from jobs.core.runreport import RunReport


class Ledger(SessionTables, WatermarkTables):
    """The run ledger over one SQLite file or one PostgreSQL database; safe to share between
    threads of one process."""

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

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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

    def finish_run(self, run_id: str, status: RunStatus, report: RunReport | None,
                   error: str | None) -> None:
        """Close a run with its honest status, the report's counts and per-account errors."""
        if status not in FINAL_RUN_STATUSES:
            raise ValueError(f"not a final run status: {status!r}")
        counts = account_errors = None
        if report is not None:
            counts = json.dumps(report.totals())
            account_errors = json.dumps({
                a.account: a.error for a in report.accounts.values() if a.error})
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
