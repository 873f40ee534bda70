"""Keyless sessions gathered across pages: one products request per 100 product ids."""

from __future__ import annotations

from typing import Any

from jobs.core.classify import Parsed, parse_page
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
        self.held: list[list[Parsed]] = []

    def __call__(self, account: str, index: int, sessions: list[Session],
                 held: list[Parsed]) -> None:
        self.groups.append((account, index, [s.id for s in sessions]))
        self.held.append(held)


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


def test_the_rest_goes_with_the_held_oldest_page_under_its_index():
    flushed = Flushed()
    gatherer = ProductGatherer(flushed, per_request=100)
    oldest = keyless(9)  # stands for the held page's other sessions
    gatherer.page_in(ACCT)
    gatherer.page_in(ACCT)
    gatherer.park(ACCT, [keyless(1)])
    gatherer.hold(ACCT, 7, [oldest])
    gatherer.page_out(ACCT)
    gatherer.reading_done(ACCT)
    assert flushed.groups == [] and gatherer.pending() == 2
    gatherer.park(ACCT, [keyless(2)])
    gatherer.page_out(ACCT)
    assert flushed.groups == [(ACCT, 7, ["cs_test_0001", "cs_test_0002"])]
    assert flushed.held == [[oldest]] and gatherer.pending() == 0


def test_a_held_page_goes_on_when_nothing_keyless_is_left():
    flushed = Flushed()
    gatherer = ProductGatherer(flushed, per_request=1)
    oldest = keyless(9)
    gatherer.page_in(ACCT)
    gatherer.park(ACCT, [keyless(1)])  # fills a request: a group of its own, at once
    gatherer.hold(ACCT, 3, [oldest])
    gatherer.page_out(ACCT)
    gatherer.reading_done(ACCT)
    assert flushed.groups == [(ACCT, GROUP_INDEX + 1, ["cs_test_0001"]), (ACCT, 3, [])]
    assert flushed.held == [[], [oldest]]


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
    # The account's last keyless sessions ride with its oldest page (here its only one):
    # no look-up or transaction of their own.
    assert sanity.lookups == 1 and len(sanity.commits) == 1
    assert [c[0] for c in stripe.calls if c[0] in ("products", "line_items")] == ["products"]


def test_only_a_product_the_listing_leaves_out_costs_its_sessions_line_items():
    # The fallback of the domain rule: gathered keyless sessions whose products the by-id
    # listing returns cost no line-items request; the one it does not return costs one.
    stripe, sanity = world(0)
    keys = {"passId": "p1", "userId": "user_a", "tenantId": "t1"}
    stripe.sessions[ACCT] = [session(100 + n, metadata={"type": "pass_purchase"}, line_items={
        "object": "list", "has_more": False,
        "data": [{"description": "10 Clip Card", "price": {"product": f"prod_{n}"}}]})
        for n in range(10)]
    stripe.product_data = {f"prod_{n}": {"id": f"prod_{n}", "metadata": keys}
                           for n in range(10) if n != 3}
    stripe.line_item_data = {"cs_test_0103": [{"description": "10 Clip Card", "price": {
        "product": {"id": "prod_3", "metadata": keys}}}]}
    report = run(stripe, sanity)
    (asked,) = [ids for call, ids in stripe.calls if call == "products"]
    assert sorted(asked.split(",")) == sorted(f"prod_{n}" for n in range(10))
    assert [c for c in stripe.calls if c[0] == "line_items"] == [("line_items", "cs_test_0103")]
    assert report.counts["created"] == 10
    # Four pages of keyless sessions only: their one look-up is the held oldest page's.
    assert sanity.lookups == 1
