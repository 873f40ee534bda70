"""`reconcile status`: the last runs, watermarks, pending sessions and the lock, as data and text.

`status_view` only reads (the ledger and the lock's holder); `render_status_text` is pure.
The view is JSON-ready (times as ISO 8601 strings, durations in seconds) for `--json`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from jobs.core.records import PendingSession, RunRecord, UnsentReport, Watermark

COUNT_COLUMNS = ("sessions_scanned", "created", "needs_manual", "pending", "failed")


class StatusLedger(Protocol):
    """What the status view reads from the ledger."""

    def recent_runs(self, limit: int = 10) -> list[RunRecord]: ...
    def last_success(self) -> RunRecord | None: ...
    def consecutive_failures(self) -> int: ...
    def watermarks(self) -> list[Watermark]: ...
    def pending_rows(self) -> list[PendingSession]: ...
    def unsent_reports(self) -> list[UnsentReport]: ...


class StatusLock(Protocol):
    """What the status view reads from the run lock."""

    def holder(self) -> dict[str, Any] | None: ...


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _run(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "status": run.status,
        "dry_run": run.dry_run,
        "since": _iso(run.since),
        "until": _iso(run.until),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_s": run.duration_seconds,
        "counts": dict(run.counts),
        "account_errors": dict(run.account_errors),
        "error": run.error,
    }


def status_view(ledger: StatusLedger, lock: StatusLock, now: datetime,
                *, limit: int = 10) -> dict[str, Any]:
    """Everything `reconcile status` shows, as plain JSON-ready data."""
    success = ledger.last_success()
    success_at = None if success is None else success.finished_at
    return {
        "now": _iso(now),
        "lock": lock.holder(),
        "last_success": None if success is None else {
            "run_id": success.run_id, "kind": success.kind, "finished_at": _iso(success_at)},
        "since_last_success_s": None if success_at is None else (now - success_at).total_seconds(),
        "consecutive_failures": ledger.consecutive_failures(),
        "runs": [_run(r) for r in ledger.recent_runs(limit)],
        "watermarks": [
            {"account": w.account, "kind": w.kind, "until": _iso(w.until), "run_id": w.run_id,
             "lag_s": (now - w.until).total_seconds()}
            for w in ledger.watermarks()
        ],
        "pending": [
            {"account": p.account, "session_id": p.session_id, "reason": p.reason,
             "first_seen_at": _iso(p.first_seen_at), "last_checked_at": _iso(p.last_checked_at),
             "age_s": (now - p.first_seen_at).total_seconds()}
            for p in ledger.pending_rows()
        ],
        "unsent_reports": [
            {"path": str(u.path), "error": u.error, "kept_at": _iso(u.kept_at)}
            for u in ledger.unsent_reports()
        ],
    }


def human_duration(seconds: float | None) -> str:
    """'45s', '12m', '3h 05m', '2d 4h' (negative clamps to 0s; None is 'never')."""
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _short_time(iso: str | None) -> str:
    # '2024-05-01T10:15:30.123+00:00' -> '2024-05-01 10:15' (all times are UTC)
    return "-" if not iso else iso[:16].replace("T", " ")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in (header, *rows)]


def _who(holder: dict[str, Any]) -> str:
    """`pid 42`, or `pid 42 on host-b` for a lock shared between hosts."""
    host = holder.get("host")
    return f"pid {holder.get('pid')}" + (f" on {host}" if host else "")


def render_status_text(view: dict[str, Any]) -> str:
    """A short plain-text status for people (times in UTC)."""
    lines: list[str] = []
    holder = view["lock"]
    lines.append(
        "Lock: free" if holder is None else
        f"Lock: held by {_who(holder)} ({holder.get('kind')}) since "
        f"{_short_time(holder.get('started_at'))} UTC"
    )
    if "leader" in view:  # daemons sharing a PostgreSQL ledger
        leader = view["leader"]
        lines.append("Leader daemon: none" if leader is None else
                     f"Leader daemon: {_who(leader)} since "
                     f"{_short_time(leader.get('started_at'))} UTC")
    success = view["last_success"]
    lines.append(
        "Last successful run: never" if success is None else
        f"Last successful run: {human_duration(view['since_last_success_s'])} ago "
        f"({success['run_id']}, {success['kind']})"
    )
    if view["consecutive_failures"]:
        lines.append(f"Consecutive failed runs: {view['consecutive_failures']}")

    lines += ["", f"Recent runs ({len(view['runs'])})"]
    if view["runs"]:
        header = ("started (UTC)", "kind", "status", "took", "scanned", "created", "manual",
                  "pending", "failed")
        rows = []
        for run in view["runs"]:
            counts = run["counts"]
            status = run["status"] + (" (dry)" if run["dry_run"] else "")
            rows.append((_short_time(run["started_at"]), run["kind"], status,
                         human_duration(run["duration_s"]) if run["duration_s"] is not None
                         else "-",
                         *(str(counts.get(c, "-")) for c in COUNT_COLUMNS)))
        lines += _table(header, rows)
        errors = [r for r in view["runs"] if r["error"]]
        lines += [f"  {r['run_id']}: {r['error']}" for r in errors[:3]]

    lines += ["", "Watermarks"]
    if view["watermarks"]:
        lines += _table(("account", "kind", "reconciled up to (UTC)", "lag"), [
            (w["account"], w["kind"], _short_time(w["until"]), human_duration(w["lag_s"]))
            for w in view["watermarks"]])
    else:
        lines.append("  none yet")

    lines += ["", f"Pending async payments ({len(view['pending'])})"]
    lines += _table(("account", "session", "first seen (UTC)", "age"), [
        (p["account"], p["session_id"], _short_time(p["first_seen_at"]),
         human_duration(p["age_s"]))
        for p in view["pending"]]) if view["pending"] else []

    if view["unsent_reports"]:
        lines += ["", f"Reports kept unsent ({len(view['unsent_reports'])})"]
        lines += [f"  {u['path']}: {u['error']}" for u in view["unsent_reports"]]
    return "\n".join(lines) + "\n"
