"""The ledger's two databases behind one small interface: SQLite (the default) and PostgreSQL.

The ledger's SQL is written once, for SQLite, portable by rule (`jobs.adapters.pg_dialect` says
which
rule and translates it for PostgreSQL). What else differs is confined to this module, each place
marked `DIALECT`: how the schema version is kept and locked, and how a transaction is taken.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from jobs.adapters.ledger_schema import apply_migrations, connect
from jobs.adapters.pg_dialect import Params, native_params, row_factory, to_postgres_ddl
from jobs.core.errors import ConfigError, ServiceUnavailable

# Advisory lock keys (two int4): the first names this program, the second the lock.
LOCK_SPACE = 0x5041_5353  # "PASS"
MIGRATION_LOCK, RUN_LOCK, LEADER_LOCK = 1, 2, 3
# Both ends notice a dead peer within seconds: the server drops a vanished client's session
# (and its advisory locks), the client stops waiting on a vanished server.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 3, "tcp_user_timeout": 10_000, "connect_timeout": 10}
SERVER_KEEPALIVES = ("-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2"
                     " -c tcp_keepalives_count=3")
# No ledger statement runs longer than this (a pass that waits stays stoppable); migrations lift
# it. The ledger's own connections only: a lock connection may wait on purpose.
STATEMENT_TIMEOUT = "60s"
# How long a call waits for a connection once one call found none (the server is gone), until
# one is handed out again: a pass under way fails its next steps in seconds, not 15 s each.
RECONNECT_TIMEOUT = 2.0


class LedgerUnavailable(ServiceUnavailable):
    """The ledger's database cannot be reached or dropped the connection (exit 2)."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A connection inside one ledger transaction."""

    def execute(self, sql: str, params: Params = ...) -> Cursor: ...


class LedgerDb(Protocol):
    """What the ledger needs of its database."""

    dialect: str
    description: str  # for messages: the file, or the database's host and name (no password)

    def tx(self) -> Any: ...  # a context manager giving a `Conn` in one write transaction
    def query(self, sql: str, params: Params = ()) -> list[Any]: ...
    def migrate(self, migrations: Sequence[Sequence[str]]) -> int: ...
    def close(self) -> None: ...


class SqliteDb:
    """One SQLite file, one connection shared by the process's threads under a lock."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self._guard = threading.RLock()
        self._conn = connect(path)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._guard:
            self._conn.execute("BEGIN IMMEDIATE")  # DIALECT: take the write lock up front
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        with self._guard:
            return self._conn.execute(sql, params).fetchall()

    def migrate(self, migrations: Sequence[Sequence[str]]) -> int:
        return apply_migrations(self._conn, migrations)

    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        with self._guard:
            self._conn.close()


class _PgConn:
    """A psycopg connection that takes the ledger's placeholders."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Any:
        return self._conn.execute(*native_params(sql, params))


def describe_url(url: str) -> str:
    """`host:port/dbname` of a URL, for messages (never the user's password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "the PostgreSQL database"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def connection_kwargs() -> dict[str, Any]:
    """What every ledger connection sets: dict rows, keepalives both ways, and commits that do
    not wait for the disk (as SQLite's synchronous=NORMAL: a server crash may drop the last
    commits, which the next overlapping window reads again)."""
    from psycopg.rows import dict_row

    return {"row_factory": dict_row, "autocommit": True, "prepare_threshold": None,
            "application_name": f"pass-reconciler@{socket.gethostname()}"[:63],
            "options": f"-c synchronous_commit=off {SERVER_KEEPALIVES}", **KEEPALIVES}


def unavailable(where: str, error: Exception) -> LedgerUnavailable:
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return LedgerUnavailable(f"ledger database {where}: {first}")


def _quiet_pool_logs() -> None:
    """The pool logs each failed connection attempt as plain text on stderr; the failure that
    matters reaches the caller as `LedgerUnavailable` (one scrubbed line), so those go."""
    logger = logging.getLogger("psycopg.pool")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


def _why(url: str, error: Exception) -> Exception:
    """The reason a pool could not open (its own error only says it timed out): one direct
    attempt's error, e.g. the server's "password authentication failed"."""
    import psycopg

    try:
        psycopg.connect(url, **connection_kwargs()).close()
    except psycopg.Error as reason:
        return reason
    return error


def _configure(conn: Any) -> None:
    # Few statements are repeated (a page's upsert, the run's lookups): keep few plans.
    conn.prepared_max = 16


class PostgresDb:
    """A small pool of connections to one PostgreSQL database."""

    dialect = "postgresql"

    def __init__(self, url: str, *, max_size: int = 4, timeout: float = 15.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self.description = describe_url(url)
        self._errors = (psycopg.OperationalError, psycopg.InterfaceError)
        self._timeout = timeout
        self._server_gone = threading.Event()  # set when a call got no connection in time
        kwargs = connection_kwargs()
        kwargs["options"] += f" -c statement_timeout={STATEMENT_TIMEOUT}"
        # Checked when taken: a connection cut by a server restart is replaced, not handed out.
        self._pool = ConnectionPool(url, min_size=1, max_size=max_size, open=False,
                                    kwargs={**kwargs,
                                            "cursor_factory": psycopg.RawCursor,
                                            "row_factory": row_factory,
                                            # A page's statement is the same text each
                                            # time: planned once per connection.
                                            "prepare_threshold": 1},
                                    configure=_configure,
                                    timeout=timeout,
                                    check=self._check,
                                    name="ledger")
        _quiet_pool_logs()
        try:
            self._pool.open(wait=True, timeout=timeout)
        except Exception as error:
            self._pool.close()
            raise unavailable(self.description, _why(url, error)) from None

    def _check(self, conn: Any) -> None:
        """The pool's check of a connection it hands out. One found dead means the server
        restarted or went: its other idle connections are as dead, so they all go at once
        (checked one by one, with the pool's backoff between checks, four cost 7 s and more)."""
        from psycopg_pool import ConnectionPool

        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            self._pool.drain()  # the idle ones closed, new ones opened as the server answers
            raise

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        from psycopg_pool import PoolTimeout

        timeout = RECONNECT_TIMEOUT if self._server_gone.is_set() else self._timeout
        try:
            with self._pool.connection(timeout=timeout) as conn:
                self._server_gone.clear()
                try:
                    yield conn
                except self._errors:
                    if conn.broken:  # the server went mid-statement (not a statement's error)
                        self._pool.drain()
                    raise
        except PoolTimeout as error:
            self._server_gone.set()
            raise unavailable(self.description, error) from None
        except self._errors as error:
            raise unavailable(self.description, error) from error

    @contextmanager
    def tx(self) -> Iterator[_PgConn]:
        with self._connection() as conn, conn.transaction():
            yield _PgConn(conn)

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        with self._connection() as conn:
            rows: list[Any] = conn.execute(*native_params(sql, params)).fetchall()
            return rows

    def migrate(self, migrations: Sequence[Sequence[str]]) -> int:
        """Like `apply_migrations`, with the version in a table and the steps under an advisory
        lock, so hosts starting together apply each step once."""
        known = len(migrations)
        with self._connection() as conn:
            conn.execute("SET statement_timeout = 0")  # a step may take long; so may the lock
            conn.execute("SELECT pg_advisory_lock($1, $2)", (LOCK_SPACE, MIGRATION_LOCK))
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                version = 0 if row is None else int(row[0])
                if row is None:
                    conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                if version > known:
                    raise ConfigError(f"ledger schema {version} is newer than this program "
                                      f"knows ({known})")
                while version < known:
                    with conn.transaction():
                        for statement in migrations[version]:
                            conn.execute(to_postgres_ddl(statement))
                        version += 1
                        conn.execute("UPDATE schema_version SET version = $1", (version,))
                return version
            finally:
                conn.execute("SELECT pg_advisory_unlock($1, $2)", (LOCK_SPACE, MIGRATION_LOCK))
                conn.execute("RESET statement_timeout")  # back to the ledger's, for the pool

    def close(self) -> None:
        self._pool.close()
