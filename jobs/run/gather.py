"""Keyless sessions gathered across pages, so their products cost one request per 100.

A session whose own metadata lacks the pass keys takes them from its line items' products,
and Stripe lists products by id, up to 100 a request. One request per page that holds a few
such sessions spent most of a deep pass's Stripe budget on products. So a page's keyless
sessions wait here, per account, while the rest of the page is planned at once; a group is
handed on when its products fill a request, and what is left when the account's last page
has been planned (its reading done and no page of it still in planning).

What is left goes with the window's oldest page of the account, held back here for it: a
group of its own cost a Sanity look-up and a transaction more than the pages, which a small
run's budget (two requests a page) has no room for. The oldest page is one fixed page per
account, so the requests a run makes do not depend on which page happened to come last.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jobs.core.classify import Parsed, needs_line_items
from jobs.core.model import Session

PER_REQUEST = 100  # product ids Stripe lists by id in one request
GROUP_INDEX = 1_000_000  # groups are numbered after any page (batch order, transaction ids)

# (account, index, keyless sessions, the held page's other sessions): a full group comes with
# no page and a group index; the last one with the held page (and its index) if there is one.
Flush = Callable[[str, int, list[Session], list[Parsed]], None]
_Group = tuple[str, int, list[Session], list[Parsed]]


def wants_products(session: Session) -> bool:
    """A session listed with its line items whose own metadata lacks a pass key."""
    return (needs_line_items(session) and session.line_items is not None
            and any(item.product_id for item in session.line_items))


def product_count(session: Session) -> int:
    return len({i.product_id for i in session.line_items or () if i.product_id})


@dataclass
class _Account:
    parked: list[Session] = field(default_factory=list)
    ids: int = 0
    in_planning: int = 0
    read: bool = False
    groups: int = 0
    held: tuple[int, list[Parsed]] | None = None  # the oldest page's index and other sessions


class ProductGatherer:
    """Parks keyless sessions per account and hands them on in groups (`flush`), called
    outside the lock in the thread that completed the group."""

    def __init__(self, flush: Flush, per_request: int = PER_REQUEST) -> None:
        self._flush = flush
        self._per_request = per_request
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.Lock()

    def _of(self, account: str) -> _Account:
        return self._accounts.setdefault(account, _Account())

    def page_in(self, account: str) -> None:
        """A page of `account` goes to planning."""
        with self._lock:
            self._of(account).in_planning += 1

    def park(self, account: str, sessions: Sequence[Session]) -> None:
        """Keyless sessions of a page in planning; full groups are handed on at once."""
        groups = []
        with self._lock:
            state = self._of(account)
            for session in sessions:
                state.parked.append(session)
                state.ids += product_count(session)
            while state.ids >= self._per_request:
                groups.append(self._full(account, state))
        for group in groups:
            self._flush(*group)

    def hold(self, account: str, index: int, page: list[Parsed]) -> None:
        """The sessions of the window's oldest page of `account` but its keyless ones (parked),
        to be planned with the account's last keyless sessions; before that page's
        `page_out`."""
        with self._lock:
            self._of(account).held = (index, page)

    def page_out(self, account: str) -> None:
        """A page of `account` is planned (its keyless sessions parked)."""
        with self._lock:
            state = self._of(account)
            state.in_planning -= 1
            rest = self._rest(account, state)
        if rest is not None:
            self._flush(*rest)

    def reading_done(self, account: str) -> None:
        """Every page of `account` has been fetched."""
        with self._lock:
            state = self._of(account)
            state.read = True
            rest = self._rest(account, state)
        if rest is not None:
            self._flush(*rest)

    def pending(self) -> int:
        """Sessions still parked or held (none once every account is read and planned)."""
        with self._lock:
            return sum(len(s.parked) + (len(s.held[1]) if s.held else 0)
                       for s in self._accounts.values())

    def _full(self, account: str, state: _Account) -> _Group:
        state.groups += 1
        return account, GROUP_INDEX + state.groups, self._take(state, full=True), []

    def _rest(self, account: str, state: _Account) -> _Group | None:
        if not (state.read and state.in_planning == 0 and (state.parked or state.held)):
            return None
        sessions = self._take(state, full=False)
        if state.held is None:
            state.groups += 1
            return account, GROUP_INDEX + state.groups, sessions, []
        (index, page), state.held = state.held, None
        return account, index, sessions, page

    def _take(self, state: _Account, full: bool) -> list[Session]:
        """The oldest parked sessions whose products fit one request (all of them if not
        `full`; at least one, however many products it has)."""
        count = 0
        ids = 0
        for session in state.parked:
            more = product_count(session)
            if full and count and ids + more > self._per_request:
                break
            count += 1
            ids += more
        group, state.parked = state.parked[:count], state.parked[count:]
        state.ids -= ids
        return group
