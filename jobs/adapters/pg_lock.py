"""Locks across hosts: a PostgreSQL session-level advisory lock on a connection of its own.

The server releases such a lock when the holder's session ends: the process exits or is
killed, or its host vanishes (the keepalives of `jobs.adapters.ledger_db` end the session within
seconds). No lease, no stale-pid guessing. The holder writes who it is (host, pid, since)
into `lock_holders` under the lock; `holder()` trusts that row only while the session that
wrote it still holds the lock, so a row left by a dead holder reads as "free".
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from jobs.adapters.ledger_db import LOCK_SPACE, RUN_LOCK, connection_kwargs, unavailable
from jobs.adapters.lock import RunLockBusy

log = structlog.get_logger("jobs.pg_lock")

_HOLDER = """
SELECT h.host, h.pid, h.kind, h.since FROM lock_holders h
WHERE h.name = %s AND EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid
      AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""
_WRITE_HOLDER = """
INSERT INTO lock_holders (name, host, pid, kind, since, backend_pid)
VALUES (%s, %s, %s, %s, %s, pg_backend_pid())
ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,
    kind = excluded.kind, since = excluded.since, backend_pid = excluded.backend_pid
"""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AdvisoryLock:
    """One advisory lock (`name`, `key`) in the database at `url`; the interface of `RunLock`."""

    def __init__(self, url: str, *, name: str = "run", key: int = RUN_LOCK, kind: str = "run",
                 clock: Callable[[], datetime] = _utc_now, pid: int | None = None) -> None:
        import psycopg

        self.url = url
        self.name = name
        self.key = key
        self.kind = kind
        self._clock = clock
        self._pid = os.getpid() if pid is None else pid
        self._conn: Any = None
        self._errors = (psycopg.OperationalError, psycopg.InterfaceError)

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, **connection_kwargs())
        except self._errors as error:
            raise unavailable("lock", error) from None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows: see `alive`)."""
        return self._conn is not None

    def acquire(self, blocking: bool = False, kind: str | None = None) -> bool:
        """Take the lock (waiting for it if `blocking`); False if another session holds it."""
        if self._conn is not None:
            return True
        conn = self._connect()
        try:
            if blocking:
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, self.key))
            else:
                got = conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS got",
                                   (LOCK_SPACE, self.key)).fetchone()["got"]
                if not got:
                    conn.close()
                    return False
            self._describe(conn, kind or self.kind)
        except self._errors as error:
            conn.close()
            raise unavailable("lock", error) from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return True

    def _describe(self, conn: Any, kind: str) -> None:
        import psycopg

        # A database the ledger has not migrated yet: the holder is just not named.
        with contextlib.suppress(psycopg.errors.UndefinedTable):
            conn.execute(_WRITE_HOLDER, (self.name, socket.gethostname(), self._pid, kind,
                                         self._clock().timestamp()))

    def alive(self) -> bool:
        """Whether the lock is still ours: its connection answers. A connection that does not
        is closed (the server ends its session, and the lock with it, if it has not already)."""
        conn = self._conn  # one reference: another thread may drop it meanwhile
        if conn is None:
            return False
        try:
            conn.execute("SELECT 1")
            return True
        except self._errors:
            self._drop()
            return False

    def release(self) -> None:
        """Give the lock up (a no-op if not held); closing the session releases it."""
        if self._conn is None:
            return
        with contextlib.suppress(*self._errors):
            self._conn.execute("DELETE FROM lock_holders WHERE name = %s AND backend_pid ="
                               " pg_backend_pid()", (self.name,))
            self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_SPACE, self.key))
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def holder(self) -> dict[str, Any] | None:
        """{"host", "pid", "kind", "started_at"} of the live holder (this process included)."""
        import psycopg

        try:
            with psycopg.connect(self.url, **connection_kwargs()) as conn:
                row = conn.execute(_HOLDER, (self.name, LOCK_SPACE, self.key)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        except self._errors as error:
            raise unavailable("lock", error) from None
        if row is None:
            return None
        return {"host": row["host"], "pid": row["pid"], "kind": row["kind"],
                "started_at": datetime.fromtimestamp(row["since"], UTC).isoformat()}

    def __enter__(self) -> AdvisoryLock:
        if not self.acquire():
            raise RunLockBusy(self.holder())
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
