"""A real PostgreSQL server for the tests: one per session, a fresh database per test.

Debian's `postgresql` package provides the programs (`.ci/run` installs it); without them the
tests that need a server are skipped, saying why.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from sandbox.pg_server import PostgresServer, find_bindir

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl not found; Debian: apt-get "
                    "install postgresql)")
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return pg_server.create_database(f"t{next(_names)}")
