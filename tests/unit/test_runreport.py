"""The run report JSON of design.md and the exit code it implies."""

from __future__ import annotations

import json

import pytest

from jobs.core.model import Anomaly, Decision
from jobs.core.planner import decide
from jobs.core.runreport import COUNT_KEYS, RunReport
from tests.support.sessions import (
    ACCT1,
    P_CLIP,
    T1,
    USER_DOC,
    classified,
    ctx,
    facts,
    metadata,
    raw_session,
    sub_doc,
    user_doc,
)

TOP_KEYS = {"run_id", "started_at", "finished_at", "dry_run", "window", "accounts", "counts",
            "created", "needs_manual", "pending", "failed", "ignored", "anomalies"}
DESIGN_COUNTS = ("sessions_scanned", "pass_purchases", "already_present", "created",
                 "needs_manual", "pending", "failed", "ignored")
CREATED_KEYS = {"session_id", "account", "tenant", "subscription_id", "user_id", "pass_id",
                "pass_name", "email", "amount", "currency", "paid_at"}
NEEDS_MANUAL_KEYS = {"session_id", "account", "reason", "detail", "email", "amount", "currency"}
PENDING_KEYS = {"session_id", "account", "reason"}
FAILED_KEYS = {"session_id", "account", "error"}
ANOMALY_KEYS = {"kind", "session_id", "subscription_ids", "detail"}
ACCOUNT_KEYS = {"account", "tenant", "pages", "sessions", "error"}


def new_report(dry_run: bool = False) -> RunReport:
    return RunReport(run_id="run_test_0001", started_at="2026-08-17T20:53:20.000Z",
                     since="2026-08-14T20:53:20.000Z", until="2026-08-17T20:48:20.000Z",
                     dry_run=dry_run)


def planned(raw, f=None, **kw) -> Decision:
    return decide(classified(raw, **kw), facts(users=[user_doc()]) if f is None else f, ctx())


def mixed_report() -> RunReport:
    report = new_report()
    acct = report.account(ACCT1, T1)
    acct.pages, acct.sessions = 1, 7
    report.account("platform").error = "API key has no access"
    for d in [
        planned(raw_session(1)),                                            # created
        planned(raw_session(2), facts([sub_doc("s2", stripeSessionId="cs_test_a12",
                                               type="single")])),           # present + anomaly
        planned(raw_session(3, md=metadata(passId="passGone"))),           # needs_manual
        planned(raw_session(4, payment_status="unpaid")),                  # pending
        planned(raw_session(5, created="bad")),                            # failed
        planned(raw_session(6, md={"classId": "c1"})),                      # ignored
        planned(raw_session(7, md={"classId": "c2"})),                      # ignored
    ]:
        report.add(d)
    return report


def test_json_has_every_key_of_the_design():
    out = mixed_report().to_json()
    assert set(out) >= TOP_KEYS
    assert out["window"] == {"since": "2026-08-14T20:53:20.000Z",
                             "until": "2026-08-17T20:48:20.000Z"}
    assert out["dry_run"] is False
    assert [set(a) for a in out["accounts"]] == [ACCOUNT_KEYS, ACCOUNT_KEYS]
    assert tuple(out["counts"]) == DESIGN_COUNTS == COUNT_KEYS
    assert [set(c) for c in out["created"]] == [CREATED_KEYS]
    assert all(set(n) >= NEEDS_MANUAL_KEYS for n in out["needs_manual"])
    assert all(set(p) >= PENDING_KEYS for p in out["pending"])
    assert [set(f) for f in out["failed"]] == [FAILED_KEYS]
    assert [set(a) for a in out["anomalies"]] == [ANOMALY_KEYS]
    assert type(out["ignored"]) is dict
    json.dumps(out)  # plain JSON all the way down


def test_counts_and_lists():
    out = mixed_report().to_json()
    assert out["counts"] == {"sessions_scanned": 7, "pass_purchases": 3, "already_present": 1,
                             "created": 1, "needs_manual": 1, "pending": 1, "failed": 1,
                             "ignored": 2}
    assert out["ignored"] == {"class_dropin": 2}
    assert out["created"] == [{
        "session_id": "cs_test_a11", "account": ACCT1, "tenant": T1,
        "subscription_id": "subscription-cs_test_a11", "user_id": USER_DOC, "pass_id": P_CLIP,
        "pass_name": "10 Single Clip Card", "email": "kari.nordmann@example.com",
        "amount": 2000, "currency": "nok", "paid_at": "2026-08-17T19:53:20.000Z"}]
    manual = out["needs_manual"][0]
    assert {k: manual[k] for k in NEEDS_MANUAL_KEYS} == {
        "session_id": "cs_test_a13", "account": ACCT1, "reason": "pass_not_found",
        "detail": manual["detail"], "email": "kari.nordmann@example.com", "amount": 2000,
        "currency": "nok"}
    assert "passGone" in manual["detail"]
    assert {k: out["pending"][0][k] for k in PENDING_KEYS} == {
        "session_id": "cs_test_a14", "account": ACCT1, "reason": "async_payment"}
    assert out["failed"][0]["session_id"] == "cs_test_a15"
    assert out["failed"][0]["error"].startswith("malformed session: ")
    assert out["anomalies"] == [{"kind": "mistyped_subscription", "session_id": "cs_test_a12",
                                 "subscription_ids": ["s2"],
                                 "detail": out["anomalies"][0]["detail"]}]
    assert out["accounts"] == [
        {"account": ACCT1, "tenant": T1, "pages": 1, "sessions": 7, "error": None},
        {"account": "platform", "tenant": None, "pages": 0, "sessions": 0,
         "error": "API key has no access"}]


def test_empty_report_has_zero_counts_and_empty_lists():
    out = new_report(dry_run=True).to_json()
    assert out["counts"] == dict.fromkeys(DESIGN_COUNTS, 0)
    assert (out["created"], out["needs_manual"], out["pending"], out["failed"],
            out["ignored"], out["anomalies"], out["accounts"]) == ([], [], [], [], {}, [], [])
    assert out["dry_run"] is True


def test_ignored_kinds_are_counted_in_a_sorted_dict():
    report = new_report()
    for i, kind in enumerate(["refunded", "not_a_pass", "refunded", "class_dropin"]):
        report.add(Decision(f"cs_{i}", ACCT1, "ignored", reason=kind))
    assert report.to_json()["ignored"] == {"class_dropin": 1, "not_a_pass": 1, "refunded": 2}
    assert list(report.to_json()["ignored"]) == ["class_dropin", "not_a_pass", "refunded"]


def test_anomalies_of_ignored_sessions_are_listed():
    report = new_report()
    report.add(Decision("cs_r", ACCT1, "ignored", reason="refunded", anomalies=(
        Anomaly("refunded_but_active", "cs_r", ("s1",), "still active"),)))
    assert report.to_json()["anomalies"] == [{"kind": "refunded_but_active",
                                              "session_id": "cs_r", "subscription_ids": ["s1"],
                                              "detail": "still active"}]
    assert report.exit_code() == 0


def test_account_summary_is_one_per_account():
    report = new_report()
    assert report.account(ACCT1, T1) is report.account(ACCT1)
    report.account(ACCT1).pages += 2
    assert report.to_json()["accounts"] == [
        {"account": ACCT1, "tenant": T1, "pages": 2, "sessions": 0, "error": None}]


def test_write_failure_is_a_failed_pass_purchase():
    report = new_report()
    d = planned(raw_session(1))
    report.add_write_failure(d, "transaction rejected: 409")
    out = report.to_json()
    assert out["counts"]["sessions_scanned"] == out["counts"]["failed"] == 1
    assert out["counts"]["created"] == 0
    assert out["failed"] == [{"session_id": "cs_test_a11", "account": ACCT1,
                              "error": "transaction rejected: 409"}]
    assert report.exit_code() == 1


# exit codes ----------------------------------------------------------------------------------

def test_all_good_is_zero():
    report = new_report()
    report.account(ACCT1, T1)
    report.add(planned(raw_session(1)))
    report.add(planned(raw_session(2, payment_status="unpaid")))
    report.add(planned(raw_session(3, md={"classId": "c"})))
    report.add(planned(raw_session(4), facts([sub_doc("x", stripeSessionId="cs_test_a14",
                                                      type="single")])))
    assert report.anomalies  # anomalies alone need no person
    assert report.exit_code() == 0


@pytest.mark.parametrize("problem", ["needs_manual", "failed", "account_error", "cap", "error"])
def test_anything_needing_a_person_is_one(problem):
    report = new_report()
    report.add(planned(raw_session(1)))
    if problem == "needs_manual":
        report.add(planned(raw_session(2, md=metadata(passId="passGone"))))
    elif problem == "failed":
        report.add(planned(raw_session(2, created="bad")))
    elif problem == "account_error":
        report.account(ACCT1, T1).error = "account unreadable"
    elif problem == "cap":
        report.cap_exceeded = True
    else:
        report.error = "Sanity unreachable after retries"
    assert report.exit_code() == 1
