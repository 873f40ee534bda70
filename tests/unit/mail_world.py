"""A weekly report at any volume: `n` purchases needing a person, `n` created, `n` anomalies.

Values are as long as real ones (Stripe's 66-character session ids, long addresses and school
names, every reason's own wording), so a size bound measured on it holds for real weeks.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from jobs.core.reasons import ANOMALIES, NEEDS_MANUAL
from jobs.core.records import AnomalyRecord, RunRecord, SessionOutcome
from jobs.reports.weekly import LedgerRows, Links, compute_weekly
from jobs.reports.weekly_rows import WeeklyReport

OSLO = ZoneInfo("Europe/Oslo")
MONDAY = date(2024, 5, 6)
START = datetime(2024, 5, 5, 22, 0, tzinfo=UTC)  # Monday 00:00 in Oslo
NOW = datetime(2024, 5, 13, 7, 0, tzinfo=UTC)
SCHOOLS = ("Oslo Salsa & Bachata Dance Academy", "Bergen Kizomba Studio",
           "Trondheim West Coast Swing Society")


def session_id(n: int) -> str:
    rnd = random.Random(n)
    return "cs_live_" + "".join(rnd.choice("abcdefghijkLMNOPQRSTUVWXYZ0123456789")
                                for _ in range(58))


def outcome_row(n: int, outcome: str, reason: str | None) -> SessionOutcome:
    rnd = random.Random(n)
    paid = START + timedelta(minutes=rnd.randrange(7 * 24 * 60))
    seen = paid + timedelta(minutes=12)
    created = seen if outcome == "created" else None
    return SessionOutcome(
        session_id=session_id(n), account=f"acct_1School{n % 3}AbCdEfGh", tenant=f"tenant-{n % 3}",
        outcome=outcome, reason=reason,
        detail=("metadata.passId is 'pass-" + "x" * 40 + "' but no such pass exists; product "
                "prod_Q1w2E3r4T5y6 names none either") if reason else None,
        amount=1250.0 + n, currency=("nok", "eur", "sek")[n % 3],
        email=f"firstname.middlename.lastname{n}@student.example-university.no",
        pass_id=f"pass-{n % 7}", pass_name="10 Single Clip Card (valid 3 months, all levels)",
        subscription_id=f"subscription-{session_id(n)}" if created else None,
        user_id=f"user_2abcdefghijkl{n}", paid_at=paid, first_seen_at=seen,
        first_outcome=outcome, first_run_id="r", last_seen_at=seen, last_run_id="r",
        created_at=created, created_run_id="r" if created else None)


def heavy_report(n: int, *, webhook: bool = True) -> WeeklyReport:
    """A week with `n` needing a person, `n` created, `n` anomalies, plus plain purchases."""
    reasons = sorted(NEEDS_MANUAL)
    kinds = sorted(ANOMALIES)
    manual = [outcome_row(i, "needs_manual", reasons[i % len(reasons)]) for i in range(n)]
    created = [outcome_row(10_000 + i, "created", None) for i in range(n)]
    present = [outcome_row(20_000 + i, "already_present", None) for i in range(4 * n)]
    anomalies = [AnomalyRecord(
        kind=kinds[i % len(kinds)], session_id=session_id(30_000 + i),
        subscription_ids=[f"subscription-{session_id(30_000 + i)}", f"manual-{i}"],
        detail="two published subscriptions point at this payment", first_seen_at=START
        + timedelta(hours=i % 160), first_run_id="r", last_seen_at=NOW, last_run_id="r",
        times_seen=1) for i in range(n)]
    ok = RunRecord(run_id="r", kind="quick", since=START, until=START, dry_run=False,
                   accounts=["platform"], pid=1, started_at=START + timedelta(hours=1),
                   finished_at=START + timedelta(hours=1, seconds=30), status="ok", counts={},
                   account_errors={}, error=None)
    rows = LedgerRows(
        first_seen=[*manual, *created, *present], created=created, open_manual=manual,
        anomalies=anomalies,
        anomaly_sessions={a.session_id or "": "acct_1School0AbCdEfGh" for a in anomalies},
        runs=[ok] * 2016, last_success=ok, consecutive_failures=0)
    health = {"undelivered_events": {f"acct_1School{i}AbCdEfGh": 2 for i in range(n // 10 + 1)},
              "problems": [f"acct_1School{i}AbCdEfGh: no endpoint hears connected accounts"
                           for i in range(n // 10 + 1)]} if webhook else None
    return compute_weekly(rows, MONDAY, NOW, tz=OSLO, links=Links("https://dashboard.stripe.com",
                                                                  "live"),
                          webhook_health=health,
                          tenant_names={f"tenant-{i}": SCHOOLS[i] for i in range(3)})
