"""The world generator: deterministic, shaped like Stripe and Sanity, and its truth agrees with the
decision rules applied to its own data."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from jobs.commands.doctor import LOGGED_SAMPLE, WebhookFacts, webhook_checks
from jobs.commands.doctor_checks import (
    DELIVERY_DAYS,
    SIGNATURE_FAILED,
    WEBHOOK_LOG_DAYS,
    Check,
    Probe,
    check_connect,
)
from sandbox.world.generate import World, generate, main, write_world
from tests.sandbox.world_reference import Reference

NOW = 1_787_227_200  # 2026-08-20T12:00:00Z
Doc = dict[str, Any]

# Field names of Stripe's own example objects (the shared fixtures file).
FIXTURE_FIELDS = {
    "checkout.session": {
        "adaptive_pricing", "after_expiration", "allow_promotion_codes", "amount_subtotal",
        "amount_total", "automatic_tax", "billing_address_collection", "cancel_url",
        "client_reference_id", "client_secret", "collected_information", "consent",
        "consent_collection", "created", "currency", "currency_conversion", "custom_fields",
        "custom_text", "customer", "customer_account", "customer_creation", "customer_details",
        "customer_email", "discounts", "expires_at", "id", "integration_identifier", "invoice",
        "invoice_creation", "livemode", "locale", "managed_payments", "metadata", "mode",
        "object", "origin_context", "payment_intent", "payment_link",
        "payment_method_collection", "payment_method_configuration_details",
        "payment_method_options", "payment_method_types", "payment_status", "permissions",
        "phone_number_collection", "recovered_from", "saved_payment_method_options",
        "setup_intent", "shipping_address_collection", "shipping_cost", "shipping_options",
        "status", "submit_type", "subscription", "success_url", "total_details", "ui_mode",
        "url", "wallet_options"},
    "item": {"adjustable_quantity", "amount_discount", "amount_subtotal", "amount_tax",
             "amount_total", "currency", "description", "id", "metadata", "object", "price",
             "quantity"},
    "price": {"active", "billing_scheme", "created", "currency", "custom_unit_amount", "id",
              "livemode", "lookup_key", "metadata", "nickname", "object", "product",
              "recurring", "tax_behavior", "tiers_mode", "transform_quantity", "type",
              "unit_amount", "unit_amount_decimal"},
    "product": {"active", "created", "default_price", "description", "id", "images",
                "livemode", "marketing_features", "metadata", "name", "object",
                "package_dimensions", "shippable", "statement_descriptor", "tax_code", "type",
                "unit_label", "updated", "url"},
    "event": {"api_version", "created", "data", "id", "livemode", "object", "pending_webhooks",
              "request", "type"},
    "refund": {"amount", "balance_transaction", "charge", "created", "currency", "customer",
               "customer_account", "destination_details", "id", "metadata", "object",
               "payment_intent", "payment_method", "reason", "receipt_number",
               "source_transfer_reversal", "status", "transfer_reversal"},
    "webhook_endpoint": {"api_version", "application", "created", "description",
                         "enabled_events", "id", "livemode", "metadata", "object", "status",
                         "url"},
    "account": {"business_profile", "business_type", "capabilities", "charges_enabled",
                "controller", "country", "created", "default_currency", "details_submitted",
                "email", "external_accounts", "future_requirements", "id", "metadata",
                "object", "payouts_enabled", "requirements", "settings", "tos_acceptance",
                "type"},
}

# The outcome vocabulary of the design.
OUTCOMES = {"created", "already_present", "needs_manual", "ignored", "pending"}
# `user_ambiguous` stays in the contract but is never the answer: several user documents per
# Clerk id are linked deterministically (anomaly `duplicate_users`).
NEEDS_MANUAL = {"metadata_missing", "pass_not_found", "pass_type_unknown",
                "pass_without_class_count", "tenant_mismatch", "user_unknown",
                "upgrade_source_missing", "manual_duplicate_suspected"}
IGNORED = {"not_complete", "not_paid", "class_dropin", "platform_plan", "not_a_pass", "refunded"}
PENDING = {"async_payment"}
ANOMALIES = {"duplicate_subscriptions", "mistyped_subscription", "wrong_tenant",
             "invisible_shape", "draft_only", "refunded_but_active", "expired_on_arrival",
             "wrong_user", "upgrade_incomplete", "duplicate_users", "currency_differs"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def world() -> World:
    return generate(1, sessions=2000, now=NOW)


def sessions_of(world: World) -> list[tuple[str, Doc]]:
    return [(account, session) for account, data in world.stripe["data"].items()
            for session in data["checkout_sessions"]]


def published(world: World, doc_type: str) -> list[Doc]:
    return [d for d in world.sanity if d["_type"] == doc_type and not d["_id"].startswith(
        "drafts.")]


# --- determinism -----------------------------------------------------------------------------

def _bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_same_seed_and_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    first = write_world(generate(7, sessions=600, now=NOW), tmp_path / "a")
    second = write_world(generate(7, sessions=600, now=NOW), tmp_path / "b")
    assert set(first) == {"stripe", "sanity", "truth"}
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert all(path.stat().st_size > 1000 for path in second.values())


def test_another_seed_gives_another_world(tmp_path: Path) -> None:
    write_world(generate(7, sessions=600, now=NOW), tmp_path / "a")
    write_world(generate(8, sessions=600, now=NOW), tmp_path / "b")
    first, second = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    assert all(first[name] != second[name] for name in first)


def test_written_files_hold_exactly_the_world(tmp_path: Path) -> None:
    small = generate(3, sessions=300, now=NOW)
    paths = write_world(small, tmp_path)
    assert json.loads(paths["stripe"].read_text()) == json.loads(json.dumps(small.stripe))
    lines = paths["sanity"].read_text().splitlines()
    assert [json.loads(line) for line in lines] == small.sanity
    truth = json.loads(paths["truth"].read_text())
    assert truth == json.loads(json.dumps(small.truth))
    assert truth["window"] == {"since": NOW - 3 * 86_400, "until": NOW - 600}
    assert truth["now"] == "2026-08-20T12:00:00.000Z"


# --- the truth agrees with the data --------------------------------------------------------------

def test_truth_agrees_with_the_decision_rules_applied_to_the_data(world: World) -> None:
    reference = Reference(world.stripe, world.sanity, world.now)
    disagreements = []
    for account, session in sessions_of(world):
        got = reference.evaluate(account, session)
        want = world.truth["sessions"][session["id"]]
        fields = [key for key in ("outcome", "reason", "anomalies", "expected", "expected_user",
                                  "deactivates") if got[key] != want[key]]
        if fields or got["order_dependent"]:
            disagreements.append((want["scenario"], fields, got["order_dependent"]))
    assert disagreements == []
    assert len(world.truth["sessions"]) == len(sessions_of(world)) == 2000


@pytest.mark.parametrize("arguments", [
    {"days": 30}, {"schools": 1}, {"schools": 7}, {"missing_share": 1.0},
    {"oddities": False}, {"days": 0.5, "grace_s": 3600},
])
def test_truth_agrees_with_the_rules_for_other_shapes_of_world(arguments: Doc) -> None:
    other = generate(5, sessions=700, now=NOW, **arguments)
    reference = Reference(other.stripe, other.sanity, other.now)
    wrong = [other.truth["sessions"][session["id"]]["scenario"]
             for account, session in sessions_of(other)
             if {k: v for k, v in reference.evaluate(account, session).items()
                 if k != "order_dependent"}
             != {k: v for k, v in other.truth["sessions"][session["id"]].items()
                 if k not in ("account", "scenario")}]
    assert wrong == []


def test_every_outcome_reason_and_anomaly_appears(world: World) -> None:
    entries = world.truth["sessions"].values()
    assert {e["outcome"] for e in entries} == OUTCOMES
    assert {e["reason"] for e in entries if e["outcome"] == "needs_manual"} == NEEDS_MANUAL
    assert {e["reason"] for e in entries if e["outcome"] == "ignored"} == IGNORED
    assert {e["reason"] for e in entries if e["outcome"] == "pending"} == PENDING
    assert {a for e in entries for a in e["anomalies"]} == ANOMALIES
    assert all(e["reason"] is None for e in entries
               if e["outcome"] in ("created", "already_present"))


def test_every_planted_variant_appears(world: World) -> None:
    scenarios = Counter(e["scenario"] for e in world.truth["sessions"].values())
    for prefix, variants in (("manual_duplicate/", 6), ("tenant_mismatch/", 3),
                             ("upgrade_source_missing/", 3), ("pass_not_found/", 2),
                             ("metadata_missing", 2), ("draft_only/", 3),
                             ("manual_recovery_later/", 3), ("not_a_pass_typed/", 3),
                             ("currency_differs/", 3), ("duplicate_users/", 2),
                             ("wrong_user/", 2)):
        assert len([s for s in scenarios if s.startswith(prefix)]) == variants, prefix
    for scenario in ("null_payment_intent", "null_payment_intent_present",
                     "upgrade_incomplete", "upgrade_source_inactive", "product_unlisted",
                     "pass_by_description", "all_keys_from_product", "nameless_buyer",
                     "unconnected_school", "same_email", "deterministic_id_only"):
        assert scenarios[scenario] >= 1, scenario


def test_created_purchases_have_no_published_subscription_and_present_ones_have(
        world: World) -> None:
    by_session: Counter[str] = Counter()
    by_payment: Counter[str] = Counter()
    ids = set()
    # Drafts count: the app shows them, so a draft is what makes a purchase present too.
    for doc in (d for d in world.sanity if d["_type"] == "subscription"):
        ids.add(doc["_id"].removeprefix("drafts."))
        by_session[doc.get("stripeSessionId", "")] += 1
        for field in ("stripePaymentId", "stripePaymentIntentId", "paymentId"):
            if doc.get(field):
                by_payment[doc[field]] += 1
    for _, session in sessions_of(world):
        entry = world.truth["sessions"][session["id"]]
        intent = session["payment_intent"]
        found = by_session[session["id"]] + (by_payment[intent] if intent else 0) + (
            f"subscription-{session['id']}" in ids)
        if entry["outcome"] in ("created", "needs_manual"):
            assert found == 0, entry["scenario"]
        if entry["outcome"] == "already_present":
            assert found >= 1, entry["scenario"]
        if entry["outcome"] == "created":
            assert entry["expected"]["_id"] not in ids


def test_null_payment_intent_purchase_exists_beside_subscriptions_without_payment_id(
        world: World) -> None:
    created = [e for e in world.truth["sessions"].values()
               if e["outcome"] == "created" and e["expected"]["stripePaymentId"] is None]
    assert created
    assert any("stripePaymentId" not in d for d in published(world, "subscription"))


def test_expected_documents_follow_the_mapping(world: World) -> None:
    passes = {d["_id"]: d for d in published(world, "pass")}
    sessions = dict((s["id"], s) for _, s in sessions_of(world))
    created = [(sid, e) for sid, e in world.truth["sessions"].items() if e["outcome"] == "created"]
    assert len(created) > 100
    for session_id, entry in created:
        doc, session = entry["expected"], sessions[session_id]
        pass_doc = passes[doc["passId"]]
        assert doc["_id"] == f"subscription-{session_id}"
        assert doc["stripeSessionId"] == session_id
        assert ISO_MS.match(doc["startDate"]) and ISO_MS.match(doc["endDate"])
        assert ("remainingClips" in doc) == (doc["type"] != "monthly")
        assert doc["passName"] == pass_doc["name"]
        if pass_doc.get("validityType") != "date":
            days = (world_ms(doc["endDate"]) - world_ms(doc["startDate"])) / 86_400_000
            assert days == pass_doc["validityDays"]
        if doc.get("isUpgrade"):
            # A source someone already deactivated is not patched again.
            assert entry["deactivates"] == (None if entry["scenario"] == "upgrade_source_inactive"
                                            else doc["upgradedFromSubscriptionId"])
            assert "promoCode" not in doc
            assert doc["upgradeCost"] * 100 == session["amount_total"]
        else:
            assert entry["deactivates"] is None
            assert doc["purchasePrice"] * 100 == session["amount_total"]
    assert any(e["expected"].get("promoCode") for _, e in created)
    assert any(e["expected"].get("isUpgrade") for _, e in created)
    assert any(e["expected_user"] for _, e in created)


def world_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def test_every_reference_resolves(world: World) -> None:
    docs = {d["_id"]: d for d in world.sanity}
    tenants = {d["_id"] for d in published(world, "tenant")}
    clerk_ids = {d["clerkId"] for d in world.sanity if d["_type"] == "user" and "clerkId" in d}
    clerk_ids |= {s["metadata"].get("userId") for _, s in sessions_of(world)}
    for doc in world.sanity:
        tenant = doc.get("tenant")
        if tenant:
            assert tenant["_ref"] in tenants
        if doc["_type"] == "subscription":
            user = doc["user"]["_ref"]
            assert user in docs or user in clerk_ids
            own_pass = doc.get("passId") or doc["pass"]["_ref"]
            assert own_pass in docs
            if "upgradedFromSubscriptionId" in doc:
                assert doc["upgradedFromSubscriptionId"] in docs
    events = set()
    for account, data in world.stripe["data"].items():
        products = {p["id"] for p in data["products"]}
        intents = {s["payment_intent"] for s in data["checkout_sessions"]}
        session_ids = {s["id"] for s in data["checkout_sessions"]}
        assert all(s["_line_items"][0]["price"]["product"] in products
                   for s in data["checkout_sessions"])
        assert all(r["payment_intent"] in intents for r in data["refunds"])
        assert all(e["data"]["object"]["id"] in session_ids for e in data["events"])
        events |= {e["id"] for e in data["events"]}
        assert account == "platform" or account in world.stripe["accounts"]
    assert all(d["webhookEventId"] in events for d in world.sanity if "webhookEventId" in d)
    for entry in world.truth["sessions"].values():
        if entry["expected"]:
            assert entry["expected"]["tenant"]["_ref"] in tenants
            assert entry["expected"]["passId"] in docs
            assert entry["expected"]["user"]["_ref"] in docs or entry["expected_user"] or \
                entry["expected"]["user"]["_ref"] in clerk_ids
        if entry["deactivates"]:
            assert docs[entry["deactivates"]]["isActive"] is True


# --- shapes ------------------------------------------------------------------------------------

def test_objects_carry_the_fields_stripe_shows(world: World) -> None:
    def covers(obj: Doc, kind: str) -> bool:
        return FIXTURE_FIELDS[kind] <= set(obj)

    assert covers(world.stripe["platform"], "account")
    assert all(covers(a, "account") for a in world.stripe["accounts"].values())
    for data in world.stripe["data"].values():
        for session in data["checkout_sessions"]:
            assert covers(session, "checkout.session")
            item = session["_line_items"][0]
            assert covers(item, "item") and covers(item["price"], "price")
        assert all(covers(p, "product") for p in data["products"])
        assert all(covers(e, "event") for e in data["events"])
        assert all(covers(r, "refund") for r in data["refunds"])
        assert all(covers(w, "webhook_endpoint") for w in data["webhook_endpoints"])


def test_identifiers_have_the_real_formats(world: World) -> None:
    for account, session in sessions_of(world):
        assert re.fullmatch(r"cs_test_[0-9A-Za-z]{58}", session["id"])
        assert session["payment_intent"] is None or re.fullmatch(
            r"pi_[0-9A-Za-z]{24}", session["payment_intent"])
        assert account == "platform" or re.fullmatch(r"acct_[0-9A-Za-z]{16}", account)
    for doc in world.sanity:
        plain = doc["_id"].removeprefix("drafts.")
        assert re.fullmatch(r"[0-9A-Za-z]{22}|user_[0-9A-Za-z]{27}|user-user_[0-9A-Za-z]{27}|"
                            r"subscription-cs_test_[0-9A-Za-z]{58}", plain), plain
    emails = [d["email"] for d in world.sanity if d["_type"] == "user"]
    assert all(re.fullmatch(r"[a-z.0-9]+@example\.(com|org|net)", e) for e in emails)


def test_user_documents_cover_every_kind_of_student(world: World) -> None:
    users = [d for d in world.sanity if d["_type"] == "user"]
    by_clerk = Counter(d["clerkId"] for d in users if "clerkId" in d and not d["_id"].startswith(
        "drafts."))
    assert any(n > 1 for n in by_clerk.values())  # two docs share one clerkId
    assert any(d["_id"].startswith("user_") and "clerkId" not in d for d in users)  # legacy
    assert any(d["_id"].startswith("drafts.") for d in users)
    assert any(n > 1 for n in Counter(d["email"] for d in users if "clerkId" in d).values())
    docs = {d["_id"] for d in users} | set(by_clerk)
    buyers = {s["metadata"].get("userId") for _, s in sessions_of(world)} - {None}
    assert buyers - docs  # some students have no user doc at all


def test_sessions_fill_the_window_and_crowd_into_shared_seconds(world: World) -> None:
    since, until = world.truth["window"]["since"], world.truth["window"]["until"]
    created = [s["created"] for _, s in sessions_of(world)]
    assert min(created) == since and max(created) == until - 1
    per_second = Counter(created)
    assert sum(n for n in per_second.values() if n > 1) > len(created) // 5
    assert max(per_second.values()) >= 3


def test_lost_webhooks_show_as_failed_deliveries(world: World) -> None:
    delivered = {e["data"]["object"]["id"]: e["_delivery_success"]
                 for data in world.stripe["data"].values() for e in data["events"]}
    for _, session in sessions_of(world):
        entry = world.truth["sessions"][session["id"]]
        assert (session["id"] in delivered) == (session["status"] == "complete")
        if entry["scenario"].endswith("/lost"):
            assert delivered[session["id"]] is False
    lost = sum(e["scenario"].endswith("/lost") for e in world.truth["sessions"].values())
    purchases = sum(e["scenario"].startswith(("pass_purchase", "platform_purchase", "upgrade",
                                              "partial_refund"))
                    for e in world.truth["sessions"].values())
    assert 0.05 < lost / purchases < 0.15


def test_keys_accounts_and_webhook_endpoints(world: World) -> None:
    keys = world.stripe["keys"]
    accounts = list(world.stripe["accounts"])
    assert keys["sk_test_sandbox"] == {"mode": "test", "accounts": "*", "permissions": "*"}
    assert "checkout_sessions_read" in keys["rk_test_sandbox"]["permissions"]
    partial = [k for k in keys.values() if isinstance(k["accounts"], list)]
    assert partial and len(partial[0]["accounts"]) == len(accounts) - 1
    tenants = published(world, "tenant")
    assert sorted(t["stripeConnect"]["accountId"] for t in tenants
                  if "accountId" in t["stripeConnect"]) == sorted(accounts)
    assert any("accountId" not in t["stripeConnect"] for t in tenants)
    endpoints = world.stripe["data"]["platform"]["webhook_endpoints"]
    urls = Counter(e["url"] for e in endpoints)
    assert max(urls.values()) == 2
    assert {e["status"] for e in endpoints} == {"enabled", "disabled"}
    assert not any(e["_connect"] for e in endpoints)
    assert all(not data["webhook_endpoints"] for account, data in world.stripe["data"].items()
               if account != "platform")


def test_catalogue_has_every_pass_kind(world: World) -> None:
    passes = published(world, "pass")
    assert {p["type"] for p in passes} == {"single", "multi-pass", "multi", "unlimited",
                                           "subscription"}
    assert {p.get("validityType") for p in passes} == {"days", "date", None}
    assert any(not p["isActive"] for p in passes)
    assert any(p["promoActive"] for p in passes)
    assert any(p["type"] == "multi" and "classesLimit" not in p for p in passes)
    per_tenant = Counter((p["tenant"]["_ref"], p["name"]) for p in passes)
    assert max(per_tenant.values()) == 1  # names are unique within a school
    assert len({p["_id"] for p in passes}) == len(passes)


# --- the app's webhookLog ----------------------------------------------------------------------

def webhook_logs(world: World) -> list[Doc]:
    return [d for d in world.sanity if d["_type"] == "webhookLog"]


def completed_events(world: World) -> dict[str, tuple[str, Doc]]:
    """event id -> (account, event) of every `checkout.session.completed`."""
    return {e["id"]: (account, e) for account, data in world.stripe["data"].items()
            for e in data["events"] if e["type"] == "checkout.session.completed"}


def test_webhook_log_follows_the_deliveries(world: World) -> None:
    logs = webhook_logs(world)
    events = completed_events(world)
    assert {(d["eventType"] == SIGNATURE_FAILED, d["status"]) for d in logs} == {
        (False, "processing"), (False, "success"), (False, "error"), (True, "error")}
    assert all(d["eventId"] == "unknown" for d in logs if d["eventType"] == SIGNATURE_FAILED)
    by_event: dict[str, list[Doc]] = {}
    for doc in logs:
        assert ISO_MS.match(doc["timestamp"])
        if doc["eventType"] != SIGNATURE_FAILED:
            by_event.setdefault(doc["eventId"], []).append(doc)
    lost_without_log = 0
    for event_id, (_, event) in events.items():
        session = event["data"]["object"]
        entry = world.truth["sessions"][session["id"]]
        docs = sorted(by_event.get(event_id, []), key=lambda d: d["timestamp"])
        if not docs:
            lost_without_log += not event["_delivery_success"]
            continue
        first, *rest = docs
        assert first["status"] == "processing" and len(rest) <= 1
        assert first["details"] == {"sessionId": session["id"], "metadata": session["metadata"]}
        assert 0 <= world_ms(first["timestamp"]) - event["created"] * 1000 < 60_000
        if not rest:  # it never finished: only lost deliveries
            assert not event["_delivery_success"]
            continue
        last = rest[0]
        assert last["details"]["sessionId"] == session["id"]
        assert world_ms(last["timestamp"]) - world_ms(first["timestamp"]) == last["details"][
            "processingTimeMs"]
        if last["status"] == "success":
            assert event["_delivery_success"] and entry["outcome"] == "already_present"
        else:
            assert last["status"] == "error" and last["details"]["error"]
            assert not event["_delivery_success"] or entry["outcome"] == "needs_manual"
    assert lost_without_log > 0  # some endpoints were never called
    texts = {d["details"]["error"].split(":")[0] for d in logs if d["status"] == "error"}
    assert {"Pass not found", "Insufficient permissions; permission \"create\" required",
            "Invalid pass type"} <= texts
    logged = len(logs) - sum(d["eventType"] == SIGNATURE_FAILED for d in logs)
    assert logged <= 2 * len(events)


def doctor_facts(world: World) -> tuple[WebhookFacts, list[str]]:
    """What `gather_webhooks` would fetch from this world's Stripe and Sanity stand-ins."""
    since = world.now - DELIVERY_DAYS * 86_400
    connected = sorted(world.stripe["accounts"])
    purchases = {a: [e["data"]["object"]["id"] for e in world.stripe["data"][a]["events"]
                     if e["type"] == "checkout.session.completed" and e["created"] >= since]
                 for a in connected}
    sids = list(dict.fromkeys(s for ids in purchases.values() for s in ids))[:LOGGED_SAMPLE]
    logs = webhook_logs(world)
    logged = [d["details"]["sessionId"] for d in logs if d["details"].get("sessionId") in sids]
    log_since = world.now - WEBHOOK_LOG_DAYS * 86_400
    rows = [{"eventType": d["eventType"], "eventId": d["eventId"], "status": d["status"],
             "timestamp": d["timestamp"], "error": d["details"].get("error"),
             "sessionId": d["details"].get("sessionId")}
            for d in sorted(logs, key=lambda d: d["timestamp"], reverse=True)
            if world_ms(d["timestamp"]) >= log_since * 1000
            and (d["status"] == "error" or d["eventType"] == SIGNATURE_FAILED)]
    endpoints = [{k: v for k, v in e.items() if not k.startswith("_")}
                 for e in world.stripe["data"]["platform"]["webhook_endpoints"]]
    facts = WebhookFacts(endpoints=Probe(endpoints), log=Probe(rows), purchases=purchases,
                         logged=Probe(logged))
    return facts, connected


def connect_check(checks: list[Check]) -> Check:
    return next(c for c in checks if c.name == "webhook connect endpoint")


@pytest.mark.parametrize("arguments", [{}, {"schools": 7, "sessions": 700, "seed": 5}])
def test_doctor_sees_the_connected_schools_purchases_reach_the_webhook(
        world: World, arguments: Doc) -> None:
    shaped = generate(arguments.pop("seed"), now=NOW, **arguments) if arguments else world
    facts, connected = doctor_facts(shaped)
    logged = {d["details"].get("sessionId") for d in webhook_logs(shaped)}
    for account in connected:  # every school's own deliveries succeeded, so none fails
        check = check_connect(None, [account], {account: facts.purchases[account]}, logged)
        assert check is not None and check.status == "ok", (account, check)
    checks = webhook_checks(facts, connected, lambda text: text)
    assert connect_check(checks).status == "ok"
    by_name = {c.name: c for c in checks}
    assert by_name["webhook log errors"].status == "fail"
    assert by_name["webhook signature failures"].status == "fail"
    # The control: without the log the same check fails, as it did before the log existed.
    facts.logged = Probe([])
    assert connect_check(webhook_checks(facts, connected, lambda text: text)).status == "fail"


def test_webhook_log_changes_nothing_else() -> None:
    def without_log(world: World) -> list[Doc]:
        return [d for d in world.sanity if d["_type"] != "webhookLog"]

    sparse = generate(6, sessions=600, now=NOW, log_share=0.0)
    full = generate(6, sessions=600, now=NOW, log_share=1.0)
    assert sparse.stripe == full.stripe and sparse.truth == full.truth
    assert without_log(sparse) == without_log(full)
    made = {d["webhookEventId"] for d in full.sanity if d["_type"] == "subscription"
            and "webhookEventId" in d and not d["_id"].startswith("drafts.")}
    handled = {event_id: account for event_id, (account, event) in completed_events(full).items()
               if event["_delivery_success"] and event_id in made and full.truth["sessions"][
                   event["data"]["object"]["id"]]["outcome"] == "already_present"}

    def successes(world: World) -> set[str]:
        return {d["eventId"] for d in webhook_logs(world) if d["status"] == "success"}

    assert successes(full) == set(handled)
    # The sample keeps each account's newest successful delivery (the doctor reads newest first).
    assert successes(sparse) <= set(handled)
    assert {handled[e] for e in successes(sparse)} == set(handled.values())
    assert len(webhook_logs(sparse)) < len(webhook_logs(full))


# --- arguments and CLI -------------------------------------------------------------------------

@pytest.mark.parametrize("sessions", [0, 1, 10, 120, 499, 500])
def test_small_worlds_have_exactly_the_sessions_asked_for(sessions: int) -> None:
    small = generate(2, sessions=sessions, now=NOW)
    assert len(small.truth["sessions"]) == len(sessions_of(small)) == sessions
    reasons = {e["reason"] for e in small.truth["sessions"].values()}
    if sessions >= 500:
        assert reasons >= NEEDS_MANUAL


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        generate(1, sessions=10, schools=0, now=NOW)
    with pytest.raises(ValueError):
        generate(1, sessions=-1, now=NOW)
    with pytest.raises(ValueError):
        generate(1, sessions=10, now=NOW, days=0.01)
    with pytest.raises(ValueError):
        generate(1, sessions=10, now=NOW, log_share=1.5)


def test_cli_writes_the_files_and_takes_now_from_the_clock_rounded_to_the_minute(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--seed", "4", "--sessions", "50", "--out", str(tmp_path)],
                clock=lambda: NOW + 59.7)
    printed = capsys.readouterr().out
    assert code == 0
    for name in ("stripe.json", "sanity.ndjson", "truth.json"):
        assert str(tmp_path / name) in printed
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["now_unix"] == NOW and truth["seed"] == 4


def test_cli_now_option_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sessions", "20", "--out", str(tmp_path), "--now",
                 "2026-08-20T12:00:00Z", "--days", "1"]) == 0
    assert json.loads((tmp_path / "truth.json").read_text())["window"]["since"] == NOW - 86_400
    assert main(["--sessions", "20", "--schools", "0", "--out", str(tmp_path)]) == 2
    assert "schools" in capsys.readouterr().err
