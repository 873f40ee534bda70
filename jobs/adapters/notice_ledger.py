"""The ledger's record of student e-mails: one row per purchase, so each is sent once.

A row is written as `intent` BEFORE the Sanity transaction that creates the pass, so a run
killed between that transaction and the e-mail leaves a trace; the next pass checks Sanity and
turns it into `owed` (our own document is there) or drops it (it is not). `sending` is written
before the SMTP conversation and `sent` after the server accepted the message; a row found in
`sending` by a later pass belonged to a process that died mid-conversation and becomes
`uncertain` (reported, never sent again: a second e-mail is the worse mistake). The states are
`jobs.adapters.ledger_schema.NOTICE_STATES`; the SQL is portable (plain types, unix seconds).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from jobs.adapters.ledger import Ledger
from jobs.core.records import NoticeRow

RETRY_FOR = 3 * 86400  # unsent e-mails are retried by later passes for 3 days, then reported
FINAL_TROUBLE = ("skipped", "refused", "expired", "uncertain")


def _time(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _row(r: Any) -> NoticeRow:
    return NoticeRow(
        session_id=r["session_id"], run_id=r["run_id"], account=r["account"],
        tenant=r["tenant"], email=r["email"], content=json.loads(r["content"]),
        state=r["state"], reason=r["reason"], attempts=int(r["attempts"]),
        message_id=r["message_id"], recorded_at=datetime.fromtimestamp(r["recorded_at"], UTC),
        owed_at=_time(r["owed_at"]), sent_at=_time(r["sent_at"]),
        updated_at=datetime.fromtimestamp(r["updated_at"], UTC))


class NoticeBook:
    """Student e-mail rows in the run ledger (shares its connection and its lock)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def _now(self) -> int:
        return int(self._ledger._now())

    def intend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record e-mails a transaction is about to make owed (`session_id`, `run_id`,
        `account`, `tenant`, `email`, `content`). A purchase already told, or on its way,
        keeps its row; an earlier intent is taken over by this run's transaction."""
        now = self._now()
        with self._ledger._tx() as conn:
            for row in rows:
                conn.execute(
                    "INSERT INTO student_notices (session_id, run_id, account, tenant, email,"
                    " content, state, recorded_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?)"
                    " ON CONFLICT (session_id) DO UPDATE SET run_id = excluded.run_id,"
                    " email = excluded.email, content = excluded.content,"
                    " updated_at = excluded.updated_at"
                    " WHERE student_notices.state = 'intent'",
                    (row["session_id"], row["run_id"], row["account"], row.get("tenant"),
                     row.get("email"), json.dumps(row["content"], sort_keys=True), now, now))

    def confirm(self, session_ids: Iterable[str], run_id: str) -> int:
        """This run's transaction created these purchases: their e-mails are owed."""
        now = self._now()
        count = 0
        with self._ledger._tx() as conn:
            for sid in session_ids:
                count += conn.execute(
                    "UPDATE student_notices SET state = 'owed', owed_at = ?, updated_at = ?"
                    " WHERE session_id = ? AND run_id = ? AND state = 'intent'",
                    (now, now, sid, run_id)).rowcount
        return count

    def forget_intents(self, session_ids: Iterable[str]) -> None:
        """Intents whose transaction created nothing of ours (not written, or the webhook's
        document was there first): no e-mail; a later run that creates it intends anew."""
        with self._ledger._tx() as conn:
            for sid in session_ids:
                conn.execute("DELETE FROM student_notices WHERE session_id = ?"
                             " AND state = 'intent'", (sid,))

    def forget(self, session_id: str) -> None:
        """No e-mail for this purchase after all (its school is excluded)."""
        with self._ledger._tx() as conn:
            conn.execute("DELETE FROM student_notices WHERE session_id = ?", (session_id,))

    def intents(self) -> list[NoticeRow]:
        return [_row(r) for r in self._ledger._query(
            "SELECT * FROM student_notices WHERE state = 'intent' ORDER BY recorded_at,"
            " session_id")]

    def settle_abandoned(self) -> tuple[int, int]:
        """Called under the run lock, so no other process is mid-send: `sending` rows died
        in the SMTP conversation (-> uncertain); unsent rows owed for 3 days -> expired."""
        now = self._now()
        with self._ledger._tx() as conn:
            uncertain = conn.execute(
                "UPDATE student_notices SET state = 'uncertain', updated_at = ?,"
                " reason = 'the job stopped during the SMTP conversation; not sent again'"
                " WHERE state = 'sending'", (now,)).rowcount
            expired = conn.execute(
                "UPDATE student_notices SET state = 'expired', updated_at = ?,"
                " reason = 'not delivered within 3 days: ' || COALESCE(reason, 'mail server down')"
                " WHERE state IN ('owed', 'unsent') AND owed_at <= ?",
                (now, now - RETRY_FOR)).rowcount
        return uncertain, expired

    def due(self) -> list[NoticeRow]:
        """Owed e-mails not yet sent, oldest first."""
        return [_row(r) for r in self._ledger._query(
            "SELECT * FROM student_notices WHERE state IN ('owed', 'unsent')"
            " ORDER BY owed_at, session_id")]

    def mark(self, session_id: str, state: str, *, reason: str | None = None,
             message_id: str | None = None) -> None:
        """Move one row on: `sending` (before SMTP), `sent`, `unsent`, `skipped`, `refused`."""
        now = self._now()
        attempt = state == "sending"
        with self._ledger._tx() as conn:
            conn.execute(
                "UPDATE student_notices SET state = ?, reason = ?, updated_at = ?,"
                " message_id = COALESCE(?, message_id),"
                " attempts = attempts + ?, last_attempt_at = CASE WHEN ? = 1 THEN ?"
                " ELSE last_attempt_at END,"
                " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END"
                " WHERE session_id = ?",
                (state, reason, now, message_id, int(attempt), int(attempt), now, state, now,
                 session_id))

    def row(self, session_id: str) -> NoticeRow | None:
        rows = self._ledger._query("SELECT * FROM student_notices WHERE session_id = ?",
                                   (session_id,))
        return _row(rows[0]) if rows else None

    def sent_between(self, start: datetime, end: datetime) -> list[NoticeRow]:
        """E-mails the SMTP server accepted in [start, end)."""
        return [_row(r) for r in self._ledger._query(
            "SELECT * FROM student_notices WHERE state = 'sent' AND sent_at >= ?"
            " AND sent_at < ? ORDER BY sent_at, session_id",
            (int(start.timestamp()), int(end.timestamp())))]

    def trouble(self, start: datetime, end: datetime) -> list[NoticeRow]:
        """E-mails that ended undelivered in [start, end), and every one still waiting."""
        marks = ", ".join("?" * len(FINAL_TROUBLE))
        return [_row(r) for r in self._ledger._query(
            f"SELECT * FROM student_notices WHERE (state IN ({marks}) AND updated_at >= ?"
            " AND updated_at < ?) OR state = 'unsent' ORDER BY updated_at, session_id",
            (*FINAL_TROUBLE, int(start.timestamp()), int(end.timestamp())))]
