"""Reading many accounts' windows as time segments, concurrently, under one rate budget.

Stripe lists newest first and a page follows from the cursor of the page before it, so one
window read page by page is one chain of requests, each waiting for the last. A chain
delivers about one page per round trip, far below what the per-endpoint limit allows. To
read at the limit, the window is cut into time segments, each its own cursor chain:

- every account starts as one segment [since, until);
- after a page of a segment that has more, the page tells how densely the segment is
  filled (it covered `top - oldest` seconds with one page). When fetchers are idle and the
  older rest of the segment holds, by that density, at least `min_pages` pages per piece,
  the rest is split: the segment goes on from its cursor over the newest piece, and new
  segments (without a cursor) cover the older pieces;
- segments partition the window exactly (`created[gte]`/`created[lt]`, the cursor's own
  second stays with the segment that holds the cursor), so nothing is read twice or lost.

A split is only made for an idle fetcher, so the extra partial pages it costs (at most one
per segment) are bought only when they buy parallelism. Pages go to `deliver` (which may
block: that is the back-pressure that keeps memory flat), one account failing stops only
that account, and rejected credentials stop everything.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

from jobs.core.errors import CredentialsRejected, ReconcilerError
from jobs.core.ports import SessionPage

MIN_PAGES_PER_PIECE = 2.0  # a split must leave each piece at least this many pages
MAX_PIECES = 8  # pieces one split makes at most


class SegmentSource(Protocol):
    """What a segmented read needs of Stripe: one page of any time segment (the port's call)."""

    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage: ...


@dataclass(frozen=True)
class Segment:
    """Sessions of `account` created in [since, until), after `cursor` if given; `top` is
    the creation second of the cursor's session (`until` before the first page)."""

    account: str
    since: int
    until: int
    cursor: str | None = None
    top: int | None = None

    @property
    def upper(self) -> int:
        return self.until if self.top is None else self.top


def created_of(session: Any) -> int | None:
    value = session.get("created") if isinstance(session, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def after_page(segment: Segment, page: SessionPage, spare: int, *,
               min_pages: float = MIN_PAGES_PER_PIECE,
               max_pieces: int = MAX_PIECES) -> list[Segment]:
    """What to read next after `page` of `segment`: [] when the segment is done, else the
    continuation (first) and the new segments split off its older rest.

    `spare` is how many fetchers would otherwise be idle; pieces = 1 + new segments is
    at most `spare + 1`, at most `max_pieces`, and each piece must hold about `min_pages`
    pages by the density of this page.
    """
    if not page.has_more or not page.sessions or page.last_id is None:
        return []
    oldest = created_of(page.sessions[-1])
    if oldest is None or not segment.since <= oldest < segment.until:
        # Nothing to measure the density by: go on from the cursor, no split.
        return [Segment(segment.account, segment.since, segment.until, page.last_id,
                        segment.top)]
    covered = max(1, segment.upper - oldest)  # seconds this one page spanned
    remaining = oldest - segment.since  # seconds strictly older than the page's last one
    estimated = remaining / covered  # pages left in them at the page's density
    pieces = min(spare + 1, max_pieces, int(estimated // min_pages), remaining)
    if pieces <= 1:
        return [Segment(segment.account, segment.since, segment.until, page.last_id, oldest)]
    width = remaining / pieces
    # Boundaries from new to old: the continuation keeps [b1, until) with its cursor
    # (b1 <= oldest, so the cursor's own second stays with it).
    bounds = [oldest - round(width * k) for k in range(1, pieces)] + [segment.since]
    out = [Segment(segment.account, bounds[0], segment.until, page.last_id, oldest)]
    out += [Segment(segment.account, lo, hi)
            for hi, lo in pairwise(bounds) if lo < hi]
    return out


@dataclass
class ReadStats:
    """What a read did: segments started (initial + split), pages and per-account errors."""

    segments: int = 0
    splits: int = 0
    pages: int = 0
    errors: dict[str, ReconcilerError] = field(default_factory=dict)


@dataclass(frozen=True)
class _Start:
    account: str
    since: int
    until: int


_Item = _Start | Segment


class SegmentReader:
    """Reads accounts' windows with `fetchers` threads.

    `start(account)` runs first for each account (in a fetcher thread; e.g. its refunds),
    then its pages are fetched and handed to `deliver(page, oldest)` with `page.index` numbered
    per account in fetch order; `oldest` marks the last page of the segment that reaches the
    window's start (one page per account read in full, whatever the splits and their timing).
    `cancelled()` is checked before every request. `on_page(account, sessions, covered)` hears
    of every page before it is delivered: `covered` is the seconds of the window it accounted
    for (they add up to the whole window), for progress displays.
    """

    def __init__(self, source: SegmentSource, *, fetchers: int,
                 deliver: Callable[[SessionPage, bool], None],
                 start: Callable[[str], None] = lambda account: None,
                 cancelled: Callable[[], bool] = lambda: False,
                 on_account_error: Callable[[str, ReconcilerError], None] = lambda a, e: None,
                 min_pages: float = MIN_PAGES_PER_PIECE, max_pieces: int = MAX_PIECES,
                 on_page: Callable[[str, int, int], None] | None = None,
                 on_account_done: Callable[[str], None] = lambda account: None) -> None:
        self._source = source
        self._fetchers = max(1, fetchers)
        self._deliver = deliver
        self._start = start
        self._cancelled = cancelled
        self._on_account_error = on_account_error
        self._on_account_done = on_account_done
        self._open: dict[str, int] = {}  # per account: items queued or being fetched
        self._min_pages = min_pages
        self._max_pieces = max_pieces
        self._on_page = on_page
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._running = 0
        self._failed: set[str] = set()
        self._next_index: dict[str, int] = {}
        self._since: dict[str, int] = {}  # per account: where its window starts
        self._fatal: BaseException | None = None
        self.stats = ReadStats()

    def read(self, windows: Iterable[tuple[str, int, int]]) -> ReadStats:
        """Read every (account, since, until); returns when all is read, failed or cancelled.
        Rejected credentials (and any bug) stop every fetcher and are raised here."""
        for account, since, until in windows:
            self._queue.append(_Start(account, since, until))
            self._since[account] = since
            self._open[account] = self._open.get(account, 0) + 1
        threads = [threading.Thread(target=self._work, name=f"fetch-{n}", daemon=True)
                   for n in range(min(self._fetchers, max(1, len(self._queue))))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    def fail(self, account: str) -> None:
        """Read no more of `account` (its pages could not be planned)."""
        with self._cond:
            self._failed.add(account)

    # ----- the fetcher loop

    def _take(self) -> _Item | None:
        with self._cond:
            while not self._queue and self._running and self._fatal is None:
                self._cond.wait()
            if self._fatal is not None or not self._queue:
                self._cond.notify_all()  # nothing left and nobody can add more: all stop
                return None
            self._running += 1
            return self._queue.popleft()

    def _put(self, items: Sequence[_Item]) -> None:
        with self._cond:
            self._queue.extend(items)
            for item in items:
                self._open[item.account] = self._open.get(item.account, 0) + 1
            self._running -= 1
            self._cond.notify_all()

    def _spare(self) -> int:
        with self._cond:
            return max(0, self._fetchers - self._running - len(self._queue))

    def _work(self) -> None:
        while (item := self._take()) is not None:
            follow: list[_Item] = []
            try:
                if not self._cancelled() and item.account not in self._failed:
                    follow = self._do(item)
            except CredentialsRejected as error:
                self._stop(error)
            except ReconcilerError as error:
                with self._cond:
                    self._failed.add(item.account)
                    self.stats.errors.setdefault(item.account, error)
                self._on_account_error(item.account, error)
            except BaseException as error:  # a bug: stop everything, raise it in read()
                self._stop(error)
            finally:
                self._put(follow)
                self._close(item.account)

    def _close(self, account: str) -> None:
        """One item of `account` is done; when it was its last, every page of it is fetched
        (or it failed, or the read was cancelled)."""
        with self._cond:
            self._open[account] -= 1
            done = self._open[account] == 0
        if done:
            self._on_account_done(account)

    def _stop(self, error: BaseException) -> None:
        with self._cond:
            if self._fatal is None:
                self._fatal = error
            self._queue.clear()
            self._cond.notify_all()

    def _index(self, account: str) -> int:
        with self._cond:
            index = self._next_index.get(account, 0)
            self._next_index[account] = index + 1
            self.stats.pages += 1
            return index

    def _do(self, item: _Item) -> list[_Item]:
        if isinstance(item, _Start):
            self._start(item.account)
            with self._cond:
                self.stats.segments += 1
            # The account's first page at once, not behind every other account's start:
            # the pages (and the line items they call for) start flowing right away.
            first = Segment(item.account, item.since, item.until)
            if self._cancelled():
                return []
            return self._do(first)
        page = self._source.session_page(item.account, item.since, item.until, item.cursor,
                                         index=self._index(item.account))
        spare = self._spare()
        follow = after_page(item, page, spare, min_pages=self._min_pages,
                            max_pieces=self._max_pieces)
        if len(follow) > 1:
            with self._cond:
                self.stats.segments += len(follow) - 1
                self.stats.splits += 1
        # Hand the next requests to the queue before delivering (which may block), so
        # idle fetchers can go on with them meanwhile.
        with self._cond:
            self._queue.extend(follow)
            for segment in follow:
                self._open[segment.account] = self._open.get(segment.account, 0) + 1
            self._cond.notify_all()
        if self._on_page is not None:
            # The continuation (if any) goes on below its new top; split-off pieces count
            # when they are read.
            covered = item.upper - (follow[0].upper if follow else item.since)
            self._on_page(item.account, len(page.sessions), max(0, covered))
        # Segments partition the window, so exactly one of them starts where it does.
        self._deliver(page, not follow and item.since == self._since[item.account])
        return []
