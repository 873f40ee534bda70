"""Planted purchases in the shapes the app's own code produces (issue "no second pass"):
drafts the student already books with, a recovery script's fake Stripe ids, explicit non-pass
types, currency history, several user documents per Clerk id, passes linked to another student,
half-done upgrades, and products the by-id listing does not return.

Each plant uses students of its own, so what it plants meets only its own purchase.
"""

from __future__ import annotations

from sandbox.world import base
from sandbox.world import plant_kit as kit
from sandbox.world.build import Builder
from sandbox.world.docs import historic_subscription, webhook_subscription
from sandbox.world.ids import DAY_S


def draft_only(b: Builder, i: int) -> None:
    """Only a draft records the purchase (an editor never published it): the app reads in the
    raw perspective, so the student already books with it. Present, never created again."""
    variant = i % 3
    school, student = kit.fresh(b)
    pass_doc = b.regular_pass(school)
    session, account = b.purchase(school, pass_doc, student, delivered=False)
    draft_id = "drafts." + (f"subscription-{session['id']}" if variant == 1 else b.ids.sanity())
    doc = webhook_subscription(
        b.ids, session, pass_doc, tenant_id=school.tenant_id, user_ref=str(student.canonical_id),
        event_id=b.event_id(session), processed_s=session["created"] + 60, doc_id=draft_id)
    if variant == 2:  # found by its payment intent only
        doc.pop("stripeSessionId", None)
    b.docs.append(doc)
    b.record(session, account, "already_present", f"draft_only/{variant}",
             anomalies=["draft_only"])


def not_a_pass_typed(b: Builder, i: int) -> None:
    """An explicit non-pass `metadata.type`: the webhook skips it, passId or not."""
    kind = ("class_booking", "gift_card", "course_enrolment")[i % 3]
    session, _, _ = kit.manual(b, f"not_a_pass_typed/{kind}", "not_a_pass",
                               set_meta={"type": kind})
    b.truth[session["id"]].update(outcome="ignored", reason="not_a_pass")


def currency_differs(b: Builder, i: int) -> None:
    """Paid in another currency than the school's current one (the school changed it): created
    as the webhook writes it, amount as paid."""
    currency = ("sek", "eur", "usd")[i % 3]
    session, _, _, _ = kit.lost(b, f"currency_differs/{currency}", currency=currency)
    b.truth[session["id"]]["anomalies"] = sorted({*b.truth[session["id"]]["anomalies"],
                                                  "currency_differs"})


def duplicate_users(b: Builder, i: int) -> None:
    """Several user documents carry the buyer's Clerk id: linked to `user-<clerk id>` when it is
    one of them, else the oldest; never a person's job."""
    kind = ("ambiguous", "ambiguous_ours")[i % 2]
    session, _, _, _ = kit.lost(b, f"duplicate_users/{kind}", kind=kind)
    b.truth[session["id"]]["anomalies"] = sorted({*b.truth[session["id"]]["anomalies"],
                                                  "duplicate_users"})


def wrong_user(b: Builder, i: int) -> None:
    """The webhook (or a script) linked the pass to another student's user document."""
    school = b.school()
    other = b.people.new(school, "canonical")
    kit.present(b, f"wrong_user/{i % 2}", school=school, anomalies=("wrong_user",),
                user_ref=str(other.canonical_id) if i % 2 == 0 else other.clerk_id)


def upgrade_incomplete(b: Builder, i: int) -> None:
    """The upgrade's new subscription exists, the old one is still active (the sync route's
    recovery, §2.8): reported; `diagnose --fix` completes it."""
    school = b.school()
    old_pass, new_pass = b.rng.choice(base.upgrade_pairs(school))
    student = b.people.new(school, "canonical")
    source = base.upgrade_source(b, school, student, old_pass)
    session, account = base.upgrade_session(b, school, student, old_pass, new_pass,
                                            source["_id"])
    b.webhook_sub(session, account, new_pass, school.tenant_id, source["user"]["_ref"],
                  upgrade_from=source["_id"])
    b.record(session, account, "already_present", "upgrade_incomplete",
             anomalies=["upgrade_incomplete"])


def upgrade_source_inactive(b: Builder, i: int) -> None:
    """A lost upgrade whose old subscription someone already deactivated: the new one is
    created, the old one is not patched again."""
    school = b.school()
    old_pass, new_pass = b.rng.choice(base.upgrade_pairs(school))
    student = b.people.new(school, "canonical")
    source = base.upgrade_source(b, school, student, old_pass)
    source["isActive"] = False
    session, account = base.upgrade_session(b, school, student, old_pass, new_pass,
                                            source["_id"], delivered=False)
    b.record_created(session, account, "upgrade_source_inactive", pass_doc=new_pass,
                     tenant_id=school.tenant_id, student=student,
                     user_ref=source["user"]["_ref"], upgrade_from=source["_id"])
    b.truth[session["id"]]["deactivates"] = None


def product_unlisted(b: Builder, i: int) -> None:
    """The keys live only on the line item's product, which the by-id product listing does not
    return: the session's own line items still carry it."""
    session, account, _, _ = kit.lost(b, "product_unlisted", drop=("passId", "userId"))
    product_id = session["_line_items"][0]["price"]["product"]
    product = next(p for p in b.stripe[account]["products"] if p["id"] == product_id)
    product["_unlisted"] = True


def manual_recovery_later(b: Builder, i: int) -> None:
    """The main recovery script's shape, run hours to days after the purchase (§4 #16):
    `manual_recovery_session_<ms>` / `manual_recovery_<ms>`, startDate = when it ran."""
    session, school, student = kit.manual(b, f"manual_recovery_later/{i % 3}",
                                          "manual_duplicate_suspected", delivered=False)
    pass_doc = school.pass_named(session["_line_items"][0]["description"])
    start = session["created"] + (3 * 3600, 2 * DAY_S, 6 * DAY_S)[i % 3] + b.rng.randint(0, 3600)
    ms = start * 1000
    doc = historic_subscription(
        b.ids, pass_doc, user_ref=str(student.canonical_id), tenant_id=school.tenant_id,
        start_s=start, end_s=b.end_of(pass_doc, start),
        session_id=f"manual_recovery_session_{ms}", payment_id=f"manual_recovery_{ms}",
        extra={"createdViaRecovery": True, "recoveredBy": "manual-script"})
    if i % 3 == 2:
        doc["_id"] = "drafts." + doc["_id"]  # never published, still what the student sees
    b.docs.append(doc)
