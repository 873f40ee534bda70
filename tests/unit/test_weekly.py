"""Weekly figures: pure over hand-made ledger rows, then end to end over a known ledger."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobs.core.model import ANOMALY_KINDS, NEEDS_MANUAL_REASONS
from jobs.core.reasons import ANOMALIES, NEEDS_MANUAL, explain_failure, runbook_markdown
from jobs.core.records import RunRecord, SessionOutcome
from jobs.reports.weekly import (
    LedgerRows,
    Links,
    compute_weekly,
    headline,
    money_by_currency,
    repair_times,
    run_health,
    trend,
)
from jobs.reports.weekly_ledger import build_weekly
from jobs.reports.weeks import (
    last_complete_week,
    percentile,
    purchase_category,
    stripe_payment_url,
    week_bounds,
)
from tests.unit import report_world as world

OSLO = ZoneInfo("Europe/Oslo")
MON = date(2024, 5, 6)
T = datetime(2024, 5, 7, 10, 0, tzinfo=UTC)  # inside the week of MON
LINKS = Links("https://dashboard.stripe.com", "live")


def row(sid: str, outcome: str, *, first: str | None = None, amount: float | None = 100.0,
        currency: str | None = "nok", seen: datetime = T, paid: datetime | None = None,
        created_after: float | None = None, reason: str | None = None,
        detail: str | None = None, account: str = "acct_1") -> SessionOutcome:
    paid = paid or seen - timedelta(minutes=20)
    return SessionOutcome(
        session_id=sid, account=account, tenant="tenant-a", outcome=outcome, reason=reason,
        detail=detail, amount=amount, currency=currency, email=f"{sid}@example.com",
        pass_id="pass-1", pass_name="10 classes", subscription_id=None, user_id=None,
        paid_at=paid, first_seen_at=seen, first_outcome=first or outcome, first_run_id="r",
        last_seen_at=seen, last_run_id="r",
        created_at=None if created_after is None else paid + timedelta(seconds=created_after),
        created_run_id=None if created_after is None else "r",
    )


def run(run_id: str, status: str, *, dry: bool = False, at: datetime = T,
        error: str | None = None) -> RunRecord:
    return RunRecord(run_id=run_id, kind="quick", since=at - timedelta(hours=1), until=at,
                     dry_run=dry, accounts=["acct_1"], pid=1, started_at=at,
                     finished_at=at + timedelta(seconds=5), status=status, counts={},
                     account_errors={}, error=error)


# ---- percentiles ---------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [120.0, 600.0, 180.0, 3840.0]
    assert percentile(values, 50) == 390.0  # (180 + 600) / 2
    assert percentile(values, 95) == pytest.approx(600 + 3240 * 0.85)
    assert percentile(values, 0) == 120.0 and percentile(values, 100) == 3840.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_repair_times_are_judged_by_p95_against_five_minutes() -> None:
    created = [row(f"c{i}", "created", created_after=s) for i, s in enumerate([60, 90, 240, 280])]
    times = repair_times(created)
    assert (times.count, times.median, times.max, times.within_target) == (4, 165.0, 280, 4)
    assert times.p95 == pytest.approx(240 + 40 * 0.85) and times.target_met is True
    slow = repair_times([*created, row("late", "created", created_after=3600)])
    assert slow.target_met is False and slow.within_target == 4
    assert repair_times([]) == replace(times, count=0, median=None, p95=None, max=None,
                                       within_target=0, target_met=None)


# ---- what a row counts as ------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "first", "created", "detail", "category"), [
    ("already_present", "already_present", None, None, "automatic"),
    ("already_present", "pending", None, None, "automatic"),  # async payment, webhook did it
    ("created", "created", 300, None, "repaired"),
    ("created", "would_create", 300, None, "repaired"),  # a dry run saw it first
    ("created", "failed", 900, None, "repaired"),  # a failed write, retried by the next run
    ("needs_manual", "needs_manual", None, None, "open"),
    ("failed", "failed", None, "write failed: 500", "open"),
    ("already_present", "needs_manual", None, None, "fixed_by_person"),
    ("already_present", "would_create", None, None, "fixed_elsewhere"),
    ("would_create", "would_create", None, None, "still_missing"),
    ("pending", "pending", None, None, None),
    ("pending_expired", "pending", None, None, None),
    ("ignored", "pending", None, None, None),
    ("failed", "failed", None, "malformed session: no id", None),
])
def test_purchase_category(outcome: str, first: str, created: float | None,
                           detail: str | None, category: str | None) -> None:
    r = row("s", outcome, first=first, created_after=created, detail=detail)
    assert purchase_category(r) == category


def test_headline_success_rate_and_people_against_targets() -> None:
    rows = [row(f"a{i}", "already_present") for i in range(47)]
    rows += [row("c1", "created", created_after=400),
             row("c2", "created", first="needs_manual", created_after=86400),  # fixed pass data
             row("n1", "needs_manual", reason="user_unknown"),
             row("p1", "pending"),
             row("m1", "failed", detail="malformed session: created is not an integer")]
    h = headline(rows)
    assert (h.purchases, h.automatic, h.repaired, h.open, h.pending) == (50, 47, 2, 1, 1)
    assert h.needed_person == 2  # n1, and c2 which first needed a person
    assert h.automatic_rate == pytest.approx(0.94) and h.automatic_target_met is False
    assert h.manual_rate == pytest.approx(0.04) and h.manual_target_met is False
    good = headline([row(f"a{i}", "already_present") for i in range(98)]
                    + [row("c", "created", created_after=60), row("n", "needs_manual")])
    assert good.automatic_rate == 0.98 and good.automatic_target_met is True
    assert good.manual_rate == 0.01 and good.manual_target_met is True
    empty = headline([])
    assert (empty.purchases, empty.automatic_rate, empty.automatic_target_met) == (0, None, None)


def test_money_per_currency_in_major_units_without_float_drift() -> None:
    rows = [row("a", "already_present", amount=120.1),
            row("b", "created", amount=250.1, created_after=60),
            row("c", "needs_manual", amount=300.1),
            row("d", "created", amount=49.9, currency="EUR", created_after=60),
            row("e", "failed", amount=None, currency=None, detail="write failed"),
            row("f", "pending", amount=999.0)]
    lines = {m.currency: m for m in money_by_currency(rows)}
    assert set(lines) == {"eur", "nok"}  # sorted, lower-cased; no-amount and pending left out
    nok = lines["nok"]
    assert (nok.purchases, nok.purchases_amount) == (3, 670.3)  # not 670.3000000000001
    assert (nok.repaired, nok.repaired_amount, nok.needs_person, nok.needs_person_amount) == (
        1, 250.1, 1, 300.1)
    assert (lines["eur"].purchases_amount, lines["eur"].repaired_amount) == (49.9, 49.9)


def test_run_health_counts_real_runs_and_names_the_last_failure() -> None:
    runs = [run("r1", "ok"), run("r2", "failed", error="boom"), run("r3", "partial"),
            run("r4", "interrupted", error="process 9 ended"), run("r5", "ok", dry=True),
            run("r6", "running")]
    health = run_health(runs, run("r0", "ok"), 1)
    assert (health.runs, health.dry_runs, health.ok, health.partial, health.failed,
            health.running) == (5, 1, 1, 1, 2, 1)
    assert health.last_failure == "process 9 ended" and health.last_success_run_id == "r0"
    assert run_health([], None, 0).last_success_at is None


# ---- weeks and the trend -------------------------------------------------------------------


def test_week_bounds_follow_the_timezone_including_dst() -> None:
    start, end = week_bounds(date(2024, 5, 8), OSLO)  # any day: its Monday
    assert start == datetime(2024, 5, 5, 22, 0, tzinfo=UTC)
    assert end == datetime(2024, 5, 12, 22, 0, tzinfo=UTC)
    dst_start, dst_end = week_bounds(date(2024, 3, 25), OSLO)  # clocks go forward on 31 March
    assert (dst_end - dst_start) == timedelta(hours=167)


def test_default_week_is_the_last_complete_one() -> None:
    monday_morning_oslo = datetime(2024, 5, 12, 22, 30, tzinfo=UTC)  # Mon 13 May 00:30
    assert last_complete_week(monday_morning_oslo, OSLO) == date(2024, 5, 6)
    sunday_late_utc = datetime(2024, 5, 12, 21, 30, tzinfo=UTC)  # still Sunday in Oslo
    assert last_complete_week(sunday_late_utc, OSLO) == date(2024, 4, 29)


def test_trend_buckets_rows_by_the_week_they_were_first_seen() -> None:
    mondays = [MON - timedelta(weeks=n) for n in range(7, -1, -1)]
    rows = [row("old", "already_present", seen=T - timedelta(weeks=8)),  # before the trend
            row("w6a", "already_present", seen=T - timedelta(weeks=6)),
            row("w6b", "needs_manual", seen=T - timedelta(weeks=6)),
            row("w1", "created", seen=T - timedelta(weeks=1), created_after=60),
            row("w0a", "already_present"), row("w0b", "already_present"),
            row("w0c", "would_create"),
            # Sunday 23:30 in Oslo belongs to that week, Monday 00:30 to the next.
            row("sun", "already_present", seen=datetime(2024, 5, 12, 21, 30, tzinfo=UTC)),
            row("mon", "already_present", seen=datetime(2024, 5, 12, 22, 30, tzinfo=UTC))]
    weeks = trend(rows, mondays, OSLO)
    assert [w.week_start for w in weeks] == mondays
    assert [w.purchases for w in weeks] == [0, 2, 0, 0, 0, 0, 1, 4]
    assert [w.automatic for w in weeks] == [0, 1, 0, 0, 0, 0, 0, 3]
    assert weeks[1].person == 1 and weeks[6].repaired == 1 and weeks[7].other == 1
    assert weeks[1].automatic_rate == 0.5 and weeks[0].automatic_rate is None
    for w in weeks:  # the chart's segments add up to the bar
        assert w.automatic + w.repaired + w.person + w.other == w.purchases


# ---- links, words --------------------------------------------------------------------------


def test_stripe_links_know_connected_accounts_and_test_mode() -> None:
    base = "https://dashboard.stripe.com/"
    assert stripe_payment_url(base, "acct_9", "cs_live_1", "live") == (
        "https://dashboard.stripe.com/acct_9/checkout/sessions/cs_live_1")
    assert stripe_payment_url(base, "platform", "cs_test_1", "live") == (
        "https://dashboard.stripe.com/test/checkout/sessions/cs_test_1")
    assert stripe_payment_url(base, "acct_9", "cs_abc", "test") == (
        "https://dashboard.stripe.com/acct_9/test/checkout/sessions/cs_abc")
    assert stripe_payment_url(base, None, "cs_a/../b", "live").endswith("/cs_a%2F..%2Fb")


def test_every_reason_and_anomaly_has_plain_words_and_a_fix() -> None:
    assert set(NEEDS_MANUAL) == set(NEEDS_MANUAL_REASONS)
    assert set(ANOMALIES) == set(ANOMALY_KINDS)
    for words in [*NEEDS_MANUAL.values(), *ANOMALIES.values()]:
        assert words.title and words.meaning.endswith(".") and words.fix.endswith(".")
        assert "_" not in words.title  # plain words, not codes
    assert explain_failure("malformed session: no id").code == "malformed_session"
    assert explain_failure("not written: safety cap exceeded").code == "cap_hit"
    assert explain_failure("write failed: 403").code == "write_failed"
    book = runbook_markdown()
    assert all(f"`{code}`" in book for code in [*NEEDS_MANUAL_REASONS, *ANOMALY_KINDS])


# ---- the whole report ----------------------------------------------------------------------


def rows_of(first_seen: list[SessionOutcome], **over: Any) -> LedgerRows:
    values: dict[str, Any] = {
        "first_seen": first_seen, "created": [r for r in first_seen if r.created_at],
        "open_manual": [r for r in first_seen if r.outcome == "needs_manual"],
        "anomalies": [], "anomaly_sessions": {}, "runs": [run("r1", "ok")],
        "last_success": run("r1", "ok"), "consecutive_failures": 0}
    values.update(over)
    return LedgerRows(**values)


def test_needs_you_lists_open_manual_and_failed_writes_oldest_payment_first() -> None:
    old = row("old", "needs_manual", reason="tenant_mismatch", seen=T - timedelta(weeks=3),
              paid=T - timedelta(weeks=3))
    new = row("new", "needs_manual", reason="bogus_reason")
    failed = row("f", "failed", detail="write failed: Sanity answered 500", paid=T,
                 account="platform")
    report = compute_weekly(rows_of([old, new, failed]), MON, T + timedelta(days=7), tz=OSLO,
                            links=LINKS, tenant_names={"tenant-a": "Dance City"})
    ids = [n.session_id for n in report.needs_you]
    assert ids == ["old", "new", "f"]
    first, second, third = report.needs_you
    assert (first.new_this_week, second.new_this_week) == (False, True)
    assert first.title == NEEDS_MANUAL["tenant_mismatch"].title and first.school == "Dance City"
    assert second.reason == "bogus_reason" and "diagnose" in second.fix  # unknown: still words
    assert third.reason == "write_failed" and third.dashboard_url == (
        "https://dashboard.stripe.com/checkout/sessions/f")
    assert report.complete is True and report.label == "2024-W19"


def test_the_json_is_plain_data() -> None:
    report = compute_weekly(rows_of([row("a", "already_present")]), MON, T, tz=OSLO,
                            links=LINKS, webhook_health={"undelivered_events": 0})
    data = report.to_json()
    assert data["week_start"] == "2024-05-06" and data["timezone"] == "Europe/Oslo"
    assert data["complete"] is False  # built before the week ended
    assert data["headline"]["automatic_rate"] == 1.0
    assert data["webhook_health"] == {"undelivered_events": 0}
    assert len(data["trend"]) == 8 and data["trend"][-1]["week_start"] == "2024-05-06"
    assert data["label"] == "2024-W19" and data["version"] == 1


def test_build_weekly_over_a_known_ledger(tmp_path: Path) -> None:
    with world.build(tmp_path / "state") as ledger:
        report = build_weekly(ledger, date(2024, 5, 9), world.REPORT_NOW, tz=world.TZ,
                              dashboard_base=world.DASHBOARD, key_mode="test")
    e = world.EXPECTED
    h = report.headline
    assert report.week_start == world.WEEK
    assert (h.purchases, h.automatic, h.repaired, h.open, h.still_missing, h.needed_person,
            h.pending) == (e["purchases"], e["automatic"], e["repaired"], e["open"],
                           e["still_missing"], e["needed_person"], e["pending"])
    assert h.automatic_rate == pytest.approx(e["automatic_rate"])
    assert h.manual_rate == pytest.approx(e["manual_rate"])
    t = report.repair_time
    assert (t.median, t.max, t.within_target) == (e["repair_median"], e["repair_max"],
                                                  e["repair_within"])
    assert t.p95 == pytest.approx(e["repair_p95"])
    assert {m.currency: {k: v for k, v in vars(m).items() if k != "currency"}
            for m in report.money} == e["money"]
    runs = report.runs
    assert {k: getattr(runs, k) for k in e["runs"]} == e["runs"]
    assert runs.last_success_run_id == "r7" and runs.last_failure == "Sanity unreachable: 503"
    assert [n.session_id for n in report.needs_you] == e["needs_you"]
    assert [w.purchases for w in report.trend] == e["trend_purchases"]
    assert [w.automatic for w in report.trend] == e["trend_automatic"]
    assert report.trend[2].person == 1  # m1: needed a person, fixed by hand later
    # By payment time: c3 was paid a minute before c2 (written in the same run).
    assert [c.session_id for c in report.created] == [
        "cs_test_c1", "cs_test_c3", "cs_test_c2", "cs_test_d2"]
    [anomaly] = report.anomalies
    assert anomaly.kind == "duplicate_subscriptions" and anomaly.dashboard_url == (
        "https://dashboard.stripe.com/acct_1/test/checkout/sessions/cs_test_p02")
