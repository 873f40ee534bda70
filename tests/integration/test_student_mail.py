"""Student e-mails over a real SMTP server (aiosmtpd) and the real SQLite ledger.

Sanity is a fake of the two reads the e-mails need (documents by id, the schools); the
end-to-end tests in tests/e2e run the same code against the Sanity stand-in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.adapters.ledger import Ledger
from jobs.adapters.mailer import smtp_sender
from jobs.adapters.notice_ledger import NoticeBook
from jobs.config.settings import NotifySettings, Settings, SmtpSettings
from jobs.core.model import Creation, Decision
from jobs.reports.student_notice import message_id
from jobs.run.compose import students
from jobs.run.student_mail import StudentMail
from tests.integration.smtp_server import Server, free_port, smtp_server

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SCHOOLS = [
    {"_id": "tenant-nord", "schoolName": "Dansestudio Nord", "slug": {"current": "nord"}},
    {"_id": "tenant-west", "schoolName": "West Side Dance", "slug": {"current": "west"}},
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeSanity:
    """Documents by id and the schools, as the Sanity adapter answers them."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.reads = 0

    def get_documents(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        self.reads += 1
        return [self.docs[i] for i in ids if i in self.docs]

    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return SCHOOLS, []

    def write(self, decision: Decision, run_id: str, **changes: Any) -> None:
        assert decision.creation is not None
        doc = {**decision.creation.subscription, "reconcileRunId": run_id, **changes}
        self.docs[doc["_id"]] = doc


def purchase(n: int, *, email: str | None = None, tenant: str = "tenant-nord",
             end: str = "2026-12-31T23:30:00.000Z") -> Decision:
    sid = f"cs_test_student{n:03d}"
    doc = {"_id": f"subscription-{sid}", "_type": "subscription", "passName": f"Pass {n}",
           "type": "clipcard", "endDate": end, "remainingClips": 10,
           "stripeSessionId": sid, "createdViaRecovery": True}
    return Decision(sid, "acct_nord", "created", tenant=tenant, pass_name=f"Pass {n}",
                    email=email if email is not None else f"student{n}@example.org",
                    subscription_ids=(doc["_id"],), creation=Creation(doc))


@pytest.fixture
def clock() -> Clock:
    return Clock()



@pytest.fixture
def mail() -> Iterator[Server]:
    with smtp_server("plain", refuse={"gone@example.org": "550 no such user"}) as server:
        yield server


def settings_for(port: int, **notify: Any) -> Settings:
    smtp = SmtpSettings(host="127.0.0.1", port=port, starttls=False,
                        report_from="Ops <ops@example.org>", report_to=("ops@example.org",))
    options = {"students": True, "sender": "Dansestudio <hei@example.org>",
               "reply_to": "post@example.org", "app_url": "https://app.example.org", **notify}
    return Settings(smtp=smtp, notify=NotifySettings(**options))


def no_sleep_mail(settings: Settings, ledger: Ledger, sanity: FakeSanity,
                  clock: Clock) -> StudentMail:
    return students(settings, ledger, sanity, clock=clock,
                    sender=smtp_sender(settings.smtp, attempts=2, sleep=lambda _s: None))


def test_a_created_purchase_gets_one_email_with_its_school_pass_and_end_date(
        ledger: Ledger, mail: Server, clock: Clock) -> None:
    sanity = FakeSanity()
    job = no_sleep_mail(settings_for(mail.port), ledger, sanity, clock)
    first, second = purchase(1), purchase(2, tenant="tenant-west")
    job.before_commit([first, second], "run-1")
    summary = job.after_pass([first.session_id, second.session_id], "run-1")
    assert summary.told == 2 and summary.unsent == 0
    assert sanity.reads == 0  # confirmed by the report: no Sanity read needed
    by_to = {m.message["To"]: m for m in mail.messages}
    assert set(by_to) == {"student1@example.org", "student2@example.org"}
    one = by_to["student1@example.org"]
    assert one.rcpt_tos == ["student1@example.org"]  # nobody else in the envelope
    assert one.message["From"] == "Dansestudio <hei@example.org>"
    assert one.message["Reply-To"] == "post@example.org"
    assert one.message["Message-ID"] == message_id(first.session_id, "example.org")
    assert one.message["Subject"] == "Passet ditt hos Dansestudio Nord er klart"
    text = one.message.get_body(("plain",)).get_content()
    html = one.message.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Pass 1" in part and "1. januar 2027" in part  # 23:30 UTC is 00:30 in Oslo
        assert "https://app.example.org/nord/subscriptions" in part
        assert "student2" not in part and "Pass 2" not in part
    assert "<img" not in html and "Klipp" in text
    # A second pass owes nothing: nothing is sent again.
    again = job.after_pass([], "run-2")
    assert again.told == 0 and len(mail.messages) == 2
    assert NoticeBook(ledger).row(first.session_id).state == "sent"  # type: ignore[union-attr]


def test_a_kill_between_the_write_and_the_email_sends_it_on_the_next_pass_once(
        ledger: Ledger, mail: Server, clock: Clock) -> None:
    sanity = FakeSanity()
    settings = settings_for(mail.port)
    ours, webhooks, unwritten = purchase(1), purchase(2), purchase(3)
    # The killed run recorded its intents and committed its transaction, then died.
    no_sleep_mail(settings, ledger, sanity, clock).before_commit(
        [ours, webhooks, unwritten], "run-killed")
    sanity.write(ours, "run-killed")
    sanity.write(webhooks, "run-killed", createdViaRecovery=None,
                 reconcileRunId=None)  # the webhook's document, not ours
    # The next pass found them present (nothing created) and resolves the intents in Sanity.
    summary = no_sleep_mail(settings, ledger, sanity, clock).after_pass([], "run-next")
    assert summary.told == 1 and summary.dropped == 2
    assert [m.message["To"] for m in mail.messages] == ["student1@example.org"]
    assert no_sleep_mail(settings, ledger, sanity, clock).after_pass([], "run-3").told == 0
    assert len(mail.messages) == 1


def test_smtp_down_keeps_them_owed_and_a_later_pass_sends_them(
        ledger: Ledger, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    sanity = FakeSanity()
    port = free_port()  # nobody listens there yet
    job = no_sleep_mail(settings_for(port), ledger, sanity, clock)
    first, second = purchase(1), purchase(2)
    job.before_commit([first, second], "run-1")
    down = job.after_pass([first.session_id, second.session_id], "run-1")
    assert down.told == 0 and down.unsent == 2
    row = NoticeBook(ledger).row(first.session_id)
    assert row is not None and row.state == "unsent" and "unreachable" in (row.reason or "")
    clock.now += timedelta(hours=5)
    # The same server address, now answering.
    monkeypatch.setattr("tests.integration.smtp_server.free_port", lambda: port)
    with smtp_server("plain") as mail:
        up = job.after_pass([], "run-2")
        assert up.told == 2 and up.unsent == 0
        assert sorted(m.message["To"] for m in mail.messages) == [
            "student1@example.org", "student2@example.org"]


def test_unsent_for_three_days_expires_and_is_reported(ledger: Ledger, clock: Clock) -> None:
    job = no_sleep_mail(settings_for(free_port()), ledger, FakeSanity(), clock)
    first = purchase(1)
    job.before_commit([first], "run-1")
    job.after_pass([first.session_id], "run-1")
    clock.now += timedelta(days=3, minutes=1)
    summary = job.after_pass([], "run-2")
    assert summary.expired == 1 and summary.unsent == 0
    trouble = NoticeBook(ledger).trouble(T0, clock.now + timedelta(seconds=1))
    assert [(r.session_id, r.state) for r in trouble] == [(first.session_id, "expired")]


def test_bad_or_refused_addresses_are_reported_once_and_never_retried(
        ledger: Ledger, mail: Server, clock: Clock) -> None:
    job = no_sleep_mail(settings_for(mail.port), ledger, FakeSanity(), clock)
    missing, bad, gone, fine = (purchase(1, email=""), purchase(2, email="not an address"),
                                purchase(3, email="gone@example.org"), purchase(4))
    expired = purchase(5, end="2026-10-01T00:00:00.000Z")  # before T0: expired_on_arrival
    job.before_commit([missing, bad, gone, fine, expired], "run-1")
    summary = job.after_pass([d.session_id for d in (missing, bad, gone, fine, expired)],
                             "run-1")
    assert summary.told == 1
    states = {p["session_id"]: (p["state"], p["reason"]) for p in summary.problems}
    assert states[expired.session_id][0] == "skipped"
    assert "expired_on_arrival" in states[expired.session_id][1]
    assert states[missing.session_id] == ("skipped", "no e-mail address on the Checkout Session")
    assert states[bad.session_id] == ("skipped", "not a usable e-mail address")
    assert states[gone.session_id][0] == "refused" and "550" in states[gone.session_id][1]
    attempts = mail.recorder.rcpt_attempts
    assert job.after_pass([], "run-2").problems == []
    assert mail.recorder.rcpt_attempts == attempts  # nothing tried again


def test_a_process_that_died_mid_conversation_is_not_sent_again(
        ledger: Ledger, mail: Server, clock: Clock) -> None:
    job = no_sleep_mail(settings_for(mail.port), ledger, FakeSanity(), clock)
    first = purchase(1)
    job.before_commit([first], "run-1")
    book = NoticeBook(ledger)
    book.confirm([first.session_id], "run-1")
    book.mark(first.session_id, "sending")  # ...and the process died here
    summary = job.after_pass([], "run-2")
    assert summary.uncertain == 1 and summary.told == 0 and mail.messages == []


def test_the_school_language_and_exclusion_settings(
        ledger: Ledger, mail: Server, clock: Clock) -> None:
    settings = settings_for(mail.port, languages={"west": "en"}, exclude=("tenant-nord",))
    job = no_sleep_mail(settings, ledger, FakeSanity(), clock)
    nord, west = purchase(1), purchase(2, tenant="tenant-west")
    job.before_commit([nord, west], "run-1")
    assert NoticeBook(ledger).row(nord.session_id) is None  # excluded: nothing owed
    assert job.after_pass([nord.session_id, west.session_id], "run-1").told == 1
    (only,) = mail.messages
    assert only.message["Subject"] == "Your pass at West Side Dance is ready"
    assert only.message["Content-Language"] == "en"
    assert "31 December 2026" not in only.message.get_body(("plain",)).get_content()
    assert "1 January 2027" in only.message.get_body(("plain",)).get_content()


def test_the_weekly_report_counts_students_told_and_lists_undelivered_emails(
        ledger: Ledger, mail: Server, clock: Clock) -> None:
    from jobs.commands.report import build_from_settings
    from jobs.reports.render import render_weekly

    settings = settings_for(mail.port)
    job = no_sleep_mail(settings, ledger, FakeSanity(), clock)
    told, gone = [purchase(1), purchase(2)], purchase(3, email="gone@example.org")
    job.before_commit([*told, gone], "run-1")
    job.after_pass([d.session_id for d in (*told, gone)], "run-1")
    report = build_from_settings(settings, ledger, T0.date(), clock.now + timedelta(days=7))
    assert report.students is not None and report.students.told == 2
    (undelivered,) = report.students.not_delivered
    assert (undelivered.email, undelivered.state) == ("gone@example.org", "refused")
    rendered = render_weekly(report)
    assert "2 students told this week" in rendered.text
    assert "gone@example.org (tenant-nord), cs_test_student003: refused by the mail server" \
        in rendered.text
    assert "<b>2</b> students told this week" in rendered.html
    assert "1 e-mail not delivered" in rendered.html
    assert '"told": 2' in (rendered.json or "")
    # The week before knows nothing of them.
    earlier = build_from_settings(settings, ledger, (T0 - timedelta(days=7)).date(), clock.now)
    assert earlier.students is not None and earlier.students.told == 0
    assert earlier.students.not_delivered == ()


def test_a_purchase_once_told_stays_told_whatever_is_intended_later(
        ledger: Ledger, mail: Server, clock: Clock) -> None:
    sanity = FakeSanity()
    job = no_sleep_mail(settings_for(mail.port), ledger, sanity, clock)
    first = purchase(1)
    job.before_commit([first], "run-1")
    job.after_pass([first.session_id], "run-1")
    # A later write of the same purchase (e.g. `diagnose --fix` racing a rerun) intends again,
    # and its document even carries the later run's id: the row stays sent, nobody is told twice.
    job.before_commit([first], "run-2")
    sanity.write(first, "run-2")
    assert job.after_pass([first.session_id], "run-2").told == 0
    row = NoticeBook(ledger).row(first.session_id)
    assert row is not None and (row.state, row.run_id, row.attempts) == ("sent", "run-1", 1)
    assert len(mail.messages) == 1
