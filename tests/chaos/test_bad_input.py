"""Bad inputs: every case of the corpus ends as `failed` (malformed, with its one-line cause),
`ignored` or `needs_manual` with its reason; never a crash, never a guessed write. Driven
through the pure core (classify_raw, plan_page) and, for a sample, the real CLI."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.core.catalog import catalog_from
from jobs.core.classify import classify_raw, needs_line_items, parse_line_items, parse_session
from jobs.core.documents import transaction_mutations
from jobs.core.matching import lookup_keys
from jobs.core.model import (
    IGNORED_KINDS,
    NEEDS_MANUAL_REASONS,
    PENDING_KINDS,
    Decision,
    PageFacts,
    PlanContext,
)
from jobs.core.planner import plan_page
from jobs.core.runreport import RunReport
from jobs.reports.summary import render_run_summary
from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import StripeStandIn
from tests.chaos import bad_inputs as corpus
from tests.chaos.tally import Tally
from tests.e2e.harness import ROOT, Sandbox
from tests.support.fakes import FakeSanity

NOW_S = 1_790_000_000
SANITY_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_-]{0,127}$")  # public: no dot


def plan(raws: Sequence[Any], account: str, *, now_s: int = NOW_S,
         line_items: Mapping[str, Any] | None = None,
         catalog_junk: Sequence[Any] = ()) -> list[Decision]:
    """One page through the pure core, as the orchestrator does it: line items only for the
    sessions that need them, one lookup (answered in memory), one plan. `catalog_junk`:
    more tenant and pass documents, as the catalog query could return them."""
    docs = corpus.sanity_docs()
    listed = [*docs, *catalog_junk]
    catalog = catalog_from([d for d in listed if d.get("_type") == "tenant"],
                           [d for d in listed if d.get("_type") == "pass"])
    items = {}
    for raw in raws:
        parsed = parse_session(raw, account, now_s)
        if not isinstance(parsed, str) and needs_line_items(parsed):
            given_items = (line_items or {}).get(parsed.id)
            items[parsed.id] = parse_line_items(given_items if given_items is not None else [])
    page = [classify_raw(raw, account, now_s, catalog, items, {}) for raw in raws]
    keys = lookup_keys(page)
    facts = PageFacts()
    if keys.session_ids:
        facts = PageFacts.from_result(FakeSanity(docs).lookup_page(
            list(keys.session_ids), list(keys.payment_intents), list(keys.user_ids),
            list(keys.upgrade_ids)))
    return plan_page(page, facts, PlanContext(now_s * 1000, "run-chaos-0001", catalog)).decisions


def plan_case(case: corpus.Case, now_s: int = NOW_S) -> Decision:
    items = {case.session_id: case.line_items} if case.line_items is not None else None
    decisions = plan([case.raw], case.account, now_s=now_s, line_items=items)
    assert len(decisions) == 1
    return decisions[0]


def check(decision: Decision, expect: corpus.Expect) -> list[str]:
    """The decision against the expected outcome, and what any decision must satisfy."""
    problems: list[str] = []
    outcome, reason = expect
    if decision.outcome != outcome or (reason is not None and decision.reason != reason):
        problems.append(f"{decision.outcome} {decision.reason} ({decision.detail}), "
                        f"expected {outcome} {reason}")
    if outcome != "created" and (decision.creation is not None
                                 or transaction_mutations([decision])):
        problems.append("writes something")
    if decision.outcome == "failed" and not decision.detail.startswith("malformed session: "):
        problems.append(f"failed without its cause: {decision.detail!r}")
    if decision.outcome == "needs_manual" and (decision.reason not in NEEDS_MANUAL_REASONS
                                               or not decision.detail):
        problems.append(f"needs_manual without a reason and detail: {decision}")
    if "\n" in decision.detail:
        problems.append("detail is more than one line")
    report = RunReport("run-chaos-0001", "", "", "", dry_run=False)
    report.add(decision)
    json.dumps(report.to_json())  # the report of any outcome is JSON
    render_run_summary(report.to_json())
    return problems


CASES = corpus.cases(NOW_S)


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.expect[0] for c in CASES} == {"failed", "ignored", "needs_manual"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_ends_with_its_reason_and_writes_nothing(case: corpus.Case,
                                                            tally: Tally) -> None:
    decision = plan_case(case)
    tally.bad_input(f"{decision.outcome}:{decision.reason or 'malformed'}")
    assert check(decision, case.expect) == []


HARMLESS = corpus.harmless_cases(NOW_S)


@pytest.mark.parametrize("case", HARMLESS, ids=[c.name for c in HARMLESS])
def test_odd_but_decidable_inputs_are_created_exactly(case: corpus.Case, tally: Tally) -> None:
    decision = plan_case(case)
    tally.bad_input(f"{decision.outcome}:harmless")
    assert check(decision, case.expect) == []
    assert decision.creation is not None
    doc = decision.creation.subscription
    assert doc["_id"] == f"subscription-{case.session_id}" and SANITY_ID.match(doc["_id"])
    assert doc["stripeSessionId"] == case.session_id
    # Nothing of the buyer's personal data in an id.
    details = case.raw.get("customer_details") or {}
    for mutation in transaction_mutations([decision]):
        body = next(iter(mutation.values()))
        ident = str(body.get("_id") or body.get("id"))
        assert not any(str(v) and str(v) in ident for v in details.values())


def test_catalog_documents_of_the_wrong_shape_never_crash() -> None:
    """Tenants and passes as Sanity may hold them after years of scripts: wrong types
    everywhere. The catalog skips what it cannot use; a session naming them needs a person."""
    junk: list[Any] = [
        {"_type": "tenant"},  # no _id
        {"_id": 7, "_type": "tenant"},
        {"_id": "tenantJunk1", "_type": "tenant", "stripeConnect": "acct_1ChaosSchoolA0001"},
        {"_id": "tenantJunk2", "_type": "tenant", "stripeConnect": {"accountId": 42},
         "schoolName": ["x"]},
        {"_id": "passJunk1", "_type": "pass", "tenant": "tenantChaosA0000000001",
         "name": 10, "type": ["multi"], "classesLimit": {"n": 10}},
        {"_id": "passJunk2", "_type": "pass", "tenant": {"_ref": None}, "validityDays": True},
        {"_id": "drafts.passJunk3", "_type": "pass"},
    ]
    raws = [corpus.session(f"Junk{n}", NOW_S, **{"md": {"passId": pid}})
            for n, pid in enumerate(("passJunk1", "passJunk2", "passJunk3"))]
    decisions = plan(raws, corpus.ACCT_A, catalog_junk=junk)
    assert [(d.outcome, d.reason) for d in decisions] == [
        ("needs_manual", "tenant_mismatch"), ("needs_manual", "tenant_mismatch"),
        ("needs_manual", "pass_not_found")]
    assert transaction_mutations(decisions) == []


def test_a_huge_page_is_planned_whole_and_quickly() -> None:
    """100 sessions, each with 50 metadata keys of 500 characters (Stripe's maximum)."""
    page = corpus.huge_page(NOW_S)
    assert all(len(r["metadata"]) == 50 for r in page)
    started = time.perf_counter()
    decisions = plan(page, corpus.ACCT_A)
    elapsed = time.perf_counter() - started
    assert [d.outcome for d in decisions] == ["created"] * 100
    mutations = transaction_mutations(decisions)
    assert len(mutations) == 100  # the student exists: one subscription each, nothing else
    for mutation in mutations:
        doc = mutation["createIfNotExists"]
        assert not [k for k in doc if k.startswith("note")]  # metadata junk is not copied
        assert SANITY_ID.match(doc["_id"])
    assert elapsed < 2.0, elapsed


# ----- fuzzing: whatever JSON arrives where a session should be

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
FIELDS = ("id", "created", "status", "mode", "payment_status", "payment_intent",
          "amount_total", "currency", "customer_details", "customer_email", "livemode",
          "metadata")
MD_KEYS = ("passId", "userId", "tenantId", "type", "upgradeFromSubscriptionId", "classId",
           "promoCode", "originalPrice", "finalPrice", "discountAmount")


@st.composite
def mangled_sessions(draw: st.DrawFn) -> Any:
    """A valid purchase with some fields (and metadata values) replaced by arbitrary JSON,
    or arbitrary JSON altogether."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    raw = corpus.session("Fuzz", NOW_S)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        raw[name] = draw(JSON_VALUES)
    if isinstance(raw.get("metadata"), dict):
        for key in draw(st.lists(st.sampled_from(MD_KEYS), max_size=4, unique=True)):
            raw["metadata"][key] = draw(JSON_VALUES)
    return raw


def test_fuzzed_sessions_never_crash_and_write_only_a_real_purchase(soaking: bool) -> None:
    allowed = ({("failed", None)} | {("ignored", k) for k in IGNORED_KINDS}
               | {("pending", k) for k in PENDING_KINDS}
               | {("needs_manual", r) for r in NEEDS_MANUAL_REASONS}
               | {("created", None), ("already_present", None)})

    @settings(max_examples=3000 if soaking else 300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw=mangled_sessions(), line_items=st.none() | JSON_VALUES)
    def fuzz(raw: Any, line_items: Any) -> None:
        sid = raw.get("id") if isinstance(raw, dict) else None
        items = {sid: line_items} if isinstance(sid, str) else None
        decisions = plan([raw], corpus.ACCT_A, line_items=items)
        decision = decisions[0]
        assert (decision.outcome, decision.reason) in allowed
        if decision.creation is None:
            assert transaction_mutations(decisions) == []
            return
        # A write only for a complete, paid purchase naming a known pass and a usable user.
        assert isinstance(raw, dict)
        assert raw["status"] == "complete" and raw["payment_status"] == "paid"
        assert raw["mode"] != "subscription"
        assert isinstance(raw["created"], int) and raw["created"] <= NOW_S + 300
        md = raw.get("metadata") or {}
        assert not (isinstance(md.get("classId"), str) and md["classId"].strip())
        doc = decision.creation.subscription
        assert doc["passId"] == corpus.P_CLIP or md.get("passId") == doc["passId"]
        assert SANITY_ID.match(str(doc["_id"])) and doc["_id"] == f"subscription-{raw['id']}"
        for mutation in transaction_mutations(decisions):
            body = next(iter(mutation.values()))
            assert SANITY_ID.match(str(body.get("_id") or body.get("id")))

    fuzz()


# ----- a sample of the corpus through the real CLI and both stand-ins

CLI_CASES = [c for c in corpus.cases(0) if c.cli]


@pytest.fixture
def bad_world(tmp_path: Path, sanity: SanityStandIn) -> Iterator[tuple[Sandbox, int]]:
    now = int(time.time()) // 60 * 60
    chosen = [c for c in corpus.cases(now) if c.cli] + corpus.harmless_cases(now)
    data = corpus.mini_world(now, chosen, corpus.huge_page(now))
    path = tmp_path / "stripe.json"
    path.write_text(json.dumps(data))
    sanity.load_documents(corpus.sanity_docs())
    stripe = StripeStandIn(path, now=lambda: float(now)).start()
    truth = {"window": {"since": now - 2 * 86_400, "until": now - 600}}
    box = Sandbox(ROOT, truth, stripe, sanity, tmp_path / "state")
    yield box, now
    stripe.stop()


def test_a_sample_of_bad_inputs_through_the_cli(bad_world: tuple[Sandbox, int],
                                                tally: Tally) -> None:
    box, now = bad_world
    chosen = [c for c in corpus.cases(now) if c.cli]
    harmless = corpus.harmless_cases(now)
    before = box.docs()
    code, report, stderr = box.run_report()
    assert code == 1, stderr  # failed and needs-manual sessions: a person is needed
    assert "Traceback" not in stderr
    failed = {f["session_id"]: f["error"] for f in report["failed"]}
    manual = {m["session_id"]: m["reason"] for m in report["needs_manual"]}
    created = {c["session_id"] for c in report["created"]}
    problems = []
    ignored: Counter[str] = Counter()
    for case in chosen:
        outcome, reason = case.expect
        sid = case.session_id
        if outcome == "failed":
            got = failed.get(sid, "")
            if not got.startswith("malformed session: ") or "\n" in got:
                problems.append(f"{case.name}: failed {got!r}")
        elif outcome == "needs_manual":
            if manual.get(sid) != reason:
                problems.append(f"{case.name}: needs_manual {manual.get(sid)} != {reason}")
        elif outcome == "ignored":
            ignored[str(reason)] += 1
            if sid in failed or sid in manual or sid in created:
                problems.append(f"{case.name}: not ignored")
    assert problems == []
    assert report["ignored"] == dict(ignored)
    huge = {r["id"] for r in corpus.huge_page(now)}
    assert created == huge | {c.session_id for c in harmless}
    after = box.docs()
    assert set(after) - set(before) == {f"subscription-{s}" for s in created}
    assert all(after[k] == v for k, v in before.items())  # nothing existing was touched
    for case in chosen:
        tally.bad_input(f"cli:{case.expect[0]}")
