"""The PostgreSQL ledger through a database restart and an outage, on a real server.

After a restart every pooled connection is dead. Checked one by one, with the pool's backoff
between checks, four cost 7 s and more before the first call got a connection: long enough for a
daemon's pass to outlive its stop timeout. One dead connection now drains the others. And once a
call found no connection at all, the next ones wait seconds, not the full 15 s each.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from jobs.adapters.ledger_db import RECONNECT_TIMEOUT, LedgerUnavailable, PostgresDb
from sandbox.pg_server import PostgresServer

POOL = 4


@pytest.fixture
def db(pg_url: str) -> Iterator[PostgresDb]:
    ledger_db = PostgresDb(pg_url, max_size=POOL)
    yield ledger_db
    ledger_db.close()


def fill_the_pool(db: PostgresDb) -> None:
    """Every connection of the pool opened: POOL transactions at once, each waiting for the
    others inside."""
    together = threading.Barrier(POOL, timeout=30)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with db.tx() as conn:
                conn.execute("SELECT 1")
                together.wait()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(POOL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    began = time.monotonic()
    try:
        call()
    except LedgerUnavailable as error:
        return time.monotonic() - began, error
    return time.monotonic() - began, None


def test_after_a_restart_the_next_call_does_not_check_each_dead_connection_in_turn(
        db: PostgresDb, pg_server: PostgresServer) -> None:
    fill_the_pool(db)
    pg_server.restart()  # all four idle connections cut
    seconds, error = timed(lambda: db.query("SELECT 1 AS one"))
    assert error is None
    # Checked in turn they took 0 + 1 + 2 + 4 s of backoff (at least 6.3 s with its jitter).
    assert seconds < 5.0
    for _ in range(POOL):  # and no dead one is left for a later call
        seconds, error = timed(lambda: db.query("SELECT 1 AS one"))
        assert error is None and seconds < 5.0


def test_once_the_server_is_found_gone_calls_fail_in_seconds_then_it_answers_again(
        pg_server: PostgresServer, pg_url: str) -> None:
    db = PostgresDb(pg_url, max_size=POOL, timeout=8.0)
    try:
        fill_the_pool(db)
        pg_server.stop()
        seconds, error = timed(lambda: db.query("SELECT 1 AS one"))
        assert isinstance(error, LedgerUnavailable)
        assert seconds >= 7.5  # the first call waits its full timeout: the server may be back
        for _ in range(2):
            seconds, error = timed(lambda: db.query("SELECT 1 AS one"))
            assert isinstance(error, LedgerUnavailable)
            assert seconds < RECONNECT_TIMEOUT + 3.0  # not the 8 s timeout again
        pg_server.start()
        # The pool reconnects on its own backoff (about 1, 3, 7, 15 s after the loss).
        deadline = time.monotonic() + 60
        while timed(lambda: db.query("SELECT 1 AS one"))[1] is not None:
            assert time.monotonic() < deadline, "the ledger did not answer after the restart"
        seconds, error = timed(lambda: db.query("SELECT 1 AS one"))
        assert error is None
    finally:
        db.close()
        with contextlib.suppress(RuntimeError):  # already running
            pg_server.start()  # the next tests need it

