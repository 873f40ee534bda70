"""`reconcile status --check` as a probe runs it: the CLI in a subprocess over a real ledger.

Each cause gets its own ledger, written through the ledger's own API with the clock moved, and
the probe's exit code and one line are checked: 0 healthy, 1 for each cause, 2 unreadable.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.adapters.ledger import Ledger
from tests.support import reports

ROOT = Path(__file__).resolve().parents[2]


def check(state_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "RECONCILER_STATE_DIR": str(state_dir),
               "RECONCILER_LOG_FORMAT": "json", **env}
    return subprocess.run([sys.executable, "-m", "jobs", "status", "--check"], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=60, check=False)


def record(ledger: Ledger, run_id: str, status: str, ago: timedelta, *,
           accounts_read: tuple[str, ...] = (), error: str | None = None,
           unreadable: dict[str, str] | None = None) -> None:
    """A quick pass that ended `ago` before now, advancing the watermarks it read."""
    at = datetime.now(UTC) - ago  # now, not at import: the suite may reach this test late
    ledger._clock = lambda: at  # the ledger stamps start and finish with its clock
    ledger.start_run(run_id, "quick", at - timedelta(hours=1), at - timedelta(minutes=10),
                     False, [])
    report = reports.run_report(run_id, since=(at - timedelta(hours=1)).isoformat(),
                                until=(at - timedelta(minutes=10)).isoformat(),
                                accounts={}, errors=unreadable)
    ledger.finish_run(run_id, status, report, error)  # type: ignore[arg-type]
    for account in accounts_read:
        ledger.advance_watermark(account, at - timedelta(minutes=10), "quick", run_id)


def line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    return lines[0]


def test_a_healthy_ledger_exits_0(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        record(ledger, "r1", "ok", timedelta(minutes=20), accounts_read=("platform", "acct_A"))
        record(ledger, "r2", "ok", timedelta(minutes=5), accounts_read=("platform", "acct_A"))
    done = check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done) == "ok: last successful run 5m ago, 2 accounts up to date"


def test_no_success_for_longer_than_the_limit_exits_1(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        record(ledger, "r1", "ok", timedelta(hours=3), accounts_read=("platform",))
        record(ledger, "r2", "partial", timedelta(minutes=5))
    done = check(tmp_path)
    assert done.returncode == 1
    assert line(done) == "needs attention: last successful run 3h 00m ago (limit 2h 00m)"
    # The same ledger is healthy under a longer limit: the threshold is the setting's.
    relaxed = check(tmp_path, RECONCILER_ALERT_NO_SUCCESS_FOR="4h")
    assert relaxed.returncode == 0, relaxed.stdout


def test_the_last_n_runs_failed_exits_1(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        record(ledger, "r0", "ok", timedelta(minutes=30), accounts_read=("platform",))
        for i in range(3):
            record(ledger, f"r{i + 1}", "failed", timedelta(minutes=15 - 5 * i),
                   error="Sanity unreachable")
    done = check(tmp_path)
    assert done.returncode == 1
    assert line(done) == ("needs attention: the last 3 runs failed (limit 3): "
                          "Sanity unreachable")
    assert check(tmp_path, RECONCILER_ALERT_FAILED_RUNS="4").returncode == 0


def test_an_account_stuck_behind_its_watermark_exits_1(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        record(ledger, "r1", "ok", timedelta(hours=5), accounts_read=("acct_A", "acct_B"))
        # acct_B was left alone for a while (say its school was disconnected), then read again
        # by the latest pass, which could not read it.
        record(ledger, "r2", "ok", timedelta(minutes=30), accounts_read=("acct_A",))
        healthy = check(tmp_path)
        record(ledger, "r3", "partial", timedelta(minutes=5), accounts_read=("acct_A",),
               unreadable={"acct_B": "permission denied for acct_B"})
    # An account no run reads any more keeps its old watermark without being "stuck".
    assert healthy.returncode == 0, healthy.stdout
    done = check(tmp_path)
    assert done.returncode == 1
    assert line(done) == ("needs attention: stuck behind its watermark: acct_B reconciled "
                          "only up to 5h 10m ago (permission denied for acct_B)")


def test_an_empty_ledger_is_not_healthy(tmp_path: Path) -> None:
    done = check(tmp_path / "state")
    assert done.returncode == 1
    assert line(done) == "needs attention: no run recorded in the ledger yet"


def test_every_cause_is_named_in_the_one_line(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        record(ledger, "r0", "ok", timedelta(hours=6), accounts_read=("acct_A", "acct_B"))
        record(ledger, "r1", "partial", timedelta(hours=1), accounts_read=("acct_A",))
        record(ledger, "r2", "partial", timedelta(minutes=40), accounts_read=("acct_A",),
               unreadable={"acct_B": "no access"})
        for i in range(3):
            record(ledger, f"f{i}", "failed", timedelta(minutes=30 - 5 * i), error="boom")
    text = line(check(tmp_path))
    assert text.startswith("needs attention: the last 3 runs failed")
    assert "last successful run 6h 00m ago" in text and "acct_B" in text


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"\x00" * 4096])
def test_an_unreadable_ledger_exits_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "ledger.sqlite").write_bytes(content)
    done = check(tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("reconcile: ledger ")
    assert "Traceback" not in done.stderr
