"""What the run ledger stores: the SQLite schema and its migrations (rows: `jobs.core.records`).

Times are stored as UTC epoch seconds (REAL) so durations ("payment to repair") and windows are
plain arithmetic in SQL; the row types (`jobs.core.records`) hand them out as aware
`datetime`s.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

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
        mode = _journal_mode_wal(conn)
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


def _journal_mode_wal(conn: sqlite3.Connection, wait_s: float = 5.0) -> str:
    """Switch to WAL. Two processes creating a new ledger at once may find the file locked for
    the switch (the busy timeout does not cover it): that is waiting, not a damaged file."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as e:
            if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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


