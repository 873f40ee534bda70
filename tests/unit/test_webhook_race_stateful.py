"""Exactly once against the app's webhook, as a state machine (hypothesis.stateful).

A webhook actor (the app's HEAD webhook: check by session id or payment intent, drafts
included, then `create` with a random id) delivers purchases at any point: between runs,
and between a run's look-up of a page and that page's write (a late delivery, or an
operator's resend). The reconciler runs whole passes through its public `run`, over pages
of three. Whatever the interleaving: no purchase is ever recorded by two subscriptions,
and after a last pass every paid purchase is recorded by exactly one.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jobs.run.reconcile import Reconciler, RunRequest
from tests.support.fakes import FakeSanity, FakeStripe

NOW = 1_790_000_000
ACCT = "acct_school1"
SESSIONS = 9
CLERKS = ("user_a", "user_b", "user_c")  # user_a has a user document, the others do not


def raw_session(n: int) -> dict[str, Any]:
    return {"id": f"cs_test_race{n:02d}", "object": "checkout.session", "status": "complete",
            "mode": "payment", "payment_status": "paid", "payment_intent": f"pi_race{n:02d}",
            "amount_total": 200000, "currency": "nok", "created": NOW - 3600 - 60 * n,
            "customer_details": {"email": f"s{n}@example.com", "name": "Student"},
            "metadata": {"type": "pass_purchase", "passId": "p1", "userId": CLERKS[n % 3],
                         "tenantId": "t1", "passType": "multi"}}


def catalog_docs() -> list[dict[str, Any]]:
    return [
        {"_id": "t1", "_type": "tenant", "schoolName": "School",
         "stripeConnect": {"accountId": ACCT}},
        {"_id": "p1", "_type": "pass", "name": "10 Clip Card", "type": "multi", "price": 2000,
         "validityType": "days", "validityDays": 90, "classesLimit": 10, "isActive": True,
         "tenant": {"_type": "reference", "_ref": "t1"}},
        {"_id": "u1", "_type": "user", "clerkId": "user_a"},
    ]


def records(doc: dict[str, Any], session: dict[str, Any]) -> bool:
    """Does this subscription record the purchase (the reconciler's own matching rule)?"""
    return (doc.get("stripeSessionId") == session["id"]
            or doc["_id"].removeprefix("drafts.") == f"subscription-{session['id']}"
            or session["payment_intent"] in (doc.get("stripePaymentId"),
                                             doc.get("stripePaymentIntentId"),
                                             doc.get("paymentId")))


class LateWebhooks:
    """The job's Sanity, with the webhook delivering scheduled purchases right after the
    n-th page look-up: in the window between that page's look-up and its write."""

    def __init__(self, inner: FakeSanity, schedule: dict[int, list[int]], deliver: Any) -> None:
        self._inner = inner
        self._schedule = schedule
        self._deliver = deliver
        self.lookups = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def lookup_page(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = self._inner.lookup_page(*args, **kwargs)
        for n in self._schedule.get(self.lookups, ()):
            self._deliver(n)
        self.lookups += 1
        return result


class WebhookRace(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sessions = [raw_session(n) for n in range(SESSIONS)]
        self.stripe = FakeStripe({ACCT: self.sessions}, page_size=3)
        self.sanity = FakeSanity(catalog_docs())
        self.runs = 0
        self.late = 0

    # -- the actors ----------------------------------------------------------------------

    def deliver(self, n: int, *, draft: bool = False, by_intent_only: bool = False) -> None:
        """The HEAD webhook (§2.3/§2.7): skip when any subscription records the purchase."""
        session = self.sessions[n]
        subs = self.sanity.of_type("subscription")
        if any(d.get("stripeSessionId") == session["id"]
               or d.get("stripePaymentId") == session["payment_intent"] for d in subs):
            return
        doc_id = secrets.token_hex(11)
        doc: dict[str, Any] = {
            "_id": f"drafts.{doc_id}" if draft else doc_id, "_type": "subscription",
            "user": {"_type": "reference", "_ref": "u1"}, "type": "clipcard",
            "passId": "p1", "stripePaymentId": session["payment_intent"],
            "isActive": True, "createdViaWebhook": True}
        if not by_intent_only:
            doc["stripeSessionId"] = session["id"]
        self.sanity.docs[doc["_id"]] = doc

    @rule(n=st.integers(0, SESSIONS - 1), draft=st.booleans(), by_intent_only=st.booleans())
    def webhook(self, n: int, draft: bool, by_intent_only: bool) -> None:
        self.deliver(n, draft=draft, by_intent_only=by_intent_only)

    @rule(late=st.lists(st.tuples(st.integers(0, 3), st.integers(0, SESSIONS - 1)),
                        max_size=6))
    def reconcile(self, late: Sequence[tuple[int, int]]) -> None:
        schedule: dict[int, list[int]] = {}
        for after_lookup, n in late:
            schedule.setdefault(after_lookup, []).append(n)
        self.late += len(late)
        self._run(LateWebhooks(self.sanity, schedule, self.deliver))

    def _run(self, sanity: Any) -> Any:
        self.runs += 1
        req = RunRequest(run_id=f"r{self.runs}", since=NOW - 86400, until=NOW)
        # One fetcher and one planner: the schedule's "n-th look-up" is the same every time.
        return Reconciler(self.stripe, sanity, clock=lambda: float(NOW), workers=1,
                          plan_workers=1).run(req)

    # -- the promise ---------------------------------------------------------------------

    def recorded(self) -> list[int]:
        subs = self.sanity.of_type("subscription")
        return [len({d["_id"].removeprefix("drafts.") for d in subs if records(d, s)})
                for s in self.sessions]

    @invariant()
    def never_two_subscriptions_for_one_purchase(self) -> None:
        assert max(self.recorded()) <= 1, self.recorded()

    @precondition(lambda self: self.runs > 0)
    @rule()
    def a_last_quiet_pass_leaves_every_paid_purchase_with_one(self) -> None:
        report = self._run(self.sanity)
        assert self.recorded() == [1] * SESSIONS
        assert report.counts["created"] + report.counts["already_present"] == SESSIONS
        assert report.counts["failed"] == report.counts["needs_manual"] == 0


WebhookRace.TestCase.settings = settings(max_examples=150, stateful_step_count=12,
                                         deadline=None)
TestWebhookRace = WebhookRace.TestCase
