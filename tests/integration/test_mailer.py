"""The weekly report and alerts over real SMTP (aiosmtpd in this process, 127.0.0.1)."""

from __future__ import annotations

import csv
import io
import json
import smtplib
import stat
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import jobs.adapters.mailer as mailer_module
from jobs.adapters.ledger import Ledger
from jobs.adapters.mailer import Mailer, MailError, resend_kept, send_once, send_weekly, smtp_sender
from jobs.config.settings import SmtpSettings
from jobs.config.values import Secret
from jobs.core.errors import RetriableError
from jobs.reports.alerts import Alert, deliver
from jobs.reports.weekly_ledger import build_weekly
from jobs.reports.weekly_rows import WeeklyReport
from tests.integration.smtp_server import Tls, free_port, self_signed, smtp_server
from tests.unit import report_world as world

# aiosmtpd warns about AUTH without STARTTLS; on an implicit-TLS server that is what we want.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "reports", "s3cret-pw"
TO = ("ops@example.com", "owner@example.com")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = world.build(tmp_path / "state")
    yield led
    led.close()


@pytest.fixture
def report(ledger: Ledger) -> WeeklyReport:
    return build_weekly(ledger, world.WEEK, world.REPORT_NOW, tz=world.TZ,
                        dashboard_base=world.DASHBOARD, key_mode="test",
                        webhook_health={"undelivered_events": 2},
                        tenant_names={"tenant-a": "Dance City"})


def settings(port: int, **over: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "starttls": False,
                              "report_from": "reconciler@example.com", "report_to": TO}
    values.update(over)
    return SmtpSettings(**values)


def no_sleep(_: float) -> None:
    return None


def parts(message: EmailMessage) -> dict[str, Any]:
    """The text, HTML and JSON attachment of a received weekly report."""
    body_text = message.get_body(preferencelist=("plain",))
    body_html = message.get_body(preferencelist=("html",))
    assert body_text is not None and body_html is not None
    attachments = list(message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["application/json", "text/csv"]
    attachment, table = attachments
    rows = list(csv.DictReader(io.StringIO(table.get_content())))
    return {"text": body_text.get_content(), "html": body_html.get_content(),
            "json": json.loads(attachment.get_content()),
            "filename": attachment.get_filename(), "csv": rows,
            "csv_filename": table.get_filename()}


def check_report(message: EmailMessage, report: WeeklyReport) -> None:
    """Subject, both parts, the attachment, and figures equal to the known ledger's."""
    assert message["Subject"] == (
        "[TEST] Pass reconciler, week 2024-W19: 3 need you; 63.2 % automatic of 19 purchases")
    assert message.get_content_type() == "multipart/mixed"
    alternative = next(message.iter_parts())
    assert alternative.get_content_type() == "multipart/alternative"
    got = parts(message)
    assert got["filename"] == "pass-report-2024-W19.json"
    assert got["csv_filename"] == "pass-report-2024-W19.csv"
    data = got["json"]
    # The CSV holds every row the HTML may leave out: needing a person, then created.
    assert [(r["list"], r["session_id"]) for r in got["csv"]] == (
        [("needs_you", n["session_id"]) for n in data["needs_you"]]
        + [("created", c["session_id"]) for c in data["created"]])
    assert data == json.loads(json.dumps(report.to_json()))
    expected = world.EXPECTED
    h = data["headline"]
    assert (h["purchases"], h["automatic"], h["repaired"], h["open"], h["needed_person"]) == (
        expected["purchases"], expected["automatic"], expected["repaired"], expected["open"],
        expected["needed_person"])
    assert h["automatic_rate"] == pytest.approx(expected["automatic_rate"])
    assert data["repair_time"]["p95"] == pytest.approx(expected["repair_p95"])
    assert {m["currency"]: m["purchases_amount"] for m in data["money"]} == {
        c: v["purchases_amount"] for c, v in expected["money"].items()}
    assert [w["purchases"] for w in data["trend"]] == expected["trend_purchases"]
    # The same figures in both parts, as a reader sees them.
    for body in (got["text"], got["html"]):
        assert "63.2 %" in body and "2,250.30 NOK" in body and "ola@example.com" in body
        assert "https://dashboard.stripe.com/acct_1/test/checkout/sessions/cs_test_n1" in body
        assert "The payment does not say which pass was bought" in body
    assert "<table" in got["html"] and "<svg" not in got["html"]


def test_plain_smtp_delivers_the_weekly_report(report: WeeklyReport, ledger: Ledger) -> None:
    with smtp_server("plain") as server:
        result = send_weekly(report, settings(server.port), ledger)
    assert result.complete and result.kept is None and result.exit_code == 0
    assert len(server.messages) == 1
    received = server.messages[0]
    assert sorted(received.rcpt_tos) == sorted(TO)
    assert received.mail_from == "reconciler@example.com"
    assert received.message["Message-ID"] == result.message_id
    check_report(received.message, report)
    assert ledger.unsent_reports() == []


@pytest.mark.parametrize(("mode", "tls_setting"), [("starttls", {"starttls": True}),
                                                   ("tls", {"ssl": True})])
def test_starttls_or_implicit_tls_with_login_delivers_the_weekly_report(
        report: WeeklyReport, ledger: Ledger, tls: Tls, mode: str,
        tls_setting: dict[str, bool]) -> None:
    with smtp_server(mode, tls=tls, users={USER: PASSWORD}) as server:
        smtp = settings(server.port, username=USER, password=Secret(PASSWORD), **tls_setting)
        sender = smtp_sender(smtp, ssl_context=tls.client_context(), sleep=no_sleep)
        result = send_weekly(report, smtp, ledger, sender=sender)
    assert result.complete
    received = server.messages[0]
    assert (received.authenticated_as, received.tls) == (USER, True)
    check_report(received.message, report)


def test_an_untrusted_certificate_is_not_retried_and_the_report_is_kept(
        report: WeeklyReport, ledger: Ledger, tls: Tls) -> None:
    sleeps: list[float] = []
    with smtp_server("tls", tls=tls) as server:
        smtp = settings(server.port, ssl=True)
        # The system's trust store does not know the self-signed certificate.
        result = send_weekly(report, smtp, ledger,
                             sender=smtp_sender(smtp, sleep=sleeps.append))
    assert not result.sent and result.error_kind == "rejected"
    assert "TLS certificate not trusted (self-signed certificate)" in (result.error or "")
    assert sleeps == [] and server.messages == []
    assert result.kept is not None and result.kept.exists()


def test_a_refused_recipient_is_recorded_and_the_report_kept(
        report: WeeklyReport, ledger: Ledger) -> None:
    refuse = dict.fromkeys(TO, "550 5.1.1 mailbox unavailable")
    with smtp_server("plain", refuse=refuse) as server:
        result = send_weekly(report, settings(server.port), ledger,
                             sender=smtp_sender(settings(server.port), sleep=no_sleep))
    assert not result.sent and result.error_kind == "refused" and result.exit_code == 1
    assert result.refused == {a: "550 5.1.1 mailbox unavailable" for a in TO}
    assert server.recorder.rcpt_attempts == 2  # a 5xx is not retried
    kept = ledger.unsent_reports()
    assert [k.path for k in kept] == [result.kept]
    assert "550" in kept[0].error and "ops@example.com" in kept[0].error
    assert result.kept is not None
    assert stat.S_IMODE(result.kept.stat().st_mode) == 0o600
    assert result.kept.parent == ledger.path.parent / "unsent"
    # The kept file is the whole message: it can be sent later, and then it is forgotten.
    with smtp_server("plain") as server:
        again = resend_kept(ledger, smtp_sender(settings(server.port), sleep=no_sleep))
    assert [r.complete for r in again] == [True]
    check_report(server.messages[0].message, report)
    assert ledger.unsent_reports() == [] and not result.kept.exists()


def test_one_refused_recipient_of_two_still_delivers_and_keeps_a_copy(
        report: WeeklyReport, ledger: Ledger) -> None:
    with smtp_server("plain", refuse={TO[1]: "550 no such user"}) as server:
        result = send_weekly(report, settings(server.port), ledger)
    assert result.sent and not result.complete
    assert result.refused == {TO[1]: "550 no such user"}
    assert server.messages[0].rcpt_tos == [TO[0]]
    assert [k.path for k in ledger.unsent_reports()] == [result.kept]


def test_connection_refused_is_retried_then_the_report_is_kept(
        report: WeeklyReport, ledger: Ledger) -> None:
    sleeps: list[float] = []
    smtp = settings(free_port())  # nobody listens there
    result = send_weekly(report, smtp, ledger,
                         sender=smtp_sender(smtp, attempts=3, sleep=sleeps.append))
    assert not result.sent and result.error_kind == "unreachable" and result.exit_code == 2
    assert len(sleeps) == 2  # three attempts, two waits, none slept for real
    assert ledger.unsent_reports()[0].path == result.kept


def test_a_4xx_reply_is_retried_until_the_server_takes_it(
        report: WeeklyReport, ledger: Ledger) -> None:
    sleeps: list[float] = []
    with smtp_server("plain", refuse={TO[0]: "451 4.3.0 try again later"}) as server:
        smtp = settings(server.port, report_to=(TO[0],))

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            server.recorder.refuse.clear()  # the server recovers while we wait

        result = send_weekly(report, smtp, ledger, sender=smtp_sender(smtp, sleep=sleep))
    assert result.complete
    assert len(sleeps) == 1 and len(server.messages) == 1


def test_starttls_is_required_for_a_remote_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-loopback host that offers no STARTTLS is refused before anything is sent."""
    message = EmailMessage()
    message["From"], message["To"] = "a@example.com", "b@example.com"
    message.set_content("x")

    class NoStartTls(smtplib.SMTP):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__()  # no connection: this stands in for a remote server

        def ehlo(self, name: str = "") -> tuple[int, bytes]:
            self.esmtp_features, self.does_esmtp = {"auth": "PLAIN"}, True
            return 250, b"ok"

        def send_message(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise AssertionError("must not send in plain text")

        def quit(self) -> tuple[int, bytes]:
            return 221, b"bye"

    monkeypatch.setattr(mailer_module.smtplib, "SMTP", NoStartTls)
    remote = SmtpSettings(host="smtp.example.com", report_from="a@example.com",
                          report_to=("b@example.com",))
    with pytest.raises(MailError, match="offers no STARTTLS"):
        send_once(remote, message)
    # Turned off explicitly (SMTP_STARTTLS=false), plain text is the operator's choice.
    sent: list[EmailMessage] = []
    monkeypatch.setattr(NoStartTls, "send_message",
                        lambda self, m, *a, **k: sent.append(m) or {})
    assert send_once(replace(remote, starttls=False), message) == {}
    assert sent == [message]


def test_a_wrong_password_is_a_credentials_error_and_never_shows_the_password(
        report: WeeklyReport, ledger: Ledger, tls: Tls,
        capsys: pytest.CaptureFixture[str]) -> None:
    with smtp_server("starttls", tls=tls, users={USER: PASSWORD}) as server:
        smtp = settings(server.port, starttls=True, username=USER,
                        password=Secret("wrong-pw-123"))
        result = send_weekly(report, smtp, ledger,
                             sender=smtp_sender(smtp, ssl_context=tls.client_context(),
                                                sleep=no_sleep))
    assert result.error_kind == "credentials" and result.exit_code == 2
    assert server.users is not None and server.users.failures >= 1
    assert server.messages == []
    captured = capsys.readouterr()
    everything = " ".join([captured.out, captured.err, result.error or "", repr(smtp),
                           ledger.unsent_reports()[0].error])
    assert "wrong-pw-123" not in everything


def test_alerts_go_out_once_over_smtp(ledger: Ledger, tls: Tls) -> None:
    alerts = [
        Alert(key="needs_manual:cs_test_x", kind="needs_manual", title="A purchase needs you",
              meaning="m", fix="Do `this`.", facts=(("Student", "s@example.com"),),
              link="https://dashboard.stripe.com/test/checkout/sessions/cs_test_x"),
        Alert(key="missing_spike:r9", kind="missing_spike", title="The webhook looks broken",
              meaning="m2", fix="f2"),
    ]
    with smtp_server("starttls", tls=tls, users={USER: PASSWORD}) as server:
        smtp = settings(server.port, starttls=True, username=USER, password=Secret(PASSWORD))
        mailer = Mailer(smtp, sender=smtp_sender(smtp, ssl_context=tls.client_context(),
                                                 sleep=no_sleep))
        first = deliver(alerts, mailer, ledger)
        second = deliver(alerts, mailer, ledger)
    assert len(first.sent) == 2 and second.sent == () and second.already_sent == 2
    assert len(server.messages) == 1  # one e-mail carried both
    message = server.messages[0].message
    assert message["Subject"] == "Pass reconciler: 2 alerts, first: A purchase needs you"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "The webhook looks broken" in text.get_content()
    assert "cs_test_x" in html.get_content()
    assert ledger.alert_sent("needs_manual:cs_test_x") and ledger.alert_sent("missing_spike:r9")


def test_an_unsent_alert_is_recorded_unsent_and_tried_again(ledger: Ledger) -> None:
    alert = Alert(key="cap_hit:r9", kind="cap_hit", title="Cap", meaning="m", fix="f")
    smtp = settings(free_port())

    def down(_: EmailMessage) -> Any:
        raise RetriableError("SMTP down")

    result = deliver([alert], Mailer(smtp, sender=down), ledger)
    assert result.failed == (alert,) and result.error == "SMTP down"
    assert not ledger.alert_sent("cap_hit:r9")
    with smtp_server("plain") as server:
        again = deliver([alert], Mailer(settings(server.port)), ledger)
    assert again.sent == (alert,) and ledger.alert_sent("cap_hit:r9")
    assert len(server.messages) == 1


def test_without_mail_settings_the_report_files_are_kept(report: WeeklyReport,
                                                          ledger: Ledger) -> None:
    result = send_weekly(report, SmtpSettings(host="127.0.0.1", report_from="a@example.com"),
                         ledger, sender=lambda m: pytest.fail("nothing can be sent"))
    assert (result.sent, result.error_kind, result.exit_code) == (False, "config", 2)
    assert result.kept is not None
    assert sorted(p.name for p in result.kept.iterdir()) == [
        "report.csv", "report.html", "report.json", "report.txt"]
    [kept] = ledger.unsent_reports()
    assert (kept.path, kept.error) == (result.kept, "REPORT_TO is not set")


def test_with_the_ledger_in_postgresql_an_unsent_report_is_kept_in_it_and_sent_later(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written here (or anywhere on disk)
    with world.build(pg_url) as ledger:
        report = build_weekly(ledger, world.WEEK, world.REPORT_NOW, tz=world.TZ,
                              dashboard_base=world.DASHBOARD, key_mode="test",
                              webhook_health={"undelivered_events": 2},
                              tenant_names={"tenant-a": "Dance City"})
        refuse = dict.fromkeys(TO, "550 5.1.1 mailbox unavailable")
        with smtp_server("plain", refuse=refuse) as server:
            result = send_weekly(report, settings(server.port), ledger,
                                 sender=smtp_sender(settings(server.port), sleep=no_sleep))
        with world.build(tmp_path / "sqlite") as on_sqlite:  # the same figures on both
            assert build_weekly(on_sqlite, world.WEEK, world.REPORT_NOW, tz=world.TZ,
                                dashboard_base=world.DASHBOARD, key_mode="test",
                                webhook_health={"undelivered_events": 2},
                                tenant_names={"tenant-a": "Dance City"}) == report
        assert not result.sent and result.kept == Path(f"weekly-{report.label}.eml")
        (kept,) = ledger.unsent_reports()
        assert kept.path == result.kept and "550" in kept.error
        assert [p.name for p in tmp_path.iterdir()] == ["sqlite"]
    with Ledger.connect(pg_url) as ledger, smtp_server("plain") as server:
        # Another process (another host) sends it: the message is in the database.
        again = resend_kept(ledger, smtp_sender(settings(server.port), sleep=no_sleep))
        assert [r.complete for r in again] == [True]
        check_report(server.messages[0].message, report)
        assert ledger.unsent_reports() == []
