"""Progress of a long read: fed once per page, covering the window exactly, shown as bars on a
terminal and as a log line every 10 s off one; the clock is driven, nothing sleeps."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from jobs.run.progress import ProgressBars, ProgressLog, Tally, format_eta, progress_for
from jobs.run.reconcile import Reconciler, RunRequest
from tests.support.fakes import FakeStripe
from tests.unit.test_segments import (
    ACCT,
    NOW,
    LockedSanity,
    SegmentedFake,
    SegmentStripe,
    clip_pass,
    read_all,
    session,
    spread,
    tenant,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A ReadProgress that keeps every call (thread-safe: fetchers call it)."""

    def __init__(self) -> None:
        self.windows: list[tuple[str, int, int]] = []
        self.pages: list[tuple[str, int, int]] = []
        self.finished = False
        self._lock = threading.Lock()

    def begin(self, windows: Any) -> None:
        self.windows = list(windows)

    def page(self, account: str, sessions: int, covered: int) -> None:
        with self._lock:
            self.pages.append((account, sessions, covered))

    def finish(self) -> None:
        self.finished = True


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_pages_cover_the_window_exactly_however_it_is_split() -> None:
    source = SegmentStripe({"a": spread(400, 0, 100_000), "b": spread(7, 50, 90_000, "b")})
    seen = Recorder()
    pages, reader = read_all(source, [("a", 0, 100_000), ("b", 0, 90_000)],
                             on_page=seen.page)
    assert reader.stats.splits >= 1  # the window was cut into segments read in parallel
    assert len(seen.pages) == len(pages)  # one call per page, none per session
    for account, window in (("a", 100_000), ("b", 90_000)):
        mine = [p for p in seen.pages if p[0] == account]
        assert sum(c for _, _, c in mine) == window
        assert sum(s for _, s, _ in mine) == len(source.sessions[account])


def test_a_chained_source_covers_its_window_too() -> None:
    fake = FakeStripe({"x": [session(i, created=NOW - 80_000 + i * 900) for i in range(7)]},
                      page_size=3)
    seen = Recorder()
    read_all(fake, [("x", NOW - 86_400, NOW)], on_page=seen.page)
    assert [s for _, s, _ in seen.pages] == [3, 3, 1]
    assert sum(c for _, _, c in seen.pages) == 86_400


def test_a_run_feeds_progress_from_its_read_loop() -> None:
    sessions = {ACCT: [session(i, created=NOW - 80_000 + i * 900) for i in range(60)]}
    sanity = LockedSanity([tenant(), clip_pass(),
                           {"_id": "u1", "_type": "user", "clerkId": "user_a"}])
    seen = Recorder()
    req = RunRequest(run_id="r1", since=NOW - 86_400, until=NOW, max_creates=1000)
    report = Reconciler(SegmentedFake(sessions), sanity, clock=lambda: float(NOW), workers=4,
                        progress=seen).run(req)
    assert seen.finished
    assert [w[0] for w in seen.windows] == [a.account for a in report.accounts.values()]
    mine = [p for p in seen.pages if p[0] == ACCT]
    assert sum(s for _, s, _ in mine) == report.accounts[ACCT].sessions == 60
    assert len(mine) == report.accounts[ACCT].pages
    assert sum(c for _, _, c in mine) == 86_400


def test_rate_and_time_left_follow_the_pace_so_far() -> None:
    clock = Clock()
    tally = Tally(clock)
    tally.begin([("a", 0, 1000), ("b", 0, 500)])
    clock.now += 10
    tally.page("a", 200, 250)  # a quarter of the window in 10 s: 30 s left
    a, b = tally.views()
    assert (a.pages, a.sessions, a.fraction, a.rate, a.eta) == (1, 200, 0.25, 20.0, 30.0)
    assert (b.pages, b.eta, b.rate) == (0, None, 0.0)
    assert format_eta(45) == "45 s" and format_eta(250) == "4 min"
    assert format_eta(3900) == "1 h 05 min"


def test_off_a_terminal_one_line_every_ten_seconds() -> None:
    clock = Clock()
    progress = ProgressLog(interval=10, clock=clock, ticker=False)
    with capture_logs() as logs:
        progress.begin([("platform", 0, 3600), ("acct_1", 0, 3600)])
        for _ in range(5):  # pages every 3 s: a line at 10 s and at 20 s, not per page
            clock.now += 3
            progress.page("platform", 100, 300)
        clock.now += 3  # 18 s: nothing due
        assert not progress.tick()
        clock.now += 2  # 20 s
        assert progress.tick()
        progress.finish()
    lines = [e for e in logs if e["event"] == "run_progress"]
    assert len(lines) == 2
    last = lines[-1]
    assert (last["pages"], last["sessions"], last["percent"]) == (5, 500, 20.8)
    assert last["accounts"][0] == {"account": "platform", "pages": 5, "sessions": 500,
                                   "percent": 41.7, "eta_s": 28}
    assert last["eta_s"] is None  # one account has not delivered a page yet: no honest ETA


def test_the_ticker_logs_even_while_no_page_arrives() -> None:
    clock = Clock()
    progress = ProgressLog(interval=0.05, clock=clock)
    with capture_logs() as logs:
        progress.begin([("platform", 0, 3600)])
        clock.now += 1  # a rate limit: no page comes, the clock moves on
        deadline = threading.Event()
        for _ in range(200):
            if any(e["event"] == "run_progress" for e in logs):
                break
            deadline.wait(0.01)
        progress.finish()
    assert any(e["event"] == "run_progress" for e in logs)


@pytest.mark.parametrize("color", [True, False])
def test_bars_show_each_account_and_no_colour_when_asked(color: bool) -> None:
    out = io.StringIO()
    clock = Clock()
    bars = ProgressBars(color=color, clock=clock, file=out, terminal=True)
    bars.begin([("platform", 0, 1000), ("acct_1School", 0, 1000)])
    clock.now += 4
    bars.page("platform", 120, 1000)
    bars.page("acct_1School", 30, 250)
    bars.finish()
    text = out.getvalue()
    assert "platform" in text and "acct_1School" in text
    assert "120 sessions" in text and "30 sessions" in text and "done" in text
    has_colour = any(f"\x1b[{code}" in text for code in ("31m", "32m", "33m", "35m", "36m",
                                                           "38;", "1;3"))
    assert has_colour is color


def test_bars_only_on_a_terminal_with_console_logs() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_for(Tty(), json_logs=None, color=True), ProgressBars)
    assert isinstance(progress_for(Tty(), json_logs=True, color=True), ProgressLog)
    assert isinstance(progress_for(io.StringIO(), json_logs=None, color=True), ProgressLog)
