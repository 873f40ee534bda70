"""Chaos suite options and fixtures.

`--soak` turns on the long runs (tests marked `soak` are skipped without it) and
`--soak-minutes N` bounds them (default 5); see `soak_option` for using them from the
repository root. The default suite stays small: a few hypothesis examples per property,
small generated worlds, no real sleeps in process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.soak_option import pytest_addoption
from tests.chaos.tally import Tally

__all__ = ["pytest_addoption"]

TALLY = pytest.StashKey[Tally]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[TALLY] = Tally()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mine = [item for item in items if here in item.path.parents]
    if not config.getoption("--soak", default=False):
        skip = pytest.mark.skip(reason="soak test: give --soak to run it")
        for item in mine:
            if "soak" in item.keywords:
                item.add_marker(skip)
        return
    # Soaking: tests run for minutes (or many more examples) by design; the suite-wide
    # per-test timeout would cut them short, so each gets the soak time and a margin.
    if config.pluginmanager.hasplugin("timeout"):
        minutes = float(config.getoption("--soak-minutes", default=5.0))
        for item in mine:
            item.add_marker(pytest.mark.timeout(int(minutes * 60 * 3 + 900)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = terminalreporter.config.stash.get(TALLY, None)
    if tally is not None and tally.scenarios:
        terminalreporter.write_line(tally.summary())


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The session's chaos figures (scenarios, runs, invariant checks, violations)."""
    yield request.config.stash[TALLY]


@pytest.fixture
def soak_minutes(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--soak-minutes", default=5.0))


@pytest.fixture
def soaking(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak", default=False))
