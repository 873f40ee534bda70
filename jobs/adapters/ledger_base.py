"""The ledger's connection: one SQLite file or one PostgreSQL database, migrated on open; the
table groups (`ledger_sessions`, `ledger_watermarks`, `ledger`) build on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.adapters.ledger_db import Conn, LedgerDb, SqliteDb
from jobs.adapters.ledger_schema import MIGRATIONS
from jobs.core.records import to_epoch

LEDGER_FILE = "ledger.sqlite"
DAY = 86400.0


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class LedgerBase:
    """The connection and clock every table group shares; thread-safe like its database."""

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


    @property
    def dialect(self) -> str:
        return self._db.dialect

    @property
    def db(self) -> LedgerDb:
        return self._db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        with self._db.tx() as conn:
            yield conn

    def _query(self, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()) -> list[Any]:
        return self._db.query(sql, params)

    def _now(self) -> float:
        return to_epoch(self._clock()) or 0.0

