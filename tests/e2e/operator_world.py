"""Small hand-built worlds for the operator tools' end-to-end tests.

Two schools on connected accounts, three passes, three students, a handful of purchases; every
problem a test looks for is planted here on purpose, next to look-alikes that must stay quiet.
Times are relative to `now` (the CLI reads the real clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.core import rules
from tests.support.stripe_data import (
    account,
    account_data,
    event,
    line_item,
    product,
    refund,
    session,
    stripe_file,
    webhook_endpoint,
)

JSON = dict[str, Any]
DAY = 86_400
ACCT_A = "acct_1SchoolA0000000"
ACCT_B = "acct_1SchoolB0000000"
HOOK = "https://dance.example.com/api/stripe/webhook"
FULL_KEY = "sk_test_sandbox"
PARTIAL_KEY = "sk_test_sandbox_partial"  # cannot read school B's account


def ref(target: str) -> JSON:
    return {"_type": "reference", "_ref": target}


def iso(seconds: float) -> str:
    return rules.iso_ms(int(seconds * 1000))


def catalog_docs() -> list[JSON]:
    """Tenants, passes and students."""
    return [
        {"_id": "tA", "_type": "tenant", "schoolName": "Dance City", "slug": {"current": "dc"},
         "stripeConnect": {"accountId": ACCT_A, "chargesEnabled": True}},
        {"_id": "tB", "_type": "tenant", "schoolName": "Salsa Nord", "slug": {"current": "sn"},
         "stripeConnect": {"accountId": ACCT_B, "chargesEnabled": True}},
        {"_id": "pClip", "_type": "pass", "name": "10 Single Clip Card", "type": "multi",
         "price": 2000, "classesLimit": 10, "validityType": "days", "validityDays": 90,
         "isActive": True, "tenant": ref("tA")},
        {"_id": "pSingle", "_type": "pass", "name": "Drop-in Class", "type": "single",
         "price": 250, "validityType": "days", "validityDays": 30, "isActive": True,
         "tenant": ref("tA")},
        {"_id": "pMonth", "_type": "pass", "name": "Monthly Unlimited", "type": "unlimited",
         "price": 900, "validityType": "days", "validityDays": 30, "isActive": True,
         "tenant": ref("tB")},
        {"_id": "uAlice", "_type": "user", "clerkId": "user_alice", "email": "alice@example.com",
         "name": "Alice", "role": "student"},
        {"_id": "uBob", "_type": "user", "clerkId": "user_bob", "email": "bob@example.com",
         "name": "Bob", "role": "student"},
    ]


def webhook_sub(sid: str, *, pass_doc: JSON, user: str, created: int, pi: str,
                **fields: Any) -> JSON:
    """A subscription as the app's webhook writes it (domain §1.3)."""
    sub_type = rules.mapped_type(pass_doc["type"])
    doc: JSON = {
        "_id": f"w{sid[-6:]}", "_type": "subscription", "user": ref(user),
        "tenant": pass_doc["tenant"], "type": sub_type, "startDate": iso(created),
        "endDate": iso(created + 5 + pass_doc["validityDays"] * DAY),
        "passId": pass_doc["_id"], "passName": pass_doc["name"],
        "purchasePrice": pass_doc["price"], "stripePaymentId": pi, "stripeSessionId": sid,
        "isActive": True, "createdViaWebhook": True}
    if sub_type != "monthly":
        doc["remainingClips"] = 1 if sub_type == "single" else pass_doc["classesLimit"]
    doc.update(fields)
    return doc


def purchase(sid: str, *, created: int, pass_id: str, user: str, tenant: str, email: str,
             amount: int, **overrides: Any) -> JSON:
    metadata = {"type": "pass_purchase", "passId": pass_id, "userId": user, "tenantId": tenant}
    return session(sid, created=created, metadata=overrides.pop("metadata", metadata),
                   email=email, amount_total=amount, currency="nok", payment_intent=f"pi_{sid[8:]}",
                   **overrides)


@dataclass
class World:
    now: int
    stripe: JSON
    sanity: list[JSON]
    facts: dict[str, Any] = field(default_factory=dict)


def purchases_world(now: int) -> World:
    """Alice: one purchase present, one missing, one missing whose keys live only on the
    line item's product (school B), one abandoned checkout. Bob: one missing purchase."""
    docs = catalog_docs()
    by_id = {d["_id"]: d for d in docs}
    present = purchase("cs_test_alicepresent", created=now - 5 * DAY, pass_id="pSingle",
                       user="user_alice", tenant="tA", email="alice@example.com", amount=25000)
    missing = purchase("cs_test_alicemissing", created=now - 2 * DAY, pass_id="pClip",
                       user="user_alice", tenant="tA", email="alice@example.com", amount=200000)
    abandoned = purchase("cs_test_aliceabandon", created=now - 3 * DAY, pass_id="pClip",
                         user="user_alice", tenant="tA", email="alice@example.com",
                         amount=200000, status="expired", payment_status="unpaid")
    bob = purchase("cs_test_bobmissing000", created=now - 1 * DAY, pass_id="pClip",
                   user="user_bob", tenant="tA", email="bob@example.com", amount=200000)
    keys = {"passId": "pMonth", "userId": "user_alice", "tenantId": "tB"}
    by_product = purchase(
        "cs_test_aliceproduct0", created=now - DAY // 2, pass_id="pMonth", user="user_alice",
        tenant="tB", email="alice@example.com", amount=90000, metadata={},
        line_items=[line_item("li_aliceproduct", description="Monthly Unlimited",
                              product="prod_aliceproduct", amount=90000, currency="nok")])
    docs.append(webhook_sub(present["id"], pass_doc=by_id["pSingle"], user="uAlice",
                            created=present["created"], pi=present["payment_intent"]))
    stripe = stripe_file(
        keys={FULL_KEY: {"mode": "test", "accounts": "*", "permissions": "*"},
              PARTIAL_KEY: {"mode": "test", "accounts": [ACCT_A], "permissions": "*"}},
        accounts={ACCT_A: account(ACCT_A, name="Dance City"),
                  ACCT_B: account(ACCT_B, name="Salsa Nord")},
        data={
            ACCT_A: account_data(sessions=[present, missing, abandoned, bob]),
            ACCT_B: account_data(sessions=[by_product], products=[
                product("prod_aliceproduct", name="Monthly Unlimited", metadata=keys)]),
            "platform": account_data(webhook_endpoints=[healthy_endpoint()]),
        })
    facts = {"alice_missing": missing["id"], "alice_product": by_product["id"],
             "alice_present": present["id"], "alice_abandoned": abandoned["id"],
             "bob_missing": bob["id"], "present_sub": f"w{present['id'][-6:]}"}
    return World(now, stripe, docs, facts)


def healthy_endpoint() -> JSON:
    # Stripe's list does not show `connect`: the doctor judges Connect delivery by webhookLog.
    return webhook_endpoint("we_connect", url=HOOK, enabled_events=["checkout.session.completed"])


def webhook_log(n: int, *, when: float, status: str,
                event_type: str = "checkout.session.completed",
                session_id: str | None = None) -> JSON:
    return {"_id": f"log{n}", "_type": "webhookLog", "eventType": event_type,
            "eventId": f"evt_log{n}", "status": status, "timestamp": iso(when),
            "details": {"sessionId": session_id or f"cs_test_log{n}", "error": "Pass not found"
                        if status == "error" else None}}


def doctor_world(now: int, *, broken: bool) -> World:
    """Healthy: one Connect endpoint, every event delivered, only successes in webhookLog.
    Broken: the problems of domain §4 #2, #3, #5, #6, #7, #17 planted, each once (#2: the
    connected account's sale never reached the app's webhookLog)."""
    docs = catalog_docs()
    sale = purchase("cs_test_doctorsale00", created=now - DAY, pass_id="pClip", user="user_bob",
                    tenant="tA", email="bob@example.com", amount=200000)

    def completed(n: int, created: int, delivered: bool) -> JSON:
        return event(f"evt_{n:04d}", type="checkout.session.completed", created=created,
                     obj={"id": sale["id"]}, delivery_success=delivered, account=ACCT_A)

    events = [completed(1, now - DAY, True), completed(2, now - 2 * DAY, True)]
    docs += [webhook_log(1, when=now - DAY, status="success"),
             webhook_log(2, when=now - DAY, status="processing")]
    if not broken:  # the app heard of the connected account's sale: Connect delivery works
        docs.append(webhook_log(6, when=now - DAY, status="success", session_id=sale["id"]))
    endpoints = [healthy_endpoint()]
    if broken:
        events += [completed(3, now - DAY, False), completed(4, now - 2 * DAY, False),
                   completed(5, now - 5 * DAY, False)]  # older than Stripe's 3 retry days
        docs += [webhook_log(3, when=now - DAY, status="error"),
                 webhook_log(4, when=now - 2 * DAY, status="error",
                             event_type="signature_verification_failed"),
                 webhook_log(5, when=now - 10 * DAY, status="error")]  # older than 7 days
        completed_only = ["checkout.session.completed"]
        endpoints = [
            webhook_endpoint("we_dup1", url=HOOK, enabled_events=completed_only),
            webhook_endpoint("we_dup2", url=HOOK, enabled_events=completed_only),
            webhook_endpoint("we_off", url=HOOK + "/v2", enabled_events=completed_only,
                             status="disabled"),
            webhook_endpoint("we_charges", url=HOOK + "/charges",
                             enabled_events=["charge.succeeded"]),
        ]
    stripe = stripe_file(
        keys={FULL_KEY: {"mode": "test", "accounts": "*", "permissions": "*"},
              PARTIAL_KEY: {"mode": "test", "accounts": [ACCT_A], "permissions": "*"}},
        accounts={ACCT_A: account(ACCT_A, name="Dance City"),
                  ACCT_B: account(ACCT_B, name="Salsa Nord")},
        data={ACCT_A: account_data(sessions=[sale], events=events),
              "platform": account_data(webhook_endpoints=endpoints)})
    return World(now, stripe, docs)


def audit_world(now: int) -> World:
    """Every audit finding planted once, each beside a look-alike that is fine."""
    docs = catalog_docs()
    by_id = {d["_id"]: d for d in docs}
    clip, single = by_id["pClip"], by_id["pSingle"]
    start = now - 10 * DAY

    def sub(sid: str, pass_doc: JSON = clip, **fields: Any) -> JSON:
        return webhook_sub(f"cs_test_{sid}", pass_doc=pass_doc, user="uAlice", created=start,
                           pi=f"pi_{sid}", **fields)

    docs += [
        sub("healthy0001"),
        sub("healthy0002", single),
        # Two deliveries of one event (§4 #3): same session, both active.
        sub("dup0000001", _id="dupA"), sub("dup0000001", _id="dupB"),
        # Already resolved by hand: the extra is switched off.
        sub("resolved001", _id="resA"), sub("resolved001", _id="resB", isActive=False),
        # Same payment intent under two field names, no session id on the second.
        sub("payment0001", _id="payA"),
        sub("other000001", _id="payB", stripeSessionId=None, stripePaymentId=None,
            paymentId="pi_payment0001"),
        # Hand-made twins sharing a fake payment id: not a duplicate.
        sub("manual00001", _id="manA", stripeSessionId=None, stripePaymentId="debug_test_payment"),
        sub("manual00002", _id="manB", stripeSessionId=None, stripePaymentId="debug_test_payment"),
        # A clip card stored as single (§4 #12); the same, deactivated, stays quiet.
        sub("mistyped001", _id="mistyped", type="single", remainingClips=1),
        sub("mistyped002", _id="mistypedOff", type="single", isActive=False),
        # A pass of school A under school B (§4 #14); tenant-less with a known pass is fine.
        sub("tenant00001", single, _id="wrongTenant", tenant=ref("tB")),
        sub("tenant00002", _id="noTenantOk", tenant=None),
        sub("tenant00003", _id="noTenantLost", tenant=None, passId="pGone"),
        # The alternate shape of fix-dancecity-missing-subscriptions (§1.2).
        {"_id": "alternate", "_type": "subscription", "pass": ref("pClip"), "user": ref("uAlice"),
         "status": "active", "purchaseDate": iso(start), "expiryDate": iso(start + 90 * DAY),
         "classesUsed": 0, "classesLimit": 10, "stripeSessionId": "cs_test_alternate01",
         "stripePaymentIntentId": "pi_alternate01", "amount": 200000, "currency": "nok",
         "tenant": ref("tA")},
        # 30 days instead of the pass's 90 (§4 #11).
        sub("enddate0001", _id="endOff", endDate=iso(start + 30 * DAY)),
        # A full refund and a partial one.
        sub("refunded001", _id="refunded"),
        sub("partial0001", _id="partial"),
        # A draft never published; a draft of a published document is normal editing.
        sub("draft000001", _id="drafts.lonely"),
    ]
    healthy = next(d for d in docs if d.get("stripeSessionId") == "cs_test_healthy0001")
    docs.append({**healthy, "_id": "drafts." + healthy["_id"], "passName": "edited"})
    refunds = [refund("re_full", created=now - 2 * DAY, payment_intent="pi_refunded001",
                      amount=200000, currency="nok"),
               refund("re_part", created=now - 2 * DAY, payment_intent="pi_partial0001",
                      amount=50000, currency="nok")]
    stripe = stripe_file(
        accounts={ACCT_A: account(ACCT_A, name="Dance City"),
                  ACCT_B: account(ACCT_B, name="Salsa Nord")},
        data={ACCT_A: account_data(refunds=refunds)})
    expected = {
        ("duplicate_subscriptions", ("dupA", "dupB")),
        ("duplicate_subscriptions", ("payA", "payB")),
        ("mistyped_subscription", ("mistyped",)),
        ("wrong_tenant", ("wrongTenant",)),
        ("wrong_tenant", ("noTenantLost",)),
        ("invisible_shape", ("alternate",)),
        ("end_date_off", ("endOff",)),
        ("refunded_but_active", ("refunded",)),
        ("draft_only", ("drafts.lonely",)),
    }
    return World(now, stripe, docs, {"expected": expected})
