"""Mail: the weekly report and alerts over SMTP (STARTTLS, implicit TLS, login), never lost.

One send = one SMTP conversation, retried with `jobs.adapters.retry.call_with_retry` on transient
failures (connection refused or dropped, timeouts, 4xx replies). A report that still cannot be
sent is written to the state dir as a complete .eml and recorded in the ledger
(`keep_unsent_report`); `resend_kept` sends such files later. Refused recipients (5xx at RCPT)
are recorded the same way. STARTTLS is required for any host but a loopback one unless the
settings turn it off explicitly (SMTP_STARTTLS=false). The password is read from its `Secret`
only to hand it to `login`; it never reaches a log line or an error message.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Literal, Protocol

import structlog

from jobs.adapters.retry import call_with_retry
from jobs.config.settings import SmtpSettings
from jobs.config.values import is_loopback
from jobs.core.errors import ConfigError, CredentialsRejected, ReconcilerError, RetriableError
from jobs.core.records import UnsentReport
from jobs.reports.render import render_weekly, report_csv, write_private, write_weekly
from jobs.reports.weekly_rows import WeeklyReport

log = structlog.get_logger("jobs.mailer")

DEFAULT_TIMEOUT = 30.0
UNSENT_DIR = "unsent"

ErrorKind = Literal["refused", "credentials", "unreachable", "rejected", "config"]
# Refused recipients, as smtplib reports them: address -> (code, server reply).
Refusals = Mapping[str, tuple[int, bytes]]
Sender = Callable[[EmailMessage], Refusals]


class MailError(ReconcilerError):
    """The mail server refused for good (5xx), or the connection cannot be made safe."""

    exit_code = 1


class RecipientsRefused(MailError):
    """Every recipient was refused (e.g. 550 unknown user)."""

    def __init__(self, refused: Refusals) -> None:
        super().__init__("recipients refused: " + describe_refusals(refused))
        self.refused = dict(refused)


def describe_refusals(refused: Refusals) -> str:
    return "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in refused.items())


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "application/json"
    data: bytes


@dataclass(frozen=True)
class SendResult:
    """What became of one e-mail. `kept` is where an unsent report waits in the state dir."""

    sent: bool
    message_id: str
    refused: Mapping[str, str] = field(default_factory=dict)  # address -> "550 reply"
    error: str | None = None
    error_kind: ErrorKind | None = None
    kept: Path | None = None

    @property
    def complete(self) -> bool:
        """Sent and accepted for every recipient."""
        return self.sent and not self.refused

    @property
    def exit_code(self) -> int:
        """0 delivered to all; 2 could not send (config, credentials, unreachable); else 1."""
        if self.complete:
            return 0
        return 2 if self.error_kind in ("config", "credentials", "unreachable") else 1


# ---- composing ---------------------------------------------------------------------------


def compose(smtp: SmtpSettings, subject: str, text: str, html: str,
            attachments: Iterable[Attachment] = (), *, now: datetime | None = None
            ) -> EmailMessage:
    """A multipart/alternative (text + HTML) e-mail, wrapped in multipart/mixed if attachments."""
    if not smtp.report_from:
        raise ConfigError("REPORT_FROM is not set")
    if not smtp.report_to:
        raise ConfigError("REPORT_TO is not set")
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = smtp.report_from
    message["To"] = ", ".join(smtp.report_to)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    # The sender's own domain, so make_msgid does not look up this host's name.
    domain = smtp.report_from.rpartition("@")[2].strip(" >") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(item.data, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=item.filename)
    return message


# ---- sending -----------------------------------------------------------------------------


def _is_transient(code: int) -> bool:
    return 400 <= code < 500


def _connect(smtp: SmtpSettings, context: ssl.SSLContext, timeout: float) -> smtplib.SMTP:
    host = smtp.host or ""
    if smtp.ssl:
        return smtplib.SMTP_SSL(host, smtp.port, timeout=timeout, context=context)
    return smtplib.SMTP(host, smtp.port, timeout=timeout)


def _converse(conn: smtplib.SMTP, smtp: SmtpSettings, context: ssl.SSLContext,
              message: EmailMessage) -> Refusals:
    conn.ehlo()
    if not smtp.ssl and smtp.starttls:
        if conn.has_extn("starttls"):
            conn.starttls(context=context)
            conn.ehlo()
        elif not is_loopback(smtp.host or ""):
            raise MailError(f"SMTP server {smtp.host} offers no STARTTLS; refusing to send in "
                            "plain text (set SMTP_STARTTLS=false to allow it)")
    if smtp.username:
        password = smtp.password.reveal() if smtp.password is not None else ""
        conn.login(smtp.username, password)
    return conn.send_message(message)


def send_once(smtp: SmtpSettings, message: EmailMessage, *,
              ssl_context: ssl.SSLContext | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> Refusals:
    """One SMTP conversation; raises RetriableError, CredentialsRejected or MailError."""
    if not smtp.host:
        raise ConfigError("SMTP_HOST is not set")
    context = ssl_context or ssl.create_default_context()
    where = f"SMTP {smtp.host}:{smtp.port}"
    conn: smtplib.SMTP | None = None
    try:
        conn = _connect(smtp, context, timeout)
        return _converse(conn, smtp, context, message)
    except smtplib.SMTPAuthenticationError as e:
        raise CredentialsRejected(f"{where} rejected the login of SMTP_USERNAME "
                                  f"({e.smtp_code} {_text(e.smtp_error)})") from e
    except smtplib.SMTPRecipientsRefused as e:
        if all(_is_transient(code) for code, _ in e.recipients.values()):
            raise RetriableError(f"{where}: recipients deferred: "
                                 f"{describe_refusals(e.recipients)}") from e
        raise RecipientsRefused(e.recipients) from e
    except smtplib.SMTPServerDisconnected as e:
        raise RetriableError(f"{where} closed the connection: {e}") from e
    except smtplib.SMTPNotSupportedError as e:
        raise MailError(f"{where}: {e}") from e
    except smtplib.SMTPResponseException as e:
        text = f"{where} replied {e.smtp_code} {_text(e.smtp_error)}"
        if _is_transient(e.smtp_code):
            raise RetriableError(text) from e
        raise MailError(text) from e
    except ssl.SSLCertVerificationError as e:
        # The same certificate next time: not retried.
        raise MailError(f"{where}: TLS certificate not trusted ({e.verify_message})") from e
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
        # The connection was cut during or after the handshake: a dropped line, tried again.
        raise RetriableError(f"{where} closed the connection during TLS: {e}") from e
    except ssl.SSLError as e:
        raise MailError(f"{where}: TLS failed ({e.reason or e})") from e
    except smtplib.SMTPException as e:
        raise MailError(f"{where}: {e}") from e
    except OSError as e:
        raise RetriableError(f"{where} unreachable: {e}") from e
    finally:
        if conn is not None:
            _close(conn)


def _close(conn: smtplib.SMTP) -> None:
    """QUIT politely; a failure here must not turn a delivered message into a retried one."""
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


def smtp_sender(smtp: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None,
                timeout: float = DEFAULT_TIMEOUT, attempts: int = 4,
                sleep: Callable[[float], None] = time.sleep) -> Sender:
    """A Sender that delivers over SMTP per `smtp`, retrying transient failures."""

    def send(message: EmailMessage) -> Refusals:
        return call_with_retry(
            lambda: send_once(smtp, message, ssl_context=ssl_context, timeout=timeout),
            what="smtp send", attempts=attempts, sleep=sleep, base=1.0, cap=30.0,
        )

    return send


def deliver_message(message: EmailMessage, sender: Sender) -> SendResult:
    """Send `message`; every mail failure becomes a SendResult, never an exception."""
    message_id = str(message.get("Message-ID", ""))
    try:
        refused = sender(message)
    except RecipientsRefused as e:
        return SendResult(False, message_id, _refusal_texts(e.refused), str(e), "refused")
    except CredentialsRejected as e:
        return SendResult(False, message_id, error=str(e), error_kind="credentials")
    except RetriableError as e:
        return SendResult(False, message_id, error=str(e), error_kind="unreachable")
    except ConfigError as e:
        return SendResult(False, message_id, error=str(e), error_kind="config")
    except MailError as e:
        return SendResult(False, message_id, error=str(e), error_kind="rejected")
    if refused:
        return SendResult(True, message_id, _refusal_texts(refused),
                          "some recipients refused: " + describe_refusals(refused), "refused")
    return SendResult(True, message_id)


def _refusal_texts(refused: Refusals) -> dict[str, str]:
    return {addr: f"{code} {_text(reply)}" for addr, (code, reply) in refused.items()}


class Mailer:
    """Composes and sends e-mails for one SMTP configuration (alerts use it through `deliver`)."""

    def __init__(self, smtp: SmtpSettings, *, sender: Sender | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.smtp = smtp
        self._sender = sender or smtp_sender(smtp)
        self._clock = clock

    def compose(self, subject: str, text: str, html: str,
                attachments: Sequence[Attachment] = ()) -> EmailMessage:
        return compose(self.smtp, subject, text, html, attachments, now=self._clock())

    def send(self, message: EmailMessage) -> SendResult:
        result = deliver_message(message, self._sender)
        log.info("mail_sent" if result.complete else "mail_not_sent",
                 recipients=len(self.smtp.report_to), refused=len(result.refused),
                 error_kind=result.error_kind, error=result.error)
        return result


# ---- the weekly report -------------------------------------------------------------------


class ReportLedger(Protocol):
    """What sending a report needs of the ledger."""

    path: Path | None  # None: no directory beside it, unsent messages are kept inside it

    def keep_unsent_report(self, path: Path, error: str,
                           message: bytes | None = None) -> None: ...
    def forget_unsent_report(self, path: Path) -> None: ...
    def unsent_reports(self) -> list[UnsentReport]: ...
    def unsent_message(self, path: Path) -> bytes | None: ...


def unsent_dir(ledger: ReportLedger) -> Path:
    """`<state dir>/unsent`, private like the ledger beside it."""
    if ledger.path is None:
        raise ConfigError("the ledger keeps no files (it is in a database)")
    path = ledger.path.parent / UNSENT_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def keep_message(message: EmailMessage, path: Path) -> Path:
    """Write the whole message (parts and attachments) as an .eml readable by its owner only."""
    write_private(path, message.as_bytes(policy=policy.SMTP))
    return path


def weekly_attachment(report: WeeklyReport, json_text: str) -> Attachment:
    return Attachment(f"pass-report-{report.label}.json", "application/json",
                      json_text.encode("utf-8"))


def weekly_csv_attachment(report: WeeklyReport) -> Attachment:
    """Every purchase row, for a spreadsheet: the HTML part shows only the first of each list."""
    return Attachment(f"pass-report-{report.label}.csv", "text/csv",
                      report_csv(report).encode("utf-8"))


def send_weekly(report: WeeklyReport, smtp: SmtpSettings, ledger: ReportLedger, *,
                sender: Sender | None = None,
                clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> SendResult:
    """E-mail the weekly report (text + HTML, JSON attached); keep it if it cannot be sent.

    A report not delivered to every recipient is kept as `<state dir>/unsent/weekly-<week>.eml`
    and recorded with the error in the ledger; a later successful send of the same week drops
    it again.
    """
    rendered = render_weekly(report)
    name = f"weekly-{report.label}"
    try:
        mailer = Mailer(smtp, sender=sender, clock=clock)
        message = mailer.compose(rendered.subject, rendered.text, rendered.html,
                                 [weekly_attachment(report, rendered.json or ""),
                                  weekly_csv_attachment(report)])
    except ConfigError as e:
        if ledger.path is None:  # a database ledger: the report can be built again from it
            ledger.keep_unsent_report(Path(name), str(e))
            log.error("report_not_sent", error_kind="config", error=str(e))
            return SendResult(False, "", error=str(e), error_kind="config", kept=Path(name))
        # No message can be built without the mail settings: keep the files themselves.
        folder = unsent_dir(ledger) / name
        write_weekly(report, folder)
        ledger.keep_unsent_report(folder, str(e))
        log.error("report_not_sent", error_kind="config", error=str(e))
        return SendResult(False, "", error=str(e), error_kind="config", kept=folder)
    result = mailer.send(message)
    if ledger.path is None:
        return _keep_in_ledger(ledger, message, Path(f"{name}.eml"), result, report.label)
    path = unsent_dir(ledger) / f"{name}.eml"
    if result.complete:
        if path.exists():
            path.unlink()
            ledger.forget_unsent_report(path)
        return result
    keep_message(message, path)
    ledger.keep_unsent_report(path, result.error or "not sent")
    log.warning("report_kept", week=report.label, error_kind=result.error_kind)
    return replace(result, kept=path)


def _keep_in_ledger(ledger: ReportLedger, message: EmailMessage, name: Path,
                    result: SendResult, label: str) -> SendResult:
    """`send_weekly`'s ending for a ledger in a database: the message is kept in it."""
    if result.complete:
        ledger.forget_unsent_report(name)
        return result
    ledger.keep_unsent_report(name, result.error or "not sent",
                              message.as_bytes(policy=policy.SMTP))
    log.warning("report_kept", week=label, error_kind=result.error_kind)
    return replace(result, kept=name)


def resend_kept(ledger: ReportLedger, sender: Sender) -> list[SendResult]:
    """Try again every kept .eml report; forget (and delete) the ones now delivered."""
    results = []
    for kept in ledger.unsent_reports():
        if kept.path.suffix != ".eml":
            continue
        raw = ledger.unsent_message(kept.path)
        in_file = raw is None
        if raw is None:
            if not kept.path.is_file():
                continue
            raw = kept.path.read_bytes()
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        result = deliver_message(message, sender)
        if result.complete:
            if in_file:
                kept.path.unlink(missing_ok=True)
            ledger.forget_unsent_report(kept.path)
        elif result.error:
            ledger.keep_unsent_report(kept.path, result.error)
        results.append(replace(result, kept=None if result.complete else kept.path))
    return results
