"""Segmented reading: splits partition a window exactly; the reader reads every session once,
splits only for idle fetchers, isolates a failing account and stops on rejected keys."""

from __future__ import annotations

import threading
from collections import Counter
from itertools import pairwise
from typing import Any

import pytest

from jobs.core.errors import AccountError, CredentialsRejected, ReconcilerError
from jobs.core.ports import SessionPage
from jobs.run.reconcile import Reconciler, RunRequest
from jobs.run.segments import Segment, SegmentReader, after_page
from tests.support.fakes import FakeSanity, FakeStripe
from tests.unit.test_reconcile import ACCT, NOW, clip_pass, session, tenant


def page(sessions: list[dict[str, Any]], has_more: bool = True) -> SessionPage:
    last = sessions[-1]["id"] if sessions else None
    return SessionPage("a", 0, sessions, last, has_more)


def raw(n: int, created: int) -> dict[str, Any]:
    return {"id": f"cs_{n:05d}", "created": created, "status": "complete"}


# --------------------------------------------------------------------------- after_page


def test_a_last_page_ends_the_segment() -> None:
    assert after_page(Segment("a", 0, 1000), page([raw(1, 900)], has_more=False), 3) == []


def test_without_idle_fetchers_the_segment_goes_on_from_its_cursor() -> None:
    (nxt,) = after_page(Segment("a", 0, 1000), page([raw(1, 999), raw(2, 990)]), spare=0)
    assert (nxt.since, nxt.until, nxt.cursor, nxt.top) == (0, 1000, "cs_00002", 990)


def test_a_sparse_rest_is_split_for_idle_fetchers_and_partitions_the_window() -> None:
    # One page covered 10 s of a 1000 s segment: about 99 pages are left.
    follow = after_page(Segment("a", 0, 1000), page([raw(1, 999), raw(2, 990)]), spare=3)
    assert len(follow) == 4
    head, *rest = follow
    assert head.cursor == "cs_00002" and head.until == 1000 and head.since <= 990
    assert all(s.cursor is None for s in rest)
    spans = sorted((s.since, s.until) for s in follow)
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in pairwise(spans))  # no gap, no overlap


def test_a_split_leaves_each_piece_a_few_pages_at_least() -> None:
    # The page covered half the segment: about one page is left, not worth a split.
    assert len(after_page(Segment("a", 0, 1000), page([raw(1, 999), raw(2, 500)]), 7)) == 1
    # 140 s per page, 860 s left: about 6 pages, so 3 pieces of 2, though 8 fetchers idle.
    assert len(after_page(Segment("a", 0, 1000), page([raw(1, 999), raw(2, 860)]), 7)) == 3


def test_pieces_are_capped() -> None:
    follow = after_page(Segment("a", 0, 100_000), page([raw(1, 99_999), raw(2, 99_990)]), 50,
                        max_pieces=8)
    assert len(follow) == 8


def test_a_page_without_a_usable_created_goes_on_unsplit() -> None:
    follow = after_page(Segment("a", 0, 1000), page([{"id": "cs_x", "created": "soon"}]), 3)
    assert [(s.cursor, s.since, s.until) for s in follow] == [("cs_x", 0, 1000)]


# --------------------------------------------------------------------------- the reader


class SegmentStripe:
    """Stripe's list semantics over in-memory sessions: created desc then id desc, half-open
    `created` bounds, `starting_after` as a position; every request recorded."""

    def __init__(self, sessions: dict[str, list[dict[str, Any]]], page_size: int = 5) -> None:
        self.sessions = {a: sorted(s, key=lambda r: (r["created"], r["id"]), reverse=True)
                         for a, s in sessions.items()}
        self.page_size = page_size
        self.requests: list[tuple[str, int, int, str | None]] = []
        self.failing: dict[str, ReconcilerError] = {}
        self._lock = threading.Lock()

    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage:
        with self._lock:
            self.requests.append((account, since, until, starting_after))
        if account in self.failing:
            raise self.failing[account]
        rows = [r for r in self.sessions.get(account, []) if since <= r["created"] < until]
        if starting_after is not None:
            ids = [r["id"] for r in rows]
            assert starting_after in ids, "a cursor outside its window"
            rows = rows[ids.index(starting_after) + 1:]
        chunk = rows[:self.page_size]
        last = chunk[-1]["id"] if chunk else starting_after
        return SessionPage(account, index, chunk, last, len(rows) > self.page_size)


def spread(n: int, since: int, until: int, tag: str = "") -> list[dict[str, Any]]:
    step = (until - since) / n
    return [{"id": f"cs_{tag}{i:05d}", "created": since + int(i * step), "status": "complete"}
            for i in range(n)]


def read_all(source: Any, windows: list[tuple[str, int, int]], fetchers: int = 4,
             **kw: Any) -> tuple[list[SessionPage], SegmentReader]:
    got: list[SessionPage] = []
    lock = threading.Lock()

    def deliver(p: SessionPage, oldest: bool) -> None:
        with lock:
            got.append(p)

    reader = SegmentReader(source, fetchers=fetchers, deliver=deliver, **kw)
    reader.read(windows)
    return got, reader


def test_one_long_window_is_read_in_parallel_segments_exactly_once() -> None:
    source = SegmentStripe({"a": spread(400, 0, 100_000)})
    pages, reader = read_all(source, [("a", 0, 100_000)])
    ids = [s["id"] for p in pages for s in p.sessions]
    assert sorted(ids) == sorted(r["id"] for r in source.sessions["a"])
    assert len(ids) == len(set(ids))
    assert reader.stats.splits >= 1 and reader.stats.segments > 1
    # Each segment costs at most one page beyond the full pages the window needs.
    assert len(source.requests) <= 400 // 5 + reader.stats.segments
    assert sorted(p.index for p in pages) == list(range(len(pages)))


def test_segments_never_split_while_every_fetcher_is_busy() -> None:
    windows = [(f"acct_{n}", 0, 10_000) for n in range(8)]
    source = SegmentStripe({a: spread(20, 0, 10_000, tag=a) for a, _, _ in windows})
    pages, reader = read_all(source, windows, fetchers=2)
    assert sum(len(p.sessions) for p in pages) == 8 * 20
    # Work for everyone from the start: splits only at the very end, if at all.
    assert reader.stats.splits <= 2


def test_a_failing_account_is_reported_and_the_others_are_read() -> None:
    source = SegmentStripe({"a": spread(30, 0, 1000), "b": spread(30, 0, 1000, tag="b")})
    source.failing["b"] = AccountError("Stripe account b cannot be read (403)")
    failed: list[tuple[str, str]] = []
    pages, reader = read_all(source, [("a", 0, 1000), ("b", 0, 1000)],
                             on_account_error=lambda a, e: failed.append((a, str(e))))
    assert failed == [("b", "Stripe account b cannot be read (403)")]
    assert {p.account for p in pages} == {"a"} and sum(len(p.sessions) for p in pages) == 30
    assert set(reader.stats.errors) == {"b"}


def test_rejected_credentials_stop_every_fetcher_and_are_raised() -> None:
    source = SegmentStripe({f"acct_{n}": spread(50, 0, 1000, tag=str(n)) for n in range(6)})
    source.failing["acct_0"] = CredentialsRejected("Stripe rejected STRIPE_SECRET_KEY")
    with pytest.raises(CredentialsRejected):
        read_all(source, [(f"acct_{n}", 0, 1000) for n in range(6)], fetchers=1)
    assert len(source.requests) == 1


def test_cancelling_stops_reading() -> None:
    source = SegmentStripe({"a": spread(200, 0, 100_000)})
    stop = threading.Event()
    got: list[SessionPage] = []

    def deliver(p: SessionPage, oldest: bool) -> None:
        got.append(p)
        stop.set()

    SegmentReader(source, fetchers=1, deliver=deliver, cancelled=stop.is_set).read(
        [("a", 0, 100_000)])
    assert len(got) == 1 and len(source.requests) == 1


def test_the_tests_fake_is_read_through_the_port_as_stripe_is() -> None:
    # The fake implements the port's one-page call, so it is read in segments like Stripe:
    # every session exactly once, pages numbered per account in fetch order.
    fake = FakeStripe({"x": [session(i) for i in range(7)], "y": [session(i) for i in range(4)]})
    pages, reader = read_all(fake, [("x", NOW - 86400, NOW), ("y", NOW - 86400, NOW)])
    for account, count in (("x", 7), ("y", 4)):
        seen = Counter(s["id"] for p in pages if p.account == account for s in p.sessions)
        assert len(seen) == count and set(seen.values()) == {1}
        mine = sorted(p.index for p in pages if p.account == account)
        assert mine == list(range(len(mine))) and len(mine) >= -(-count // 3)
    assert reader.stats.pages == len(pages) == len(fake.calls)


def test_each_account_starts_before_its_first_page() -> None:
    source = SegmentStripe({"a": spread(12, 0, 1000), "b": spread(12, 0, 1000, tag="b")})
    started: list[str] = []
    seen_before_start: list[str] = []

    def deliver(p: SessionPage, oldest: bool) -> None:
        if p.account not in started:
            seen_before_start.append(p.account)

    SegmentReader(source, fetchers=2, deliver=deliver, start=started.append).read(
        [("a", 0, 1000), ("b", 0, 1000)])
    assert sorted(started) == ["a", "b"] and seen_before_start == []


# --------------------------------------------------------------------------- in a run


class SegmentedFake(FakeStripe):
    """The orchestrator's fake with single-page reads (as `StripeSource` has them)."""

    def __init__(self, sessions: dict[str, list[dict[str, Any]]], page_size: int = 3) -> None:
        super().__init__(sessions, page_size)
        self.pager = SegmentStripe({a: [s for s in rows if s.get("status") == "complete"]
                                    for a, rows in sessions.items()}, page_size)

    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage:
        got = self.pager.session_page(account, since, until, starting_after, index=index)
        return SessionPage(got.account, got.index, [dict(s) for s in got.sessions],
                           got.last_id, got.has_more)


class LockedSanity(FakeSanity):
    """FakeSanity with its commits one at a time (the fake copies and swaps its documents,
    so two concurrent commits would lose one; the real Sanity serialises them)."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        super().__init__(docs)
        self._lock = threading.Lock()

    def commit(self, mutations: Any, transaction_id: str, *, dry_run: bool = False) -> Any:
        with self._lock:
            return super().commit(mutations, transaction_id, dry_run=dry_run)


def test_a_segmented_run_decides_exactly_as_a_sequential_one() -> None:
    sessions = {ACCT: [session(i, created=NOW - 80_000 + i * 900) for i in range(60)]}

    def docs() -> list[dict[str, Any]]:
        return [tenant(), clip_pass(), {"_id": "u1", "_type": "user", "clerkId": "user_a"}]

    req = RunRequest(run_id="r1", since=NOW - 86400, until=NOW, max_creates=1000)
    plain_sanity, split_sanity = LockedSanity(docs()), LockedSanity(docs())
    plain = Reconciler(FakeStripe(sessions), plain_sanity, clock=lambda: float(NOW),
                       workers=4).run(req)
    split_stripe = SegmentedFake(sessions)
    split = Reconciler(split_stripe, split_sanity, clock=lambda: float(NOW), workers=4).run(req)
    assert split.counts == plain.counts and split.counts["created"] == 60
    assert sorted(c.session_id for c in split.created) == sorted(
        c.session_id for c in plain.created)
    assert split_sanity.docs.keys() == plain_sanity.docs.keys()
    assert len(split_stripe.pager.requests) > 20  # read as more than one chain
    assert split.accounts[ACCT].sessions == 60


def test_an_account_is_done_once_after_its_last_page_however_it_was_split() -> None:
    source = SegmentStripe({"a": spread(400, 0, 100_000), "b": spread(12, 0, 1000, tag="b")})
    done: list[tuple[str, int]] = []
    got: list[SessionPage] = []
    lock = threading.Lock()

    def deliver(page: SessionPage, oldest: bool) -> None:
        with lock:
            got.append(page)

    def finished(account: str) -> None:
        with lock:  # how many of its pages were delivered by then
            done.append((account, sum(1 for p in got if p.account == account)))

    reader = SegmentReader(source, fetchers=4, deliver=deliver, on_account_done=finished)
    reader.read([("a", 0, 100_000), ("b", 0, 1000)])
    assert reader.stats.splits >= 1
    pages = {a: sum(1 for p in got if p.account == a) for a in ("a", "b")}
    assert sorted(done) == [("a", pages["a"]), ("b", pages["b"])]


def test_one_page_per_account_is_marked_the_oldest_and_holds_the_window_start() -> None:
    # The keyless sessions' last group rides with this page (`jobs.run.gather`): it must be
    # one fixed page per account, whatever the splits and which fetcher finished last.
    source = SegmentStripe({"a": spread(400, 0, 100_000), "b": spread(12, 0, 1000, tag="b"),
                            "c": []})
    marked: list[SessionPage] = []
    lock = threading.Lock()

    def deliver(page: SessionPage, oldest: bool) -> None:
        if oldest:
            with lock:
                marked.append(page)

    reader = SegmentReader(source, fetchers=4, deliver=deliver)
    reader.read([("a", 0, 100_000), ("b", 0, 1000), ("c", 0, 1000)])
    assert reader.stats.splits >= 1
    assert sorted(p.account for p in marked) == ["a", "b", "c"]
    for page in marked:
        oldest = min(source.sessions[page.account], key=lambda r: r["created"], default=None)
        assert (page.sessions[-1] if page.sessions else None) == oldest
