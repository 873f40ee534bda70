"""Rendering: number formats, the table-cell chart, e-mail-safe HTML, the text part, files."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.core.records import RunRecord, SessionOutcome
from jobs.reports.alerts import Alert
from jobs.reports.render import (
    _webhook_view,
    bar_segments,
    duration,
    money,
    pct,
    render_alerts,
    render_weekly,
    weekly_subject,
    write_weekly,
)
from jobs.reports.weekly import LedgerRows, Links, compute_weekly
from jobs.reports.weekly_rows import TrendWeek, WeeklyReport

OSLO = ZoneInfo("Europe/Oslo")
MON = date(2024, 5, 6)
T = datetime(2024, 5, 7, 10, 0, tzinfo=UTC)
EVIL = "<script>alert(1)</script>@example.com"


def row(sid: str, outcome: str, *, email: str | None = None, reason: str | None = None,
        created_after: float | None = None, amount: float = 250.0) -> SessionOutcome:
    paid = T - timedelta(minutes=30)
    return SessionOutcome(
        session_id=sid, account="acct_1", tenant="tenant-a", outcome=outcome, reason=reason,
        detail=None, amount=amount, currency="nok", email=email or f"{sid}@example.com",
        pass_id="pass-1", pass_name="10 Single Clip Card", subscription_id=None, user_id=None,
        paid_at=paid, first_seen_at=T, first_outcome=outcome, first_run_id="r",
        last_seen_at=T, last_run_id="r",
        created_at=None if created_after is None else paid + timedelta(seconds=created_after),
        created_run_id=None if created_after is None else "r")


def weekly(rows: list[SessionOutcome], webhook: dict[str, object] | None = None,
           key_mode: str = "live") -> WeeklyReport:
    ok = RunRecord(run_id="r", kind="quick", since=T, until=T, dry_run=False,
                   accounts=["acct_1"], pid=1, started_at=T,
                   finished_at=T + timedelta(seconds=3), status="ok", counts={},
                   account_errors={}, error=None)
    ledger_rows = LedgerRows(
        first_seen=rows, created=[r for r in rows if r.created_at],
        open_manual=[r for r in rows if r.outcome == "needs_manual"], anomalies=[],
        anomaly_sessions={}, runs=[ok], last_success=ok, consecutive_failures=0)
    return compute_weekly(ledger_rows, MON, datetime(2024, 5, 13, 7, tzinfo=UTC), tz=OSLO,
                          links=Links("https://dashboard.stripe.com", key_mode),
                          webhook_health=webhook)


# ---- formats -------------------------------------------------------------------------------


def test_money_shows_major_units_with_the_currencys_decimals() -> None:
    assert money(2250.3, "nok") == "2,250.30 NOK"
    assert money(1500, "JPY") == "1,500 JPY"  # zero-decimal
    assert money(1.234, "kwd") == "1.234 KWD"  # three-decimal
    assert money(None, "nok") == "—"


def test_durations_and_percentages_read_like_words() -> None:
    assert [duration(s) for s in (None, 45, 60, 250, 3600, 3840, 90000, 86400)] == [
        "—", "45 s", "1 min", "4 min 10 s", "1 h", "1 h 4 min", "1 d 1 h", "1 d"]
    assert (pct(0.631578), pct(1.0, 0), pct(None)) == ("63.2 %", "100 %", "—")


def week(purchases: int, automatic: int, repaired: int, person: int, other: int) -> TrendWeek:
    return TrendWeek(MON, purchases, automatic, repaired, person, other, person,
                     automatic / purchases if purchases else None, None)


def test_bar_segments_add_up_to_the_bars_length() -> None:
    full = bar_segments(week(19, 12, 4, 2, 1), scale=19)
    assert [s.name for s in full] == ["automatic", "repaired", "person", "other"]
    assert sum(s.width for s in full) == 100
    half = bar_segments(week(6, 4, 1, 1, 0), scale=12)
    assert sum(s.width for s in half) == 50 and all(s.width >= 1 for s in half)
    tiny = bar_segments(week(1000, 999, 0, 1, 0), scale=1000)
    assert [s.width for s in tiny] == [99, 1]  # one person in a thousand still shows
    assert bar_segments(week(0, 0, 0, 0, 0), scale=19) == []
    assert bar_segments(week(3, 3, 0, 0, 0), scale=0) == []


# ---- the weekly e-mail ---------------------------------------------------------------------


def test_html_is_e_mail_safe_and_escapes_what_it_shows() -> None:
    report = weekly([row("cs_live_a", "already_present"),
                     row("cs_live_n", "needs_manual", reason="user_ambiguous", email=EVIL),
                     row("cs_live_c", "created", created_after=120)])
    html = render_weekly(report).html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for forbidden in ("<svg", "<style", "class=", "<img", "<link", "data:"):
        assert forbidden not in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs and all(h.startswith("https://dashboard.stripe.com/acct_1/checkout/sessions/")
                         for h in hrefs)
    # The chart is coloured table cells (bgcolor for Outlook, background-color for the rest).
    assert 'bgcolor="#2e7d32"' in html and "background-color:#2e7d32" in html
    # The verdict first, then the figures (a clip or a phone screen must not hide them),
    # then the cards saying what needs doing.
    assert html.index("1 purchase needs you.") < html.index("This week in figures")
    assert html.index("This week in figures") < html.index(
        "Several student accounts have the same sign-in id")


def test_text_part_carries_the_same_facts_without_html() -> None:
    report = weekly([row("cs_live_n", "needs_manual", reason="pass_not_found", email=EVIL),
                     row("cs_live_a", "already_present")])
    text = render_weekly(report).text
    assert "<table" not in text and "&lt;" not in text
    assert EVIL in text  # plain text: shown as typed
    assert "1 PURCHASE NEEDS YOU" in text
    assert "The pass this payment names does not exist (any more)" in text
    assert "https://dashboard.stripe.com/acct_1/checkout/sessions/cs_live_n" in text
    assert "Automatic success:    50.0 % (1), target 98 %: off target" in text
    assert "Not checked for this report" in text


def test_an_empty_week_renders_and_says_nothing_needs_you() -> None:
    report = weekly([])
    rendered = render_weekly(report)
    assert "Nothing needs you." in rendered.html and "Nothing needs you." in rendered.text
    assert "no purchases" in rendered.html
    assert rendered.subject == (
        "Pass reconciler, week 2024-W19: nothing needs you; — automatic of 0 purchases")


def test_subject_names_test_mode_and_how_many_need_you() -> None:
    report = weekly([row("a", "needs_manual", reason="user_unknown"),
                     row("b", "needs_manual", reason="user_unknown")], key_mode="test")
    assert weekly_subject(report) == (
        "[TEST] Pass reconciler, week 2024-W19: 2 need you; 0.0 % automatic of 2 purchases")
    assert "TEST MODE" in render_weekly(report).html


def test_webhook_health_is_shown_whatever_its_shape() -> None:
    view = _webhook_view({
        "undelivered_events": {"acct_1": 3, "platform": 1},
        "problems": ["no Connect endpoint", {"account": "acct_2", "problem": "403"}],
        "endpoints": [{"url": "https://a.example/hook", "status": "disabled"},
                      {"url": "https://b.example/hook", "status": "enabled"}],
        "checked_at": "2024-05-13T07:00:00Z", "endpoints_checked": 2, "nested": {"x": 1}})
    assert view["undelivered"] == 4 and view["healthy"] is False
    assert view["problems"] == ["no Connect endpoint", "acct_2: 403",
                                "https://a.example/hook: status disabled"]
    assert view["extra"] == [("endpoints_checked", 2)]
    assert _webhook_view({"undelivered_events": 0})["healthy"] is True
    html = render_weekly(weekly([], webhook={"undelivered_events": 0})).html
    assert "No problems found." in html


def test_write_weekly_writes_four_private_files(tmp_path: Path) -> None:
    report = weekly([row("a", "already_present")])
    paths = write_weekly(report, tmp_path / "out")
    assert {k: p.name for k, p in paths.items()} == {
        "html": "report.html", "text": "report.txt", "json": "report.json",
        "csv": "report.csv"}
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(paths["json"].read_text()) == report.to_json()
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")


# ---- alert e-mails -------------------------------------------------------------------------


def test_alert_mail_lists_every_alert_with_its_fix_and_link() -> None:
    alerts = [Alert("missing_spike:r1", "missing_spike", "The webhook looks broken now",
                    "Many were missing.", "Run `reconcile doctor`.", (("Run", "r1"),)),
              Alert("needs_manual:cs_1", "needs_manual", "A purchase needs you",
                    "No pass id.", "Ask the school.", (("Student", EVIL),),
                    "https://dashboard.stripe.com/test/checkout/sessions/cs_1")]
    rendered = render_alerts(alerts, key_mode="test")
    assert rendered.subject == (
        "[TEST] Pass reconciler: 2 alerts, first: The webhook looks broken now")
    assert "<code" in rendered.html and "reconcile doctor" in rendered.html
    assert "<script>" not in rendered.html and EVIL in rendered.text
    assert rendered.text.index("The webhook looks broken now") < rendered.text.index(
        "A purchase needs you")
    assert "https://dashboard.stripe.com/test/checkout/sessions/cs_1" in rendered.text
    single = render_alerts(alerts[1:])
    assert single.subject == "Pass reconciler alert: A purchase needs you"


@pytest.mark.parametrize("name", ["weekly.html.j2", "alert.html.j2"])
def test_templates_use_inline_styles_only(name: str) -> None:
    source = (Path(__file__).parents[2] / "jobs" / "reports" / "templates" / name).read_text()
    assert "<style" not in source and "class=" not in source and "<svg" not in source
