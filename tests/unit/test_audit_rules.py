"""The audit's pure rules over hand-made subscription documents (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.core import rules
from jobs.core.anomalies import (
    KINDS,
    Finding,
    audit,
    drafts_only,
    duplicates,
    end_date_off,
    explain,
    invisible,
    judge,
    mistyped,
    paid_minor,
    refunded_active,
    session_of,
    wrong_tenant,
)
from jobs.core.catalog import catalog_from

NOW_MS = rules.parse_instant_ms("2026-08-20T12:00:00Z") or 0
DAY = rules.DAY_MS

TENANTS = [{"_id": "tA", "schoolName": "A", "stripeConnect": {"accountId": "acct_A"}},
           {"_id": "tB", "schoolName": "B"}]
PASSES = [
    {"_id": "clip", "name": "10 Clip Card", "type": "multi", "classesLimit": 10,
     "validityType": "days", "validityDays": 90, "tenant": {"_ref": "tA"}},
    {"_id": "single", "name": "Drop-in", "type": "single", "validityDays": 30,
     "tenant": {"_ref": "tA"}},
    {"_id": "fixed", "name": "Course", "type": "multi-pass", "classesLimit": 8,
     "validityType": "date", "expiryDate": "2026-10-01T00:00:00.000Z", "tenant": {"_ref": "tB"}},
    {"_id": "legacy", "name": "Old course", "type": "subscription", "validityDays": 60,
     "tenant": {"_ref": "tB"}},
]
CATALOG = catalog_from(TENANTS, PASSES)


def sub(sid: str, n: int = 1, *, pass_id: str = "clip", start: str = "2026-08-01T10:00:00.000Z",
        days: float = 90, **fields: Any) -> dict[str, Any]:
    """A webhook-shaped, healthy subscription of session `cs_test_<sid>`; `fields` bend it."""
    start_ms = rules.parse_instant_ms(start) or 0
    doc: dict[str, Any] = {
        "_id": f"sub{sid}{n}", "_type": "subscription",
        "user": {"_type": "reference", "_ref": "u1"},
        "tenant": {"_type": "reference", "_ref": CATALOG.passes[pass_id].tenant_id},
        "type": rules.mapped_type(CATALOG.passes[pass_id].type) or "single",
        "startDate": start, "endDate": rules.iso_ms(start_ms + int(days * DAY)),
        "passId": pass_id, "purchasePrice": 2000, "isActive": True,
        "stripeSessionId": f"cs_test_{sid}", "stripePaymentId": f"pi_{sid}",
    }
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def kinds(findings: list[Finding]) -> list[tuple[str, tuple[str, ...]]]:
    return [(f.kind, f.subscription_ids) for f in findings]


def test_a_healthy_subscription_yields_nothing() -> None:
    assert audit([sub("a")], CATALOG, {}, NOW_MS) == []


# ---- duplicates -----------------------------------------------------------------------------


def test_duplicates_by_session_id() -> None:
    found = duplicates([sub("a", 1), sub("a", 2, stripePaymentId=None), sub("b")])
    assert kinds(found) == [("duplicate_subscriptions", ("suba1", "suba2"))]
    assert found[0].session_id == "cs_test_a" and "2 active" in found[0].detail


def test_duplicates_by_payment_intent_in_any_payment_field() -> None:
    docs = [sub("a", 1), sub("x", 2, stripeSessionId=None, stripePaymentId=None,
                             stripePaymentIntentId="pi_a"),
            sub("y", 3, stripeSessionId=None, stripePaymentId=None, paymentId="pi_a")]
    assert kinds(duplicates(docs)) == [("duplicate_subscriptions", ("suba1", "subx2", "suby3"))]


def test_duplicates_by_deterministic_id_and_transitively() -> None:
    own = sub("a", _id="subscription-cs_test_a", stripeSessionId=None, stripePaymentId="pi_z")
    other = sub("q", 2, stripeSessionId=None, stripePaymentId="pi_z")
    third = sub("a", 3, stripePaymentId=None)
    assert kinds(duplicates([own, other, third])) == [
        ("duplicate_subscriptions", ("suba3", "subq2", "subscription-cs_test_a"))]


def test_deactivated_extras_are_the_documented_fix_and_not_flagged() -> None:
    assert duplicates([sub("a", 1), sub("a", 2, isActive=False)]) == []


def test_fake_payment_ids_do_not_make_duplicates() -> None:
    docs = [sub("m", n, stripeSessionId=None, stripePaymentId="debug_test_payment")
            for n in (1, 2)]
    docs.append(sub("r", 3, stripeSessionId=None, stripePaymentId="manual_recovery_17000"))
    assert duplicates(docs) == []


# ---- type, tenant, shape ------------------------------------------------------------------


def test_mistyped_against_the_pass_mapping() -> None:
    clip = CATALOG.passes["clip"]
    found = mistyped(sub("a", type="single"), clip)
    assert found == "type 'single', the pass clip (multi) maps to 'clipcard'"
    assert mistyped(sub("a", type="multi"), clip) is not None
    assert mistyped(sub("a"), clip) is None


def test_unknown_type_is_flagged_only_when_the_pass_cannot_judge() -> None:
    legacy = CATALOG.passes["legacy"]
    assert mistyped(sub("a", pass_id="legacy", type="single"), legacy) is None
    found = mistyped(sub("a", passId="gone", type="course"), None)
    assert found is not None and "not one the app knows" in found
    assert mistyped(sub("a", passId="gone", type="clipcard"), None) is None
    assert mistyped(sub("a", type=None), CATALOG.passes["clip"]) is None


def own_tenant_rule(doc: dict[str, Any]) -> str | None:
    """`wrong_tenant` as the audit calls it: the school of the document's own pass."""
    found = [f for f in judge(doc, CATALOG, {}, NOW_MS) if f.kind == "wrong_tenant"]
    return found[0].detail if found else None


@pytest.mark.parametrize(("fields", "words"), [
    ({}, None),
    ({"tenant": {"_ref": "tB"}}, "tenant tB, its pass clip belongs to tA"),
    ({"tenant": {"_ref": "nope"}}, "tenant nope is no school"),
    ({"tenant": None}, None),  # tenant-less, but its pass is tA's: visible there (§1.9)
    ({"tenant": None, "passId": "gone"},
     "no tenant, and its pass gone is no school's pass: the app shows it nowhere"),
    ({"tenant": None, "passId": None}, "no tenant and no pass: the app shows it nowhere"),
    ({"tenant": None, "passId": None, "pass": {"_ref": "clip"}}, None),
])
def test_wrong_tenant_by_its_own_pass(fields: dict[str, Any], words: str | None) -> None:
    assert own_tenant_rule(sub("a", **fields)) == words


@pytest.mark.parametrize(("fields", "words"), [
    ({}, None),
    ({"tenant": {"_ref": "tB"}}, "tenant tB, the purchase belongs to tA"),
    ({"tenant": {"_ref": "nope"}}, "tenant nope is no school"),
    ({"tenant": None}, None),
    ({"tenant": None, "passId": "fixed"}, "no tenant, and its pass fixed is not one of tA's"),
])
def test_wrong_tenant_by_the_purchases_school(fields: dict[str, Any], words: str | None) -> None:
    doc = sub("a", **fields)
    assert wrong_tenant(doc, "tA", CATALOG.pass_ids_of("tA"), CATALOG.tenants,
                        "the purchase") == words


def test_a_pass_without_a_school_names_no_school_its_subscription_should_have() -> None:
    orphan = {"_id": "orphan", "name": "Orphan", "type": "single", "validityDays": 30}
    cat = catalog_from(TENANTS, [*PASSES, orphan])
    doc = sub("a", passId="orphan", type="single", days=30)
    assert judge(doc, cat, {}, NOW_MS) == []  # its tenant tA is a school: shown there (§1.9)
    lost = judge({**doc, "tenant": None}, cat, {}, NOW_MS)
    assert [f.detail for f in lost] == [
        "no tenant, and its pass orphan is no school's pass: the app shows it nowhere"]


def test_invisible_shape_lists_what_is_missing_or_broken() -> None:
    alternate = {"_id": "alt", "_type": "subscription", "pass": {"_ref": "clip"},
                 "status": "active", "purchaseDate": "2026-08-01", "user": {"_ref": "u1"},
                 "stripeSessionId": "cs_test_alt", "amount": 200000}
    assert invisible(alternate) == ("the app cannot show it: missing type, startDate, endDate, "
                                    "passId")
    assert [(f.kind, f.session_id) for f in judge(alternate, CATALOG, {}, NOW_MS)] == [
        ("invisible_shape", "cs_test_alt")]
    nan = invisible(sub("a", endDate="Invalid Date", passId=None))
    assert nan == "the app cannot show it: missing passId; endDate 'Invalid Date' is not a date"
    assert invisible(sub("a")) is None


# ---- dates ----------------------------------------------------------------------------------


def test_end_date_within_a_day_of_the_rule_is_fine() -> None:
    clip = CATALOG.passes["clip"]
    assert end_date_off(sub("a", days=90.9), clip) is None
    found = end_date_off(sub("a", days=30), clip)
    assert found is not None and "(-60.0 days)" in found


def test_end_date_of_a_fixed_date_pass() -> None:
    fixed = CATALOG.passes["fixed"]
    good = sub("a", pass_id="fixed", endDate="2026-10-01T00:00:00.000Z")
    assert end_date_off(good, fixed) is None
    found = end_date_off(sub("a", pass_id="fixed", days=30), fixed)
    assert found is not None and "2026-10-01T00:00:00.000Z" in found


def test_end_date_not_judged_without_pass_or_dates() -> None:
    assert end_date_off(sub("a", days=5), None) is None
    assert end_date_off(sub("a", startDate=None), CATALOG.passes["clip"]) is None


# ---- refunds --------------------------------------------------------------------------------


def active_sub(**fields: Any) -> dict[str, Any]:
    return sub("a", start="2026-08-10T10:00:00.000Z", **fields)


def test_fully_refunded_active_subscription_is_flagged() -> None:
    found = refunded_active(active_sub(), {"pi_a": 200000}, NOW_MS)
    assert found == "payment pi_a refunded 2000 of 2000, the subscription is still active"


def test_partial_refund_expired_or_deactivated_are_not_flagged() -> None:
    assert refunded_active(active_sub(), {"pi_a": 50000}, NOW_MS) is None
    assert refunded_active(sub("a", start="2026-01-01T00:00:00.000Z"), {"pi_a": 200000},
                           NOW_MS) is None
    assert refunded_active(active_sub(isActive=False), {"pi_a": 200000}, NOW_MS) is None
    assert refunded_active(active_sub(), {"pi_other": 200000}, NOW_MS) is None


@pytest.mark.parametrize("fields", [
    {"status": "cancelled"},
    {"endDate": None, "expiryDate": "2026-08-01T00:00:00.000Z"},
], ids=["status-not-active", "alternate-shape-expired"])
def test_refunded_but_active_needs_what_the_planner_calls_active(fields: dict[str, Any]) -> None:
    """One 'still active' for both: the broken shape's `status`/`expiryDate` count (§1.2)."""
    assert refunded_active(active_sub(**fields), {"pi_a": 200000}, NOW_MS) is None
    ahead = active_sub(endDate=None, expiryDate="2026-12-01T00:00:00.000Z")
    assert refunded_active(ahead, {"pi_a": 200000}, NOW_MS) is not None


def test_refund_with_unknown_paid_amount_is_flagged_and_says_so() -> None:
    found = refunded_active(active_sub(purchasePrice=None), {"pi_a": 100}, NOW_MS)
    assert found is not None and "what was paid is not recorded" in found


def test_paid_amount_per_shape() -> None:
    assert paid_minor({"purchasePrice": 250}) == 25000
    assert paid_minor({"isUpgrade": True, "purchasePrice": 2290, "upgradeCost": 290}) == 29000
    assert paid_minor({"amount": 29000}) == 29000
    assert paid_minor({"purchasePrice": "250"}) is None


# ---- drafts and the whole audit -------------------------------------------------------------


def test_drafts_only() -> None:
    published = [sub("a"), sub("b", _id="plain")]
    drafts = [sub("x", _id="drafts.lonely"), sub("y", _id="drafts.plain"),
              sub("a", 9, _id="drafts.other-copy"),
              sub("z", 8, _id="drafts.by-payment", stripeSessionId=None, stripePaymentId="pi_a")]
    assert kinds(drafts_only(drafts, published)) == [("draft_only", ("drafts.lonely",))]


def test_session_of() -> None:
    assert session_of({"stripeSessionId": "cs_live_1"}) == "cs_live_1"
    assert session_of({"_id": "drafts.subscription-cs_test_9"}) == "cs_test_9"
    assert session_of({"_id": "abc"}) is None


def test_audit_orders_by_kind_and_skips_deactivated_documents() -> None:
    docs = [
        sub("d", 1), sub("d", 2),
        sub("m", type="single"),
        sub("w", tenant={"_ref": "tB"}),
        sub("i", endDate=None),
        sub("e", days=10),
        sub("r", start="2026-08-10T10:00:00.000Z"),
        sub("x", _id="drafts.only"),
        sub("o", type="single", tenant={"_ref": "tB"}, isActive=False, days=3),
        {"_id": "versions.r1.subm1", "_type": "subscription"},
    ]
    found = audit(docs, CATALOG, {"pi_r": 200000}, NOW_MS)
    assert kinds(found) == [
        ("duplicate_subscriptions", ("subd1", "subd2")),
        ("mistyped_subscription", ("subm1",)),
        ("wrong_tenant", ("subw1",)),
        ("invisible_shape", ("subi1",)),
        ("end_date_off", ("sube1",)),
        ("refunded_but_active", ("subr1",)),
        ("draft_only", ("drafts.only",)),
    ]
    assert [f.kind for f in found] == list(KINDS)


def test_every_kind_has_plain_words() -> None:
    for kind in KINDS:
        words = explain(kind)
        assert words.code == kind and words.title and words.fix
    assert "unpublished draft" in explain("draft_only").title
