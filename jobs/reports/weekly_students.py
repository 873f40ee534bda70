"""The weekly report's block on student e-mails: how many were told, what was not delivered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from jobs.adapters.notice_ledger import NoticeBook

WORDS = {"skipped": "not sent", "refused": "refused by the mail server",
         "expired": "not delivered in 3 days", "uncertain": "may not have arrived",
         "unsent": "waiting for the mail server"}


@dataclass(frozen=True)
class UndeliveredEmail:
    session_id: str
    school: str | None
    email: str | None
    state: str  # skipped | refused | expired | uncertain | unsent (still retried)
    what: str  # the state in plain words
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class StudentEmails:
    told: int  # e-mails the mail server accepted during the week
    not_delivered: tuple[UndeliveredEmail, ...]


def student_emails(book: NoticeBook, start: datetime, end: datetime,
                   school_names: Mapping[str, str] | None = None) -> StudentEmails:
    names = school_names or {}
    rows = book.trouble(start, end)
    return StudentEmails(
        told=len(book.sent_between(start, end)),
        not_delivered=tuple(
            UndeliveredEmail(r.session_id, names.get(r.tenant or "", r.tenant), r.email,
                             r.state, WORDS.get(r.state, r.state), r.reason, r.updated_at)
            for r in rows))
