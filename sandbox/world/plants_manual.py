"""Planted purchases a correct reconciler must leave to a person: one per `needs_manual` reason
of design.md, with the variants the app's history produced."""

from __future__ import annotations

from sandbox.world import base
from sandbox.world import plant_kit as kit
from sandbox.world.build import Builder
from sandbox.world.docs import historic_subscription, system_fields
from sandbox.world.ids import DAY_S, iso_ms, ref


def manual_duplicate(b: Builder, i: int) -> None:
    """The webhook failed and someone made the pass by hand (§4 #16), hours or days after the
    purchase (or with a start date up to a day before it): never create."""
    variant = i % 6
    session, school, student = kit.manual(b, f"manual_duplicate/{variant}",
                                       "manual_duplicate_suspected", delivered=False)
    pass_doc = school.pass_named(session["_line_items"][0]["description"])
    start = session["created"] + b.rng.randint(-DAY_S + 60, 5 * DAY_S)
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


def metadata_missing(b: Builder, i: int) -> None:
    """No pass id in metadata or product, and a description that names no pass."""
    kit.manual(b, "metadata_missing", "metadata_missing", drop=("passId",),
            drop_product=("passId",), description="Summer Intensive Workshop")


def metadata_missing_platform(b: Builder, i: int) -> None:
    """On the platform the description is no evidence, even when it names a pass."""
    kit.manual(b, "metadata_missing/platform", "metadata_missing", platform=True,
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
    kit.manual(b, f"pass_not_found/{'draft' if i % 2 else 'deleted'}", "pass_not_found",
            school=school, set_meta={"passId": missing_id}, set_product={"passId": missing_id},
            description=name)


def tenant_mismatch(b: Builder, i: int) -> None:
    """metadata.tenantId of another school, a pass of another school, or both on the platform."""
    school = b.school()
    other = b.other_tenant(school)
    variant = i % 3
    if variant == 0:
        kit.manual(b, "tenant_mismatch/metadata", "tenant_mismatch", school=school,
                set_meta={"tenantId": other.tenant_id, "tenantSlug": other.slug})
    else:
        kit.manual(b, f"tenant_mismatch/{'pass' if variant == 1 else 'platform'}",
                "tenant_mismatch", school=school, pass_doc=b.regular_pass(other),
                platform=variant == 2)


def upgrade_source(b: Builder, i: int) -> None:
    """An upgrade whose source subscription is unknown, not named, or only a draft."""
    variant = i % 3
    school, student = kit.fresh(b)
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


