"""The ledger's watermarks: per account and pass kind, how far a run has read."""

from __future__ import annotations

from datetime import datetime

from jobs.adapters.ledger_base import LedgerBase
from jobs.core.records import Watermark, to_datetime, to_epoch
from jobs.core.runreport import RunReport


class WatermarkTables(LedgerBase):
    """Per account and kind (quick, deep): the end of the last window read in full."""

    def watermark(self, account: str, kind: str = "quick") -> datetime | None:
        rows = self._query(
            "SELECT until FROM watermarks WHERE account = ? AND kind = ?", (account, kind)
        )
        return to_datetime(rows[0]["until"]) if rows else None

    def advance_watermark(self, account: str, until: datetime, kind: str = "quick",
                          run_id: str | None = None) -> bool:
        """Move the watermark to `until` if that is later; return whether it moved."""
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO watermarks (account, kind, until, run_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, kind) DO UPDATE SET"
                " until = excluded.until, run_id = excluded.run_id,"
                " updated_at = excluded.updated_at WHERE excluded.until > watermarks.until",
                (account, kind, to_epoch(until), run_id, self._now()),
            )
        return cursor.rowcount == 1

    def advance_watermarks_from_report(self, report: RunReport, kind: str) -> list[str]:
        """Advance to the window's end every account read and written without error.

        Nothing moves for a dry run (nothing was written); an account moves only if it has no
        read error and no `failed` session.
        """
        if report.dry_run:
            return []
        until = to_datetime(float(to_epoch(report.until) or 0.0))
        # A write that failed is retried from the watermark; a malformed session is not (no
        # retry mends it: it stays in the ledger as needing a person), so it must not pin the
        # account's watermark and make every later quick pass re-read a growing window.
        failed = {d.account for d in report.failed
                  if not d.detail.startswith("malformed session")}
        clean = [a.account for a in report.accounts.values()
                 if not a.error and a.account not in failed]
        return [a for a in clean if self.advance_watermark(a, until, kind, report.run_id)]

    def watermarks(self) -> list[Watermark]:
        rows = self._query("SELECT * FROM watermarks ORDER BY account, kind")
        return [
            Watermark(r["account"], r["kind"], to_datetime(r["until"]), r["run_id"],
                      to_datetime(r["updated_at"]))
            for r in rows
        ]

    def sold_since(self, since: datetime) -> set[str]:
        """Accounts with a purchase paid since `since` (the quick pass's rhythm). A purchase
        is first seen after it is paid, so the first-seen index narrows the search."""
        cutoff = to_epoch(since)
        rows = self._query("SELECT DISTINCT account FROM sessions WHERE first_seen_at >= ?"
                           " AND paid_at >= ?", (cutoff, cutoff))
        return {r["account"] for r in rows}
