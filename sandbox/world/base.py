"""The ordinary sessions of a world (every kind of domain.md §2) and the background history.

Each scenario adds one session and records its truth. Students of the base population are
drawn from pools that never hold the planted oddities, so no base session is accidentally
ambiguous or a manual duplicate.
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.world.build import PLATFORM, Builder, Doc
from sandbox.world.catalog import School
from sandbox.world.docs import historic_subscription
from sandbox.world.ids import DAY_S
from sandbox.world.people import Student
from sandbox.world.stripe_side import customer_details


def pass_purchase(b: Builder, *, platform: bool = False) -> None:
    """A paid pass purchase; its webhook either worked (present) or was lost (create)."""
    school = b.rng.choice([*b.schools, b.unconnected]) if platform else b.school()
    pass_doc = b.regular_pass(school)
    with_tenant = not platform or b.rng.random() < 0.4
    name = "platform_purchase" if platform else "pass_purchase"
    if b.lost():
        student = b.people.pick_for_missing(school)
        session, account = b.purchase(school, pass_doc, student, platform=platform,
                                      with_tenant=with_tenant, delivered=False)
        b.record_created(session, account, name + "/lost", pass_doc=pass_doc,
                         tenant_id=school.tenant_id, student=student)
        return
    student = b.people.pick_with_doc(school)
    session, account = b.purchase(school, pass_doc, student, platform=platform,
                                  with_tenant=with_tenant)
    doc = b.webhook_sub(session, account, pass_doc, school.tenant_id,
                        student.canonical_id or student.clerk_id)
    if platform and not with_tenant:
        # The 2025-07 webhook wrote no tenant and referenced the Clerk id (§1.5, §4 #8).
        del doc["tenant"]
        doc["user"]["_ref"] = student.clerk_id
    b.record(session, account, "already_present", name)


def upgrade_pairs(school: School) -> list[tuple[Doc, Doc]]:
    """(old pass, new pass) pairs an upgrade can go along: to an active, dearer pass."""
    return [(old, new) for old in school.regular for new in school.regular
            if new["isActive"] and new["price"] > old["price"]]


def upgrade_source(b: Builder, school: School, student: Student, old_pass: Doc) -> Doc:
    """The active subscription an upgrade starts from (bought before the window)."""
    start = b.since - b.rng.randint(2, 20) * DAY_S
    doc = historic_subscription(
        b.ids, old_pass, user_ref=student.canonical_id or student.clerk_id,
        tenant_id=school.tenant_id, start_s=start, end_s=b.now + 30 * DAY_S,
        session_id=b.ids.session(), payment_id=b.ids.stripe("pi"),
        extra={"createdViaWebhook": True})
    b.docs.append(doc)
    return doc


def upgrade_session(
    b: Builder, school: School, student: Student, old_pass: Doc, new_pass: Doc,
    source_id: str | None, *, delivered: bool = True,
) -> tuple[Doc, str]:
    """A `pass_upgrade` session (§2.2): `amount_total` is the price difference."""
    cost = max(new_pass["price"] - old_pass["price"], 1)
    metadata: Doc = {
        "passId": new_pass["_id"], "passType": new_pass["type"], "userId": student.clerk_id,
        "type": "pass_upgrade", "tenantId": school.tenant_id, "tenantSlug": school.slug,
        "originalPrice": str(new_pass["price"]), "finalPrice": str(new_pass["price"]),
        "discountAmount": "0", "originalPassPrice": str(old_pass["price"]),
        "newPassPrice": str(new_pass["price"]), "upgradeCost": str(cost)}
    product: Doc = {"passId": new_pass["_id"], "passType": new_pass["type"],
                    "userId": student.clerk_id, "tenantId": school.tenant_id,
                    "isUpgrade": "true"}
    if source_id is not None:
        metadata["upgradeFromSubscriptionId"] = source_id
        product["upgradeFromSubscriptionId"] = source_id
    assert school.account is not None
    session = b.add_session(
        school.account, description=f"Upgrade to {new_pass['name']}", amount=cost * 100,
        metadata=metadata, product_metadata=product, student=student, slug=school.slug,
        kind="upgrade", delivered=delivered)
    return session, school.account


def upgrade(b: Builder, *, lost: bool | None = None, scenario: str = "upgrade") -> None:
    """An upgrade of an existing subscription; present (old one deactivated) or to create."""
    school = b.school()
    old_pass, new_pass = b.rng.choice(upgrade_pairs(school))
    student = b.people.pick_with_doc(school)
    source = upgrade_source(b, school, student, old_pass)
    lost = b.lost() if lost is None else lost
    session, account = upgrade_session(b, school, student, old_pass, new_pass, source["_id"],
                                       delivered=not lost)
    user_ref = source["user"]["_ref"]
    if lost:
        b.record_created(session, account, scenario + "/lost", pass_doc=new_pass,
                         tenant_id=school.tenant_id, student=student, user_ref=user_ref,
                         upgrade_from=source["_id"])
        return
    new = b.webhook_sub(session, account, new_pass, school.tenant_id, user_ref,
                        upgrade_from=source["_id"])
    source.update(isActive=False, upgradedAt=new["startDate"], upgradedToPassId=new_pass["_id"],
                  upgradedToPassName=new_pass["name"])
    b.record(session, account, "already_present", scenario)


def class_dropin(b: Builder) -> None:
    """A class purchase (§2.2 `classId`): never a subscription."""
    school = b.school()
    lesson = b.rng.choice(school.classes)
    student = b.people.pick_with_doc(school)
    metadata = {"classId": lesson["_id"], "userId": student.clerk_id, "userEmail": student.email,
                "tenantId": school.tenant_id, "tenantSlug": school.slug}
    assert school.account is not None
    session = b.add_session(school.account, description=f"{lesson['title']} - drop-in",
                            amount=lesson["price"] * 100, metadata=metadata, student=student,
                            slug=school.slug, kind="class", customer_email=student.email)
    b.record(session, school.account, "ignored", "class_dropin", reason="class_dropin")


def platform_plan(b: Builder) -> None:
    """A school's own platform plan (`mode: subscription`, platform account)."""
    school = b.school()
    billing = b.rng.choice(["monthly", "yearly"])
    amount, interval = (60_000, "month") if billing == "monthly" else (600_000, "year")
    product_id = plan_product(b, billing)
    session = b.add_session(
        PLATFORM, description=f"Dance School Platform Pro ({billing})", amount=amount,
        metadata={"tenantId": school.tenant_id, "plan": "pro", "billing": billing},
        mode="subscription", payment_intent=None, slug=school.slug, kind="plan",
        product_id=product_id,
        recurring={"interval": interval, "interval_count": 1, "meter": None,
                   "trial_period_days": None, "usage_type": "licensed"},
        details=customer_details(school.name, f"post@{school.slug}.example.com"),
        customer=b.ids.stripe("cus", 14), subscription=b.ids.stripe("sub"),
        invoice=b.ids.stripe("in"), payment_method_collection="always")
    b.record(session, PLATFORM, "ignored", "platform_plan", reason="platform_plan")


def plan_product(b: Builder, billing: str) -> str:
    """The platform's one product per plan billing (shared by all plan sessions)."""
    name = f"Dance School Platform Pro ({billing})"
    products = b.stripe[PLATFORM]["products"]
    for product in products:
        if product["name"] == name:
            return str(product["id"])
    product_id = b.ids.stripe("prod", 14)
    products.append({
        "id": product_id, "object": "product", "active": True, "created": b.now - 300 * DAY_S,
        "default_price": b.ids.stripe("price"), "description": "Platform plan for schools",
        "images": [], "livemode": False, "marketing_features": [], "metadata": {}, "name": name,
        "package_dimensions": None, "shippable": None, "statement_descriptor": None,
        "tax_code": None, "type": "service", "unit_label": None, "updated": b.now - 300 * DAY_S,
        "url": None})
    return product_id


def abandoned(b: Builder, status: str) -> None:
    """An `open` or `expired` checkout of a pass (never scanned: the job lists `complete`)."""
    school = b.school()
    student = b.people.pick_with_doc(school)
    # Open sessions have not expired yet (24 h); expired ones expired after 30 minutes.
    created = b.created(lo=b.now - 86_399) if status == "open" else b.created(hi=b.now - 1801)
    session, account = b.purchase(school, b.regular_pass(school), student, status=status,
                                  payment_status="unpaid", payment_intent=None, created=created)
    b.record(session, account, "ignored", f"not_complete/{status}", reason="not_complete")


def async_payment(b: Builder, *, with_subscription: bool = False) -> None:
    """A complete but unpaid bank-debit purchase: settles later, so pending."""
    school = b.school()
    pass_doc = b.regular_pass(school)
    student = b.people.pick_with_doc(school)
    session, account = b.purchase(school, pass_doc, student, payment_status="unpaid",
                                  payment_method_types=["sepa_debit"])
    if with_subscription:
        # The webhook never checks payment_status (§2.3), so it already made one.
        b.webhook_sub(session, account, pass_doc, school.tenant_id, str(student.canonical_id))
    b.record(session, account, "pending", "async_payment", reason="async_payment")


def no_payment(b: Builder) -> None:
    """`no_payment_required` (a 100 % code): not paid, so ignored."""
    school = b.school()
    pass_doc = b.regular_pass(school)
    student = b.people.pick_with_doc(school)
    price = str(pass_doc["price"])
    session, account = b.purchase(
        school, pass_doc, student, payment_status="no_payment_required", payment_intent=None,
        amount=0, set_meta={"finalPrice": "0", "discountAmount": price, "promoCode": "FREEWEEK"})
    b.record(session, account, "ignored", "not_paid", reason="not_paid")


def refunded(b: Builder, *, active_subscription: bool = False, scenario: str = "refunded",
             parts: int = 1) -> None:
    """A fully refunded purchase: no subscription, a deactivated one, or (an anomaly) an
    active one."""
    school = b.school()
    pass_doc = b.long_pass(school) if active_subscription else b.regular_pass(school)
    student = b.people.pick_with_doc(school)
    has_sub = active_subscription or b.rng.random() < 0.5
    session, account = b.purchase(school, pass_doc, student, delivered=has_sub)
    total = session["amount_total"]
    if parts == 1:
        b.refund(account, session, total)
    else:
        b.refund(account, session, total // 2)
        b.refund(account, session, total - total // 2, status="pending")
    anomalies = []
    if has_sub:
        doc = b.webhook_sub(session, account, pass_doc, school.tenant_id,
                            str(student.canonical_id))
        doc["isActive"] = active_subscription
        if b.is_active(doc):
            anomalies.append("refunded_but_active")
    b.record(session, account, "ignored", scenario, reason="refunded", anomalies=anomalies)


def partial_refund(b: Builder) -> None:
    """A partly refunded purchase is still a purchase."""
    lost = b.lost()
    school = b.school()
    pass_doc = b.regular_pass(school)
    student = b.people.pick_for_missing(school) if lost else b.people.pick_with_doc(school)
    session, account = b.purchase(school, pass_doc, student, delivered=not lost)
    b.refund(account, session, session["amount_total"] // 3)
    if lost:
        b.record_created(session, account, "partial_refund/lost", pass_doc=pass_doc,
                         tenant_id=school.tenant_id, student=student)
        return
    b.webhook_sub(session, account, pass_doc, school.tenant_id, str(student.canonical_id))
    b.record(session, account, "already_present", "partial_refund")


def not_a_pass(b: Builder, *, platform: bool | None = None) -> None:
    """A payment with no pass evidence: a gift card, or a fee on the platform."""
    school = b.school()
    platform = b.rng.random() < 0.3 if platform is None else platform
    if platform:
        session = b.add_session(
            PLATFORM, description="Onboarding fee", amount=150_000,
            metadata={"tenantId": school.tenant_id, "purpose": "onboarding"}, slug=school.slug,
            kind="fee", details=customer_details(school.name, f"post@{school.slug}.example.com"))
        b.record(session, PLATFORM, "ignored", "not_a_pass/platform", reason="not_a_pass")
        return
    student = b.people.pick_with_doc(school)
    assert school.account is not None
    session = b.add_session(school.account, description="Gift Card 500 kr", amount=50_000,
                            metadata=b.rng.choice([{}, {"giftCard": "true"}]), student=student,
                            slug=school.slug, kind="gift")
    b.record(session, school.account, "ignored", "not_a_pass", reason="not_a_pass")


BASE: list[tuple[Callable[[Builder], None], int]] = [
    (pass_purchase, 600),
    (lambda b: pass_purchase(b, platform=True), 60),
    (upgrade, 40),
    (class_dropin, 80),
    (platform_plan, 20),
    (lambda b: abandoned(b, "open"), 50),
    (lambda b: abandoned(b, "expired"), 50),
    (async_payment, 20),
    (no_payment, 10),
    (refunded, 20),
    (partial_refund, 10),
    (not_a_pass, 20),
]


def background(b: Builder, count: int) -> None:
    """Subscriptions from before the window: webhook-made, some expired or inactive, some made
    by hand (no session id, fake or no payment id) but always more than 7 days before the
    window, so they never make a window purchase a manual duplicate."""
    everyone = [*b.schools, b.unconnected]
    for _ in range(count):
        school = b.rng.choice(everyone)
        student = b.people.pick_with_doc(school)
        pass_doc = b.regular_pass(school)
        manual = b.rng.random() < 0.1
        start = b.since - b.rng.randint(9 if manual else 1, 120) * DAY_S - b.rng.randint(0, DAY_S)
        end = b.end_of(pass_doc, start)
        if manual:
            ms = start * 1000
            payment = b.rng.choice([None, f"manual_recovery_{ms}", f"admin_created_{ms}",
                                    "debug_test_payment"])
            doc = historic_subscription(
                b.ids, pass_doc, user_ref=b.rng.choice([str(student.canonical_id),
                                                        student.clerk_id]),
                tenant_id=b.rng.choice([school.tenant_id, None]), start_s=start, end_s=end,
                session_id=None, payment_id=payment,
                extra={"manuallyCreated": True, "manualCreationReason": "customer e-mail"})
        else:
            doc = historic_subscription(
                b.ids, pass_doc, user_ref=str(student.canonical_id), tenant_id=school.tenant_id,
                start_s=start, end_s=end, session_id=b.ids.session(),
                payment_id=b.ids.stripe("pi"), active=b.rng.random() < 0.95,
                extra={"createdViaWebhook": True})
        b.docs.append(doc)
