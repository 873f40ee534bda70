"""The terminal summary: plain words for each purchase needing a person, no personal data."""

from jobs.core.runreport import RunReport
from jobs.reports.summary import render_run_summary
from tests.unit.test_reconcile import run, session, world


def test_summary_names_each_problem_in_plain_words_without_e_mails() -> None:
    stripe, sanity = world(2)
    stripe.sessions["acct_school1"].append(session(7, metadata={"type": "pass_purchase",
                                                                "passId": "p1"}))
    report = run(stripe, sanity)
    text = render_run_summary(report.to_json())
    assert "repaired (created)        2" in text
    assert "cs_test_0007" in text and "(user_unknown)" in text
    assert "@example.com" not in text


def test_dry_run_summary_says_nothing_was_written() -> None:
    report = RunReport(run_id="r", started_at="s", since="a", until="b", dry_run=True)
    text = render_run_summary(report.to_json())
    assert text.startswith("DRY RUN - nothing written.")
    assert "would create" in text
