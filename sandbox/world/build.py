"""The mechanics of building a world: one Stripe session with its line item, product, event and
refunds, the Sanity documents around it, and the truth entry a correct reconciler reaches."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.world.catalog import School
from sandbox.world.docs import (
    end_ms,
    expected_subscription,
    expected_user,
    parse_ms,
    webhook_subscription,
)
from sandbox.world.ids import Ids, money
from sandbox.world.people import People, Student
from sandbox.world.stripe_side import (
    APP_URL,
    customer_details,
    event_object,
    line_item,
    product_object,
    refund_object,
    session_object,
)

Doc = dict[str, Any]
AUTO = "auto"  # default for `payment_intent`: mint a fresh `pi_…`
PLATFORM = "platform"


@functools.lru_cache(maxsize=256)
def _urls(slug: str, kind: str) -> tuple[str, str]:
    """Checkout's success and cancel URLs for a school's page (§2.1)."""
    path = f"/{slug}/subscriptions" if kind in ("pass", "upgrade") else f"/{slug}/classes"
    return (f"{APP_URL}{path}?success=true&session_id={{CHECKOUT_SESSION_ID}}&type={kind}",
            f"{APP_URL}{path}?canceled=true")


def empty_account_data() -> dict[str, list[Doc]]:
    """The per-account lists of stripe.json `data`."""
    return {"checkout_sessions": [], "products": [], "events": [], "refunds": [],
            "webhook_endpoints": []}


@dataclass
class Builder:
    """Holds the world while it is built; every scenario goes through its methods."""

    rng: random.Random
    ids: Ids
    people: People
    schools: list[School]
    unconnected: School
    now: int
    since: int
    until: int
    missing_share: float
    docs: list[Doc]
    stripe: dict[str, dict[str, list[Doc]]] = field(default_factory=dict)
    truth: dict[str, Doc] = field(default_factory=dict)
    _recent: list[int] = field(default_factory=list)
    _edges: list[int] = field(default_factory=list)
    _school_weights: list[int] = field(default_factory=list)
    _events: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The first sessions sit exactly on the window's edges (`gte since`, `lt until`).
        self._edges = [self.since, self.until - 1]
        self._school_weights = list(itertools.accumulate(range(len(self.schools) + 1, 1, -1)))
        self.stripe[PLATFORM] = empty_account_data()
        for school in self.schools:
            assert school.account is not None
            self.stripe[school.account] = empty_account_data()

    # --- choices -------------------------------------------------------------------------------

    def school(self) -> School:
        """A connected school (the first ones sell more)."""
        return self.rng.choices(self.schools, cum_weights=self._school_weights)[0]

    def other_tenant(self, school: School) -> School:
        """Any school but `school` (the unconnected one counts)."""
        return self.rng.choice([s for s in [*self.schools, self.unconnected] if s is not school])

    def regular_pass(self, school: School) -> Doc:
        """A pass base purchases buy, by popularity."""
        return self.rng.choices(school.regular, cum_weights=school.cum_weights)[0]

    def long_pass(self, school: School) -> Doc:
        """A pass whose subscription outlives any window (the 90-day clip card)."""
        return school.pass_named("10 Single Clip Card")

    def lost(self) -> bool:
        """Whether a pass purchase lost its webhook."""
        return self.rng.random() < self.missing_share

    def created(self, lo: int | None = None, hi: int | None = None) -> int:
        """A `created` second in the window; about a third reuse a recent second (bursts)."""
        lo = self.since if lo is None else max(lo, self.since)
        hi = self.until - 1 if hi is None else min(hi, self.until - 1)
        if lo > hi:
            lo = hi
        for edge in self._edges:
            if lo <= edge <= hi:
                self._edges.remove(edge)
                return edge
        if self._recent and self.rng.random() < 0.35:
            pick = self.rng.choice(self._recent)
            if lo <= pick <= hi:
                return pick
        pick = self.rng.randint(lo, hi)
        self._recent.append(pick)
        if len(self._recent) > 12:
            del self._recent[0]
        return pick

    # --- Stripe side ---------------------------------------------------------------------------

    def add_session(
        self,
        account: str,
        *,
        description: str,
        amount: int,
        metadata: Doc,
        product_metadata: Doc | None = None,
        student: Student | None = None,
        created: int | None = None,
        status: str = "complete",
        payment_status: str = "paid",
        mode: str = "payment",
        payment_intent: str | None = AUTO,
        delivered: bool = True,
        slug: str = "",
        kind: str = "pass",
        product_id: str | None = None,
        details: Doc | str | None = AUTO,
        recurring: Doc | None = None,
        **session_extra: Any,
    ) -> Doc:
        """Create one session and everything Stripe keeps with it; returns the session."""
        created = self.created() if created is None else created
        if payment_intent == AUTO:
            payment_intent = self.ids.stripe("pi") if status == "complete" else None
        if details == AUTO:
            details = customer_details(student.name, student.email) if student else None
            details = details if status != "open" else None
        success_url, cancel_url = _urls(slug, kind)
        session = session_object(
            session_id=self.ids.session(), created=created, status=status,
            payment_status=payment_status, mode=mode, amount=amount, metadata=metadata,
            details=details, payment_intent=payment_intent, success_url=success_url,
            cancel_url=cancel_url, extra=session_extra or None)
        if status == "expired":
            session["expires_at"] = created + 1800
        data = self.stripe[account]
        if product_id is None:
            product_id = self.ids.stripe("prod", 14)
            data["products"].append(
                product_object(product_id, description, product_metadata or {}, created))
        session["_line_items"] = [line_item(self.ids, amount=amount, description=description,
                                            product_id=product_id, created=created,
                                            recurring=recurring)]
        data["checkout_sessions"].append(session)
        if status == "complete":
            event_id = self.ids.stripe("evt")
            self._events[session["id"]] = event_id
            data["events"].append(event_object(
                event_id, session, account=None if account == PLATFORM else account,
                created=created + self.rng.randint(0, 4), delivered=delivered))
        return session

    def refund(self, account: str, session: Doc, amount: int, status: str = "succeeded") -> None:
        """A refund of `amount` øre of the session's payment intent."""
        created = min(session["created"] + self.rng.randint(300, 7200), self.now - 1)
        self.stripe[account]["refunds"].append(refund_object(
            self.ids, payment_intent=session["payment_intent"], amount=amount, created=created,
            status=status))

    def event_id(self, session: Doc) -> str:
        """The id of the session's `checkout.session.completed` event."""
        return self._events[session["id"]]

    # --- pass purchases ------------------------------------------------------------------------

    def purchase_metadata(
        self, school: School, pass_doc: Doc, student: Student, *, platform: bool,
        with_tenant: bool = True, promo: bool | None = None,
    ) -> tuple[Doc, int]:
        """§2.1/§2.2 session metadata and `amount_total` (øre) of one pass purchase.

        Platform sessions are the legacy shape (no prices; tenant only sometimes)."""
        metadata: Doc = {"passId": pass_doc["_id"], "passType": pass_doc["type"],
                         "userId": student.clerk_id, "type": "pass_purchase"}
        if with_tenant:
            metadata["tenantId"] = school.tenant_id
            metadata["tenantSlug"] = school.slug
        price = float(pass_doc["price"])
        if platform:
            return metadata, round(price * 100)
        if promo is None:
            promo = pass_doc.get("promoActive", False) and self.rng.random() < 0.3
        discount = 0.0
        if promo:
            value = pass_doc["promoDiscountValue"]
            discount = price * value / 100 if pass_doc["promoDiscountType"] == "percentage" \
                else float(value)
            discount = min(max(discount, 0.0), price - 1)
        final = price - discount
        metadata.update(originalPrice=money(price), finalPrice=money(final),
                        discountAmount=money(discount))
        if promo:
            metadata["promoCode"] = pass_doc["promoCode"].upper()
        return metadata, round(final * 100)

    def purchase(
        self,
        school: School,
        pass_doc: Doc,
        student: Student,
        *,
        platform: bool = False,
        with_tenant: bool = True,
        promo: bool | None = None,
        drop: Iterable[str] = (),
        drop_product: Iterable[str] = (),
        set_meta: Doc | None = None,
        set_product: Doc | None = None,
        description: str | None = None,
        amount: int | None = None,
        **session_kwargs: Any,
    ) -> tuple[Doc, str]:
        """A pass purchase session (with §2.2 product metadata); returns (session, account)."""
        metadata, paid = self.purchase_metadata(school, pass_doc, student, platform=platform,
                                                with_tenant=with_tenant, promo=promo)
        amount = paid if amount is None else amount
        product = {"passId": pass_doc["_id"], "passType": pass_doc["type"],
                   "userId": student.clerk_id, "tenantId": school.tenant_id}
        for key in drop:
            metadata.pop(key, None)
        for key in drop_product:
            product.pop(key, None)
        metadata.update(set_meta or {})
        product.update(set_product or {})
        account = PLATFORM if platform else school.account
        assert account is not None
        session = self.add_session(
            account, description=description or pass_doc["name"], amount=amount,
            metadata=metadata, product_metadata=product, student=student, slug=school.slug,
            **session_kwargs)
        return session, account

    def webhook_sub(self, session: Doc, account: str, pass_doc: Doc, tenant_id: str,
                    user_ref: str, **kwargs: Any) -> Doc:
        """Store the subscription the webhook made for `session`; returns it (mutable)."""
        doc = webhook_subscription(
            self.ids, session, pass_doc, tenant_id=tenant_id, user_ref=user_ref,
            event_id=self.event_id(session),
            processed_s=session["created"] + self.rng.randint(1, 20), **kwargs)
        self.docs.append(doc)
        return doc

    # --- truth ---------------------------------------------------------------------------------

    def record(
        self,
        session: Doc,
        account: str,
        outcome: str,
        scenario: str,
        *,
        reason: str | None = None,
        anomalies: Iterable[str] = (),
        expected: Doc | None = None,
        user: Doc | None = None,
        deactivates: str | None = None,
    ) -> None:
        """The outcome a correct reconciler reaches for `session`."""
        self.truth[session["id"]] = {
            "account": account, "outcome": outcome, "reason": reason,
            "anomalies": sorted(set(anomalies)), "expected": expected, "expected_user": user,
            "deactivates": deactivates, "scenario": scenario}

    def record_created(
        self,
        session: Doc,
        account: str,
        scenario: str,
        *,
        pass_doc: Doc,
        tenant_id: str,
        student: Student,
        user_ref: str | None = None,
        upgrade_from: str | None = None,
        anomalies: Iterable[str] = (),
    ) -> None:
        """A purchase the job must create; adds `expired_on_arrival` and the user doc to create."""
        ref_ = user_ref or student.sub_ref()
        assert ref_ is not None
        expected = expected_subscription(session, pass_doc, tenant_id=tenant_id, user_ref=ref_,
                                         upgrade_from=upgrade_from)
        found = list(anomalies)
        start, end = parse_ms(expected["startDate"]), parse_ms(expected["endDate"])
        if end <= self.now * 1000 or end <= start:
            found.append("expired_on_arrival")
        user = None
        if user_ref is None and student.needs_user_doc():
            user = expected_user(student.clerk_id, session["customer_details"])
        self.record(session, account, "created", scenario, anomalies=found, expected=expected,
                    user=user, deactivates=upgrade_from)

    def is_active(self, doc: Doc) -> bool:
        """The app's "active": `isActive == true && endDate > now`."""
        return bool(doc.get("isActive")) and parse_ms(doc["endDate"]) > self.now * 1000

    def end_of(self, pass_doc: Doc, base_s: int) -> int:
        """End (unix s) of a pass bought at `base_s`."""
        end = end_ms(pass_doc, base_s * 1000)
        assert end is not None
        return end // 1000
