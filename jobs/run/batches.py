"""The creations a run has planned, kept small until they are written, and the transactions
they are written in.

A page's creations are one `Batch`, held compressed: a large window plans thousands of
documents, and the run must hold them all until the safety cap has seen the total.

They are written one transaction per page. When a run has more pages with creations than
Sanity takes mutation requests in a second (25 per IP; a transaction of many mutations
counts once), consecutive pages of one account share a transaction, up to
`MAX_PURCHASES_PER_TRANSACTION` purchases, far below Sanity's 4 MB body limit.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.core.model import Decision

PACK_ABOVE = 25  # more page transactions than this: pages share transactions
MAX_PURCHASES_PER_TRANSACTION = 100


@dataclass(frozen=True)
class Batch:
    """The creations planned from one page of one account (`index`: the page's number)."""

    account: str
    index: int
    count: int
    payload: bytes

    @classmethod
    def of(cls, account: str, index: int, decisions: Sequence[Decision]) -> Batch:
        # Our own objects, read back only by this process: pickle is exact and compact.
        payload = zlib.compress(pickle.dumps(list(decisions), pickle.HIGHEST_PROTOCOL), 1)
        return cls(account, index, len(decisions), payload)

    def decisions(self) -> list[Decision]:
        decisions: list[Decision] = pickle.loads(zlib.decompress(self.payload))
        return decisions


@dataclass(frozen=True)
class Transaction:
    """Batches written together; `suffix` makes the transaction id (with the run id)."""

    account: str
    batches: tuple[Batch, ...]

    @property
    def suffix(self) -> str:
        first, last = self.batches[0].index, self.batches[-1].index
        return f"{self.account}-{first}" if first == last else f"{self.account}-{first}-{last}"

    def decisions(self) -> list[Decision]:
        return [d for batch in self.batches for d in batch.decisions()]


def transactions(batches: Sequence[Batch], *, pack_above: int = PACK_ABOVE,
                 per_transaction: int = MAX_PURCHASES_PER_TRANSACTION) -> list[Transaction]:
    """One transaction per batch; more than `pack_above` batches: each account's batches in
    page order, packed into transactions of at most `per_transaction` purchases (a batch
    larger than that stays whole)."""
    ordered = sorted(batches, key=lambda b: (b.account, b.index))
    if len(ordered) <= pack_above:
        return [Transaction(b.account, (b,)) for b in ordered]
    out: list[Transaction] = []
    group: list[Batch] = []
    for batch in ordered:
        if group and (group[0].account != batch.account
                      or sum(b.count for b in group) + batch.count > per_transaction):
            out.append(Transaction(group[0].account, tuple(group)))
            group = []
        group.append(batch)
    if group:
        out.append(Transaction(group[0].account, tuple(group)))
    return out


PURCHASES_PER_RECHECK = 2 * MAX_PURCHASES_PER_TRANSACTION


def write_units(txs: Sequence[Transaction],
                per_unit: int = PURCHASES_PER_RECHECK) -> list[list[Transaction]]:
    """Consecutive transactions sharing one re-check query just before they are written:
    at most `per_unit` purchases each (a larger transaction is a unit of its own), so a
    run asks no more re-checks than it writes transactions, and few when they are small.
    A unit's transactions are written one after the other, as one writer thread would."""
    out: list[list[Transaction]] = []
    count = 0
    for tx in txs:
        size = sum(b.count for b in tx.batches)
        if out and count + size <= per_unit:
            out[-1].append(tx)
            count += size
        else:
            out.append([tx])
            count = size
    return out
