"""Tell the student: one e-mail per purchase this job created, exactly once (opt-in).

`before_commit` records an intent for each purchase of a transaction BEFORE it is written;
`after_pass` (at the end of every real pass, also one that created nothing) turns intents into
owed e-mails, sends what is owed and records what became of each (the ledger's notice rows):

- an intent of this run whose purchase the report lists as `created` is owed;
- any other intent (a write that failed, or a run killed between its transaction and this
  step) is checked in Sanity: `subscription-<session id>` published with `createdViaRecovery`
  and the intent's `reconcileRunId` means our transaction created it (owed); anything else
  means it did not (the intent is dropped, a later run that creates it intends anew);
- an owed e-mail whose address is missing or unusable is `skipped` with the reason; one the
  server refuses (5xx) is `refused`; one the server cannot take now stays `unsent` and later
  passes try again for 3 days, then it is `expired`. All of these are in the weekly report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol

import structlog

from jobs.config.settings import Settings
from jobs.core.errors import ReconcilerError
from jobs.core.model import Decision
from jobs.core.records import NoticeRow
from jobs.reports.student_notice import (
    School,
    address_problem,
    content_problem,
    message_id,
    notice_row,
    render_notice,
    school_of,
)

log = structlog.get_logger("jobs.student_mail")

SUBSCRIPTION_PREFIX = "subscription-"


class NoticeLedger(Protocol):
    """The ledger's student e-mail rows (the adapters' `NoticeBook`)."""

    def intend(self, rows: Iterable[Mapping[str, Any]]) -> None: ...
    def confirm(self, session_ids: Iterable[str], run_id: str) -> int: ...
    def forget_intents(self, session_ids: Iterable[str]) -> None: ...
    def forget(self, session_id: str) -> None: ...
    def intents(self) -> list[NoticeRow]: ...
    def settle_abandoned(self) -> tuple[int, int]: ...
    def due(self) -> list[NoticeRow]: ...
    def mark(self, session_id: str, state: str, *, reason: str | None = None,
             message_id: str | None = None) -> None: ...


class Delivery(Protocol):
    """What became of one e-mail (the mailer's `SendResult`)."""

    @property
    def complete(self) -> bool: ...
    @property
    def refused(self) -> Mapping[str, str]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_kind(self) -> str | None: ...


Send = Callable[[EmailMessage], Delivery]  # one e-mail, one SMTP conversation


class NoticeStore(Protocol):
    """What the e-mails need of Sanity: our documents by id, the schools."""

    def get_documents(self, ids: Iterable[str]) -> list[dict[str, Any]]: ...
    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...


@dataclass
class NoticeSummary:
    """What one pass did about students' e-mails (the run report's `student_emails`)."""

    told: int = 0
    unsent: int = 0
    dropped: int = 0
    expired: int = 0
    uncertain: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)  # session_id, state, reason

    def to_json(self) -> dict[str, Any]:
        return {"told": self.told, "unsent": self.unsent, "dropped_intents": self.dropped,
                "expired": self.expired, "uncertain": self.uncertain,
                "not_delivered": self.problems}


def ours(doc: Mapping[str, Any] | None, run_id: str) -> bool:
    """Whether `doc` is the subscription this job's run `run_id` created."""
    return (doc is not None and doc.get("createdViaRecovery") is True
            and doc.get("reconcileRunId") == run_id)


class StudentMail:
    """The student e-mails of one command (a run, a daemon pass, `diagnose --fix`)."""

    def __init__(self, settings: Settings, book: NoticeLedger, sanity: NoticeStore, *,
                 send: Send, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.book = book
        self.sanity = sanity
        self._send_one = send
        self._clock = clock

    # ---- before the transaction ----------------------------------------------------------

    def before_commit(self, decisions: Sequence[Decision], run_id: str) -> None:
        """Record the e-mails a transaction is about to owe, before it is written."""
        rows = [notice_row(d, run_id) for d in decisions
                if d.creation is not None and not self.settings.notify.excludes(d.tenant, None)]
        if rows:
            self.book.intend(rows)

    # ---- after the pass ------------------------------------------------------------------

    def after_pass(self, created: Iterable[str], run_id: str) -> NoticeSummary:
        """Owe, resolve, send. `created`: session ids the pass's report lists as created."""
        summary = NoticeSummary()
        self.book.confirm(created, run_id)
        summary.dropped = self._resolve(self.book.intents())
        summary.uncertain, summary.expired = self.book.settle_abandoned()
        due = self.book.due()
        if due:
            self._send(due, summary)
        summary.unsent = len(self.book.due())  # owed and not sent: a later pass tries again
        return summary

    def _resolve(self, intents: Sequence[NoticeRow]) -> int:
        """Intents without a confirmation: owed if our document is in Sanity, else dropped."""
        if not intents:
            return 0
        docs = {d.get("_id"): d for d in self.sanity.get_documents(
            [SUBSCRIPTION_PREFIX + row.session_id for row in intents])}
        mine = [r for r in intents if ours(docs.get(SUBSCRIPTION_PREFIX + r.session_id),
                                           r.run_id)]
        for row in mine:
            self.book.confirm([row.session_id], row.run_id)
        gone = [r.session_id for r in intents if r not in mine]
        self.book.forget_intents(gone)
        if mine or gone:
            log.info("student_email_intents_resolved", owed=len(mine), dropped=len(gone))
        return len(gone)

    def _schools(self) -> dict[str, School]:
        tenants, _ = self.sanity.load_catalog()
        return {str(t.get("_id")): school_of(t) for t in tenants}

    def _send(self, due: Sequence[NoticeRow], summary: NoticeSummary) -> None:
        schools = self._schools()
        notify = self.settings.notify
        down: str | None = None  # set when the server cannot take mail: the rest wait
        for row in due:
            school = schools.get(row.tenant or "")
            slug = school.slug if school else None
            if notify.excludes(row.tenant, slug):
                self.book.forget(row.session_id)
                continue
            # Checked whether or not the server answers: a bad address is reported now.
            problem = (address_problem(row.email)
                       or content_problem(row.content, self._clock()))
            if problem is not None:
                self.book.mark(row.session_id, "skipped", reason=problem)
                summary.problems.append({"session_id": row.session_id, "state": "skipped",
                                         "reason": problem})
                log.warning("student_email_skipped", session_id=row.session_id, reason=problem)
                continue
            if down is not None:
                self.book.mark(row.session_id, "unsent", reason=down)
                continue
            message = self._compose(row, school, notify.language_of(row.tenant, slug))
            self.book.mark(row.session_id, "sending", message_id=str(message["Message-ID"]))
            result = self._send_one(message)
            if result.complete:
                self.book.mark(row.session_id, "sent")
                summary.told += 1
                log.info("student_email_sent", session_id=row.session_id, tenant=row.tenant)
            elif result.error_kind == "refused":
                # The server refused this address for good: no retry mends it.
                reason = "; ".join(result.refused.values()) or result.error or "refused"
                self.book.mark(row.session_id, "refused", reason=reason)
                summary.problems.append({"session_id": row.session_id, "state": "refused",
                                         "reason": reason})
                log.warning("student_email_refused", session_id=row.session_id, reason=reason)
            else:
                # The server cannot take mail now: a later pass tries again.
                down = result.error or "the mail server did not take the e-mail"
                self.book.mark(row.session_id, "unsent", reason=down)
                log.warning("student_emails_waiting", error_kind=result.error_kind, error=down)

    def _compose(self, row: NoticeRow, school: School | None, language: str) -> EmailMessage:
        notify, smtp = self.settings.notify, self.settings.smtp
        rendered = render_notice(row.content, school, language=language,
                                 tz=self.settings.schedule.timezone, app_url=notify.app_url)
        sender = notify.sender or smtp.report_from or ""
        message = EmailMessage()
        message["Subject"] = rendered.subject
        message["From"] = sender
        message["To"] = row.email or ""
        if notify.reply_to:
            message["Reply-To"] = notify.reply_to
        message["Date"] = format_datetime(self._clock())
        domain = sender.rpartition("@")[2].strip(" >") or "localhost"
        # One id per purchase, the same on every attempt, so a mail system can see a repeat.
        message["Message-ID"] = message_id(row.session_id, domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        # After the parts exist: a Content-* header set earlier moves into the first part.
        message["Content-Language"] = language
        return message


def tell_students(students: StudentMail, created: Iterable[str],
                  run_id: str) -> NoticeSummary | None:
    """Send what is owed (`created`: the session ids the pass reports created); a mail or
    Sanity problem here is logged, never the run's failure (what was not sent stays owed in
    the ledger for the next pass)."""
    try:
        summary = students.after_pass(created, run_id)
    except ReconcilerError as error:
        log.error("student_emails_failed", error=str(error).strip().splitlines()[0]
                  if str(error).strip() else type(error).__name__)
        return None
    if summary.told or summary.unsent or summary.problems:
        log.info("student_emails", told=summary.told, waiting=summary.unsent,
                 not_delivered=len(summary.problems))
    return summary
