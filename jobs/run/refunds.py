"""Refunds per account for one run: read at the account's start, or only when they matter.

A fully refunded purchase gets no pass, so a session that would be created (or sent to a
person) must be checked against the account's refunds first. A deep pass reads every
account's refunds at its start: it also reports refunded purchases whose pass is still
active. A quick pass runs every few seconds on every school, and nearly always finds nothing
new to create; it reads an account's refunds only the first time a page of that account
plans a creation or a case for a person, once per run. Refunds can change no other outcome
of a quick pass: a purchase already present is written nothing either way, and the next deep
pass reports it if it was refunded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from jobs.core.model import Decision

Refunded = Mapping[str, int]  # refunded minor units per payment intent
ReadRefunds = Callable[[str, int], Refunded]  # (account, since) -> `StripeSource.refunded`

NOTHING: Refunded = {}


def refunds_could_change(decisions: Iterable[Decision]) -> bool:
    """Whether a refund could turn any of these outcomes into `refunded`: only a creation or
    a case for a person is worth a refunds request (what is present is written nothing)."""
    return any(d.creation is not None or d.outcome == "needs_manual" for d in decisions)


class AccountRefunds:
    """Each account's refunds since its window start, read at most once per run.

    `lazy=False`: `start` reads them (a deep pass). `lazy=True`: `start` only notes the window
    start and `get` reads them the first time a page asks (a quick pass)."""

    def __init__(self, read_refunds: ReadRefunds, *, lazy: bool) -> None:
        self._read_refunds = read_refunds
        self.lazy = lazy
        self._since: dict[str, int] = {}
        self._read: dict[str, Refunded] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def start(self, account: str, since: int) -> None:
        with self._guard:
            self._since[account] = since
            self._locks.setdefault(account, threading.Lock())
        if not self.lazy:
            self.get(account)

    def known(self, account: str) -> Refunded:
        """What is read so far (nothing yet, in a quick pass that has not needed them)."""
        return self._read.get(account, NOTHING)

    def get(self, account: str) -> Refunded:
        """The account's refunds, read now if not yet (one request chain per run)."""
        with self._guard:
            lock = self._locks.setdefault(account, threading.Lock())
        with lock:  # pages of one account planned at once read them once
            if account not in self._read:
                since = self._since.get(account, 0)
                self._read[account] = self._read_refunds(account, since)
            return self._read[account]
