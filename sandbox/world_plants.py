"""Planted oddities: one scenario per incident of domain.md §4 and per outcome of design.md.

Every plant uses a student of its own (`People.new`), so what it plants cannot leak into another
session's outcome (a manual subscription only ever meets its own purchase, and so on). Plants
are listed by importance; a small world takes only the first few.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox import world_base as base
from sandbox.world_build import PLATFORM, Builder, Doc
from sandbox.world_catalog import School
from sandbox.world_docs import (
    alternate_shape,
    expected_subscription,
    historic_subscription,
    system_fields,
    webhook_subscription,
)
from sandbox.world_ids import DAY_S, iso_ms, ref
from sandbox.world_people import Student
from sandbox.world_stripe import customer_details

Plant = Callable[[Builder, int], None]
ALL_METADATA = ("passId", "passType", "userId", "type", "tenantId", "tenantSlug",
                "originalPrice", "finalPrice", "discountAmount", "promoCode")


def _fresh(b: Builder, kind: str = "canonical", school: School | None = None
           ) -> tuple[School, Student]:
    school = school or b.school()
    return school, b.people.new(school, kind)


def _lost(b: Builder, scenario: str, *, kind: str = "canonical", school: School | None = None,
          pass_doc: Doc | None = None, tenant: School | None = None, **kwargs: Any
          ) -> tuple[Doc, str, School, Student]:
    """A purchase whose webhook was lost and that a correct reconciler creates."""
    school, student = _fresh(b, kind, school)
    pass_doc = pass_doc or b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False, **kwargs)
    b.record_created(session, account, scenario, pass_doc=pass_doc,
                     tenant_id=(tenant or school).tenant_id, student=student)
    return session, account, school, student


def _present(b: Builder, scenario: str, *, kind: str = "canonical", school: School | None = None,
             pass_doc: Doc | None = None, anomalies: tuple[str, ...] = (),
             user_ref: str | None = None, **kwargs: Any) -> tuple[Doc, str, School, Doc]:
    """A purchase whose webhook worked; returns its subscription for the plant to bend."""
    school, student = _fresh(b, kind, school)
    pass_doc = pass_doc or b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, **kwargs)
    doc = b.webhook_sub(session, account, pass_doc, school.tenant_id,
                        user_ref or student.canonical_id or student.clerk_id)
    b.record(session, account, "already_present", scenario, anomalies=anomalies)
    return session, account, school, doc


def _manual(b: Builder, scenario: str, reason: str, *, kind: str = "canonical",
            school: School | None = None, pass_doc: Doc | None = None, **kwargs: Any
            ) -> tuple[Doc, School, Student]:
    """A purchase a correct reconciler leaves to a person (`reason`); the webhook errored."""
    school, student = _fresh(b, kind, school)
    pass_doc = pass_doc or b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, **kwargs)
    b.record(session, account, "needs_manual", scenario, reason=reason)
    return session, school, student


# --- present, with or without anomalies --------------------------------------------------------

def tenantless_subscription(b: Builder, i: int) -> None:
    del _present(b, "tenantless_subscription")[3]["tenant"]


def legacy_user_ref(b: Builder, i: int) -> None:
    _present(b, "legacy_user_ref", kind="legacy")


def alternate_shape_present(b: Builder, i: int) -> None:
    school, student = _fresh(b)
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False)
    b.docs.append(alternate_shape(b.ids, session, pass_doc, user_ref=str(student.canonical_id),
                                  tenant_id=school.tenant_id, created_s=session["created"] + 900))
    b.record(session, account, "already_present", "alternate_shape",
             anomalies=["invisible_shape"])


def payment_id_only(b: Builder, i: int) -> None:
    """Root-app shape: `paymentId` (= payment intent), no `stripeSessionId`/`stripePaymentId`."""
    school, student = _fresh(b)
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False)
    created = session["created"]
    b.docs.append(historic_subscription(
        b.ids, pass_doc, user_ref=str(student.canonical_id), tenant_id=school.tenant_id,
        start_s=created, end_s=b.end_of(pass_doc, created), session_id=None, payment_id=None,
        extra={"paymentId": session["payment_intent"], "paymentStatus": "completed",
               "amount": session["amount_total"], "currency": "nok", "classesUsed": 0}))
    b.record(session, account, "already_present", "payment_id_only")


def payment_intent_only(b: Builder, i: int) -> None:
    del _present(b, "payment_intent_only")[3]["stripeSessionId"]


def deterministic_id_only(b: Builder, i: int) -> None:
    """A previous recovery's `subscription-<session id>` whose Stripe ids were since removed."""
    school, student = _fresh(b)
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False)
    shape = expected_subscription(session, pass_doc, tenant_id=school.tenant_id,
                                  user_ref=str(student.canonical_id))
    for key in ("_id", "_type", "stripeSessionId", "stripePaymentId"):
        del shape[key]
    doc = system_fields(b.ids, f"subscription-{session['id']}", session["created"] + 3600)
    doc.update(shape, createdViaRecovery=True, recoveredAt=iso_ms(session["created"] * 1000))
    b.docs.append(doc)
    b.record(session, account, "already_present", "deterministic_id_only")


def duplicate_subscriptions(b: Builder, i: int) -> None:
    """Two endpoints raced (§4 #3): two subscriptions for one session."""
    session, account, school, doc = _present(b, "duplicate_subscriptions",
                                             anomalies=("duplicate_subscriptions",))
    pass_doc = school.pass_named(doc["passName"])
    b.webhook_sub(session, account, pass_doc, school.tenant_id, doc["user"]["_ref"])


def mistyped_single(b: Builder, i: int) -> None:
    """A clip card stored as `single` with one clip (§4 #12, commit 2ff769a)."""
    school = b.school()
    doc = _present(b, "mistyped_single", school=school,
                   pass_doc=school.pass_named("10 Single Clip Card"),
                   anomalies=("mistyped_subscription",))[3]
    doc.update(type="single", remainingClips=1)


def mistyped_raw_type(b: Builder, i: int) -> None:
    """The raw pass type `multi` leaked into the subscription."""
    school = b.school()
    doc = _present(b, "mistyped_raw_type", school=school,
                   pass_doc=school.pass_named("Open week Trial Pass"),
                   anomalies=("mistyped_subscription",))[3]
    doc["type"] = "multi"


def wrong_tenant(b: Builder, i: int) -> None:
    """A bulk script gave the subscription another school (§4 #14)."""
    _, _, school, doc = _present(b, "wrong_tenant", anomalies=("wrong_tenant",))
    doc["tenant"]["_ref"] = b.other_tenant(school).tenant_id


# --- missing, created --------------------------------------------------------------------------

def draft_only(b: Builder, i: int) -> None:
    """Only a draft holds the purchase (an editor never published it)."""
    school, student = _fresh(b)
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False)
    draft_id = "drafts." + (b.ids.sanity() if i % 2 == 0 else f"subscription-{session['id']}")
    b.docs.append(webhook_subscription(
        b.ids, session, pass_doc, tenant_id=school.tenant_id, user_ref=str(student.canonical_id),
        event_id=b.event_id(session), processed_s=session["created"] + 60,
        doc_id=draft_id))
    b.record_created(session, account, "draft_only", pass_doc=pass_doc,
                     tenant_id=school.tenant_id, student=student, anomalies=["draft_only"])


def manual_elsewhere(b: Builder, i: int) -> None:
    """A hand-made subscription that is NOT a duplicate: 7 days + 1 hour away, or another pass."""
    session, _, school, student = _lost(b, "manual_not_duplicate")
    far = i % 2 == 0
    pass_doc = school.pass_named(session["_line_items"][0]["description"])
    if not far:
        pass_doc = next(p for p in school.regular if p["_id"] != pass_doc["_id"])
    start = session["created"] - (7 * DAY_S + 3600 if far else DAY_S)
    b.docs.append(historic_subscription(
        b.ids, pass_doc, user_ref=str(student.canonical_id), tenant_id=school.tenant_id,
        start_s=start, end_s=b.end_of(pass_doc, start), session_id=None,
        payment_id=f"manual_recovery_{start * 1000}", extra={"manuallyCreated": True}))


def _created(scenario: str, **kwargs: Any) -> Plant:
    def plant(b: Builder, i: int) -> None:
        _lost(b, scenario, **kwargs)
    return plant


def _created_named(scenario: str, name: str, **kwargs: Any) -> Plant:
    def plant(b: Builder, i: int) -> None:
        school = b.school()
        _lost(b, scenario, school=school, pass_doc=school.pass_named(name), **kwargs)
    return plant


def unconnected_school(b: Builder, i: int) -> None:
    """A legacy platform purchase of the school that has no connected account."""
    _lost(b, "unconnected_school", school=b.unconnected, platform=True, with_tenant=i % 2 == 1)


def pass_by_description(b: Builder, i: int) -> None:
    """No pass id anywhere; the line-item description names exactly one pass of the tenant."""
    school = b.school()
    _lost(b, "pass_by_description", school=school, pass_doc=school.pass_named("Drop-in Class"),
          drop=("passId",), drop_product=("passId",))


def same_email_created(b: Builder, i: int) -> None:
    """Three Clerk accounts share an e-mail; the metadata's Clerk id decides (§4 #22)."""
    school, first = _fresh(b, "same_email")
    b.people.new(school, "same_email", email=first.email)
    _lost(b, "same_email", kind="same_email", school=school)


def nameless_buyer(b: Builder, i: int) -> None:
    """No user doc and no name at checkout: the new user is called `Customer`."""
    school, student = _fresh(b, "none")
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False,
                                  details=customer_details(None, student.email))
    b.record_created(session, account, "nameless_buyer", pass_doc=pass_doc,
                     tenant_id=school.tenant_id, student=student)


def refund_partial_missing(b: Builder, i: int) -> None:
    session, account, _, _ = _lost(b, "refund_partial")
    b.refund(account, session, session["amount_total"] // 3)


def expired_on_arrival(b: Builder, i: int) -> None:
    """A fixed expiry already past when bought (§4 #11): create anyway, flag it."""
    school = b.school()
    session = _lost(b, "expired_on_arrival", school=school, pass_doc=school.odd["expired_fixed"])[0]
    assert "expired_on_arrival" in b.truth[session["id"]]["anomalies"]


def null_payment_intent(b: Builder, i: int) -> None:
    """`payment_intent: null` must never match subscriptions lacking a payment id (§4 #27)."""
    if i % 2 == 0:
        _lost(b, "null_payment_intent", payment_intent=None)
        return
    del _present(b, "null_payment_intent_present", payment_intent=None)[3]["stripePaymentId"]


# --- needs manual ------------------------------------------------------------------------------

def manual_duplicate(b: Builder, i: int) -> None:
    """The webhook failed and someone made the pass by hand (§4 #16): never create."""
    variant = i % 6
    session, school, student = _manual(b, f"manual_duplicate/{variant}",
                                       "manual_duplicate_suspected", delivered=False)
    pass_doc = school.pass_named(session["_line_items"][0]["description"])
    start = session["created"] + b.rng.randint(-3 * DAY_S, 3 * DAY_S)
    ms = start * 1000
    payment = [None, f"manual_recovery_{ms}", f"manual_recovery_session_{ms}",
               f"admin_created_{ms}", "debug_test_payment", None][variant]
    user_ref = student.clerk_id if variant in (0, 4) else str(student.canonical_id)
    if variant == 5:
        # The alternate shape made by hand: `pass` reference and `purchaseDate`, no Stripe ids.
        doc = system_fields(b.ids, b.ids.sanity(), start)
        doc.update({"user": ref(user_ref), "pass": ref(pass_doc["_id"]), "status": "active",
                    "purchaseDate": iso_ms(ms),
                    "expiryDate": iso_ms(b.end_of(pass_doc, start) * 1000), "classesUsed": 0,
                    "amount": session["amount_total"], "currency": "nok"})
    else:
        doc = historic_subscription(
            b.ids, pass_doc, user_ref=user_ref, tenant_id=b.rng.choice([school.tenant_id, None]),
            start_s=start, end_s=b.end_of(pass_doc, start), session_id=None, payment_id=payment,
            extra={"manuallyCreated": True, "manualCreationReason": "webhook failed",
                   "manualCreationDate": iso_ms(ms)})
    b.docs.append(doc)


def _needs(scenario: str, reason: str, **kwargs: Any) -> Plant:
    def plant(b: Builder, i: int) -> None:
        _manual(b, scenario, reason, **kwargs)
    return plant


def _odd_pass(scenario: str, reason: str, role: str) -> Plant:
    def plant(b: Builder, i: int) -> None:
        school = b.school()
        _manual(b, scenario, reason, school=school, pass_doc=school.odd[role])
    return plant


def metadata_missing(b: Builder, i: int) -> None:
    """No pass id in metadata or product, and a description that names no pass."""
    _manual(b, "metadata_missing", "metadata_missing", drop=("passId",),
            drop_product=("passId",), description="Summer Intensive Workshop")


def metadata_missing_platform(b: Builder, i: int) -> None:
    """On the platform the description is no evidence, even when it names a pass."""
    _manual(b, "metadata_missing/platform", "metadata_missing", platform=True,
            drop=("passId",), drop_product=("passId",))


def pass_not_found(b: Builder, i: int) -> None:
    """The pass was deleted, or exists only as a draft."""
    school = b.school()
    missing_id = b.ids.sanity()
    name = "Spring Special"
    if i % 2 == 1:
        name = "Intro Offer"
        draft = dict(school.regular[0], _id="drafts." + missing_id, name=name)
        b.docs.append(draft)
    _manual(b, f"pass_not_found/{'draft' if i % 2 else 'deleted'}", "pass_not_found",
            school=school, set_meta={"passId": missing_id}, set_product={"passId": missing_id},
            description=name)


def tenant_mismatch(b: Builder, i: int) -> None:
    """metadata.tenantId of another school, a pass of another school, or both on the platform."""
    school = b.school()
    other = b.other_tenant(school)
    variant = i % 3
    if variant == 0:
        _manual(b, "tenant_mismatch/metadata", "tenant_mismatch", school=school,
                set_meta={"tenantId": other.tenant_id, "tenantSlug": other.slug})
    else:
        _manual(b, f"tenant_mismatch/{'pass' if variant == 1 else 'platform'}",
                "tenant_mismatch", school=school, pass_doc=b.regular_pass(other),
                platform=variant == 2)


def upgrade_source(b: Builder, i: int) -> None:
    """An upgrade whose source subscription is unknown, not named, or only a draft."""
    variant = i % 3
    school, student = _fresh(b)
    old_pass, new_pass = b.rng.choice(base.upgrade_pairs(school))
    source_id: str | None = b.ids.sanity()
    if variant == 1:
        source_id = None
    elif variant == 2:
        draft = historic_subscription(
            b.ids, old_pass, user_ref=str(student.canonical_id), tenant_id=school.tenant_id,
            start_s=b.since - 5 * DAY_S, end_s=b.now + 30 * DAY_S, session_id=b.ids.session(),
            payment_id=b.ids.stripe("pi"))
        draft["_id"] = "drafts." + str(source_id)
        b.docs.append(draft)
    session, account = base.upgrade_session(b, school, student, old_pass, new_pass, source_id)
    b.record(session, account, "needs_manual", f"upgrade_source_missing/{variant}",
             reason="upgrade_source_missing")


PLANTS: list[tuple[str, Plant]] = [
    ("manual_duplicate", manual_duplicate),
    ("metadata_missing", metadata_missing),
    ("pass_not_found", pass_not_found),
    ("pass_type_unknown", _odd_pass("pass_type_unknown", "pass_type_unknown", "legacy_type")),
    ("pass_without_class_count",
     _odd_pass("pass_without_class_count", "pass_without_class_count", "no_class_count")),
    ("tenant_mismatch", tenant_mismatch),
    ("user_unknown", _needs("user_unknown", "user_unknown", drop=("userId",),
                            drop_product=("userId",))),
    ("user_ambiguous", _needs("user_ambiguous", "user_ambiguous", kind="ambiguous")),
    ("upgrade_source_missing", upgrade_source),
    ("duplicate_subscriptions", duplicate_subscriptions),
    ("mistyped_single", mistyped_single),
    ("wrong_tenant", wrong_tenant),
    ("alternate_shape", alternate_shape_present),
    ("draft_only", draft_only),
    ("refunded_but_active", lambda b, i: base.refunded(
        b, active_subscription=True, scenario="refunded_but_active")),
    ("expired_on_arrival", expired_on_arrival),
    ("null_payment_intent", null_payment_intent),
    ("pass_id_from_product", _created("pass_id_from_product", drop=("passId",))),
    ("pass_by_description", pass_by_description),
    ("tenantless_subscription", tenantless_subscription),
    ("legacy_user_ref", legacy_user_ref),
    ("payment_intent_only", payment_intent_only),
    ("no_user_doc", _created("no_user_doc", kind="none")),
    ("metadata_missing_platform", metadata_missing_platform),
    ("pass_no_expiry", _odd_pass("pass_no_expiry", "pass_type_unknown", "no_expiry")),
    ("pass_zero_class_count",
     _odd_pass("pass_zero_class_count", "pass_without_class_count", "zero_class_count")),
    ("mistyped_raw_type", mistyped_raw_type),
    ("payment_id_only", payment_id_only),
    ("deterministic_id_only", deterministic_id_only),
    ("manual_not_duplicate", manual_elsewhere),
    ("pass_id_empty", _created("pass_id_empty", set_meta={"passId": ""})),
    ("all_keys_from_product", _created("all_keys_from_product", drop=ALL_METADATA,
                                       promo=False)),
    ("user_id_from_product", _created("user_id_from_product", drop=("userId",))),
    ("draft_only_user", _created("draft_only_user", kind="draft_only")),
    ("prior_recovery_user", _created("prior_recovery_user", kind="prior_recovery")),
    ("legacy_user_created", _created("legacy_user_created", kind="legacy")),
    ("both_docs_created", _created("both_docs_created", kind="both")),
    ("canonical_draft_created", _created("canonical_draft_created", kind="canonical_draft")),
    ("nameless_buyer", nameless_buyer),
    ("same_email", same_email_created),
    ("unconnected_school", unconnected_school),
    ("platform_no_tenant", _created("platform_no_tenant", platform=True, with_tenant=False)),
    ("inactive_pass", _created_named("inactive_pass", "Kizomba Drop In")),
    ("promo", _created_named("promo", "Monthly Unlimited", promo=True)),
    ("monthly", _created_named("monthly", "Day Drop In")),
    ("plain_validity", _created_named("plain_validity", "10 Class Pass")),
    ("fixed_date", _created_named("fixed_date", "2 Course Pass")),
    ("refund_partial", refund_partial_missing),
    ("refund_failed", lambda b, i: _refund_failed(b)),
    ("refunded_in_parts", lambda b, i: base.refunded(b, parts=2, scenario="refunded_in_parts")),
    ("upgrade_created", lambda b, i: base.upgrade(b, lost=True, scenario="upgrade_created")),
    ("upgrade_present", lambda b, i: base.upgrade(b, lost=False, scenario="upgrade_present")),
    ("unpaid_with_subscription", lambda b, i: base.async_payment(b, with_subscription=True)),
    ("open", lambda b, i: base.abandoned(b, "open")),
    ("expired", lambda b, i: base.abandoned(b, "expired")),
    ("class_dropin", lambda b, i: base.class_dropin(b)),
    ("platform_plan", lambda b, i: base.platform_plan(b)),
    ("no_payment", lambda b, i: base.no_payment(b)),
    ("refunded", lambda b, i: base.refunded(b)),
    ("not_a_pass", lambda b, i: base.not_a_pass(b, platform=False)),
    ("not_a_pass_platform", lambda b, i: base.not_a_pass(b, platform=True)),
    ("platform_purchase", lambda b, i: base.pass_purchase(b, platform=True)),
]


def _refund_failed(b: Builder) -> None:
    """A refund that failed leaves the purchase standing."""
    session, account, _, _ = _present(b, "refund_failed")
    b.refund(account, session, session["amount_total"], status="failed")


def plant_all(b: Builder, sessions: int) -> int:
    """Plant every oddity (`sessions // 4000` of each, at least one) when the world has 500
    sessions or more; smaller worlds take the first `sessions // 4` plants. Returns how many
    sessions were planted."""
    per_kind = max(1, sessions // 4000)
    plants = PLANTS if sessions >= 500 else PLANTS[: sessions // 4]
    before = len(b.truth)
    for _, plant in plants:
        for index in range(per_kind):
            plant(b, index)
    return len(b.truth) - before


__all__ = ["PLANTS", "PLATFORM", "plant_all"]
