"""What the run ledger stores: the SQLite schema, its migrations, the row types, time codecs.

Times are stored as UTC epoch seconds (REAL) so durations ("payment to repair") and windows are
plain arithmetic in SQL; the row types hand them out as aware `datetime`s.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.core.errors import ConfigError

RUN_STATUSES = ("running", "ok", "partial", "failed", "interrupted")
FINAL_RUN_STATUSES = ("ok", "partial", "failed", "interrupted")
# `would_create` is what a dry run saw (missing, not written); `pending_expired` is an async
# payment that never settled within the re-check period; `ignored` a pending one that turned
# out not to be a paid pass (refunded, payment failed) when re-checked.
OUTCOMES = (
    "already_present",
    "created",
    "would_create",
    "needs_manual",
    "pending",
    "failed",
    "pending_expired",
    "ignored",
)

# A student e-mail: `intent` is written before the transaction that creates the pass, `owed`
# once that transaction is known to have created it, `sending` during the SMTP conversation;
# `unsent` waits for a later pass (mail server down); `sent`, `skipped` (no usable address),
# `refused` (5xx), `expired` (unsent for 3 days) and `uncertain` (the process died during the
# SMTP conversation: never sent again) are final.
NOTICE_STATES = ("intent", "owed", "sending", "unsent", "sent", "skipped", "refused", "expired",
                 "uncertain")


def _check(column: str, values: Sequence[str]) -> str:
    return f"CHECK ({column} IN ({', '.join(repr(v) for v in values)}))"


# Each migration is a list of statements applied in one transaction; migration i (0-based) takes
# the file from user_version i to i + 1. Append new steps; never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"""CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            since REAL NOT NULL,
            until REAL NOT NULL,
            dry_run INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
            accounts TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            status TEXT NOT NULL {_check("status", RUN_STATUSES)},
            counts TEXT,
            account_errors TEXT,
            error TEXT)""",
        "CREATE INDEX runs_by_start ON runs (started_at)",
        f"""CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            tenant TEXT,
            outcome TEXT NOT NULL {_check("outcome", OUTCOMES)},
            reason TEXT,
            detail TEXT,
            amount REAL,
            currency TEXT,
            email TEXT,
            pass_id TEXT,
            pass_name TEXT,
            subscription_id TEXT,
            user_id TEXT,
            paid_at REAL,
            first_seen_at REAL NOT NULL,
            first_outcome TEXT NOT NULL {_check("first_outcome", OUTCOMES)},
            first_run_id TEXT NOT NULL REFERENCES runs (run_id),
            last_seen_at REAL NOT NULL,
            last_run_id TEXT NOT NULL REFERENCES runs (run_id),
            created_at REAL,
            created_run_id TEXT REFERENCES runs (run_id))""",
        "CREATE INDEX sessions_by_first_seen ON sessions (first_seen_at)",
        "CREATE INDEX sessions_by_created ON sessions (created_at) WHERE created_at IS NOT NULL",
        "CREATE INDEX sessions_by_outcome ON sessions (outcome)",
        """CREATE TABLE pending (
            session_id TEXT PRIMARY KEY REFERENCES sessions (session_id),
            account TEXT NOT NULL,
            reason TEXT,
            first_seen_at REAL NOT NULL,
            last_checked_at REAL NOT NULL)""",
        # One row per (kind, session): overlapping windows report the same anomaly many times.
        """CREATE TABLE anomalies (
            kind TEXT NOT NULL,
            session_id TEXT NOT NULL DEFAULT '',
            subscription_ids TEXT NOT NULL DEFAULT '[]',
            detail TEXT,
            first_seen_at REAL NOT NULL,
            first_run_id TEXT NOT NULL REFERENCES runs (run_id),
            last_seen_at REAL NOT NULL,
            last_run_id TEXT NOT NULL REFERENCES runs (run_id),
            times_seen INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (kind, session_id))""",
        "CREATE INDEX anomalies_by_first_seen ON anomalies (first_seen_at)",
        """CREATE TABLE watermarks (
            account TEXT NOT NULL,
            kind TEXT NOT NULL,
            until REAL NOT NULL,
            run_id TEXT,
            updated_at REAL NOT NULL,
            PRIMARY KEY (account, kind))""",
        """CREATE TABLE alerts (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            sent INTEGER NOT NULL CHECK (sent IN (0, 1)),
            detail TEXT,
            first_at REAL NOT NULL,
            last_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1)""",
        """CREATE TABLE unsent_reports (
            path TEXT PRIMARY KEY,
            error TEXT NOT NULL,
            kept_at REAL NOT NULL)""",
    ),
    # 2: the e-mails that tell a student their lost pass was repaired (`jobs.run.student_mail`).
    # Portable SQL (SQLite and PostgreSQL): plain types, unix seconds as INTEGER.
    (
        f"""CREATE TABLE student_notices (
            session_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            account TEXT NOT NULL,
            tenant TEXT,
            email TEXT,
            content TEXT NOT NULL,
            state TEXT NOT NULL {_check("state", NOTICE_STATES)},
            reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            message_id TEXT,
            recorded_at INTEGER NOT NULL,
            owed_at INTEGER,
            last_attempt_at INTEGER,
            sent_at INTEGER,
            updated_at INTEGER NOT NULL)""",
        "CREATE INDEX student_notices_by_state ON student_notices (state)",
        "CREATE INDEX student_notices_by_update ON student_notices (updated_at)",
    ),
    # 3: where the ledger is shared (PostgreSQL).
    (
        # Where the ledger is shared (PostgreSQL): who holds a lock, written by the holder
        # under the lock; `backend_pid` tells a live holder from a row left by a dead one.
        """CREATE TABLE lock_holders (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            kind TEXT,
            since REAL NOT NULL,
            backend_pid INTEGER)""",
        # An unsent report's message itself (base64), for a ledger with no directory beside it.
        "ALTER TABLE unsent_reports ADD COLUMN message TEXT",
    ),
)


def connect(path: Path) -> sqlite3.Connection:
    """Open `path` in autocommit mode with WAL, a busy timeout and foreign keys on."""
    try:
        # No statement cache: the ledger's multi-row statements are large compiled programs
        # (about 640 KB for 250 rows), and a cache of them grew with the run's row counts.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0,
                               cached_statements=0)
    except sqlite3.Error as e:
        raise ConfigError(f"ledger {path} cannot be opened: {e}") from e
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 5000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigError(f"ledger {path} cannot use WAL mode (got {mode})")
        # NORMAL is durable across application crashes in WAL mode; only power loss can drop
        # the last commits, which the next overlapping window re-reads anyway.
        conn.execute("PRAGMA synchronous = NORMAL")
        # 512 KiB of page cache (SQLite's default is 2 MB): the job's writes are appends and
        # upserts by key, and a large run's memory should not grow with the ledger.
        conn.execute("PRAGMA cache_size = -512")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ConfigError(f"ledger {path} is not a usable SQLite database: {e}") from e
    except BaseException:
        conn.close()
        raise
    return conn


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]]) -> int:
    """Bring `conn` to `len(migrations)`, one transaction per step; return the final version.

    A file newer than `migrations` is refused with ConfigError; a failing step rolls back and
    leaves the file at the previous version.
    """
    known = len(migrations)
    while True:
        conn.execute("BEGIN IMMEDIATE")  # re-read the version under the write lock
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > known:
                raise ConfigError(
                    f"ledger schema {version} is newer than this program knows ({known})"
                )
            if version == known:
                conn.execute("COMMIT")
                return version
            for statement in migrations[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


# ---- time codecs -------------------------------------------------------------------------


def to_epoch(value: datetime | int | float | str | None) -> float | None:
    """Epoch seconds from a datetime, a unix timestamp or an ISO 8601 string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return to_epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise ValueError(f"not a time: {value!r}")


def from_epoch(value: float | None) -> datetime | None:
    """Aware UTC datetime from stored epoch seconds."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def to_datetime(value: float) -> datetime:
    """Aware UTC datetime from non-null stored epoch seconds."""
    return datetime.fromtimestamp(value, UTC)


# ---- row types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One run as the ledger knows it."""

    run_id: str
    kind: str
    since: datetime
    until: datetime
    dry_run: bool
    accounts: list[str]
    pid: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: dict[str, int]
    account_errors: dict[str, str]
    error: str | None

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        return cls(
            run_id=row["run_id"],
            kind=row["kind"],
            since=to_datetime(row["since"]),
            until=to_datetime(row["until"]),
            dry_run=bool(row["dry_run"]),
            accounts=json.loads(row["accounts"]),
            pid=row["pid"],
            started_at=to_datetime(row["started_at"]),
            finished_at=from_epoch(row["finished_at"]),
            status=row["status"],
            counts=json.loads(row["counts"]) if row["counts"] else {},
            account_errors=json.loads(row["account_errors"]) if row["account_errors"] else {},
            error=row["error"],
        )


@dataclass(frozen=True)
class SessionOutcome:
    """What the job knows about one checkout session: now, when first seen, and its repair."""

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
    paid_at: datetime | None
    first_seen_at: datetime
    first_outcome: str
    first_run_id: str
    last_seen_at: datetime
    last_run_id: str
    created_at: datetime | None
    created_run_id: str | None

    @property
    def repair_seconds(self) -> float | None:
        """Seconds from payment (session.created) to our subscription's creation, if repaired."""
        if self.created_at is None or self.paid_at is None:
            return None
        return (self.created_at - self.paid_at).total_seconds()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SessionOutcome:
        values: dict[str, Any] = dict(row)
        for name in ("paid_at", "created_at"):
            values[name] = from_epoch(values[name])
        for name in ("first_seen_at", "last_seen_at"):
            values[name] = to_datetime(values[name])
        return cls(**values)


@dataclass(frozen=True)
class PendingSession:
    """A session waiting for an asynchronous payment to settle."""

    account: str
    session_id: str
    reason: str | None
    first_seen_at: datetime
    last_checked_at: datetime


@dataclass(frozen=True)
class AnomalyRecord:
    """One anomaly (kind + session), with when it was first and last reported."""

    kind: str
    session_id: str | None
    subscription_ids: list[str]
    detail: str | None
    first_seen_at: datetime
    first_run_id: str
    last_seen_at: datetime
    last_run_id: str
    times_seen: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AnomalyRecord:
        return cls(
            kind=row["kind"],
            session_id=row["session_id"] or None,
            subscription_ids=json.loads(row["subscription_ids"]),
            detail=row["detail"],
            first_seen_at=to_datetime(row["first_seen_at"]),
            first_run_id=row["first_run_id"],
            last_seen_at=to_datetime(row["last_seen_at"]),
            last_run_id=row["last_run_id"],
            times_seen=row["times_seen"],
        )


@dataclass(frozen=True)
class Watermark:
    """Reconciled-up-to time of one account for one pass kind."""

    account: str
    kind: str
    until: datetime
    run_id: str | None
    updated_at: datetime


@dataclass(frozen=True)
class UnsentReport:
    """A report file kept on disk because mailing it failed."""

    path: Path
    error: str
    kept_at: datetime
