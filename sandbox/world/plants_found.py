"""Planted purchases a correct reconciler finds present (some with anomalies) or creates:
every subscription shape and user situation of domain.md §1 and the §4 incidents that do not
need a person."""

from __future__ import annotations

from sandbox.world import plant_kit as kit
from sandbox.world.build import Builder
from sandbox.world.docs import (
    alternate_shape,
    expected_subscription,
    historic_subscription,
    system_fields,
)
from sandbox.world.ids import DAY_S, iso_ms
from sandbox.world.stripe_side import customer_details

# --- present, with or without anomalies --------------------------------------------------------

def tenantless_subscription(b: Builder, i: int) -> None:
    del kit.present(b, "tenantless_subscription")[3]["tenant"]


def legacy_user_ref(b: Builder, i: int) -> None:
    kit.present(b, "legacy_user_ref", kind="legacy")


def alternate_shape_present(b: Builder, i: int) -> None:
    school, student = kit.fresh(b)
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False)
    b.docs.append(alternate_shape(b.ids, session, pass_doc, user_ref=str(student.canonical_id),
                                  tenant_id=school.tenant_id, created_s=session["created"] + 900))
    b.record(session, account, "already_present", "alternate_shape",
             anomalies=["invisible_shape"])


def payment_id_only(b: Builder, i: int) -> None:
    """Root-app shape: `paymentId` (= payment intent), no `stripeSessionId`/`stripePaymentId`."""
    school, student = kit.fresh(b)
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
    del kit.present(b, "payment_intent_only")[3]["stripeSessionId"]


def deterministic_id_only(b: Builder, i: int) -> None:
    """A previous recovery's `subscription-<session id>` whose Stripe ids were since removed."""
    school, student = kit.fresh(b)
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
    session, account, school, doc = kit.present(b, "duplicate_subscriptions",
                                             anomalies=("duplicate_subscriptions",))
    pass_doc = school.pass_named(doc["passName"])
    b.webhook_sub(session, account, pass_doc, school.tenant_id, doc["user"]["_ref"])


def mistyped_single(b: Builder, i: int) -> None:
    """A clip card stored as `single` with one clip (§4 #12, commit 2ff769a)."""
    school = b.school()
    doc = kit.present(b, "mistyped_single", school=school,
                   pass_doc=school.pass_named("10 Single Clip Card"),
                   anomalies=("mistyped_subscription",))[3]
    doc.update(type="single", remainingClips=1)


def mistyped_raw_type(b: Builder, i: int) -> None:
    """The raw pass type `multi` leaked into the subscription."""
    school = b.school()
    doc = kit.present(b, "mistyped_raw_type", school=school,
                   pass_doc=school.pass_named("Open week Trial Pass"),
                   anomalies=("mistyped_subscription",))[3]
    doc["type"] = "multi"


def wrong_tenant(b: Builder, i: int) -> None:
    """A bulk script gave the subscription another school (§4 #14)."""
    _, _, school, doc = kit.present(b, "wrong_tenant", anomalies=("wrong_tenant",))
    doc["tenant"]["_ref"] = b.other_tenant(school).tenant_id


# --- missing, created --------------------------------------------------------------------------

def manual_elsewhere(b: Builder, i: int) -> None:
    """A hand-made subscription that is NOT a duplicate: the same pass starting more than a day
    before the purchase (a recovery comes after it), or another pass."""
    session, _, school, student = kit.lost(b, "manual_not_duplicate")
    variant = i % 3
    pass_doc = school.pass_named(session["_line_items"][0]["description"])
    if variant == 1:
        pass_doc = next(p for p in school.regular if p["_id"] != pass_doc["_id"])
    start = session["created"] - (7 * DAY_S + 3600, DAY_S, DAY_S + 3600)[variant]
    b.docs.append(historic_subscription(
        b.ids, pass_doc, user_ref=str(student.canonical_id), tenant_id=school.tenant_id,
        start_s=start, end_s=b.end_of(pass_doc, start), session_id=None,
        payment_id=f"manual_recovery_{start * 1000}", extra={"manuallyCreated": True}))


def unconnected_school(b: Builder, i: int) -> None:
    """A legacy platform purchase of the school that has no connected account."""
    kit.lost(b, "unconnected_school", school=b.unconnected, platform=True, with_tenant=i % 2 == 1)


def pass_by_description(b: Builder, i: int) -> None:
    """No pass id anywhere; the line-item description names exactly one pass of the tenant."""
    school = b.school()
    kit.lost(b, "pass_by_description", school=school, pass_doc=school.pass_named("Drop-in Class"),
          drop=("passId",), drop_product=("passId",))


def same_email_created(b: Builder, i: int) -> None:
    """Three Clerk accounts share an e-mail; the metadata's Clerk id decides (§4 #22)."""
    school, first = kit.fresh(b, "same_email")
    b.people.new(school, "same_email", email=first.email)
    kit.lost(b, "same_email", kind="same_email", school=school)


def nameless_buyer(b: Builder, i: int) -> None:
    """No user doc and no name at checkout: the new user is called `Customer`."""
    school, student = kit.fresh(b, "none")
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False,
                                  details=customer_details(None, student.email))
    b.record_created(session, account, "nameless_buyer", pass_doc=pass_doc,
                     tenant_id=school.tenant_id, student=student)


def refund_partial_missing(b: Builder, i: int) -> None:
    session, account, _, _ = kit.lost(b, "refund_partial")
    b.refund(account, session, session["amount_total"] // 3)


def expired_on_arrival(b: Builder, i: int) -> None:
    """A fixed expiry already past when bought (§4 #11): create anyway, flag it."""
    school = b.school()
    session = kit.lost(b, "expired_on_arrival", school=school,
                       pass_doc=school.odd["expired_fixed"])[0]
    assert "expired_on_arrival" in b.truth[session["id"]]["anomalies"]


def null_payment_intent(b: Builder, i: int) -> None:
    """`payment_intent: null` must never match subscriptions lacking a payment id (§4 #27)."""
    if i % 2 == 0:
        kit.lost(b, "null_payment_intent", payment_intent=None)
        return
    del kit.present(b, "null_payment_intent_present", payment_intent=None)[3]["stripePaymentId"]


def refund_failed(b: Builder, i: int) -> None:
    """A refund that failed leaves the purchase standing."""
    session, account, _, _ = kit.present(b, "refund_failed")
    b.refund(account, session, session["amount_total"], status="failed")


