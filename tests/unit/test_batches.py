"""Planned creations kept compressed; one transaction per page, pages packed in large runs."""

from __future__ import annotations

from typing import Any

from jobs.core.model import Creation, Decision
from jobs.run.batches import Batch, transactions, write_units
from jobs.run.reconcile import Reconciler, RunRequest
from tests.support.fakes import FakeSanity, FakeStripe
from tests.unit.test_reconcile import ACCT, NOW, clip_pass, session, tenant


def decision(n: int) -> Decision:
    doc = {"_id": f"subscription-cs_{n}", "_type": "subscription", "passName": "10 klipp"}
    return Decision(f"cs_{n}", ACCT, "created", tenant="t1", amount=200.0, currency="nok",
                    subscription_ids=(doc["_id"],), creation=Creation(subscription=doc))


def batch(account: str, index: int, count: int) -> Batch:
    return Batch.of(account, index, [decision(index * 1000 + k) for k in range(count)])


def test_a_batch_gives_back_exactly_what_was_planned() -> None:
    planned = [decision(n) for n in range(5)]
    kept = Batch.of(ACCT, 3, planned)
    assert kept.count == 5 and kept.decisions() == planned
    assert len(kept.payload) < 5 * 150  # compressed: far less than the documents themselves


def test_small_runs_write_one_transaction_per_page() -> None:
    txs = transactions([batch("b", 2, 3), batch("a", 7, 1), batch("a", 1, 2)])
    assert [t.suffix for t in txs] == ["a-1", "a-7", "b-2"]
    assert [len(t.decisions()) for t in txs] == [2, 1, 3]


def test_large_runs_pack_consecutive_pages_of_one_account() -> None:
    pages = [batch("a", i, 30) for i in range(5)] + [batch("b", i, 10) for i in range(3)]
    txs = transactions(pages, pack_above=4, per_transaction=100)
    assert [t.suffix for t in txs] == ["a-0-2", "a-3-4", "b-0-2"]
    assert [len(t.decisions()) for t in txs] == [90, 60, 30]


def test_a_page_larger_than_a_transaction_stays_whole() -> None:
    txs = transactions([batch("a", 0, 5), batch("a", 1, 150), batch("a", 2, 5)],
                       pack_above=1, per_transaction=100)
    assert [t.suffix for t in txs] == ["a-0", "a-1", "a-2"]


def world(n: int) -> tuple[FakeStripe, FakeSanity]:
    stripe = FakeStripe({ACCT: [session(i) for i in range(n)]}, page_size=1)
    sanity = FakeSanity([tenant(), clip_pass(), {"_id": "u1", "_type": "user",
                                                 "clerkId": "user_a"}])
    return stripe, sanity


def run(stripe: FakeStripe, sanity: FakeSanity) -> Any:
    req = RunRequest(run_id="r1", since=NOW - 86400, until=NOW, max_creates=1000)
    return Reconciler(stripe, sanity, clock=lambda: float(NOW), workers=2).run(req)


def test_a_run_with_many_pages_writes_fewer_transactions_and_everything() -> None:
    stripe, sanity = world(40)  # 40 pages of one purchase each
    report = run(stripe, sanity)
    assert report.counts["created"] == 40 and len(sanity.of_type("subscription")) == 40
    assert len(sanity.commits) == 1  # one account, 40 purchases: one transaction


def test_a_refused_purchase_in_a_packed_transaction_is_isolated() -> None:
    stripe, sanity = world(40)
    sanity.refuse.add("subscription-cs_test_0007")
    report = run(stripe, sanity)
    assert report.counts["created"] == 39 and report.counts["failed"] == 1
    assert [f.session_id for f in report.failed] == ["cs_test_0007"]
    assert len(sanity.of_type("subscription")) == 39


def test_write_units_share_a_recheck_up_to_a_size_and_keep_order() -> None:
    txs = transactions([batch(ACCT, i, 30) for i in range(7)])
    units = write_units(txs, per_unit=100)
    assert [[t.batches[0].index for t in u] for u in units] == [[0, 1, 2], [3, 4, 5], [6]]
    big = transactions([batch(ACCT, 0, 150), batch(ACCT, 1, 10)])
    assert [len(u) for u in write_units(big, per_unit=100)] == [1, 1]
    assert len(write_units(txs)) <= len(txs)  # never more re-checks than transactions
