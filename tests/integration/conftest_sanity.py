"""Pytest fixtures for the Sanity stand-in (wired into conftest.py by import).

- `sanity_server`: one stand-in for the whole session (Node start-up is paid once).
- `sanity`: that server, emptied and reset for one test (no documents, faults, latency, log).
- `sanity_factory`: starts extra stand-ins (own data, tokens, dataset); all stopped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.sanity_server import SanityStandIn


@pytest.fixture(scope="session")
def sanity_server() -> Iterator[SanityStandIn]:
    with SanityStandIn() as server:
        yield server


@pytest.fixture
def sanity(sanity_server: SanityStandIn) -> SanityStandIn:
    sanity_server.reset()
    sanity_server.set_query_mode("index")
    sanity_server.load_ndjson("")
    return sanity_server


@pytest.fixture
def sanity_factory() -> Iterator[Callable[..., SanityStandIn]]:
    started: list[SanityStandIn] = []

    def start(data: Path | None = None, **options: Any) -> SanityStandIn:
        server = SanityStandIn(data, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
