"""The run ledger: schema migrations, runs, session outcomes, pending, watermarks, alerts.

Every test taking the `ledger` fixture runs twice: on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import stat
import statistics
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs.adapters.ledger import Ledger
from jobs.adapters.ledger_base import LEDGER_FILE
from jobs.adapters.ledger_db import LedgerUnavailable, PostgresDb, SqliteDb
from jobs.adapters.ledger_schema import MIGRATIONS, apply_migrations, connect
from jobs.adapters.pg_dialect import native_params, to_native
from jobs.core.errors import ConfigError
from jobs.core.model import Anomaly, Decision
from jobs.core.runreport import RunReport
from tests.support import reports
from tests.support.ledger import T0, Clock, OpenLedger


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    """Every ledger test here runs on both stores."""
    return str(request.param)


def count(ledger: Ledger, sql: str) -> Any:
    return ledger.db.query(sql)[0][0]


def start(ledger: Ledger, run_id: str, *, dry_run: bool = False, kind: str = "quick",
          pid: int | None = None) -> None:
    ledger.start_run(run_id, kind, T0 - timedelta(hours=2), T0, dry_run, ["platform"], pid=pid)


def report(run_id: str, *, dry_run: bool = False, decisions: Iterable[Decision] = (),
           **over: Any) -> RunReport:
    """A run report of the platform's window ending at T0 with the given decisions."""
    return reports.run_report(run_id, since=(T0 - timedelta(hours=2)).isoformat(),
                              until=T0.isoformat(), dry_run=dry_run, decisions=decisions,
                              **over)


def record(ledger: Ledger, rep: RunReport, present: Iterable[Decision] = ()) -> None:
    """As a run records: purchases found present as they are found, then the report."""
    ledger.record_present(rep.run_id, present)
    ledger.record_report(rep)


def created_item(session_id: str, paid_at: datetime, account: str = "acct_1") -> Decision:
    return reports.created(session_id, paid_at.isoformat(), account)


def present_item(session_id: str, paid_at: datetime) -> Decision:
    return reports.present(session_id, paid_at.isoformat())


# ---- schema --------------------------------------------------------------------------------


def test_open_creates_private_state_dir_and_file_in_wal_mode(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    with Ledger.open(state) as led:
        assert isinstance(led.db, SqliteDb) and led.db.journal_mode() == "wal"
        assert led.schema_version == len(MIGRATIONS)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / LEDGER_FILE).stat().st_mode) == 0o600


def test_pragmas_foreign_keys_and_busy_timeout_are_on(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    assert isinstance(ledger.db, SqliteDb)
    conn = ledger.db._conn
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    with pytest.raises(sqlite3.IntegrityError):  # a pending row must name a known session
        conn.execute("INSERT INTO pending VALUES ('cs_nope', 'platform', NULL, 0, 0)")
    ledger.close()


def test_foreign_keys_hold_on_both_backends(ledger: Ledger) -> None:
    with pytest.raises(Exception, match=r"(?i)foreign key"), ledger.db.tx() as conn:
        conn.execute("INSERT INTO pending (session_id, account, reason, first_seen_at,"
                     " last_checked_at) VALUES (?, ?, NULL, 0, 0)", ("cs_nope", "platform"))


def test_reopening_keeps_data_and_version(open_ledger: OpenLedger) -> None:
    led = open_ledger()
    led.advance_watermark("platform", T0)
    led.close()
    again = open_ledger()
    assert again.watermark("platform") == T0
    assert again.schema_version == len(MIGRATIONS)


def test_migrations_upgrade_an_older_file_step_by_step(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    v1 = (("CREATE TABLE a (x INTEGER)",),)
    v2 = (*v1, ("ALTER TABLE a ADD COLUMN y TEXT", "CREATE TABLE b (z INTEGER)"))
    conn = connect(path)
    assert apply_migrations(conn, v1) == 1
    conn.execute("INSERT INTO a (x) VALUES (1)")
    assert apply_migrations(conn, v2) == 2
    assert [tuple(r) for r in conn.execute("SELECT x, y FROM a")] == [(1, None)]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


def test_a_failing_migration_step_rolls_back_to_the_previous_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.sqlite")
    steps = (("CREATE TABLE a (x INTEGER)",), ("CREATE TABLE b (y)", "NOT SQL AT ALL"))
    with pytest.raises(sqlite3.OperationalError):
        apply_migrations(conn, steps)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"a"}  # `b` rolled back with its step
    conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 3}")
    conn.close()
    with pytest.raises(ConfigError) as info:
        Ledger(path)
    expected = f"ledger schema {len(MIGRATIONS) + 3} is newer than this program knows"
    assert str(info.value) == f"{expected} ({len(MIGRATIONS)})"


def test_a_file_that_is_not_sqlite_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    path.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite database"):
        Ledger(path)


def test_an_unusable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"RECONCILER_STATE_DIR .* is not usable"):
        Ledger.open(blocker / "state")


# ---- runs ----------------------------------------------------------------------------------


def test_run_lifecycle_records_status_counts_and_account_errors(
        ledger: Ledger, clock: Clock) -> None:
    start(ledger, "r1")
    assert ledger.run("r1").status == "running"  # type: ignore[union-attr]
    clock.advance(seconds=42)
    rep = report("r1", accounts={"platform": None, "acct_2": "t2"}, errors={"acct_2": "403"},
                 decisions=[created_item("cs_1", T0), reports.pending("cs_2"),
                            Decision("cs_3", "platform", "ignored", reason="not_a_pass")])
    ledger.finish_run("r1", "partial", rep, None)
    run = ledger.run("r1")
    assert run is not None
    assert (run.status, run.duration_seconds, run.dry_run) == ("partial", 42.0, False)
    assert run.counts == {"sessions_scanned": 3, "pass_purchases": 1, "already_present": 0,
                          "created": 1, "needs_manual": 0, "pending": 1, "failed": 0,
                          "ignored": 1}
    assert run.account_errors == {"acct_2": "403"}
    assert (run.since, run.until, run.accounts) == (T0 - timedelta(hours=2), T0, ["platform"])


def test_finish_run_rejects_unknown_runs_and_statuses(ledger: Ledger) -> None:
    with pytest.raises(LookupError):
        ledger.finish_run("nope", "ok", None, None)
    start(ledger, "r1")
    with pytest.raises(ValueError):
        ledger.finish_run("r1", "running", None, None)  # type: ignore[arg-type]


def test_reap_marks_runs_of_dead_processes_interrupted(ledger: Ledger) -> None:
    start(ledger, "dead", pid=111)
    start(ledger, "alive", pid=222)
    start(ledger, "done", pid=111)
    ledger.finish_run("done", "ok", None, None)
    assert ledger.reap_stale_runs(lambda pid: pid == 222) == ["dead"]
    dead = ledger.run("dead")
    assert dead is not None and dead.status == "interrupted"
    assert dead.error == "process 111 ended before the run finished"
    assert ledger.run("alive").status == "running"  # type: ignore[union-attr]
    assert ledger.run("done").status == "ok"  # type: ignore[union-attr]
    assert ledger.reap_stale_runs(lambda pid: False) == ["alive"]


def test_last_success_and_consecutive_failures(ledger: Ledger, clock: Clock) -> None:
    assert ledger.last_success() is None and ledger.consecutive_failures() == 0
    for run_id, status, dry in [("a", "ok", False), ("b", "ok", True), ("c", "failed", False),
                                ("d", "interrupted", False), ("e", "failed", False)]:
        clock.advance(minutes=10)
        start(ledger, run_id, dry_run=dry)
        ledger.finish_run(run_id, status, None, "boom" if status == "failed" else None)
    success = ledger.last_success()
    assert success is not None and success.run_id == "a"  # the dry run does not count
    assert ledger.consecutive_failures() == 3
    clock.advance(minutes=10)
    start(ledger, "f")
    ledger.finish_run("f", "partial", None, None)
    assert ledger.consecutive_failures() == 0
    assert [r.run_id for r in ledger.recent_runs(2)] == ["f", "e"]
    assert [r.run_id for r in ledger.runs_between(T0 + timedelta(minutes=15),
                                                  T0 + timedelta(minutes=45))] == ["b", "c", "d"]


# ---- outcomes ------------------------------------------------------------------------------


def test_record_report_requires_a_started_run(ledger: Ledger) -> None:
    with pytest.raises(LookupError):
        record(ledger, report("ghost"))


def test_first_seen_first_outcome_and_created_at_are_set_once(
        ledger: Ledger, clock: Clock) -> None:
    paid = T0 - timedelta(minutes=30)
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[created_item("cs_1", paid)]),
           present=[present_item("cs_2", paid)])
    first = ledger.session("cs_1")
    assert first is not None
    assert (first.outcome, first.first_outcome, first.created_run_id) == (
        "created", "created", "r1")
    assert first.created_at == T0 and first.repair_seconds == 1800.0
    assert (first.email, first.pass_name, first.amount, first.currency) == (
        "a@example.com", "10 classes", 120.0, "nok")

    clock.advance(minutes=15)  # the next overlapping window sees both as present
    start(ledger, "r2")
    record(ledger, report("r2"), present=[present_item("cs_1", paid),
                                          present_item("cs_2", paid)])
    again = ledger.session("cs_1")
    assert again is not None
    assert (again.outcome, again.first_outcome) == ("already_present", "created")
    assert (again.first_seen_at, again.created_at, again.created_run_id) == (T0, T0, "r1")
    assert (again.last_seen_at, again.last_run_id) == (T0 + timedelta(minutes=15), "r2")
    assert again.email == "a@example.com"  # a later report without it keeps it
    assert again.amount == 90.0  # but a newer value replaces it
    present = ledger.session("cs_2")
    assert present is not None and present.first_outcome == "already_present"
    assert present.created_at is None and present.paid_at == paid


def test_created_reported_again_keeps_the_first_creation(ledger: Ledger, clock: Clock) -> None:
    # e.g. a rerun whose createIfNotExists found our own document again and reported it created
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[created_item("cs_1", T0 - timedelta(hours=1))]))
    clock.advance(hours=2)
    start(ledger, "r2")
    record(ledger, report("r2", decisions=[created_item("cs_1", T0 - timedelta(hours=1))]))
    row = ledger.session("cs_1")
    assert row is not None and (row.created_at, row.created_run_id) == (T0, "r1")
    assert row.repair_seconds == 3600.0 and row.last_run_id == "r2"


def test_needs_manual_then_fixed_by_a_person_keeps_first_outcome(ledger: Ledger) -> None:
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[reports.manual(
        "cs_m", "user_unknown", detail="no userId", email="b@example.com", amount=50.0,
        currency="nok")]))
    assert [s.session_id for s in ledger.open_manual()] == ["cs_m"]
    row = ledger.session("cs_m")
    assert row is not None and (row.reason, row.detail) == ("user_unknown", "no userId")
    start(ledger, "r2")
    record(ledger, report("r2"), present=[present_item("cs_m", T0)])
    row = ledger.session("cs_m")
    assert row is not None
    assert (row.outcome, row.first_outcome, row.reason) == ("already_present", "needs_manual", None)
    assert ledger.open_manual() == []


def test_dry_run_records_what_it_saw_but_never_marks_created(ledger: Ledger) -> None:
    start(ledger, "dry", dry_run=True)
    record(ledger, report("dry", dry_run=True, decisions=[created_item("cs_d", T0)]))
    row = ledger.session("cs_d")
    assert row is not None
    assert (row.outcome, row.first_outcome, row.created_at) == ("would_create", "would_create",
                                                                None)
    # Even if the report forgets its dry_run flag, the run row says it was dry.
    start(ledger, "dry2", dry_run=True)
    record(ledger, report("dry2", decisions=[created_item("cs_e", T0)]))
    assert ledger.session("cs_e").created_at is None  # type: ignore[union-attr]
    start(ledger, "real")
    record(ledger, report("real", decisions=[created_item("cs_d", T0)]))
    row = ledger.session("cs_d")
    assert row is not None and row.created_run_id == "real" and row.first_outcome == "would_create"


def test_failed_sessions_are_recorded_and_ones_without_an_id_skipped(ledger: Ledger) -> None:
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[
        reports.failed("cs_f", "write rejected"),
        reports.failed("", "malformed session: no id")]))
    row = ledger.session("cs_f")
    assert row is not None and (row.outcome, row.detail) == ("failed", "write rejected")
    assert count(ledger, "SELECT COUNT(*) AS n FROM sessions") == 1


def test_a_report_of_ignored_sessions_records_no_purchase(ledger: Ledger) -> None:
    start(ledger, "r1")
    ledger.record_report(report("r1", decisions=[
        Decision("cs_i", "platform", "ignored", reason="not_a_pass")]))
    assert ledger.outcomes_first_seen_between(T0, T0 + timedelta(days=1)) == []


def test_anomalies_are_kept_once_per_kind_and_session(ledger: Ledger, clock: Clock) -> None:
    anomaly = Anomaly("duplicate_subscriptions", "cs_1", ("s1", "s2"), "two")
    start(ledger, "r1")
    record(ledger, report("r1", anomalies=[anomaly]))
    clock.advance(days=1)
    start(ledger, "r2")
    record(ledger, report("r2", anomalies=[
        replace(anomaly, subscription_ids=("s1", "s2", "s3")),
        Anomaly("invisible_shape", "", (), "")]))
    week = ledger.anomalies_between(T0, T0 + timedelta(days=7))
    assert [(a.kind, a.session_id, a.times_seen) for a in week] == [
        ("duplicate_subscriptions", "cs_1", 2), ("invisible_shape", None, 1)]
    assert week[0].subscription_ids == ["s1", "s2", "s3"] and week[0].first_run_id == "r1"
    assert ledger.anomalies_between(T0 + timedelta(hours=1), T0 + timedelta(days=7))[0].kind == (
        "invisible_shape")


def test_weekly_figures_are_simple_over_first_seen_rows(ledger: Ledger, clock: Clock) -> None:
    """The weekly report's numbers fall out of `outcomes_first_seen_between`."""
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[
        created_item("cs_c1", T0 - timedelta(minutes=10)),
        created_item("cs_c2", T0 - timedelta(hours=1)),
        reports.manual("cs_m", "pass_not_found", amount=1.5, currency="eur")]),
        present=[present_item("cs_p1", T0 - timedelta(hours=1)),
                 present_item("cs_p2", T0 - timedelta(hours=1))])
    clock.advance(days=8)  # next week: cs_p1 seen again, a new one first seen
    start(ledger, "r2")
    record(ledger, report("r2"), present=[present_item("cs_p1", T0), present_item("cs_n", T0)])
    week = ledger.outcomes_first_seen_between(T0, T0 + timedelta(days=7))
    assert len(week) == 5
    auto = [s for s in week if s.first_outcome == "already_present"]
    repaired = [s.repair_seconds for s in week if s.created_at is not None]
    assert len(auto) / len(week) == 0.4
    assert sorted(repaired) == [600.0, 3600.0]  # type: ignore[type-var]
    assert statistics.median(repaired) == 2100.0  # type: ignore[type-var]
    assert [s.session_id for s in week if s.first_outcome == "needs_manual"] == ["cs_m"]
    money: dict[str, float] = {}
    for s in week:
        money[s.currency or "?"] = money.get(s.currency or "?", 0) + (s.amount or 0)
    assert money == {"nok": 420.0, "eur": 1.5}
    assert [s.session_id for s in ledger.created_between(T0, T0 + timedelta(days=1))] == [
        "cs_c1", "cs_c2"]


# ---- pending -------------------------------------------------------------------------------


def pending_item(session_id: str, account: str = "acct_1") -> Decision:
    return reports.pending(session_id, account)


def test_pending_is_listed_until_another_outcome_arrives(ledger: Ledger, clock: Clock) -> None:
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[pending_item("cs_a"), pending_item("cs_b")]))
    assert ledger.pending_sessions() == [("acct_1", "cs_a", T0), ("acct_1", "cs_b", T0)]
    clock.advance(days=2)
    start(ledger, "r2")
    record(ledger, report("r2", decisions=[pending_item("cs_b"), created_item("cs_a", T0)]))
    assert ledger.pending_sessions() == [("acct_1", "cs_b", T0)]  # first seen kept
    (row,) = ledger.pending_rows()
    assert row.last_checked_at == T0 + timedelta(days=2)
    settled = ledger.session("cs_a")
    assert settled is not None and (settled.first_outcome, settled.outcome) == (
        "pending", "created")


def test_pending_older_than_30_days_expires_with_an_outcome(ledger: Ledger, clock: Clock) -> None:
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[pending_item("cs_old")]))
    clock.advance(days=29, hours=23)
    start(ledger, "r2")
    record(ledger, report("r2", decisions=[pending_item("cs_new")]))
    assert [s for _, s, _ in ledger.pending_sessions()] == ["cs_old", "cs_new"]
    clock.advance(hours=1)  # cs_old is now exactly 30 days old
    assert [s for _, s, _ in ledger.pending_sessions()] == ["cs_new"]  # listing does not write
    assert ledger.session("cs_old").outcome == "pending"  # type: ignore[union-attr]
    assert ledger.expire_pending() == ["cs_old"]
    old = ledger.session("cs_old")
    assert old is not None and (old.outcome, old.first_outcome) == ("pending_expired", "pending")
    assert [p.session_id for p in ledger.pending_rows()] == ["cs_new"]


def test_recording_a_report_expires_old_pending_rows(ledger: Ledger, clock: Clock) -> None:
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[pending_item("cs_old")]))
    clock.advance(days=31)
    start(ledger, "r2")
    record(ledger, report("r2"))
    assert ledger.pending_rows() == []
    assert ledger.session("cs_old").outcome == "pending_expired"  # type: ignore[union-attr]


def test_settle_pending_closes_a_row_the_report_cannot_name(ledger: Ledger) -> None:
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[pending_item("cs_a")]))
    assert ledger.settle_pending("cs_a", "ignored", "not_paid") is True
    assert ledger.settle_pending("cs_a", "ignored", "not_paid") is False
    row = ledger.session("cs_a")
    assert row is not None and (row.outcome, row.reason) == ("ignored", "not_paid")
    with pytest.raises(ValueError):
        ledger.settle_pending("cs_a", "pending")


# ---- watermarks ----------------------------------------------------------------------------


def test_watermarks_only_move_forward_per_account_and_kind(ledger: Ledger) -> None:
    assert ledger.watermark("acct_1") is None
    assert ledger.advance_watermark("acct_1", T0, "quick", "r1") is True
    assert ledger.advance_watermark("acct_1", T0 - timedelta(hours=1), "quick") is False
    assert ledger.advance_watermark("acct_1", T0, "quick") is False
    assert ledger.watermark("acct_1") == T0
    assert ledger.advance_watermark("acct_1", T0 - timedelta(days=3), "deep") is True
    assert ledger.watermark("acct_1", "deep") == T0 - timedelta(days=3)
    assert ledger.advance_watermark("acct_1", T0 + timedelta(minutes=5)) is True
    assert [(w.kind, w.until, w.run_id) for w in ledger.watermarks()] == [
        ("deep", T0 - timedelta(days=3), None), ("quick", T0 + timedelta(minutes=5), None)]


def test_watermarks_from_report_skip_accounts_with_errors_and_dry_runs(ledger: Ledger) -> None:
    accounts = {"platform": None, "acct_1": None, "acct_2": None}
    failed = [reports.failed("cs_x", "write rejected")]
    dry = report("r1", dry_run=True, accounts=accounts, decisions=failed)
    assert ledger.advance_watermarks_from_report(dry, "quick") == []
    rep = report("r1", accounts=accounts, errors={"acct_2": "403 forbidden"},
                 decisions=failed)
    assert ledger.advance_watermarks_from_report(rep, "quick") == ["platform"]
    assert ledger.watermark("platform") == T0
    assert ledger.watermark("acct_1") is None and ledger.watermark("acct_2") is None


def test_a_malformed_session_does_not_pin_its_account_watermark(ledger: Ledger) -> None:
    rep = report("r1", accounts={"acct_1": None, "acct_2": None}, decisions=[
        reports.failed("", "malformed session: created is not a timestamp"),
        reports.failed("cs_y", "write failed: Sanity answered 500", "acct_2")])
    assert ledger.advance_watermarks_from_report(rep, "quick") == ["acct_1"]


# ---- alerts and kept reports ---------------------------------------------------------------


def test_alerts_are_deduplicated_and_stay_sent(ledger: Ledger) -> None:
    assert ledger.alert_sent("cap:r1") is False
    ledger.record_alert("cap:r1", "max_creates", sent=False, detail="smtp down")
    assert ledger.alert_sent("cap:r1") is False  # failed attempt: try again later
    ledger.record_alert("cap:r1", "max_creates", sent=True, detail="ok")
    ledger.record_alert("cap:r1", "max_creates", sent=False, detail="again")
    assert ledger.alert_sent("cap:r1") is True
    assert count(ledger, "SELECT attempts FROM alerts WHERE key='cap:r1'") == 3


def test_unsent_reports_are_kept_until_forgotten(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "weekly-2024-19.html"
    ledger.keep_unsent_report(path, "550 recipient refused")
    ledger.keep_unsent_report(path, "connection refused")
    (kept,) = ledger.unsent_reports()
    assert (kept.path, kept.error, kept.kept_at) == (path, "connection refused", T0)
    ledger.forget_unsent_report(path)
    assert ledger.unsent_reports() == []


def test_two_ledgers_on_one_store_see_each_other(open_ledger: OpenLedger) -> None:
    a, b = open_ledger(), open_ledger()
    a.advance_watermark("platform", T0)
    assert b.watermark("platform") == T0


def test_an_unsent_message_is_kept_in_the_ledger_itself(ledger: Ledger) -> None:
    name = Path("weekly-2024-W19.eml")
    ledger.keep_unsent_report(name, "connection refused", b"Subject: x\r\n\r\nbody\xff")
    ledger.keep_unsent_report(name, "timed out")  # a later error keeps the message
    assert ledger.unsent_message(name) == b"Subject: x\r\n\r\nbody\xff"
    assert [(k.path, k.error) for k in ledger.unsent_reports()] == [(name, "timed out")]
    assert ledger.unsent_message(Path("other.eml")) is None


# ---- SQL written for SQLite, by the portability rules, runs on both -------------------------

# A migration and statements in the style of the existing ones (as other changes add them).
NOTES_STEP = (
    """CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        body BLOB,
        score REAL,
        attempts INTEGER NOT NULL DEFAULT 1,
        sent INTEGER NOT NULL DEFAULT 0 CHECK (sent IN (0, 1)),
        at REAL NOT NULL)""",
    "CREATE INDEX notes_by_at ON notes (at)",
)
UPSERT_NOTE = """INSERT INTO notes (key, at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET
    attempts = attempts + 1, at = excluded.at,
    sent = CASE WHEN excluded.at > at THEN 1 ELSE sent END WHERE excluded.at >= at"""


def test_sql_written_for_sqlite_by_the_rules_runs_on_both_backends(ledger: Ledger) -> None:
    assert ledger.db.migrate((*MIGRATIONS, NOTES_STEP)) == len(MIGRATIONS) + 1
    with ledger.db.tx() as conn:
        for key in ("a", "b"):  # the id is filled in, as SQLite's row id is
            conn.execute("INSERT INTO notes (key, body, score, at) VALUES (?, ?, ?, ?)",
                         (key, b"\x00\xffraw", 1715000000.25, 100.0))
        conn.execute(UPSERT_NOTE, ("a", 200.0))  # bare `attempts`, `at`, `sent`: the old row
        conn.execute(UPSERT_NOTE, ("b", 50.0))  # older: the WHERE keeps the row as it was
        conn.execute("INSERT OR IGNORE INTO notes (key, at) VALUES (?, ?)", ("a", 1.0))
        conn.execute("INSERT INTO notes (key, at) VALUES (:key, :at) ON CONFLICT (key)"
                     " DO UPDATE SET attempts = attempts + :step", {"key": "b", "at": 0, "step": 5})
    rows = ledger.db.query("SELECT id, key, body, score, attempts, sent, at FROM notes"
                           " WHERE at > ? ORDER BY id", (0,))
    assert [r[0] for r in rows] == [1, 2] and rows[0]["key"] == "a"
    assert [dict(r) for r in rows] == [
        {"id": 1, "key": "a", "body": b"\x00\xffraw", "score": 1715000000.25, "attempts": 2,
         "sent": 1, "at": 200.0},
        {"id": 2, "key": "b", "body": b"\x00\xffraw", "score": 1715000000.25, "attempts": 6,
         "sent": 0, "at": 100.0}]


def test_how_an_upsert_is_qualified_for_postgresql() -> None:
    text, names = to_native(UPSERT_NOTE)
    assert names is None and text.endswith(
        "attempts = notes.attempts + 1, at = excluded.at,\n    sent = CASE WHEN excluded.at >"
        " notes.at THEN 1 ELSE notes.sent END WHERE excluded.at >= notes.at")
    assert to_native("INSERT INTO t AS x (k) VALUES (:k) ON CONFLICT (k) DO UPDATE SET"
                     " n = COALESCE(excluded.n, n) + :k")[0].endswith(
        "SET n = COALESCE(excluded.n, x.n) + $1")
    assert to_native("INSERT OR IGNORE INTO t (k) VALUES (?);")[0] == (
        "INSERT INTO t (k) VALUES ($1) ON CONFLICT DO NOTHING")


# ---- PostgreSQL only -----------------------------------------------------------------------


def test_placeholders_become_the_servers_own_and_quoted_text_is_left_alone() -> None:
    sql = "UPDATE t SET a = ?, b = 'what? :x' WHERE c = ? AND d::text = '%'"
    assert to_native(sql) == (
        "UPDATE t SET a = $1, b = 'what? :x' WHERE c = $2 AND d::text = '%'", None)
    named = "INSERT INTO t VALUES (:kind, :now, :now) ON CONFLICT DO NOTHING"
    assert native_params(named, {"now": 5.0, "kind": "k"}) == (
        "INSERT INTO t VALUES ($1, $2, $2) ON CONFLICT DO NOTHING", ["k", 5.0])
    with pytest.raises(ValueError, match="mixes"):
        to_native("SELECT ? WHERE :a")


def test_postgres_migrations_are_versioned_and_applied_once(pg_url: str) -> None:
    v1 = (("CREATE TABLE a (x INTEGER, t REAL)",),)
    v2 = (*v1, ("ALTER TABLE a ADD COLUMN y TEXT", "CREATE TABLE b (z INTEGER)"))
    db = PostgresDb(pg_url)
    try:
        assert db.migrate(v1) == 1
        with db.tx() as conn:
            conn.execute("INSERT INTO a (x, t) VALUES (?, ?)", (1, 1715000000.25))
        assert db.migrate(v2) == 2 and db.migrate(v2) == 2
        # REAL is widened: epoch seconds keep their fraction (a 4-byte float would not).
        rows = db.query("SELECT x, t, y FROM a")
        assert [dict(r) for r in rows] == [{"x": 1, "t": 1715000000.25, "y": None}]
        assert rows[0][1] == rows[0]["t"] == 1715000000.25  # read like sqlite3.Row
        assert db.query("SELECT version FROM schema_version")[0][0] == 2
        with pytest.raises(Exception, match="syntax"):
            db.migrate((*v2, ("CREATE TABLE c (w INTEGER)", "NOT SQL AT ALL")))
        assert db.query("SELECT version FROM schema_version")[0][0] == 2
        assert db.query("SELECT to_regclass('c') AS c")[0]["c"] is None  # rolled back
        with pytest.raises(ConfigError, match="newer than this program knows"):
            db.migrate(v1)
    finally:
        db.close()


def test_postgres_ledger_statements_are_bounded_and_migrations_are_not(pg_url: str) -> None:
    db = PostgresDb(pg_url)
    try:
        assert db.query("SHOW statement_timeout")[0][0] == "1min"
        assert db.migrate((("CREATE TABLE seen (bound TEXT)",
                            "INSERT INTO seen (bound) SELECT current_setting('statement_timeout')"),
                           )) == 1
        assert db.query("SELECT bound FROM seen")[0][0] == "0"
        assert db.query("SHOW statement_timeout")[0][0] == "1min"  # the pool's connection, reset
    finally:
        db.close()


def test_postgres_hosts_starting_together_migrate_once(pg_url: str) -> None:
    import threading

    ledgers: list[Ledger] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            ledgers.append(Ledger.connect(pg_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and [led.schema_version for led in ledgers] == [len(MIGRATIONS)] * 4
    for led in ledgers:
        led.close()


def test_an_unreachable_postgres_is_a_one_line_error(pg_server: Any) -> None:
    from sandbox.pg_server import free_port

    url = f"postgresql://reconciler:s3cret-pw@127.0.0.1:{free_port()}/none"
    with pytest.raises(LedgerUnavailable) as info:
        PostgresDb(url, timeout=2.0)
    assert "\n" not in str(info.value) and "s3cret-pw" not in str(info.value)
    assert str(info.value).startswith("ledger database 127.0.0.1:")


def test_records_the_report_the_orchestrator_builds(ledger: Ledger) -> None:
    """The typed report as a run builds it (ISO `Z` times), decisions and all."""
    rep = RunReport(run_id="r1", started_at="2024-05-06T09:00:00.000Z",
                    since="2024-05-06T07:00:00.000Z", until="2024-05-06T08:55:00.000Z",
                    dry_run=False)
    rep.account("acct_1", "tenant-a")
    paid = "2024-05-06T08:30:00.000Z"
    rep.add(Decision("cs_c", "acct_1", "created", tenant="tenant-a", email="c@example.com",
                     amount=120.0, currency="nok", paid_at=paid, pass_id="p", pass_name="10",
                     user_id="user-u", subscription_ids=("subscription-cs_c",),
                     anomalies=(Anomaly("expired_on_arrival", "cs_c", ("subscription-cs_c",),
                                        "ended"),)))
    found = Decision("cs_p", "acct_1", "already_present", amount=90.0, currency="nok",
                     paid_at=paid, subscription_ids=("sub-1",))
    rep.add(found)
    rep.add(Decision("cs_w", "acct_1", "pending", reason="async_payment", paid_at=paid))
    start(ledger, "r1")
    ledger.record_present("r1", [found])
    ledger.record_report(rep)
    assert ledger.advance_watermarks_from_report(rep, "quick") == ["acct_1"]

    created = ledger.session("cs_c")
    assert created is not None and created.repair_seconds == 1800.0
    assert created.subscription_id == "subscription-cs_c" and created.created_at == T0
    present = ledger.session("cs_p")
    assert present is not None and present.subscription_id == "sub-1"
    assert ledger.pending_sessions() == [("acct_1", "cs_w", T0)]
    assert [a.kind for a in ledger.anomalies_between(T0, T0 + timedelta(days=1))] == [
        "expired_on_arrival"]
    assert ledger.watermark("acct_1") == datetime(2024, 5, 6, 8, 55, tzinfo=UTC)


def test_each_outcome_keeps_only_what_the_report_names_for_it(ledger: Ledger) -> None:
    """An e-mail address is kept only where a person may act on the purchase; a failure is
    known by its error; a manual suspect's id is not taken for the purchase's subscription."""
    paid = (T0 - timedelta(hours=1)).isoformat()
    everything: dict[str, Any] = {
        "tenant": "tenant-a", "email": "k@example.com", "amount": 50.0, "currency": "nok",
        "pass_id": "pass-10", "pass_name": "10 classes", "user_id": "user-u1",
        "subscription_ids": ("sub-x",), "paid_at": paid}
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[
        Decision("cs_m", "acct_1", "needs_manual", reason="manual_duplicate_suspected",
                 detail="a hand-made pass", **everything),
        Decision("cs_w", "acct_1", "pending", reason="async_payment", **everything),
        reports.failed("cs_f", "write failed: 500")]),
        present=[Decision("cs_p", "acct_1", "already_present", **everything)])
    seen = {s: ledger.session(s) for s in ("cs_m", "cs_w", "cs_f", "cs_p")}
    kept = {s: None if row is None else (row.tenant, row.email, row.user_id,
                                         row.subscription_id, row.reason, row.detail,
                                         row.paid_at is not None)
            for s, row in seen.items()}
    assert kept == {
        "cs_m": ("tenant-a", "k@example.com", None, None, "manual_duplicate_suspected",
                 "a hand-made pass", True),
        "cs_w": (None, None, None, None, "async_payment", None, True),
        "cs_f": (None, None, None, None, None, "write failed: 500", False),
        "cs_p": ("tenant-a", None, None, "sub-x", None, None, True)}


def test_present_purchases_recorded_as_found_close_their_pending_rows(ledger: Ledger) -> None:
    start(ledger, "r1")
    record(ledger, report("r1", decisions=[reports.pending("cs_w")]))
    assert [s for _, s, _ in ledger.pending_sessions()] == ["cs_w"]
    start(ledger, "r2")
    ledger.record_present("r2", [present_item("cs_w", T0), reports.present("", T0.isoformat())])
    row = ledger.session("cs_w")
    assert row is not None and (row.outcome, row.last_run_id) == ("already_present", "r2")
    assert ledger.pending_sessions() == []
    with pytest.raises(LookupError):
        ledger.record_present("never-started", [present_item("cs_x", T0)])
