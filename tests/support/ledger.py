"""The one ledger fixture: `ledger` (and `open_ledger` for a second handle on the same store),
over SQLite in the test's state directory, driven by a settable `clock`.

A module runs its ledger tests over both stores by overriding `store` with
`@pytest.fixture(params=["sqlite", "postgresql"])`; a module with a clock of its own overrides
the `clock` fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.adapters.ledger import Ledger

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)  # a Monday

OpenLedger = Callable[[], Ledger]


class Clock:
    """A settable clock for the ledger."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> str:
    """Where the ledger lives: "sqlite" (a state directory) or "postgresql" (a fresh database)."""
    return "sqlite"


@pytest.fixture
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock,
                store: str) -> Iterator[OpenLedger]:
    """Opens ledgers on one store: a state directory, or a fresh PostgreSQL database."""
    opened: list[Ledger] = []
    where = request.getfixturevalue("pg_url") if store == "postgresql" else tmp_path / "state"

    def open_one() -> Ledger:
        led = (Ledger.connect(where, clock=clock) if isinstance(where, str)
               else Ledger.open(where, clock=clock))
        opened.append(led)
        return led

    yield open_one
    for led in opened:
        led.close()


@pytest.fixture
def ledger(open_ledger: OpenLedger) -> Ledger:
    return open_ledger()
