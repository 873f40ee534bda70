"""Keyless sessions gathered across pages: one products request per 100 product ids."""

from __future__ import annotations

from typing import Any

from jobs.core.classify import parse_page
from jobs.core.model import Session
from jobs.run.gather import GROUP_INDEX, ProductGatherer
from tests.unit.test_reconcile import ACCT, NOW, run, session, world


def keyless(n: int, products: int = 1) -> Session:
    raw = session(n, metadata={"type": "pass_purchase"}, line_items={
        "object": "list", "has_more": False,
        "data": [{"description": "10 Clip Card", "price": {"product": f"prod_{n}_{k}"}}
                 for k in range(products)]})
    parsed = parse_page([raw], ACCT, NOW)[0]
    assert isinstance(parsed, Session)
    return parsed


class Flushed:
    def __init__(self) -> None:
        self.groups: list[tuple[str, int, list[str]]] = []

    def __call__(self, account: str, index: int, sessions: list[Session]) -> None:
        self.groups.append((account, index, [s.id for s in sessions]))


def test_a_group_is_handed_on_when_its_products_fill_a_request():
    flushed = Flushed()
    gatherer = ProductGatherer(flushed, per_request=4)
    gatherer.page_in(ACCT)
    gatherer.park(ACCT, [keyless(1), keyless(2, products=2)])
    assert flushed.groups == []
    gatherer.park(ACCT, [keyless(3, products=2)])  # 5 ids: the first two sessions fill one
    assert flushed.groups == [(ACCT, GROUP_INDEX + 1, ["cs_test_0001", "cs_test_0002"])]
    gatherer.page_out(ACCT)
    assert gatherer.pending() == 1  # the account is still being read


def test_the_rest_goes_when_the_account_is_read_and_its_pages_planned():
    flushed = Flushed()
    gatherer = ProductGatherer(flushed, per_request=100)
    gatherer.page_in(ACCT)
    gatherer.page_in(ACCT)
    gatherer.park(ACCT, [keyless(1)])
    gatherer.page_out(ACCT)
    gatherer.reading_done(ACCT)
    assert flushed.groups == []  # one page still in planning
    gatherer.park(ACCT, [keyless(2)])
    gatherer.page_out(ACCT)
    assert flushed.groups == [(ACCT, GROUP_INDEX + 1, ["cs_test_0001", "cs_test_0002"])]
    assert gatherer.pending() == 0
    gatherer.reading_done("acct_other")  # nothing parked there: nothing handed on
    assert len(flushed.groups) == 1


def test_keyless_sessions_of_many_pages_cost_one_products_request():
    stripe, sanity = world(0)
    raws: list[dict[str, Any]] = []
    for n in range(10):  # pages of 3: four pages or more, each with keyless sessions
        raws.append(session(100 + n, metadata={"type": "pass_purchase"}, line_items={
            "object": "list", "has_more": False,
            "data": [{"description": "10 Clip Card", "price": {"product": f"prod_{n}"}}]}))
    stripe.sessions[ACCT] = raws
    stripe.product_data = {f"prod_{n}": {"id": f"prod_{n}", "metadata": {
        "passId": "p1", "userId": "user_a", "tenantId": "t1"}} for n in range(10)}
    report = run(stripe, sanity)
    assert [c[0] for c in stripe.calls if c[0] in ("products", "line_items")] == ["products"]
    assert report.counts["created"] == 10
    # Read in segments like Stripe (a split may cost one partial page): every page counted.
    pages = stripe.calls.count(("list", ACCT))
    assert report.accounts[ACCT].pages == pages >= 4 and report.accounts[ACCT].sessions == 10
    # Written like any page's creations: the ids are the deterministic ones.
    assert sorted(d["_id"] for d in sanity.of_type("subscription")) == sorted(
        f"subscription-cs_test_{100 + n:04d}" for n in range(10))


def test_a_page_with_keys_and_keyless_sessions_plans_both():
    stripe, sanity = world(2)
    stripe.sessions[ACCT].append(session(50, metadata={"type": "pass_purchase"}, line_items={
        "object": "list", "has_more": False,
        "data": [{"description": "10 Clip Card", "price": {"product": "prod_50"}}]}))
    stripe.product_data = {"prod_50": {"id": "prod_50", "metadata": {
        "passId": "p1", "userId": "user_a", "tenantId": "t1"}}}
    report = run(stripe, sanity)
    assert sorted(c.session_id for c in report.created) == [
        "cs_test_0000", "cs_test_0001", "cs_test_0050"]
    assert sanity.lookups == 2  # the page's own lookup, and its keyless session's group
