"""A quick pass reads an account's refunds only when they could change what it writes."""

from __future__ import annotations

from typing import Any

from jobs.run.reconcile import Reconciler, RunRequest
from tests.support.fakes import FakeSanity, FakeStripe
from tests.unit.test_reconcile import ACCT, NOW, clip_pass, session, tenant

OTHER = "acct_school2"


def two_schools(sessions: dict[str, list[dict[str, Any]]]) -> tuple[FakeStripe, FakeSanity]:
    stripe = FakeStripe(sessions)
    sanity = FakeSanity([tenant(), tenant("t2", OTHER), clip_pass(),
                         {"_id": "u1", "_type": "user", "clerkId": "user_a"}])
    return stripe, sanity


def run(stripe: FakeStripe, sanity: FakeSanity, **kw: Any):
    req = RunRequest(run_id="r1", since=NOW - 86400, until=NOW, **kw)
    return Reconciler(stripe, sanity, clock=lambda: float(NOW), workers=2).run(req)


def refund_calls(stripe: FakeStripe) -> list[str]:
    return [account for kind, account in stripe.calls if kind == "refunds"]


def test_a_quick_pass_with_nothing_to_create_reads_no_refunds():
    stripe, sanity = two_schools({ACCT: [session(i) for i in range(4)], OTHER: []})
    run(stripe, sanity)  # the first pass creates them
    stripe.calls.clear()
    again = run(stripe, sanity, lazy_refunds=True)
    assert again.counts["already_present"] == 4 and again.counts["created"] == 0
    assert refund_calls(stripe) == []
    # A deep pass reads every account's refunds, to report refunded passes still active.
    run(stripe, sanity)
    assert sorted(refund_calls(stripe)) == sorted(["platform", ACCT, OTHER])


def test_a_refunded_purchase_is_never_created_by_a_quick_pass():
    stripe, sanity = two_schools({ACCT: [session(1), session(2)], OTHER: []})
    stripe.refund_data[ACCT] = [{"payment_intent": "pi_0001", "amount": 200000,
                                 "status": "succeeded"}]
    report = run(stripe, sanity, lazy_refunds=True)
    assert [c.session_id for c in report.created] == ["cs_test_0002"]
    assert report.counts["ignored"] == 1 and report.ignored == {"refunded": 1}
    assert "subscription-cs_test_0001" not in sanity.docs
    assert refund_calls(stripe) == [ACCT]  # once, for the account with something to create


def test_refunds_are_read_once_per_account_however_many_pages_need_them():
    stripe, sanity = two_schools({ACCT: [session(i) for i in range(7)], OTHER: []})
    report = run(stripe, sanity, lazy_refunds=True)  # pages of 3: three pages to create
    assert report.counts["created"] == 7
    assert refund_calls(stripe) == [ACCT]


def test_a_failed_refund_does_not_hold_back_the_pass():
    stripe, sanity = two_schools({ACCT: [session(1)], OTHER: []})
    stripe.refund_data[ACCT] = [{"payment_intent": "pi_0001", "amount": 200000,
                                 "status": "failed"}]
    report = run(stripe, sanity, lazy_refunds=True)
    assert [c.session_id for c in report.created] == ["cs_test_0001"]
