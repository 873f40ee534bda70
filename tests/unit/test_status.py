"""`reconcile status`: the view from a real ledger and lock, and its text rendering."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.adapters.ledger import Ledger
from jobs.adapters.lock import RunLock
from jobs.commands.status import human_duration, render_status_text, status_view
from jobs.core.model import Decision
from tests.support import reports

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    with Ledger.open(tmp_path, clock=clock) as led:
        yield led


def run(ledger: Ledger, clock: Clock, run_id: str, status: str, *, minutes: int = 1,
        error: str | None = None, dry_run: bool = False) -> None:
    ledger.start_run(run_id, "quick", clock.now - timedelta(hours=2), clock.now, dry_run,
                     ["platform"])
    clock.now += timedelta(minutes=minutes)
    # 40 sessions: 2 created, 1 needing a person, 1 pending, the rest no pass.
    paid = T0.isoformat()
    decisions = [reports.created("cs_c1", paid), reports.created("cs_c2", paid),
                 reports.manual("cs_m", "user_unknown"), reports.pending("cs_pend"),
                 *(Decision(f"cs_i{n}", "acct_1", "ignored", reason="not_a_pass")
                   for n in range(36))]
    rep = reports.run_report(run_id, since=(clock.now - timedelta(hours=2)).isoformat(),
                             until=clock.now.isoformat(), dry_run=dry_run, decisions=decisions)
    ledger.record_report(rep)
    ledger.finish_run(run_id, status, rep, error)  # type: ignore[arg-type]


def test_status_view_reports_runs_watermarks_pending_and_lock(
        ledger: Ledger, clock: Clock, tmp_path: Path) -> None:
    run(ledger, clock, "r1", "ok")
    ledger.advance_watermark("platform", clock.now - timedelta(minutes=5), "quick", "r1")
    clock.now += timedelta(hours=3)
    run(ledger, clock, "r2", "failed", error="Sanity unreachable")
    ledger.keep_unsent_report(tmp_path / "weekly.html", "connection refused")
    lock = RunLock(tmp_path, kind="deep", clock=lambda: T0)
    assert lock.acquire()
    try:
        view = status_view(ledger, lock, clock.now)
    finally:
        lock.release()

    assert view["lock"]["kind"] == "deep"
    assert view["last_success"]["run_id"] == "r1"
    assert view["since_last_success_s"] == 3 * 3600 + 60
    assert view["consecutive_failures"] == 1
    assert [r["run_id"] for r in view["runs"]] == ["r2", "r1"]
    assert view["runs"][0]["error"] == "Sanity unreachable"
    assert view["runs"][0]["duration_s"] == 60.0
    (wm,) = view["watermarks"]
    assert (wm["account"], wm["lag_s"]) == ("platform", 3 * 3600 + 60 + 5 * 60)
    (pending,) = view["pending"]
    assert (pending["session_id"], pending["age_s"]) == ("cs_pend", 3 * 3600 + 60)
    assert view["unsent_reports"][0]["error"] == "connection refused"
    assert json.loads(json.dumps(view)) == view  # `--json` ready


def test_status_text_is_a_short_table(ledger: Ledger, clock: Clock, tmp_path: Path) -> None:
    run(ledger, clock, "r1", "ok", minutes=2)
    ledger.advance_watermark("platform", T0, "quick", "r1")
    clock.now += timedelta(days=1, hours=2)
    run(ledger, clock, "r2", "partial", dry_run=True)
    text = render_status_text(status_view(ledger, RunLock(tmp_path), clock.now))
    lines = text.splitlines()
    assert lines[0] == "Lock: free"
    assert lines[1] == "Last successful run: 1d 2h ago (r1, quick)"
    assert "Consecutive" not in text
    header = next(i for i, line in enumerate(lines) if line.startswith("  started (UTC)"))
    assert lines[header + 1].split() == ["2024-05-07", "11:02", "quick", "partial", "(dry)",
                                         "1m", "40", "2", "1", "1", "0"]
    assert lines[header + 2].split()[:5] == ["2024-05-06", "09:00", "quick", "ok", "2m"]
    assert "  platform  quick  2024-05-06 09:00        1d 2h" in lines
    assert "Pending async payments (1)" in lines
    assert any(line.split()[:2] == ["acct_1", "cs_pend"] for line in lines)
    assert "Reports kept unsent" not in text
    assert len(lines) < 20


def test_status_text_for_an_empty_ledger(ledger: Ledger, clock: Clock, tmp_path: Path) -> None:
    text = render_status_text(status_view(ledger, RunLock(tmp_path), clock.now))
    assert text == ("Lock: free\nLast successful run: never\n\nRecent runs (0)\n\n"
                    "Watermarks\n  none yet\n\nPending async payments (0)\n")


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "never"), (-5, "0s"), (45, "45s"), (600, "10m"), (3 * 3600 + 300, "3h 05m"),
    (2 * 86400 + 4 * 3600 + 59, "2d 4h")])
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text
