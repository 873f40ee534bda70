"""Properties of classify + plan over generated pages of mixed sessions and Sanity facts:
conservation, idempotence, order independence, no write without a purchase to create,
and deterministic ids free of personal data."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.core import rules
from jobs.core.classify import classify_raw, needs_line_items, parse_session
from jobs.core.documents import transaction_mutations
from jobs.core.matching import lookup_keys
from jobs.core.model import (
    ANOMALY_KINDS,
    IGNORED_KINDS,
    NEEDS_MANUAL_REASONS,
    PENDING_KINDS,
    PLATFORM,
    Decision,
    Session,
)
from jobs.core.planner import plan_page
from jobs.core.runreport import RunReport
from tests.support.sessions import (
    ACCT1,
    ACCT2,
    ACCT_UNKNOWN,
    CREATED_S,
    DAY_S,
    NOW_S,
    P_CLIP,
    P_COURSE,
    P_OTHER,
    P_SINGLE,
    P_UNLIMITED,
    T1,
    T2,
    MemorySanity,
    alt_shape_doc,
    catalog,
    ctx,
    default_passes,
    metadata,
    pass_,
    raw_line_items,
    raw_session,
    ref,
    sub_doc,
)
from tests.support.sessions import items as parse_items

P_LEGACY = "passLegacyCourse000006"
P_NOLIMIT = "passClipNoLimit0000007"
CAT = catalog([*default_passes(),
               pass_(P_LEGACY, type_="subscription", name="1 Course (8 weeks)", price=1290),
               pass_(P_NOLIMIT, classes_limit=None, name="Open week Trial Pass", price=250,
                     validity_days=7)])
PASS_IDS = (P_SINGLE, P_CLIP, P_COURSE, P_UNLIMITED, P_OTHER, P_LEGACY, P_NOLIMIT, "passGone")
PASS_NAMES = ("10 Single Clip Card", "Drop-in Class", "Salsa Drop-in", "Gift card")
CLERKS = ("user_2aaaAAAaaa", "user_2bbbBBBbbb", "user_2cccCCCccc")
OUTCOMES = {"created", "already_present", "needs_manual", "pending", "failed", "ignored"}
ID_SHAPE = re.compile(r"^(subscription|user)-[A-Za-z0-9_]+$")

SETTINGS = settings(max_examples=120, deadline=None)


@dataclass
class World:
    account: str
    raws: list[dict[str, Any]]
    docs: list[dict[str, Any]]
    line_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)


# Strategies are built once: hypothesis spends most of its time validating new ones.
KIND = st.sampled_from(["purchase"] * 6 + ["upgrade"] * 2 + ["dropin", "plan", "empty",
                                                               "malformed"])
PASS_ID = st.sampled_from(PASS_IDS)
MAYBE_PASS_ID = st.sampled_from((P_CLIP, P_CLIP, P_SINGLE, *PASS_IDS, None))
MAYBE_USER = st.sampled_from((*CLERKS, *CLERKS, None))
MAYBE_TENANT = st.sampled_from((T1, T1, T1, T1, None, None, T2))
MAYBE_TYPE = st.sampled_from(("pass_purchase", None))
HAS_UPGRADE_ID = st.sampled_from((True, True, True, False))
MALFORMED = st.sampled_from(({"created": "bad"}, {"metadata": ["x"]},
                             {"created": NOW_S + 30 * DAY_S}))
AMOUNT = st.sampled_from((200_000, 25_000, 175_000, 0, None))
AGE_DAYS = st.integers(0, 60)
STATUS = st.sampled_from(("complete",) * 10 + ("open", "expired"))
PAYMENT_STATUS = st.sampled_from(("paid",) * 10 + ("unpaid", "no_payment_required"))
HAS_PI = st.sampled_from((True, True, False))
LINE_ITEM = st.one_of(
    st.none(),
    st.builds(raw_line_items, st.sampled_from(PASS_NAMES)),
    st.builds(lambda d, p, u: raw_line_items(d, passId=p, userId=u),
              st.sampled_from(PASS_NAMES), PASS_ID, st.sampled_from(CLERKS)),
)
REFUND = st.sampled_from(("none", "none", "none", "partial", "full"))
SUB_SHAPE = st.sampled_from(["none"] * 8 + ["session", "pi", "alt", "draft", "dup", "own",
                                            "mistyped"])
OLD_OWNER = st.sampled_from((*CLERKS, "uOldOwner0000000000001"))
OLD_SHAPE = st.sampled_from(("none", "published", "published", "draft"))
PERSON_SHAPE = st.sampled_from(["none", "canonical", "legacy", "both", "ambiguous", "draft"])
MANUAL_PAYMENT = st.sampled_from((None, "manual_recovery_1", "admin_created_2", "pi_3RealOne"))
MANUAL_REF_IS_CLERK = st.booleans()
HAS_MANUAL = st.sampled_from((True, True, False))
MANUAL_PASS = st.sampled_from((P_CLIP, P_CLIP, P_SINGLE))
MANUAL_AGE_DAYS = st.integers(0, 20)
ACCOUNT = st.sampled_from((ACCT1, ACCT1, ACCT1, ACCT1, PLATFORM, ACCT2, ACCT_UNKNOWN))
PAGE_SIZE = st.integers(1, 10)


def session_from(draw, n: int) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
    kind = draw(KIND)
    pass_id, user, tenant = draw(MAYBE_PASS_ID), draw(MAYBE_USER), draw(MAYBE_TENANT)
    overrides: dict[str, Any] = {}
    if kind == "purchase":
        md = metadata(passId=pass_id, userId=user, tenantId=tenant, type=draw(MAYBE_TYPE))
    elif kind == "upgrade":
        md = metadata(type="pass_upgrade", passId=pass_id, userId=user, tenantId=tenant,
                      upgradeFromSubscriptionId=f"subOld{n}" if draw(HAS_UPGRADE_ID) else None,
                      newPassPrice="2000", upgradeCost="1750")
    elif kind == "dropin":
        md = {"classId": "class1", "userId": user or CLERKS[0], "tenantId": T1}
    elif kind == "plan":
        md = {"tenantId": T1, "plan": "pro", "billing": "monthly"}
        overrides["mode"] = "subscription"
    elif kind == "empty":
        md = {}
    else:
        md = metadata()
        overrides.update(draw(MALFORMED))
    amount = draw(AMOUNT)
    fields: dict[str, Any] = {
        "created": CREATED_S - draw(AGE_DAYS) * DAY_S,
        "status": draw(STATUS),
        "payment_status": draw(PAYMENT_STATUS),
        "payment_intent": f"pi_3Gen{n}" if draw(HAS_PI) else None,
        "amount_total": amount,
        "customer_details": {"email": f"student{n}@example.com", "name": f"Student Nummer{n}"},
    }
    raw = raw_session(n, md=md, **{**fields, **overrides})
    refunded = {"none": 0, "partial": 100, "full": amount or 0}[draw(REFUND)]
    return raw, draw(LINE_ITEM), refunded


@st.composite
def worlds(draw) -> World:
    world = World(draw(ACCOUNT), [], [])
    for n in range(1, draw(PAGE_SIZE) + 1):
        raw, li, refunded = session_from(draw, n)
        world.raws.append(raw)
        if li is not None:
            world.line_items[raw["id"]] = li
        if refunded and raw.get("payment_intent"):
            world.refunds[raw["payment_intent"]] = refunded
        world.docs += docs_for_session(draw, n, raw)
    for i, clerk in enumerate(CLERKS):
        world.docs += docs_for_person(draw, i, clerk)
    return world


def docs_for_session(draw, n: int, raw: dict[str, Any]) -> list[dict[str, Any]]:
    sid, pi = raw["id"], raw.get("payment_intent")
    shape = draw(SUB_SHAPE)
    out: list[dict[str, Any]] = []
    if shape == "session":
        out.append(sub_doc(f"sub{n}a", stripeSessionId=sid, passId=draw(PASS_ID)))
    elif shape == "pi" and pi:
        out.append(sub_doc(f"sub{n}a", stripePaymentId=pi))
    elif shape == "alt" and pi:
        out.append(alt_shape_doc(f"sub{n}a", stripeSessionId=sid, stripePaymentIntentId=pi))
    elif shape == "draft":
        out.append(sub_doc(f"drafts.subscription-{sid}", stripeSessionId=sid))
    elif shape == "dup":
        out += [sub_doc(f"sub{n}a", stripeSessionId=sid), sub_doc(f"sub{n}b", stripeSessionId=sid)]
    elif shape == "own":
        out.append(sub_doc(f"subscription-{sid}"))
    elif shape == "mistyped":
        out.append(sub_doc(f"sub{n}a", stripeSessionId=sid, type="single", tenant=ref(T2)))
    old = draw(OLD_SHAPE)  # an upgrade source, whether or not the session is an upgrade
    if old != "none":
        old_id = f"drafts.subOld{n}" if old == "draft" else f"subOld{n}"
        out.append(sub_doc(old_id, user=ref(draw(OLD_OWNER)), type="single", passId=P_SINGLE,
                           stripeSessionId=f"cs_test_old{n}"))
    return out


def docs_for_person(draw, i: int, clerk: str) -> list[dict[str, Any]]:
    canonical = {"_id": f"uCanonical{i}", "_type": "user", "clerkId": clerk, "name": "N",
                 "email": f"p{i}@example.com"}
    out: list[dict[str, Any]] = {
        "none": [],
        "canonical": [canonical],
        "legacy": [{"_id": clerk, "_type": "user", "name": "N"}],
        "both": [canonical, {"_id": clerk, "_type": "user", "name": "N"}],
        "ambiguous": [canonical, {**canonical, "_id": f"uSecond{i}"}],
        "draft": [{**canonical, "_id": f"drafts.uCanonical{i}"}],
    }[draw(PERSON_SHAPE)]
    if draw(HAS_MANUAL):  # a hand-made subscription of this person
        owner = clerk if draw(MANUAL_REF_IS_CLERK) else f"uCanonical{i}"
        out.append(sub_doc(
            f"manual{i}", user=ref(owner), passId=draw(MANUAL_PASS),
            stripePaymentId=draw(MANUAL_PAYMENT), stripeSessionId=None,
            startDate=rules.iso_ms((CREATED_S - draw(MANUAL_AGE_DAYS) * DAY_S) * 1000)))
    return out


def plan_world(world: World, mem: MemorySanity, raws: list[dict[str, Any]] | None = None
               ) -> list[Decision]:
    """What the orchestrator does with one page: line items where needed, classify, one
    lookup, plan."""
    raws = world.raws if raws is None else raws
    items = {}
    for raw in raws:
        parsed = parse_session(raw, world.account, NOW_S)
        if isinstance(parsed, Session) and needs_line_items(parsed):
            items[parsed.id] = parse_items_of(world.line_items.get(parsed.id))
    page = [classify_raw(r, world.account, NOW_S, CAT, items, world.refunds) for r in raws]
    facts = mem.lookup(lookup_keys(page))
    decisions = mem.recheck(plan_page(page, facts, ctx(CAT)).decisions)
    assert len(decisions) == len(page)
    return decisions


def parse_items_of(raw: dict[str, Any] | None):
    if raw is None:
        return []
    item = raw["data"][0]
    return parse_items(item["description"], **item["price"]["product"]["metadata"])


def key(d: Decision) -> tuple[Any, ...]:
    creation = d.creation
    return (d.session_id, d.outcome, d.reason, d.detail, d.tenant, d.user_id, d.pass_id,
            d.subscription_ids, tuple(sorted((a.kind, a.subscription_ids) for a in d.anomalies)),
            json.dumps(dict(creation.subscription), sort_keys=True) if creation else None,
            json.dumps(dict(creation.deactivate), sort_keys=True)
            if creation and creation.deactivate else None)


# properties ----------------------------------------------------------------------------------

def check_conservation(world: World, decisions: list[Decision]) -> None:
    """Every session gets exactly one decision, and the report's counts add up."""
    assert [d.session_id for d in decisions] == [
        r["id"] if isinstance(r.get("id"), str) else "" for r in world.raws]
    report = RunReport("run_test", "2026-08-17T20:53:20.000Z", "s", "u", dry_run=False)
    for d in decisions:
        assert d.outcome in OUTCOMES
        report.add(d)
    counts = report.to_json()["counts"]
    outcome_sum = sum(counts[k] for k in ("already_present", "created", "needs_manual",
                                          "pending", "failed", "ignored"))
    assert counts["sessions_scanned"] == outcome_sum == len(world.raws)
    assert counts["pass_purchases"] == (counts["created"] + counts["already_present"]
                                        + counts["needs_manual"])
    assert sum(report.to_json()["ignored"].values()) == counts["ignored"]
    assert len(report.created) == counts["created"]
    assert len(report.needs_manual) == counts["needs_manual"]


def check_writes_and_vocabularies(decisions: list[Decision]) -> None:
    """Only `created` writes; reasons and kinds come from design.md's lists."""
    for d in decisions:
        assert (d.creation is not None) == (d.outcome == "created"), d
        if d.outcome == "needs_manual":
            assert d.reason in NEEDS_MANUAL_REASONS
        elif d.outcome == "ignored":
            assert d.reason in IGNORED_KINDS
        elif d.outcome == "pending":
            assert d.reason in PENDING_KINDS
        elif d.outcome == "failed":
            assert d.detail.startswith("malformed session: ")
        for anomaly in d.anomalies:
            assert anomaly.kind in ANOMALY_KINDS
            assert anomaly.session_id == d.session_id
        if d.creation is not None:
            sub = d.creation.subscription
            assert sub["_id"] == f"subscription-{d.session_id}"
            assert sub["stripeSessionId"] == d.session_id
            assert sub["tenant"]["_ref"] == d.tenant == CAT.passes[sub["passId"]].tenant_id
            assert sub["createdViaRecovery"] is True


def check_ids(world: World, decisions: list[Decision]) -> None:
    """Written ids are `subscription-<session>` / `user-<clerk id>`, never personal data."""
    personal: set[str] = set()
    for raw in world.raws:
        details = raw.get("customer_details") or {}
        personal |= {details["email"], details["name"], *details["name"].split()}
    for mutation in transaction_mutations(decisions):
        doc = mutation.get("createIfNotExists")
        if doc is None:
            continue
        assert ID_SHAPE.match(doc["_id"]), doc["_id"]
        assert not any(p in doc["_id"] for p in personal), doc["_id"]


@SETTINGS
@given(worlds())
def test_one_plan_conserves_sessions_writes_only_creations_and_ids_are_clean(world):
    decisions = plan_world(world, MemorySanity(world.docs))
    check_conservation(world, decisions)
    check_writes_and_vocabularies(decisions)
    check_ids(world, decisions)
    again = plan_world(world, MemorySanity(world.docs))
    assert [key(d) for d in decisions] == [key(d) for d in again]  # deterministic


@SETTINGS
@given(worlds())
def test_idempotence_applying_the_plan_then_planning_again_creates_nothing(world):
    mem = MemorySanity(world.docs)
    first = plan_world(world, mem)
    mutations = transaction_mutations(first)
    mem.apply(mutations)
    snapshot = json.dumps(mem.docs, sort_keys=True)
    mem.apply(mutations)  # a retried transaction changes nothing
    assert json.dumps(mem.docs, sort_keys=True) == snapshot
    second = plan_world(world, mem)
    assert transaction_mutations(second) == []
    for before, after in zip(first, second, strict=True):
        assert after.outcome != "created"
        if before.outcome == "created":
            assert after.outcome == "already_present"
            assert f"subscription-{before.session_id}" in after.subscription_ids
            # what the job wrote is visible, well typed, in the right school, and single
            assert not {"invisible_shape", "mistyped_subscription", "wrong_tenant",
                        "duplicate_subscriptions"} & {a.kind for a in after.anomalies}
        else:
            assert (after.outcome, after.reason) == (before.outcome, before.reason)


def without_user_content(mutations: list[dict[str, Any]]) -> list[str]:
    """Mutations as sorted JSON, a new user document reduced to its id."""
    out = []
    for m in mutations:
        doc = m.get("createIfNotExists")
        if doc is not None and doc.get("_type") == "user":
            m = {"createIfNotExists": {"_id": doc["_id"]}}
        out.append(json.dumps(m, sort_keys=True))
    return sorted(out)


@SETTINGS
@given(worlds(), st.randoms(use_true_random=False))
def test_order_independence(world, rnd: random.Random):
    mem = MemorySanity(world.docs)
    first = plan_world(world, mem)
    order = list(range(len(world.raws)))
    rnd.shuffle(order)
    shuffled = plan_world(world, mem, [world.raws[i] for i in order])
    by_index = dict(zip(order, shuffled, strict=True))
    for i, d in enumerate(first):
        assert key(by_index[i]) == key(d)
    # The same writes; only the name/e-mail on a new student's user document follows the
    # first of their purchases on the page (see the report).
    assert without_user_content(transaction_mutations(first)) == without_user_content(
        transaction_mutations(shuffled))


_KEY_VALUES = st.sampled_from(["cs_test_a11", "cs_test_a12", "subscription-cs_test_a11",
                               "drafts.subscription-cs_test_a11", "pi_3Test1", "pi_3Test2",
                               "", None, 7, ["pi_3Test1"]])
_SUB_DOCS = st.lists(st.fixed_dictionaries({}, optional={
    f: _KEY_VALUES for f in ("_id", "stripeSessionId", "stripePaymentId",
                             "stripePaymentIntentId", "paymentId")}), max_size=8)


@given(docs=_SUB_DOCS, pi=st.sampled_from(["pi_3Test1", None]))
@settings(max_examples=300, deadline=None)
def test_a_pages_index_finds_exactly_what_a_scan_finds(docs, pi):
    from jobs.core.matching import matching_subscriptions, page_matches
    from jobs.core.model import PageFacts
    from tests.support.sessions import session

    s = session(1, payment_intent=pi)
    facts = PageFacts(subs=tuple(docs))
    assert page_matches(s, facts) == matching_subscriptions(s, docs)
