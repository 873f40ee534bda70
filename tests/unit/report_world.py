"""A known run ledger for the weekly report and alert tests, built through the ledger's API.

The report week is Monday 6 May 2024 in Europe/Oslo (5 May 22:00 UTC to 12 May 22:00 UTC).
Amounts are in major units (kroner), as the run report carries them.
Every figure the tests expect is worked out by hand in `EXPECTED` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jobs.adapters.ledger import Ledger
from jobs.core.model import Anomaly, Decision
from jobs.core.records import RunStatus
from jobs.core.runreport import RunReport
from tests.support import reports

TZ = ZoneInfo("Europe/Oslo")
WEEK = date(2024, 5, 6)
DASHBOARD = "https://dashboard.stripe.com"
REPORT_NOW = datetime(2024, 5, 13, 7, 0, tzinfo=UTC)  # Monday 09:00 in Oslo


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def present(sid: str, paid: datetime, amount: float = 120.0, currency: str = "nok",
            account: str = "acct_1") -> Decision:
    return reports.present(sid, paid.isoformat(), account, subscription_ids=(f"sub-{sid}",),
                           amount=amount, currency=currency)


def created(sid: str, paid: datetime, amount: float, currency: str = "nok",
            account: str = "acct_1", email: str = "kari@example.com") -> Decision:
    return reports.created(sid, paid.isoformat(), account, pass_name="10 Single Clip Card",
                           email=email, amount=amount, currency=currency)


def manual(sid: str, reason: str, paid: datetime, amount: float, email: str,
           account: str = "acct_1") -> Decision:
    return reports.manual(sid, reason, account, detail="no passId in metadata or product",
                          email=email, amount=amount, currency="nok", tenant="tenant-a",
                          pass_name="Drop-in Class", paid_at=paid.isoformat())


def record(ledger: Ledger, clock: Clock, run_id: str, when: datetime, status: RunStatus = "ok",
           *, dry_run: bool = False, error: str | None = None, no_report: bool = False,
           present: Sequence[Decision] = (), decisions: Sequence[Decision] = (),
           anomalies: Sequence[Anomaly] = ()) -> RunReport | None:
    """One run: started and recorded at `when`, finished 30 s later."""
    clock.now = when
    ledger.start_run(run_id, "quick", when - timedelta(hours=2), when, dry_run, ["acct_1"],
                     pid=1)
    rep = None if no_report else reports.run_report(
        run_id, since=(when - timedelta(hours=2)).isoformat(), until=when.isoformat(),
        dry_run=dry_run, accounts={"acct_1": "tenant-a"}, decisions=decisions,
        anomalies=anomalies)
    if rep is not None:  # as a run records: present purchases as found, then the report
        ledger.record_present(run_id, present)
        ledger.record_report(rep)
    clock.now = when + timedelta(seconds=30)
    ledger.finish_run(run_id, status, rep, error)
    return rep


def build(state_dir: Path | str) -> Ledger:
    """The known ledger (open; the caller closes it). Its clock ends at REPORT_NOW.
    `state_dir` may be a PostgreSQL URL (an empty database) instead."""
    clock = Clock(utc(4, 3, 10))
    ledger = (Ledger.connect(state_dir, clock=clock) if isinstance(state_dir, str)
              else Ledger.open(state_dir, clock=clock))
    # Week of 1 April (W-5): two present, one needing a person that was fixed by hand later.
    record(ledger, clock, "r-apr", utc(4, 3, 10),
           present=[present("cs_test_o1", utc(4, 3, 9)), present("cs_test_o2", utc(4, 3, 9))],
           decisions=[manual("cs_test_m1", "pass_not_found", utc(4, 3, 9), 250.0,
                             "m1@example.com")])
    # Week of 29 April (W-1): four present, one repaired after an hour, one still open.
    record(ledger, clock, "r-w1", utc(4, 30, 10),
           present=[present(f"cs_test_e{i}", utc(4, 30, 9)) for i in range(1, 5)],
           decisions=[created("cs_test_e5", utc(4, 30, 9), 120.0),
                      manual("cs_test_n0", "user_unknown", utc(4, 29, 18), 250.0,
                             "n0@example.com")])
    # The report week.
    record(ledger, clock, "r1", utc(5, 6, 10),
           present=[present("cs_test_p01", utc(5, 6, 9, 50)),
                    present("cs_test_p02", utc(5, 6, 9, 50)),
                    present("cs_test_m1", utc(4, 3, 9))],  # fixed by a person meanwhile
           decisions=[created("cs_test_c1", utc(5, 6, 9, 50), 250.0),
                      manual("cs_test_n1", "metadata_missing", utc(5, 6, 9, 40), 300.0,
                             "ola@example.com")],
           anomalies=[Anomaly("duplicate_subscriptions", "cs_test_p02", ("sub-a", "sub-b"),
                              "2 published")])
    record(ledger, clock, "r2", utc(5, 7, 10), "failed", error="Sanity unreachable: 503",
           no_report=True)
    record(ledger, clock, "r3", utc(5, 8, 12), "partial",
           present=[present(f"cs_test_p{i:02d}", utc(5, 8, 11, 50)) for i in range(3, 11)],
           decisions=[created("cs_test_c2", utc(5, 8, 11, 58), 49.9, "eur", account="platform"),
                      created("cs_test_c3", utc(5, 8, 11, 57), 200.0),
                      reports.failed("cs_test_f1", "write failed: Sanity answered 500")])
    record(ledger, clock, "r4", utc(5, 9, 9), dry_run=True,
           decisions=[created("cs_test_d1", utc(5, 9, 8, 55), 90.1),
                      created("cs_test_d2", utc(5, 9, 8, 56), 90.2)])
    record(ledger, clock, "r5", utc(5, 9, 10),
           decisions=[created("cs_test_d2", utc(5, 9, 8, 56), 90.2),
                      reports.pending("cs_test_q1", paid_at=utc(5, 9, 9).isoformat())],
           present=[present("cs_test_p11", utc(5, 9, 9, 50))])
    # Sunday 23:30 in Oslo: still the report week. 00:30 Monday: the next week.
    record(ledger, clock, "r6", utc(5, 12, 21, 30),
           present=[present("cs_test_p12", utc(5, 12, 21), 15.0, "usd")])
    record(ledger, clock, "r7", utc(5, 12, 22, 30),
           present=[present("cs_test_p13", utc(5, 12, 22))])
    clock.now = REPORT_NOW
    return ledger


# Worked out by hand from `build`.
EXPECTED: dict[str, Any] = {
    "purchases": 19,  # 12 automatic + 4 repaired + 2 open + 1 still missing
    "automatic": 12,  # p01..p12
    "repaired": 4,  # c1, c2, c3, d2 (d2 first seen by the dry run)
    "open": 2,  # n1, f1
    "still_missing": 1,  # d1: only the dry run saw it
    "needed_person": 2,
    "pending": 1,  # q1
    "automatic_rate": 12 / 19,
    "manual_rate": 2 / 19,
    # repairs in the week: c1 600 s, c2 120 s, c3 180 s, d2 3840 s
    "repair_median": 390.0,
    "repair_p95": 600 + (3840 - 600) * 0.85,
    "repair_max": 3840.0,
    "repair_within": 2,
    # per currency, major units (f1 has no amount: left out of money)
    "money": {
        "eur": {"purchases": 1, "purchases_amount": 49.9, "repaired": 1,
                "repaired_amount": 49.9, "needs_person": 0, "needs_person_amount": 0.0},
        "nok": {"purchases": 16, "purchases_amount": 2250.3, "repaired": 3,
                "repaired_amount": 540.2, "needs_person": 1, "needs_person_amount": 300.0},
        "usd": {"purchases": 1, "purchases_amount": 15.0, "repaired": 0, "repaired_amount": 0.0,
                "needs_person": 0, "needs_person_amount": 0.0},
    },
    "runs": {"runs": 5, "dry_runs": 1, "ok": 3, "partial": 1, "failed": 1},
    "needs_you": ["cs_test_n0", "cs_test_n1", "cs_test_f1"],  # oldest payment first; f1 unknown
    # purchases per week, W-7 .. W
    "trend_purchases": [0, 0, 3, 0, 0, 0, 6, 19],
    "trend_automatic": [0, 0, 2, 0, 0, 0, 4, 12],
}
