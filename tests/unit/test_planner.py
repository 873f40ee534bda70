"""The planner (architecture.md "Resolution of a paid pass purchase") against the failure
modes of domain.md §4 that the job meets, and the created document field by field."""

from __future__ import annotations

import pytest

from jobs.core import rules
from jobs.core.documents import transaction_mutations
from jobs.core.matching import lookup_keys
from jobs.core.model import PLATFORM, Decision, PageFacts
from jobs.core.planner import decide, plan_page
from jobs.core.recheck import recheck
from tests.support.sessions import (
    ACCT1,
    ACCT_UNKNOWN,
    CREATED_S,
    DAY_MS,
    DAY_S,
    NOW_MS,
    P_CLIP,
    P_COURSE,
    P_OTHER,
    P_SINGLE,
    P_UNLIMITED,
    RUN_ID,
    T1,
    T2,
    USER,
    USER_DOC,
    alt_shape_doc,
    catalog,
    classified,
    ctx,
    facts,
    items,
    metadata,
    pass_,
    raw_session,
    ref,
    sub_doc,
    user_doc,
    with_pass,
)

SID = "cs_test_a11"
PI = "pi_3Test1"
OWN_ID = f"subscription-{SID}"
START_ISO = rules.iso_ms(CREATED_S * 1000)
NOW_ISO = rules.iso_ms(NOW_MS)
KNOWN_USER = facts(users=[user_doc()])


def one(raw=None, f: PageFacts = KNOWN_USER, *, cat=None, account=ACCT1, line_items=None,
        refunded=0, now_ms=NOW_MS) -> Decision:
    c = classified(raw_session() if raw is None else raw, account=account, cat=cat,
                   line_items=line_items, refunded=refunded)
    return decide(c, f, ctx(cat, now_ms=now_ms))


def kinds(d: Decision) -> list[str]:
    return sorted(a.kind for a in d.anomalies)


def assert_manual(d: Decision, reason: str) -> None:
    assert (d.outcome, d.reason) == ("needs_manual", reason), d.detail
    assert d.creation is None
    assert d.detail


# the created document ------------------------------------------------------------------------

def test_created_clipcard_document_field_by_field():
    d = one()
    assert d.outcome == "created"
    assert d.creation is not None
    assert dict(d.creation.subscription) == {
        "_id": OWN_ID,
        "_type": "subscription",
        "user": {"_type": "reference", "_ref": USER_DOC},
        "tenant": {"_type": "reference", "_ref": T1},
        "type": "clipcard",
        "startDate": START_ISO,
        "endDate": rules.iso_ms(CREATED_S * 1000 + 90 * DAY_MS),
        "remainingClips": 10,
        "passId": P_CLIP,
        "passName": "10 Single Clip Card",
        "purchasePrice": 2000,
        "originalPrice": 2000,
        "finalPrice": 2000,
        "discountAmount": 0,
        "promoCode": None,
        "stripePaymentId": PI,
        "stripeSessionId": SID,
        "isActive": True,
        "createdViaRecovery": True,
        "recoveredAt": NOW_ISO,
        "reconcileRunId": RUN_ID,
    }
    assert d.creation.user is None and d.creation.deactivate is None
    assert d.creation.mutations() == [{"createIfNotExists": dict(d.creation.subscription)}]


def test_created_decision_carries_what_ops_see():
    d = one()
    assert (d.session_id, d.account, d.tenant, d.user_id, d.pass_id, d.pass_name) == (
        SID, ACCT1, T1, USER_DOC, P_CLIP, "10 Single Clip Card")
    assert (d.email, d.amount, d.currency, d.paid_at) == (
        "kari.nordmann@example.com", 2000, "nok", START_ISO)
    assert d.subscription_ids == (OWN_ID,)
    assert d.anomalies == ()


def test_start_and_end_come_from_session_created_not_now():
    late = one(now_ms=NOW_MS + 20 * DAY_MS)
    doc = late.creation.subscription
    assert doc["startDate"] == START_ISO
    assert doc["endDate"] == rules.iso_ms(CREATED_S * 1000 + 90 * DAY_MS)
    assert doc["recoveredAt"] == rules.iso_ms(NOW_MS + 20 * DAY_MS)


def test_id_is_deterministic_across_runs():
    a = one(now_ms=NOW_MS).creation.subscription
    b = decide(classified(raw_session()), KNOWN_USER,
               ctx(now_ms=NOW_MS + 3_600_000, run_id="run_other")).creation.subscription
    assert a["_id"] == b["_id"] == OWN_ID
    assert a["reconcileRunId"] != b["reconcileRunId"]


def test_monthly_has_no_remaining_clips_key():
    d = one(raw_session(md=metadata(passId=P_UNLIMITED)))
    doc = d.creation.subscription
    assert doc["type"] == "monthly"
    assert "remainingClips" not in doc
    assert doc["endDate"] == rules.iso_ms(CREATED_S * 1000 + 30 * DAY_MS)


def test_single_has_one_clip():
    doc = one(raw_session(md=metadata(passId=P_SINGLE))).creation.subscription
    assert (doc["type"], doc["remainingClips"], doc["passName"]) == ("single", 1, "Drop-in Class")


def test_fixed_date_pass_ends_on_its_date():
    doc = one(raw_session(md=metadata(passId=P_COURSE))).creation.subscription
    assert (doc["type"], doc["remainingClips"], doc["endDate"]) == (
        "multi-pass", 2, "2026-10-01T00:00:00.000Z")


def test_promo_purchase_amounts():
    md = metadata(originalPrice="2000", finalPrice="1600", discountAmount="400",
                  promoCode="SPRING20")
    doc = one(raw_session(md=md, amount_total=160_000)).creation.subscription
    assert {k: doc[k] for k in ("purchasePrice", "originalPrice", "finalPrice",
                                "discountAmount", "promoCode")} == {
        "purchasePrice": 1600, "originalPrice": 2000, "finalPrice": 1600,
        "discountAmount": 400, "promoCode": "SPRING20"}


def test_no_webhook_markers_on_recovered_documents():
    doc = one().creation.subscription
    assert not {"createdViaWebhook", "webhookEventId"} & set(doc)


# #3 duplicates and what is already present -------------------------------------------------

def test_present_by_session_id():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID)], [user_doc()]))
    assert (d.outcome, d.subscription_ids, d.creation, d.anomalies) == (
        "already_present", ("abc",), None, ())


def test_present_by_payment_intent():
    d = one(f=facts([sub_doc("abc", stripePaymentId=PI)]))
    assert (d.outcome, d.subscription_ids) == ("already_present", ("abc",))


def test_present_by_deterministic_id_alone():
    d = one(f=facts([sub_doc(OWN_ID)]))
    assert (d.outcome, d.subscription_ids) == ("already_present", (OWN_ID,))


def test_duplicates_are_reported_never_created():
    subs = [sub_doc("dupA", stripeSessionId=SID), sub_doc("dupB", stripePaymentId=PI)]
    d = one(f=facts(subs))
    assert d.outcome == "already_present"
    assert d.creation is None
    assert set(d.subscription_ids) == {"dupA", "dupB"}
    dup = [a for a in d.anomalies if a.kind == "duplicate_subscriptions"]
    assert len(dup) == 1
    assert set(dup[0].subscription_ids) == {"dupA", "dupB"}
    assert dup[0].session_id == SID


def test_present_wins_over_a_bad_pass():
    d = one(raw_session(md=metadata(passId="passGone")), f=facts([sub_doc("abc",
                                                                           stripeSessionId=SID)]))
    assert d.outcome == "already_present"


# #12 mistyped, #14 wrong tenant on what is present -----------------------------------------

@pytest.mark.parametrize("stored", ["single", "multi", "course", "subscription"])
def test_mistyped_present_subscription_is_reported(stored):
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID, type=stored)]))
    assert d.outcome == "already_present"
    assert kinds(d) == ["mistyped_subscription"]
    assert d.creation is None


def test_correctly_typed_present_subscription_is_quiet():
    assert one(f=facts([sub_doc("abc", stripeSessionId=SID)])).anomalies == ()


def test_present_with_another_tenant_is_wrong_tenant():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID, tenant=ref(T2))]))
    assert kinds(d) == ["wrong_tenant"]


def test_present_without_tenant_but_own_pass_is_fine():
    assert one(f=facts([sub_doc("abc", stripeSessionId=SID, tenant=None)])).anomalies == ()


def test_present_without_tenant_and_foreign_pass_is_wrong_tenant():
    doc = sub_doc("abc", stripeSessionId=SID, tenant=None, passId=P_OTHER)
    assert "wrong_tenant" in kinds(one(f=facts([doc])))


# #13 alternate shape ------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["stripePaymentIntentId", "paymentId", "stripeSessionId"])
def test_alternate_shape_counts_present_but_invisible(key):
    value = SID if key == "stripeSessionId" else PI
    d = one(f=facts([alt_shape_doc("alt1", **{key: value})]))
    assert d.outcome == "already_present"
    assert d.creation is None
    assert "invisible_shape" in kinds(d)


def test_canonical_doc_missing_a_visible_field_is_invisible():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID, user=None)]))
    assert kinds(d) == ["invisible_shape"]
    assert "user" in d.anomalies[0].detail


# the rules the audit shares (jobs.core.anomalies): what changed when they became one ----------

def test_present_with_an_unreadable_date_is_invisible():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID, endDate="Invalid Date")]))
    assert kinds(d) == ["invisible_shape"]
    assert d.anomalies[0].detail == "the app cannot show it: endDate 'Invalid Date' is not a date"


def test_present_with_a_wrong_type_and_a_missing_field_is_both():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID, type="single", user=None)]))
    assert kinds(d) == ["invisible_shape", "mistyped_subscription"]


def test_present_of_an_unknown_pass_with_a_type_the_app_does_not_know_is_mistyped():
    raw = raw_session(md=metadata(passId="passGone"))
    d = one(raw, f=facts([sub_doc("abc", stripeSessionId=SID, type="course")]))
    assert (d.outcome, kinds(d)) == ("already_present", ["mistyped_subscription"])
    assert "'course' is not one the app knows" in d.anomalies[0].detail
    assert one(raw, f=facts([sub_doc("abc", stripeSessionId=SID)])).anomalies == ()


def test_present_with_a_tenant_that_is_no_school_says_so():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID, tenant=ref("tenantGone"))]))
    assert [(a.kind, a.detail) for a in d.anomalies] == [
        ("wrong_tenant", "tenant tenantGone is no school")]


@pytest.mark.parametrize("found", [
    [sub_doc("drafts.abc", stripeSessionId=SID)],
    [sub_doc("drafts.abc", stripeSessionId=SID), sub_doc("abc", stripeSessionId=SID),
     sub_doc("xyz", stripePaymentId=PI)],
], ids=["draft", "draft-published-and-another"])
def test_recheck_words_what_records_a_purchase_as_the_planner_does(found):
    late = recheck(one(), found)
    assert late.anomalies == one(f=facts(found)).anomalies
    assert late.anomalies[0].detail in (
        "2 subscriptions record this purchase",
        "only a draft records this purchase (the app shows it; nothing is published)")


# drafts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("draft", [
    sub_doc("drafts." + OWN_ID), sub_doc("drafts.xyz", stripeSessionId=SID),
    sub_doc("drafts.xyz", stripePaymentId=PI)])
def test_draft_only_match_is_present_with_anomaly(draft):
    # The app reads in the raw perspective: the student sees and books with the draft, so a
    # published copy would be a second pass.
    d = one(f=facts([draft], [user_doc()]))
    assert (d.outcome, d.creation) == ("already_present", None)
    assert kinds(d) == ["draft_only"]
    assert d.anomalies[0].subscription_ids == (draft["_id"],)


def test_draft_beside_published_is_one_document_not_a_duplicate():
    subs = [sub_doc("drafts.abc", stripeSessionId=SID), sub_doc("abc", stripeSessionId=SID)]
    d = one(f=facts(subs))
    assert d.outcome == "already_present"
    assert set(d.subscription_ids) == {"abc", "drafts.abc"}
    assert "draft_only" not in kinds(d)
    assert "duplicate_subscriptions" not in kinds(d)


def test_two_drafts_of_different_documents_are_duplicates():
    subs = [sub_doc("drafts.abc", stripeSessionId=SID), sub_doc("drafts.xyz", stripePaymentId=PI)]
    assert kinds(one(f=facts(subs))) == ["draft_only", "duplicate_subscriptions"]


# #27 null payment intent ----------------------------------------------------------------------

def test_null_payment_intent_never_matches_docs_without_payment_id():
    unrelated = [sub_doc("other1", stripeSessionId="cs_other"),
                 alt_shape_doc("other2", stripeSessionId="cs_other2"),
                 sub_doc("other3", stripePaymentId=None, stripeSessionId=None)]
    d = one(raw_session(payment_intent=None), f=facts(unrelated, [user_doc()]))
    assert d.outcome == "created"
    assert lookup_keys([classified(raw_session(payment_intent=None))]).payment_intents == ()


# #8 users ------------------------------------------------------------------------------------

def test_legacy_user_with_clerk_id_as_id_is_used():
    d = one(f=facts(users=[user_doc(USER, clerkId=None)]))
    assert d.outcome == "created"
    assert d.creation.subscription["user"]["_ref"] == USER
    assert d.creation.user is None


def test_clerk_id_doc_is_preferred_to_legacy_doc():
    d = one(f=facts(users=[user_doc(USER, clerkId=None), user_doc(USER_DOC)]))
    assert d.creation.subscription["user"]["_ref"] == USER_DOC
    assert d.creation.user is None


def test_several_clerk_id_docs_link_to_the_oldest():
    users = [user_doc("uYounger00000000000002", _createdAt="2026-03-01T00:00:00Z"),
             user_doc("uOlder0000000000000001", _createdAt="2025-09-01T00:00:00Z")]
    d = one(f=facts(users=users))
    assert d.outcome == "created"
    assert d.creation.subscription["user"]["_ref"] == "uOlder0000000000000001"
    assert d.creation.user is None
    assert kinds(d) == ["duplicate_users"]
    assert "uYounger00000000000002" in d.anomalies[0].detail


def test_same_creation_time_breaks_the_tie_by_id():
    users = [user_doc("uB", _createdAt="2025-09-01T00:00:00Z"),
             user_doc("uA", _createdAt="2025-09-01T00:00:00Z")]
    for order in (users, users[::-1]):
        assert one(f=facts(users=order)).creation.subscription["user"]["_ref"] == "uA"


def test_our_own_user_doc_beside_the_webhooks_never_blocks_the_next_purchase():
    users = [user_doc("uWebhookRandom00000001", _createdAt="2025-01-01T00:00:00Z"),
             user_doc(f"user-{USER}", _createdAt="2026-08-01T00:00:00Z")]
    d = one(f=facts(users=users))
    assert d.outcome == "created"
    assert d.creation.subscription["user"]["_ref"] == f"user-{USER}"
    assert kinds(d) == ["duplicate_users"]


def test_present_but_linked_to_another_student_is_wrong_user():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID, user=ref("uSomebodyElse0000009"))]))
    assert (d.outcome, kinds(d)) == ("already_present", ["wrong_user"])


@pytest.mark.parametrize("owner", [USER, USER_DOC, "uSecond"])
def test_present_linked_to_any_of_the_buyers_refs_is_fine(owner):
    users = [user_doc(), user_doc("uSecond")]
    assert one(f=facts([sub_doc("abc", stripeSessionId=SID, user=ref(owner))], users)
               ).anomalies == ()


def test_draft_user_docs_do_not_count():
    d = one(f=facts(users=[user_doc("drafts." + USER_DOC)]))
    assert d.creation.user is not None
    assert d.creation.subscription["user"]["_ref"] == f"user-{USER}"


def test_unknown_student_gets_a_new_user_document():
    d = one(f=facts())
    assert d.outcome == "created"
    new = dict(d.creation.user)
    assert new["_id"] == f"user-{USER}"
    assert {k: new[k] for k in ("_type", "clerkId", "name", "email", "role", "isActive",
                                "createdAt", "updatedAt")} == {
        "_type": "user", "clerkId": USER, "name": "Kari Nordmann",
        "email": "kari.nordmann@example.com", "role": "student", "isActive": True,
        "createdAt": NOW_ISO, "updatedAt": NOW_ISO}
    assert "tenant" not in new
    assert d.creation.subscription["user"] == {"_type": "reference", "_ref": f"user-{USER}"}
    assert d.user_id == f"user-{USER}"
    muts = d.creation.mutations()
    assert [next(iter(m)) for m in muts] == ["createIfNotExists", "createIfNotExists"]
    assert muts[0]["createIfNotExists"]["_type"] == "user"  # the user before its reference


def test_new_user_defaults_without_customer_details():
    raw = raw_session(customer_details=None, customer_email=None)
    new = one(raw, f=facts()).creation.user
    assert (new["name"], new["email"]) == ("Customer", "")


def test_new_user_email_falls_back_to_customer_email():
    raw = raw_session(customer_details={"name": None}, customer_email="ola@example.com")
    assert one(raw, f=facts()).creation.user["email"] == "ola@example.com"


def test_two_purchases_of_a_new_student_create_the_user_once_per_page():
    page = [classified(raw_session(1)), classified(raw_session(2, md=metadata(passId=P_SINGLE)))]
    plan = plan_page(page, facts(), ctx())
    assert [d.outcome for d in plan.decisions] == ["created", "created"]
    muts = transaction_mutations(plan.decisions)
    created = [m["createIfNotExists"] for m in muts if "createIfNotExists" in m]
    assert [d["_id"] for d in created if d["_type"] == "user"] == [f"user-{USER}"]
    subs = [d for d in created if d["_type"] == "subscription"]
    assert {s["_id"] for s in subs} == {"subscription-cs_test_a11", "subscription-cs_test_a12"}
    assert all(s["user"]["_ref"] == f"user-{USER}" for s in subs)
    user_at = next(i for i, m in enumerate(muts) if m["createIfNotExists"]["_type"] == "user")
    assert user_at == 0


@pytest.mark.parametrize("md", [metadata(userId=None), metadata(userId=""),
                                metadata(userId=42)])
def test_missing_user_id_is_user_unknown(md):
    assert_manual(one(raw_session(md=md), line_items=items(description=None)), "user_unknown")


def test_user_id_from_product_metadata():
    d = one(raw_session(md=metadata(userId=None)), line_items=items(userId=USER))
    assert (d.outcome, d.user_id) == ("created", USER_DOC)


def test_an_email_as_user_id_never_becomes_an_id():
    d = one(raw_session(md=metadata(userId="kari.nordmann@example.com")), f=facts())
    assert d.outcome == "needs_manual"
    assert d.creation is None


# #9 metadata fallbacks -----------------------------------------------------------------------

def test_pass_from_product_metadata():
    d = one(raw_session(md=metadata(passId=None)), line_items=items(passId=P_SINGLE))
    assert (d.outcome, d.pass_id) == ("created", P_SINGLE)
    assert d.creation.subscription["passId"] == P_SINGLE


def test_pass_from_unique_description():
    d = one(raw_session(md=metadata(passId=None)), line_items=items("2 Course Pass"))
    assert (d.outcome, d.pass_id) == ("created", P_COURSE)


def test_ambiguous_description_is_metadata_missing():
    cat = with_pass(pass_("passDup0000000000000009", name="2 Course Pass"))
    d = one(raw_session(md=metadata(passId=None)), cat=cat, line_items=items("2 Course Pass"))
    assert_manual(d, "metadata_missing")


def test_no_pass_anywhere_is_metadata_missing():
    d = one(raw_session(md=metadata(passId=None)), line_items=items("Gift card"))
    assert_manual(d, "metadata_missing")


def test_unknown_pass_id_is_pass_not_found():
    d = one(raw_session(md=metadata(passId="passDeleted")))
    assert_manual(d, "pass_not_found")
    assert d.pass_id == "passDeleted"


# #11 expired on arrival ----------------------------------------------------------------------

def test_fixed_expiry_in_the_past_is_created_and_flagged():
    cat = with_pass(pass_(P_CLIP, validity_type="date", expiry_date="2025-09-01T00:00:00.000Z"))
    d = one(cat=cat)
    assert d.outcome == "created"
    assert d.creation.subscription["endDate"] == "2025-09-01T00:00:00.000Z"
    assert kinds(d) == ["expired_on_arrival"]
    assert d.anomalies[0].subscription_ids == (OWN_ID,)


def test_validity_elapsed_since_purchase_is_flagged():
    raw = raw_session(created=CREATED_S - 40 * DAY_S)
    d = one(raw, cat=with_pass(pass_(P_CLIP, validity_days=30)))
    assert d.outcome == "created"
    assert kinds(d) == ["expired_on_arrival"]


def test_end_on_start_is_flagged():
    cat = with_pass(pass_(P_CLIP, validity_type="date", expiry_date=START_ISO))
    d = one(raw_session(), cat=cat, now_ms=CREATED_S * 1000 - 1)
    assert "expired_on_arrival" in kinds(d)


# #14 tenants ---------------------------------------------------------------------------------

def test_pass_of_another_school_on_a_connected_account():
    d = one(raw_session(md=metadata(passId=P_OTHER, tenantId=None)))
    assert_manual(d, "tenant_mismatch")


def test_metadata_tenant_disagreeing_with_the_account():
    assert_manual(one(raw_session(md=metadata(tenantId=T2))), "tenant_mismatch")


def test_account_of_no_school():
    assert_manual(one(account=ACCT_UNKNOWN), "tenant_mismatch")


def test_connected_account_without_tenant_metadata_uses_the_accounts_school():
    d = one(raw_session(md=metadata(tenantId=None)))
    assert (d.outcome, d.tenant) == ("created", T1)
    assert d.creation.subscription["tenant"]["_ref"] == T1


def test_legacy_platform_session_without_tenant_uses_the_pass_tenant():
    md = {"passId": P_CLIP, "passType": "multi", "userId": USER, "type": "pass_purchase"}
    d = one(raw_session(md=md), account=PLATFORM)
    assert (d.outcome, d.tenant, d.account) == ("created", T1, PLATFORM)
    assert d.creation.subscription["tenant"]["_ref"] == T1


def test_platform_session_with_matching_tenant_id():
    assert one(account=PLATFORM).outcome == "created"


@pytest.mark.parametrize("tenant_id", [T2, "tNoSuchSchool"])
def test_platform_session_whose_tenant_id_is_not_the_pass_tenant(tenant_id):
    assert_manual(one(raw_session(md=metadata(tenantId=tenant_id)), account=PLATFORM),
                  "tenant_mismatch")


def test_platform_pass_without_tenant():
    cat = with_pass(pass_(P_CLIP, tenant_id=None))
    md = metadata(tenantId=None)
    assert_manual(one(raw_session(md=md), account=PLATFORM, cat=cat), "tenant_mismatch")


def test_product_metadata_tenant_is_checked_too():
    d = one(raw_session(md=metadata(tenantId=None, userId=None)),
            line_items=items(userId=USER, tenantId=T2))
    assert_manual(d, "tenant_mismatch")


# #16 manual duplicates -----------------------------------------------------------------------

def rechecked(d: Decision, *, manual=()) -> Decision:
    """The planned creation after the re-check just before its write."""
    assert d.outcome == "created"
    return recheck(d, [], manual)


def manual_doc(**fields):
    base = {"stripeSessionId": None, "stripePaymentId": "manual_recovery_1755000000000",
            "startDate": rules.iso_ms((CREATED_S + 3 * DAY_S) * 1000)}
    return sub_doc("manual1", **{**base, **fields})


@pytest.mark.parametrize("fields", [
    {}, {"stripePaymentId": None}, {"stripePaymentId": "admin_created_1755000000000"},
    {"stripePaymentId": "debug_test_payment"},
    {"stripePaymentId": "manual_recovery_session_1755000000000"},
    {"passId": None, "pass": ref(P_CLIP)},
    {"user": ref(USER)},  # legacy reference: the Clerk id
    {"startDate": rules.iso_ms((CREATED_S - 20 * 3600) * 1000)},
    {"startDate": None, "purchaseDate": rules.iso_ms((CREATED_S + DAY_S) * 1000)},
    {"startDate": rules.iso_ms((CREATED_S + 9 * DAY_S) * 1000)},
    {"stripeSessionId": "manual_recovery_session_1755000000000"},
    {"stripeSessionId": ""},
    {"_id": "drafts.manual1"},
    {"stripePaymentId": None, "passId": None, "passName": "10 Single Clip Card"},
], ids=["manual-recovery", "no-payment-id", "admin", "debug", "manual-session", "pass-ref",
        "legacy-user-ref", "20-hours-before", "purchase-date", "nine-days-after",
        "recovery-session-id", "blank-session-id", "draft", "pass-name"])
def test_manual_subscription_of_same_person_and_pass_blocks_creation(fields):
    d = rechecked(one(f=facts(users=[user_doc()])), manual=[manual_doc(**fields)])
    assert_manual(d, "manual_duplicate_suspected")
    assert [i.removeprefix("drafts.") for i in d.subscription_ids] == ["manual1"]


def test_manual_duplicate_of_a_student_without_user_doc():
    d = rechecked(one(f=facts()), manual=[manual_doc(user=ref(USER))])
    assert_manual(d, "manual_duplicate_suspected")


@pytest.mark.parametrize("fields", [
    {"stripePaymentId": "pi_3RealPayment"},
    {"stripeSessionId": "cs_test_other"},
    {"passId": P_SINGLE},
    {"user": ref("uSomebodyElse000000009")},
    {"stripePaymentIntentId": "pi_3RealPayment"},
    {"startDate": rules.iso_ms((CREATED_S - 2 * DAY_S) * 1000)},
    {"startDate": rules.iso_ms((CREATED_S - 8 * DAY_S) * 1000)},
], ids=["real-payment", "has-session", "other-pass", "other-person", "real-intent-alt",
        "2-days-before", "8-days-before"])
def test_not_a_manual_duplicate(fields):
    doc = {**manual_doc(), **fields}
    planned = one(f=facts(users=[user_doc()]))
    assert rechecked(planned, manual=[doc]) is planned


# #20 inactive pass, #21 unusable pass --------------------------------------------------------

def test_inactive_pass_is_still_used_with_its_current_name():
    cat = with_pass(pass_(P_CLIP, is_active=False, name="10 Clip Card (old)"))
    d = one(cat=cat)
    assert d.outcome == "created"
    assert d.creation.subscription["passName"] == "10 Clip Card (old)"


@pytest.mark.parametrize(("p", "reason"), [
    (pass_(P_CLIP, type_="subscription"), "pass_type_unknown"),
    (pass_(P_CLIP, type_="course"), "pass_type_unknown"),
    (pass_(P_CLIP, type_=None), "pass_type_unknown"),
    (pass_(P_CLIP, type_="multi", classes_limit=None), "pass_without_class_count"),
    (pass_(P_CLIP, type_="multi", classes_limit=0), "pass_without_class_count"),
    (pass_(P_CLIP, type_="multi-pass", classes_limit="3"), "pass_without_class_count"),
    (pass_(P_CLIP, validity_type="days", validity_days=None), "pass_type_unknown"),
], ids=["legacy-subscription", "course", "no-type", "no-limit", "zero-limit", "string-limit",
        "no-expiry"])
def test_unusable_pass_needs_manual(p, reason):
    d = one(cat=with_pass(p))
    assert_manual(d, reason)
    if p.validity_days is None and p.type == "multi":
        assert "no valid expiry configuration" in d.detail


# #24 upgrades --------------------------------------------------------------------------------

OLD = "subOld0000000000000001"
OLD_OWNER = USER  # a legacy reference (the Clerk id): the buyer's, yet not their user doc's id


def upgrade_session(**md):
    base = metadata(type="pass_upgrade", upgradeFromSubscriptionId=OLD, originalPassPrice="250",
                    newPassPrice="2000", upgradeCost="1750")
    return raw_session(md={**base, **md}, amount_total=175_000)


def old_sub(**fields):
    return sub_doc(OLD, **{"user": ref(OLD_OWNER), "type": "single", "passId": P_SINGLE,
                           "passName": "Drop-in Class", "stripeSessionId": "cs_test_old",
                           **fields})


def test_upgrade_creates_and_deactivates_in_one_creation():
    d = one(upgrade_session(), f=facts(users=[user_doc()], upgrades=[old_sub()]))
    assert d.outcome == "created"
    doc = d.creation.subscription
    assert doc["_id"] == OWN_ID
    assert doc["user"]["_ref"] == OLD_OWNER  # copied from the old subscription
    assert d.user_id == OLD_OWNER
    assert (doc["isUpgrade"], doc["upgradedFromSubscriptionId"]) == (True, OLD)
    assert (doc["purchasePrice"], doc["upgradeCost"]) == (2000, 1750)
    assert (doc["type"], doc["remainingClips"], doc["passId"]) == ("clipcard", 10, P_CLIP)
    assert (doc["stripeSessionId"], doc["createdViaRecovery"]) == (SID, True)
    assert not {"promoCode", "discountAmount"} & set(doc)
    assert dict(d.creation.deactivate) == {"id": OLD, "set": {
        "isActive": False, "upgradedAt": NOW_ISO, "upgradedToPassId": P_CLIP,
        "upgradedToPassName": "10 Single Clip Card"}}
    muts = d.creation.mutations()
    assert muts[0] == {"createIfNotExists": dict(doc)}
    assert muts[-1] == {"patch": dict(d.creation.deactivate)}
    assert d.creation.user is None


def test_upgrade_of_a_student_without_user_doc_creates_no_user():
    d = one(upgrade_session(), f=facts(upgrades=[old_sub()]))
    assert d.outcome == "created"
    assert d.creation.user is None
    assert d.creation.subscription["user"]["_ref"] == OLD_OWNER


@pytest.mark.parametrize("owner", ["uSomeoneElse0000000001", None], ids=["other", "no-owner"])
def test_upgrade_of_another_students_subscription_is_refused(owner):
    old = old_sub(user=ref(owner) if owner else None)
    d = one(upgrade_session(), f=facts(users=[user_doc()], upgrades=[old]))
    assert_manual(d, "upgrade_source_missing")
    assert d.creation is None


@pytest.mark.parametrize("upgrades", [[], [old_sub(_id="drafts." + OLD)],
                                      [old_sub(_id="subSomethingElse")]],
                         ids=["absent", "draft-only", "other-id"])
def test_upgrade_source_not_found(upgrades):
    d = one(upgrade_session(), f=facts(users=[user_doc()], upgrades=upgrades))
    assert_manual(d, "upgrade_source_missing")


def test_upgrade_without_source_id():
    d = one(upgrade_session(upgradeFromSubscriptionId=None), line_items=items(description=None),
            f=facts(users=[user_doc()], upgrades=[old_sub()]))
    assert_manual(d, "upgrade_source_missing")


def test_lookup_keys_ask_for_the_upgrade_source():
    keys = lookup_keys([classified(upgrade_session())])
    assert keys.upgrade_ids == (OLD,)


# #25 other kinds, pending, failed, refunds ---------------------------------------------------

@pytest.mark.parametrize(("raw", "kind"), [
    (raw_session(md={"classId": "class1", "userId": USER}), "class_dropin"),
    (raw_session(mode="subscription", md={"tenantId": T1, "plan": "pro"}), "platform_plan"),
    (raw_session(md={}), "not_a_pass"),
    (raw_session(status="expired"), "not_complete"),
    (raw_session(payment_status="no_payment_required"), "not_paid"),
])
def test_non_pass_sessions_are_ignored_with_their_kind(raw, kind):
    d = one(raw, line_items=[])
    assert (d.outcome, d.reason, d.creation) == ("ignored", kind, None)


def test_pending_async_payment():
    d = one(raw_session(payment_status="unpaid"))
    assert (d.outcome, d.reason, d.creation) == ("pending", "async_payment", None)


def test_failed_session_keeps_its_error():
    d = one(raw_session(created="yesterday"))
    assert (d.outcome, d.creation) == ("failed", None)
    assert d.detail.startswith("malformed session: ")
    assert d.session_id == SID


def test_refunded_with_active_subscription():
    d = one(f=facts([sub_doc("abc", stripeSessionId=SID)]), refunded=200_000)
    assert (d.outcome, d.reason, d.creation) == ("ignored", "refunded", None)
    assert kinds(d) == ["refunded_but_active"]
    assert d.anomalies[0].subscription_ids == ("abc",)


@pytest.mark.parametrize("subs", [[], [sub_doc("abc", stripeSessionId=SID, isActive=False)],
                                  [sub_doc("drafts.abc", stripeSessionId=SID)]],
                         ids=["none", "inactive", "draft"])
def test_refunded_without_active_subscription_is_quiet(subs):
    d = one(f=facts(subs), refunded=200_000)
    assert (d.outcome, d.reason, d.anomalies) == ("ignored", "refunded", ())


def test_refunded_with_expired_subscription_is_quiet():
    expired = sub_doc("abc", stripeSessionId=SID, endDate="2026-01-01T00:00:00.000Z")
    d = one(f=facts([expired]), refunded=200_000)
    assert d.anomalies == ()


# lookup keys and transactions ----------------------------------------------------------------

def test_lookup_keys_cover_candidates_and_refunds_only():
    page = [
        classified(raw_session(1)),
        classified(raw_session(2), refunded=200_000),
        classified(raw_session(3, payment_status="unpaid")),
        classified(raw_session(4, md={"classId": "c", "userId": "user_dropin"})),
        classified(raw_session(5, created="bad")),
        classified(raw_session(6, md=metadata(userId="user_second"), payment_intent=None)),
        classified(raw_session(7)),  # same user again
    ]
    keys = lookup_keys(page)
    assert keys.session_ids == ("cs_test_a11", "cs_test_a12", "cs_test_a16", "cs_test_a17")
    assert keys.payment_intents == ("pi_3Test1", "pi_3Test2", "pi_3Test7")
    assert keys.user_ids == (USER, "user_second")
    assert keys.upgrade_ids == ()


def test_transaction_mutations_skip_decisions_without_creation():
    page = [classified(raw_session(1)), classified(raw_session(2, payment_status="unpaid"))]
    plan = plan_page(page, KNOWN_USER, ctx())
    assert transaction_mutations(plan.decisions) == plan.decisions[0].creation.mutations()
    assert [d.session_id for d in plan.creations()] == ["cs_test_a11"]
    assert plan.account == ACCT1


def test_catalog_untouched_by_planning():
    cat = catalog()
    before = dict(cat.passes)
    one(cat=cat)
    assert dict(cat.passes) == before


# §2.1 currency history -------------------------------------------------------------------------

@pytest.mark.parametrize("currency", ["eur", "SEK", "usd"])
def test_another_currency_than_the_schools_is_created_with_anomaly(currency):
    d = one(raw_session(currency=currency))
    assert d.outcome == "created"
    assert d.creation.subscription["purchasePrice"] == 2000  # as the webhook writes it
    assert kinds(d) == ["currency_differs"]
    assert currency.upper() in d.anomalies[0].detail


def test_the_schools_own_currency_is_quiet():
    assert one(raw_session(currency="nok")).anomalies == ()


# §2.8 upgrades already present -----------------------------------------------------------------

def test_present_upgrade_whose_source_is_still_active_is_incomplete():
    f = facts([sub_doc("newOne", stripeSessionId=SID)], upgrades=[old_sub()])
    d = one(upgrade_session(), f=f)
    assert (d.outcome, kinds(d)) == ("already_present", ["upgrade_incomplete"])
    assert d.anomalies[0].subscription_ids == (OLD,)


@pytest.mark.parametrize("fields", [{"isActive": False}, {"upgradedToPassId": P_CLIP}])
def test_present_upgrade_with_a_settled_source_is_quiet(fields):
    f = facts([sub_doc("newOne", stripeSessionId=SID)], upgrades=[old_sub(**fields)])
    assert one(upgrade_session(), f=f).anomalies == ()


def test_upgrade_whose_source_is_already_inactive_is_created_without_patching_it():
    d = one(upgrade_session(), f=facts(users=[user_doc()], upgrades=[old_sub(isActive=False)]))
    assert d.outcome == "created"
    assert d.creation.deactivate is None
    assert [list(m) for m in d.creation.mutations()] == [["createIfNotExists"]]


# the re-check just before writing --------------------------------------------------------------

@pytest.mark.parametrize("late", [
    sub_doc("webhookRandom00000001", stripeSessionId=SID),
    sub_doc("webhookRandom00000002", stripeSessionId=None, stripePaymentId=PI),
    sub_doc("drafts.webhookRandom03", stripeSessionId=SID),
    sub_doc(OWN_ID, stripeSessionId=SID),
], ids=["by-session", "by-payment-intent", "draft", "own-id"])
def test_recheck_drops_what_was_written_since_the_look_up(late):
    planned = one()
    assert planned.outcome == "created"
    d = recheck(planned, [late, sub_doc("unrelated", stripeSessionId="cs_test_zzz")])
    assert (d.outcome, d.creation, d.subscription_ids) == ("already_present", None,
                                                          (late["_id"],))
    assert ("draft_only" in kinds(d)) == late["_id"].startswith("drafts.")


def test_recheck_keeps_a_creation_nothing_records():
    planned = one()
    assert recheck(planned, [sub_doc("other", stripeSessionId="cs_test_zzz",
                                     stripePaymentId="pi_other")]) is planned
