"""Progress of a run's read: per account, pages, sessions, rate and time left.

The read loop feeds it once per page (`page(account, sessions, covered)`: `covered` is the
seconds of the account's window that page accounted for; the time segments partition the
window, so they add up to it exactly), never per session. What to show is worked out here, as
values (`AccountView`); two displays show them:

- `ProgressBars`: on a terminal, a live bar per account (rich), on stderr;
- `ProgressLog`: off a terminal, one structured `run_progress` log line every `interval`
  seconds while the read lasts (a short run logs none).

The clock is injected, so tests drive time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import structlog

log = structlog.get_logger("jobs.progress")

Window = tuple[str, int, int]  # account, since, until (unix seconds)


class ReadProgress(Protocol):
    """What the read loop calls (`jobs.run.reconcile`)."""

    def begin(self, windows: Sequence[Window]) -> None: ...

    def page(self, account: str, sessions: int, covered: int) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True)
class AccountView:
    account: str
    pages: int
    sessions: int
    covered: int  # seconds of the window read
    window: int  # seconds in the window
    rate: float | None  # sessions per second since the read began
    eta: float | None  # seconds left at the pace so far; None before the first page

    @property
    def fraction(self) -> float:
        return 1.0 if self.window <= 0 else min(1.0, self.covered / self.window)


class Tally:
    """The counts per account (thread-safe: fetchers in several threads feed it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._order: list[str] = []
        self._window: dict[str, int] = {}
        self._counts: dict[str, list[int]] = {}  # account -> [pages, sessions, covered]

    def begin(self, windows: Sequence[Window]) -> None:
        with self._lock:
            self._started = self._clock()
            for account, since, until in windows:
                if account not in self._window:
                    self._order.append(account)
                self._window[account] = max(0, until - since)
                self._counts[account] = [0, 0, 0]

    def page(self, account: str, sessions: int, covered: int) -> None:
        with self._lock:
            counts = self._counts.setdefault(account, [0, 0, 0])
            counts[0] += 1
            counts[1] += sessions
            counts[2] += covered

    def views(self) -> list[AccountView]:
        with self._lock:
            elapsed = max(0.0, self._clock() - self._started)
            out = []
            for account in self._order:
                pages, sessions, covered = self._counts[account]
                window = self._window[account]
                rate = sessions / elapsed if elapsed > 0 else None
                eta = None
                if covered > 0 and elapsed > 0:
                    eta = max(0.0, elapsed * (window - covered) / covered)
                out.append(AccountView(account, pages, sessions, min(covered, window), window,
                                       rate, eta))
            return out


class ProgressLog:
    """One `run_progress` line every `interval` seconds while the read lasts."""

    def __init__(self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 ticker: bool = True) -> None:
        self.tally = Tally(clock)
        self._clock = clock
        self._interval = interval
        self._next = clock() + interval
        self._ticker = ticker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emit_lock = threading.Lock()

    def begin(self, windows: Sequence[Window]) -> None:
        self.tally.begin(windows)
        self._next = self._clock() + self._interval
        if self._ticker:
            # Pages may stop coming (a rate limit, a slow service): the line still comes.
            self._stop.clear()
            self._thread = threading.Thread(target=self._tick_loop, name="progress", daemon=True)
            self._thread.start()

    def page(self, account: str, sessions: int, covered: int) -> None:
        self.tally.page(account, sessions, covered)
        self.tick()

    def tick(self) -> bool:
        """Log a line if one is due; True when it did."""
        with self._emit_lock:
            now = self._clock()
            if now < self._next:
                return False
            # A steady beat (10 s, 20 s, ...), whenever within it the page came.
            while self._next <= now:
                self._next += self._interval
        views = self.tally.views()
        log.info("run_progress", **progress_fields(views))
        return True

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _tick_loop(self) -> None:
        while not self._stop.wait(self._interval / 4):
            self.tick()


def progress_fields(views: Sequence[AccountView]) -> dict[str, Any]:
    """A log line's fields: totals, then each account's pages, sessions, % and time left."""
    covered = sum(v.covered for v in views)
    window = sum(v.window for v in views)
    etas = [v.eta for v in views if v.fraction < 1]
    known = [e for e in etas if e is not None]
    return {
        "pages": sum(v.pages for v in views),
        "sessions": sum(v.sessions for v in views),
        "percent": round(100 * covered / window, 1) if window else 100.0,
        "sessions_per_s": round(sum(v.rate or 0 for v in views), 1),
        "eta_s": None if len(known) < len(etas) else round(max(known, default=0.0)),
        "accounts": [{"account": v.account, "pages": v.pages, "sessions": v.sessions,
                      "percent": round(100 * v.fraction, 1),
                      "eta_s": None if v.eta is None else round(v.eta)} for v in views],
    }


class ProgressBars:
    """A live bar per account on the terminal (stderr): pages, sessions, rate, time left."""

    def __init__(self, *, color: bool = True, clock: Callable[[], float] = time.monotonic,
                 file: IO[str] | None = None, terminal: bool | None = None) -> None:
        """`file` (default stderr) and `terminal` (default: ask the file) are for tests."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.tally = Tally(clock)
        console = Console(file=file, stderr=file is None, no_color=not color,
                          color_system="auto" if color else None, force_terminal=terminal)
        self._bars = Progress(
            TextColumn("{task.description:<22}"), BarColumn(bar_width=24), TaskProgressColumn(),
            TextColumn("{task.fields[pages]:>6} pages {task.fields[sessions]:>8} sessions"),
            TextColumn("{task.fields[rate]:>7}/s"), TextColumn("{task.fields[eta]}"),
            console=console, refresh_per_second=4, transient=False)
        self._tasks: dict[str, Any] = {}

    def begin(self, windows: Sequence[Window]) -> None:
        self.tally.begin(windows)
        for view in self.tally.views():
            self._tasks[view.account] = self._bars.add_task(
                view.account, total=max(1, view.window), pages=0, sessions=0, rate="—",
                eta="")
        self._bars.start()

    def page(self, account: str, sessions: int, covered: int) -> None:
        self.tally.page(account, sessions, covered)
        for view in self.tally.views():
            if view.account == account and account in self._tasks:
                self._show(view)

    def finish(self) -> None:
        for view in self.tally.views():
            if view.account in self._tasks:
                self._show(view, done=True)
        self._bars.stop()

    def _show(self, view: AccountView, done: bool = False) -> None:
        self._bars.update(
            self._tasks[view.account], completed=view.window if done else view.covered,
            pages=view.pages, sessions=view.sessions,
            rate="—" if view.rate is None else f"{view.rate:,.0f}",
            eta="done" if done or view.fraction >= 1 else
            ("" if view.eta is None else f"{format_eta(view.eta)} left"))


def format_eta(seconds: float) -> str:
    """`45 s`, `4 min`, `1 h 05 min`."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_for(stream: IO[str], *, json_logs: bool | None, color: bool) -> ReadProgress:
    """Bars on a terminal with console logs; log lines otherwise."""
    isatty = getattr(stream, "isatty", None)
    terminal = bool(isatty()) if callable(isatty) else False
    if terminal and json_logs is not True:
        return ProgressBars(color=color)
    return ProgressLog()
