"""Which alerts a situation calls for (pure), and sending each key once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from jobs.adapters.mailer import SendResult
from jobs.config.settings import AlertSettings
from jobs.core.model import Decision
from jobs.core.records import RunRecord
from jobs.core.runreport import RunReport
from jobs.reports.alerts import RUNS_READ, Alert, deliver, evaluate, failure_streak
from jobs.reports.weekly import Links
from tests.support import reports
from tests.unit import report_world as world

NOW = datetime(2024, 5, 7, 12, 0, tzinfo=UTC)
LIMITS = AlertSettings(missing_spike=5, failed_runs=3, no_success_for=timedelta(hours=2))
LINKS = Links("https://dashboard.stripe.com", "live")


def run(run_id: str, status: str, minutes_ago: float, *, dry: bool = False,
        error: str | None = None) -> RunRecord:
    at = NOW - timedelta(minutes=minutes_ago)
    return RunRecord(run_id=run_id, kind="quick", since=at - timedelta(hours=1), until=at,
                     dry_run=dry, accounts=["acct_1"], pid=1, started_at=at,
                     finished_at=at + timedelta(seconds=20), status=status, counts={},
                     account_errors={}, error=error)


@dataclass
class View:
    """The ledger as `evaluate` sees it: recent runs newest first."""

    runs: list[RunRecord] = field(default_factory=list)

    def recent_runs(self, limit: int = 10) -> list[RunRecord]:
        return self.runs[:limit]

    def last_success(self) -> RunRecord | None:
        return next((r for r in self.runs if r.status == "ok" and not r.dry_run), None)


HEALTHY = View([run("r0", "ok", 5)])


def report(run_id: str = "run-1", *, dry_run: bool = False, cap_exceeded: bool = False,
           error: str | None = None, since: str = "2024-05-07T09:00:00Z",
           until: str = "2024-05-07T11:50:00Z", created: Sequence[Decision] = (),
           needs_manual: Sequence[Decision] = (), failed: Sequence[Decision] = ()) -> RunReport:
    return reports.run_report(run_id, since=since, until=until, dry_run=dry_run,
                              decisions=[*created, *needs_manual, *failed],
                              cap_exceeded=cap_exceeded, error=error)


def manual_item(sid: str, reason: str = "metadata_missing") -> Decision:
    return reports.manual(sid, reason, "acct_9", detail="no passId", email="kari@example.com",
                          amount=250.0, currency="nok", tenant="tenant-a",
                          paid_at="2024-05-07T09:30:00.000Z")


def created_item(n: int) -> Decision:
    return Decision(f"cs_live_{n}", "acct_9", "created")


# ---- evaluate ------------------------------------------------------------------------------


def test_a_quiet_run_raises_nothing() -> None:
    assert evaluate(report(created=[created_item(1)]), HEALTHY, LIMITS, NOW) == []
    assert evaluate(None, HEALTHY, LIMITS, NOW) == []


def test_one_alert_per_purchase_that_needs_a_person() -> None:
    alerts = evaluate(report(needs_manual=[manual_item("cs_live_a"),
                                           manual_item("cs_live_b", "user_ambiguous")]),
                      HEALTHY, LIMITS, NOW, links=LINKS, tz=world.TZ)
    assert [a.key for a in alerts] == ["needs_manual:cs_live_a", "needs_manual:cs_live_b"]
    first = alerts[0]
    assert first.title == "A purchase needs you: the payment does not say which pass was bought"
    facts = dict(first.facts)
    assert facts["Student"] == "kari@example.com" and facts["Amount"] == "250.00 NOK"
    assert facts["Paid"] == "Tue 07 May 2024 11:30 CEST"
    assert first.link == "https://dashboard.stripe.com/acct_9/checkout/sessions/cs_live_a"
    assert "Studio" in first.fix


def test_keys_are_stable_across_runs_so_the_ledger_can_de_duplicate() -> None:
    once = evaluate(report(needs_manual=[manual_item("cs_live_a")]), HEALTHY, LIMITS, NOW)
    later = evaluate(report(run_id="run-2", needs_manual=[manual_item("cs_live_a")]),
                     HEALTHY, LIMITS, NOW + timedelta(minutes=5))
    assert [a.key for a in once] == [a.key for a in later] == ["needs_manual:cs_live_a"]


def test_a_failed_write_alerts_but_unwritten_cap_items_do_not_one_by_one() -> None:
    failed = [reports.failed("cs_live_f", "write failed: Sanity answered 500", "acct_9"),
              reports.failed("cs_live_g", "not written: safety cap exceeded", "acct_9")]
    alerts = evaluate(report(failed=failed), HEALTHY, LIMITS, NOW, links=LINKS)
    assert [a.key for a in alerts] == ["write_failed:cs_live_f"]
    assert dict(alerts[0].facts)["Error"] == "write failed: Sanity answered 500"


def test_a_spike_of_missing_subscriptions_says_the_webhook_looks_broken() -> None:
    four = evaluate(report(created=[created_item(n) for n in range(4)]), HEALTHY, LIMITS, NOW)
    assert four == []
    five = evaluate(report(created=[created_item(n) for n in range(5)]), HEALTHY, LIMITS, NOW)
    assert [a.key for a in five] == ["missing_spike:2024-05-07T11"]
    assert five[0].title.startswith("The webhook looks broken now: 5 paid passes")


def test_spike_and_cap_alerts_repeat_at_most_hourly_and_daily() -> None:
    spike = [created_item(n) for n in range(5)]
    first = report(run_id="run-1", created=spike, cap_exceeded=True)
    later = report(run_id="run-2", created=spike, cap_exceeded=True,
                   since="2024-05-07T11:00:00Z", until="2024-05-07T11:55:00Z")
    next_day = report(run_id="run-3", created=spike, cap_exceeded=True,
                      since="2024-05-08T08:00:00Z", until="2024-05-08T08:55:00Z")
    keys = [[a.key for a in evaluate(r, HEALTHY, LIMITS, NOW)] for r in (first, later, next_day)]
    assert keys[0] == keys[1] == ["missing_spike:2024-05-07T11", "cap_hit:2024-05-07"]
    assert keys[2] == ["missing_spike:2024-05-08T08", "cap_hit:2024-05-08"]


def test_the_safety_cap_alerts_once_with_the_spike() -> None:
    unwritten = [reports.failed(f"cs_live_{n}", "not written: safety cap exceeded", "acct_9")
                 for n in range(60)]
    alerts = evaluate(report(cap_exceeded=True, failed=unwritten,
                             error="safety cap: 60 subscriptions to create, more than "
                                   "max_creates=50; nothing written"),
                      HEALTHY, LIMITS, NOW)
    assert [a.kind for a in alerts] == ["missing_spike", "cap_hit"]  # not 60 write alerts
    assert "60 paid passes" in alerts[0].title
    assert "max_creates=50" in alerts[1].meaning and "--max-creates" in alerts[1].fix


def test_a_dry_run_alerts_nothing_its_reader_sees_it() -> None:
    dry = report(dry_run=True, needs_manual=[manual_item("cs_live_a")],
                 created=[created_item(n) for n in range(9)])
    assert evaluate(dry, HEALTHY, LIMITS, NOW) == []


def test_consecutive_failed_runs_alert_once_per_streak() -> None:
    runs = [run("r5", "failed", 5, error="Sanity unreachable"), run("d", "ok", 7, dry=True),
            run("r4", "interrupted", 10), run("r3", "running", 12), run("r2", "failed", 15),
            run("r1", "ok", 20), run("r0", "failed", 25)]
    assert [r.run_id for r in failure_streak(runs)] == ["r5", "r4", "r2"]
    [alert] = evaluate(None, View(runs), LIMITS, NOW)
    assert alert.key == "failed_runs:r2" and alert.title == "The last 3 runs failed"
    assert "Sanity unreachable" in alert.meaning
    longer = [run("r6", "failed", 1), *runs]
    assert [a.key for a in evaluate(None, View(longer), LIMITS, NOW)] == ["failed_runs:r2"]
    assert evaluate(None, View(runs[2:]), LIMITS, NOW) == []  # two in a row: under threshold


def test_a_streak_longer_than_the_runs_read_keeps_one_key() -> None:
    def failing(n: int, offset: int) -> list[RunRecord]:
        return [run(f"f{offset + i}", "failed", i) for i in range(n)]

    last_ok = run("ok-long-ago", "ok", 60 * 24)
    first = evaluate(None, View([*failing(RUNS_READ, 0), last_ok]), LIMITS, NOW)
    second = evaluate(None, View([*failing(RUNS_READ, 1), last_ok]), LIMITS, NOW)
    keys = {a.key for a in first if a.kind == "failed_runs"}
    assert keys == {a.key for a in second if a.kind == "failed_runs"}
    assert len(keys) == 1 and keys.pop().startswith("failed_runs:long:")


def test_no_successful_run_for_too_long() -> None:
    stale = View([run("r2", "partial", 30), run("r1", "ok", 150)])
    [alert] = evaluate(None, stale, LIMITS, NOW)
    assert alert.key == "no_success:r1" and alert.kind == "no_success"
    assert alert.title == "No successful run for 2 h 29 min"
    fresh = View([run("r1", "ok", 100)])
    assert evaluate(None, fresh, LIMITS, NOW) == []
    never = View([run("r2", "partial", 30), run("r1", "failed", 200)])
    assert [a.key for a in evaluate(None, never, LIMITS, NOW)] == ["no_success:never"]
    assert evaluate(None, View([]), LIMITS, NOW) == []  # nothing ran: nothing to judge


def test_most_urgent_first() -> None:
    runs = [run("r3", "failed", 5), run("r2", "failed", 10), run("r1", "failed", 15),
            run("r0", "ok", 300)]
    alerts = evaluate(report(needs_manual=[manual_item("cs_live_a")],
                             created=[created_item(n) for n in range(6)]),
                      View(runs), LIMITS, NOW)
    assert [a.kind for a in alerts] == ["missing_spike", "failed_runs", "no_success",
                                        "needs_manual"]


def test_thresholds_come_from_settings() -> None:
    strict = AlertSettings(missing_spike=1, failed_runs=1, no_success_for=timedelta(0))
    alerts = evaluate(report(created=[created_item(1)]), View([run("r", "failed", 1)]),
                      strict, NOW)
    assert [a.kind for a in alerts] == ["missing_spike", "failed_runs"]  # 0 turns it off


# ---- deliver -------------------------------------------------------------------------------


@dataclass
class Records:
    sent: dict[str, bool] = field(default_factory=dict)
    attempts: list[tuple[str, str, bool, str | None]] = field(default_factory=list)

    def alert_sent(self, key: str) -> bool:
        return self.sent.get(key, False)

    def record_alert(self, key: str, kind: str, sent: bool, detail: str | None = None) -> None:
        self.sent[key] = self.sent.get(key, False) or sent
        self.attempts.append((key, kind, sent, detail))


@dataclass
class FakeMailer:
    works: bool = True
    messages: list[EmailMessage] = field(default_factory=list)

    def compose(self, subject: str, text: str, html: str) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    def send(self, message: EmailMessage) -> SendResult:
        self.messages.append(message)
        if self.works:
            return SendResult(True, "<id@example.com>")
        return SendResult(False, "<id@example.com>", error="SMTP unreachable",
                          error_kind="unreachable")


def alert(key: str, kind: str = "needs_manual") -> Alert:
    return Alert(key, kind, f"title {key}", "meaning", "fix")


def test_deliver_sends_new_alerts_in_one_mail_and_records_them() -> None:
    records, mailer = Records(), FakeMailer()
    result = deliver([alert("a"), alert("b"), alert("a")], mailer, records)
    assert [a.key for a in result.sent] == ["a", "b"] and len(mailer.messages) == 1
    assert records.attempts == [("a", "needs_manual", True, None),
                                ("b", "needs_manual", True, None)]
    again = deliver([alert("a"), alert("c")], mailer, records)
    assert [a.key for a in again.sent] == ["c"] and again.already_sent == 1
    assert deliver([alert("a")], mailer, records).sent == ()
    assert len(mailer.messages) == 2  # nothing new: no mail


def test_an_unsent_alert_is_recorded_as_unsent_and_sent_next_time() -> None:
    records = Records()
    failed = deliver([alert("a", "cap_hit")], FakeMailer(works=False), records)
    assert failed.error == "SMTP unreachable" and failed.sent == ()
    assert records.attempts == [("a", "cap_hit", False, "SMTP unreachable")]
    assert not records.alert_sent("a")
    assert [x.key for x in deliver([alert("a", "cap_hit")], FakeMailer(), records).sent] == ["a"]


def test_evaluate_then_deliver_over_the_real_ledger(tmp_path: Path) -> None:
    with world.build(tmp_path / "state") as ledger:
        alerts = evaluate(report(needs_manual=[manual_item("cs_live_a")]), ledger, LIMITS,
                          world.REPORT_NOW)
        # The world's last success (r7) finished 8.5 h before REPORT_NOW.
        assert [a.key for a in alerts] == ["no_success:r7", "needs_manual:cs_live_a"]
        mailer = FakeMailer()
        assert len(deliver(alerts, mailer, ledger).sent) == 2
        assert deliver(alerts, mailer, ledger).already_sent == 2
        assert len(mailer.messages) == 1
        assert ledger.alert_sent("no_success:r7")
