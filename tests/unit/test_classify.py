"""Classification of one raw session (architecture.md "Decision rules", steps 1-7)."""

from __future__ import annotations

import pytest

from jobs.core.classify import (
    classify_raw,
    listed_line_items,
    needs_line_items,
    parse_line_items,
    parse_session,
    with_products,
)
from jobs.core.model import PLATFORM, ListedItem
from tests.support.sessions import (
    ACCT1,
    ACCT2,
    ACCT_UNKNOWN,
    NOW_S,
    P_CLIP,
    P_OTHER,
    T1,
    USER,
    catalog,
    classified,
    items,
    metadata,
    pass_,
    raw_line_items,
    raw_session,
    session,
    with_pass,
)


def outcome(c):
    return c.outcome, c.kind


# 1. malformed -> failed ----------------------------------------------------------------------

@pytest.mark.parametrize("raw", [None, [], "cs_test_1", 42])
def test_a_session_that_is_not_an_object_fails(raw):
    c = classified(raw)
    assert c.outcome == "failed"
    assert c.kind.startswith("malformed session: ")
    assert c.session is None


@pytest.mark.parametrize("sid", [None, 123, "", "cs_test/../x", "cs test", "cs_test.a1",
                                 "cs_kari@example.com", "cs_#1", "cs_" + "a" * 200],
                         ids=["missing", "int", "empty", "slash", "space", "dot", "at", "hash",
                              "too-long"])
def test_ids_that_cannot_be_a_sanity_id_fail(sid):
    raw = raw_session()
    if sid is None:
        del raw["id"]
    else:
        raw["id"] = sid
    c = classified(raw)
    assert c.outcome == "failed"
    assert c.kind.startswith("malformed session: ")
    assert c.session_id == (sid if isinstance(sid, str) else "")


@pytest.mark.parametrize("created", [None, "1786996400", 1786996400.5, True, 0, -5,
                                     NOW_S + 86_400])
def test_bad_or_future_created_fails(created):
    c = classified(raw_session(created=created))
    assert c.outcome == "failed"
    assert "created" in c.kind
    assert c.session_id == "cs_test_a11"


def test_created_now_is_fine():
    assert classified(raw_session(created=NOW_S)).outcome == "candidate"


@pytest.mark.parametrize("md", [["passId"], "passId=x", 5])
def test_metadata_that_is_not_an_object_fails(md):
    c = classified(raw_session(md=None, metadata=md))
    assert outcome(c) == ("failed", "malformed session: metadata is not an object")


def test_malformed_wins_over_every_later_step():
    raw = raw_session(status="open", mode="subscription", metadata=["x"])
    assert classified(raw).outcome == "failed"


def test_non_integer_amount_total_fails():
    assert classified(raw_session(amount_total="2000")).outcome == "failed"


# 2-4. not complete, platform plan, class drop-in ---------------------------------------------

@pytest.mark.parametrize("status", ["open", "expired", None])
def test_not_complete_comes_first(status):
    raw = raw_session(status=status, mode="subscription", payment_status="unpaid",
                      md=metadata(classId="class1"))
    assert outcome(classified(raw)) == ("ignored", "not_complete")


def test_platform_plan_wins_over_class_and_pass_evidence():
    raw = raw_session(mode="subscription", md=metadata(classId="class1"))
    assert outcome(classified(raw, account=PLATFORM)) == ("ignored", "platform_plan")


def test_platform_plan_metadata_shape():
    raw = raw_session(mode="subscription", md={"tenantId": T1, "plan": "pro", "billing": "month"},
                      payment_intent=None)
    assert outcome(classified(raw, account=PLATFORM)) == ("ignored", "platform_plan")


def test_class_dropin_wins_over_pass_evidence():
    raw = raw_session(md=metadata(classId="class1"), payment_status="unpaid")
    assert outcome(classified(raw)) == ("ignored", "class_dropin")


def test_class_dropin_head_shape():
    md = {"classId": "class1", "userId": USER, "userEmail": "a@example.com", "tenantId": T1,
          "tenantSlug": "dancecity"}
    assert outcome(classified(raw_session(md=md))) == ("ignored", "class_dropin")


@pytest.mark.parametrize("class_id", ["", "   ", 5, None])
def test_class_id_that_is_not_a_non_empty_string_counts_as_missing(class_id):
    assert classified(raw_session(md=metadata(classId=class_id))).outcome == "candidate"


# 5. pass evidence ----------------------------------------------------------------------------

@pytest.mark.parametrize("md", [{}, {"type": "other"}, {"tenantId": T1, "plan": "pro"},
                                {"type": ["pass_purchase"]}, {"passId": 7}, {"passId": "  "}])
def test_no_pass_evidence_is_not_a_pass(md):
    assert outcome(classified(raw_session(md=md), line_items=[])) == ("ignored", "not_a_pass")


def test_no_pass_evidence_wins_over_unpaid():
    raw = raw_session(md={}, payment_status="unpaid")
    assert outcome(classified(raw, line_items=[])) == ("ignored", "not_a_pass")


@pytest.mark.parametrize("kind", ["pass_purchase", "pass_upgrade"])
def test_type_alone_is_pass_evidence(kind):
    c = classified(raw_session(md={"type": kind}), line_items=[])
    assert c.outcome == "candidate"
    assert c.keys.kind == kind
    assert c.keys.pass_id is None


def test_pass_id_in_metadata_alone_is_evidence():
    c = classified(raw_session(md={"passId": P_CLIP, "userId": USER}))
    assert c.outcome == "candidate"
    assert (c.keys.kind, c.keys.pass_id, c.keys.pass_via) == ("pass_purchase", P_CLIP, "metadata")


def test_pass_id_in_product_metadata_is_evidence():
    c = classified(raw_session(md={}), line_items=items(passId=P_CLIP, userId=USER, tenantId=T1))
    assert c.outcome == "candidate"
    assert c.keys.pass_via == "product_metadata"
    assert (c.keys.pass_id, c.keys.user_id, c.keys.tenant_id) == (P_CLIP, USER, T1)


def test_unique_description_on_a_connected_account_is_evidence():
    c = classified(raw_session(md={}), line_items=items("10 Single Clip Card"))
    assert c.outcome == "candidate"
    assert (c.keys.pass_id, c.keys.pass_via) == (P_CLIP, "description")


@pytest.mark.parametrize("description", ["10 single clip card", "10 Single Clip Card ",
                                         "Upgrade to 10 Single Clip Card", "", None])
def test_description_must_match_exactly(description):
    c = classified(raw_session(md={}), line_items=items(description))
    assert outcome(c) == ("ignored", "not_a_pass")


def test_ambiguous_description_gives_no_pass():
    cat = with_pass(pass_("passClipDup000000000009", name="10 Single Clip Card"))
    c = classified(raw_session(md={}), cat=cat, line_items=items("10 Single Clip Card"))
    assert outcome(c) == ("ignored", "not_a_pass")
    c = classified(raw_session(md=metadata(passId=None)), cat=cat,
                   line_items=items("10 Single Clip Card"))
    assert c.outcome == "candidate"
    assert c.keys.pass_id is None


def test_description_only_matches_the_accounts_own_tenant():
    # "Salsa Drop-in" is T2's pass; the session is on T1's account.
    c = classified(raw_session(md={}), account=ACCT1, line_items=items("Salsa Drop-in"))
    assert outcome(c) == ("ignored", "not_a_pass")
    c = classified(raw_session(md={}), account=ACCT2, line_items=items("Salsa Drop-in"))
    assert (c.outcome, c.keys.pass_id) == ("candidate", P_OTHER)


def test_description_on_an_unknown_account_is_no_evidence():
    c = classified(raw_session(md={}), account=ACCT_UNKNOWN,
                   line_items=items("10 Single Clip Card"))
    assert outcome(c) == ("ignored", "not_a_pass")


def test_description_counts_inactive_passes():
    cat = with_pass(pass_(P_CLIP, is_active=False))
    c = classified(raw_session(md={}), cat=cat, line_items=items("10 Single Clip Card"))
    assert c.keys.pass_id == P_CLIP


def test_description_is_no_evidence_on_the_platform():
    raw = raw_session(md={"tenantId": T1, "userId": USER})
    c = classified(raw, account=PLATFORM, line_items=items("10 Single Clip Card"))
    assert outcome(c) == ("ignored", "not_a_pass")


def test_platform_pass_purchase_is_not_resolved_by_name():
    # §4#9: the description is matched within the account's school; the platform has none,
    # and a metadata tenantId is a claim to check, not a catalogue to search.
    raw = raw_session(md={"type": "pass_purchase", "tenantId": T1, "userId": USER})
    c = classified(raw, account=PLATFORM, line_items=items("10 Single Clip Card"))
    assert c.outcome == "candidate"
    assert (c.keys.pass_id, c.keys.pass_via) == (None, None)


# keys: metadata first, product metadata second; wrong types count as missing ---------------

def test_session_metadata_wins_over_product_metadata():
    c = classified(raw_session(), line_items=items(passId=P_OTHER, userId="user_other",
                                                   tenantId="tOther"))
    assert (c.keys.pass_id, c.keys.user_id, c.keys.tenant_id) == (P_CLIP, USER, T1)


@pytest.mark.parametrize("bad", [123, ["x"], {"id": "x"}, "", "   ", True])
def test_metadata_values_of_the_wrong_type_count_as_missing(bad):
    md = metadata(passId=bad, userId=bad, tenantId=bad)
    c = classified(raw_session(md=md), line_items=items(passId=P_CLIP, userId=USER, tenantId=T1))
    assert c.outcome == "candidate"
    assert (c.keys.pass_id, c.keys.user_id, c.keys.tenant_id) == (P_CLIP, USER, T1)
    assert c.keys.pass_via == "product_metadata"


def test_wrong_typed_values_without_fallback_stay_missing():
    md = metadata(passId=5, userId=None, tenantId=["t"])
    c = classified(raw_session(md=md), line_items=items(description=None))
    assert c.outcome == "candidate"  # type pass_purchase is evidence enough
    assert (c.keys.pass_id, c.keys.user_id, c.keys.tenant_id) == (None, None, None)


def test_upgrade_keys_come_from_product_metadata_too():
    md = {"type": "pass_upgrade"}
    li = items(passId=P_CLIP, userId=USER, tenantId=T1, upgradeFromSubscriptionId="subOld",
               isUpgrade="true")
    c = classified(raw_session(md=md), line_items=li)
    assert (c.keys.kind, c.keys.upgrade_from) == ("pass_upgrade", "subOld")


# 6. payment status ---------------------------------------------------------------------------

def test_unpaid_pass_is_pending_async_payment():
    c = classified(raw_session(payment_status="unpaid"))
    assert outcome(c) == ("pending", "async_payment")


@pytest.mark.parametrize("status", ["no_payment_required", None, "PAID"])
def test_other_non_paid_is_ignored_not_paid(status):
    assert outcome(classified(raw_session(payment_status=status))) == ("ignored", "not_paid")


def test_unpaid_wins_over_refund():
    c = classified(raw_session(payment_status="unpaid"), refunded=200_000)
    assert outcome(c) == ("pending", "async_payment")


# 7. refunds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("refunded", [200_000, 250_000])
def test_fully_refunded_is_ignored(refunded):
    assert outcome(classified(raw_session(), refunded=refunded)) == ("ignored", "refunded")


@pytest.mark.parametrize("refunded", [0, 1, 199_999])
def test_partial_refund_is_still_a_purchase(refunded):
    assert classified(raw_session(), refunded=refunded).outcome == "candidate"


def test_refund_of_another_payment_intent_does_not_count():
    c = classify_raw(raw_session(), ACCT1, NOW_S, catalog(), {}, {"pi_other": 200_000})
    assert c.outcome == "candidate"


def test_refund_check_needs_a_payment_intent():
    c = classify_raw(raw_session(payment_intent=None), ACCT1, NOW_S, catalog(), {},
                     {"": 200_000, "None": 200_000})
    assert c.outcome == "candidate"


# needs_line_items ----------------------------------------------------------------------------

def test_full_metadata_needs_no_line_items():
    assert needs_line_items(session()) is False


@pytest.mark.parametrize("md", [metadata(passId=None), metadata(userId=None), metadata(passId=7),
                                metadata(userId=""), {}, {"type": "pass_purchase"}])
def test_missing_pass_or_user_needs_line_items(md):
    assert needs_line_items(session(md=md)) is True


@pytest.mark.parametrize("overrides", [
    {"status": "open"}, {"status": "expired"}, {"mode": "subscription"},
    {"md": {"classId": "class1", "userId": USER}}])
def test_sessions_decided_before_pass_evidence_need_no_line_items(overrides):
    md = overrides.pop("md", {})
    assert needs_line_items(session(md=md, **overrides)) is False


def test_optional_keys_alone_need_no_line_items():
    assert needs_line_items(session(md=metadata(tenantId=None, type=None))) is False


# parsing details ----------------------------------------------------------------------------

def test_parse_session_fields():
    raw = raw_session(payment_intent={"id": "pi_expanded", "object": "payment_intent"},
                      customer_details={"email": None, "name": "Ola"},
                      customer_email="ola@example.com", livemode="yes")
    s = parse_session(raw, ACCT1, NOW_S)
    assert (s.payment_intent, s.email, s.name, s.livemode) == (
        "pi_expanded", "ola@example.com", "Ola", None)
    assert s.account == ACCT1


@pytest.mark.parametrize("pi", [None, "", "  "])
def test_empty_payment_intent_is_none(pi):
    assert parse_session(raw_session(payment_intent=pi), ACCT1, NOW_S).payment_intent is None


def test_null_metadata_is_read_as_empty():
    s = parse_session(raw_session(metadata=None), ACCT1, NOW_S)
    assert s.metadata == {}


def test_parse_line_items_skips_junk_and_unexpanded_products():
    raw = raw_line_items("A", passId="p1")
    raw["data"] += ["junk", {"description": "B", "price": {"product": "prod_unexpanded"}},
                    {"description": 5, "price": None}]
    got = parse_line_items(raw)
    assert [(i.description, dict(i.product_metadata)) for i in got] == [
        ("A", {"passId": "p1"}), ("B", {}), (None, {})]
    assert parse_line_items(raw["data"]) == got
    assert parse_line_items(None) == []


def _listed(*data, has_more=False):
    return {"object": "list", "data": list(data), "has_more": has_more}


def test_listed_line_items_keep_description_and_product_id():
    raw = _listed({"description": "A", "price": {"product": "prod_a"}}, "junk",
                  {"description": " ", "price": {"product": {"id": "prod_b"}}},
                  {"description": "C", "price": None})
    assert listed_line_items(raw) == (ListedItem("A", "prod_a"), ListedItem(None, "prod_b"),
                                      ListedItem("C", None))


@pytest.mark.parametrize("raw", [None, "li", _listed(has_more=True), {"data": []},
                                 {"data": "x", "has_more": False}])
def test_line_items_not_listed_or_listed_in_part_are_not_taken(raw):
    assert listed_line_items(raw) is None


def test_listed_line_items_are_completed_with_their_products():
    listed = (ListedItem("A", "prod_a"), ListedItem("B", "prod_gone"), ListedItem("C", None))
    got = with_products(listed, {"prod_a": {"metadata": {"passId": "p1"}},
                                 "prod_c": {"metadata": {"passId": "p9"}}})
    assert [(i.description, dict(i.product_metadata)) for i in got] == [
        ("A", {"passId": "p1"}), ("B", {}), ("C", {})]


def test_listed_line_items_are_kept_only_for_a_session_lacking_keys():
    items = _listed({"description": "10 Clip Card", "price": {"product": "prod_a"}})
    keyed = parse_session(raw_session(line_items=items), ACCT1, NOW_S)
    assert keyed.line_items is None and not needs_line_items(keyed)
    keyless = parse_session(raw_session(md={}, line_items=items), ACCT1, NOW_S)
    assert needs_line_items(keyless)
    assert keyless.line_items == (ListedItem("10 Clip Card", "prod_a"),)


@pytest.mark.parametrize("kind", ["class_booking", "gift_card", "PASS_PURCHASE", "course"])
def test_explicit_non_pass_type_is_not_a_pass_even_with_a_pass_id(kind):
    # The webhook dispatches on metadata.type and skips anything else.
    c = classified(raw_session(md=metadata(type=kind)),
                   line_items=items("10 Single Clip Card", passId=P_CLIP))
    assert outcome(c) == ("ignored", "not_a_pass")
    assert not needs_line_items(c.session)
