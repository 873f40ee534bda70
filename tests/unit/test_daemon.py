"""The daemon: its schedule, its passes through `execute_run` with in-memory fakes, its stop.

Scheduling tests use the real APScheduler with intervals of a fraction of a second; everything
else drives the job callables directly with an injected clock.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler

from jobs.adapters.heartbeat import Heartbeat, fail_url, start_url
from jobs.adapters.ledger import Ledger
from jobs.adapters.lock import RunLock
from jobs.adapters.logs import configure_logging
from jobs.commands.daemon import (
    Daemon,
    make_pass_runner,
    make_weekly,
    mark_own_runs_interrupted,
    route_scheduler_logs,
)
from jobs.config.settings import RunSettings, ScheduleSettings, Settings, StripeSettings
from jobs.config.values import Secret, WeeklyAt
from jobs.core.ports import SessionPage
from jobs.run.schedule import DEEP, PASSES_EXECUTOR, QUICK, build_scheduler, next_deep_at
from jobs.run.service import RunOptions, RunOutcome, execute_run
from tests.support.fakes import FakeSanity, FakeStripe, account_error
from tests.support.ping_server import PingServer

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # a Friday
GRACE = timedelta(minutes=10)
OVERLAP = timedelta(minutes=15)
A, B = "acct_school_a", "acct_school_b"


# ---- builders ----------------------------------------------------------------------------------


def settings_for(state_dir: Path, **schedule: Any) -> Settings:
    return Settings(
        stripe=StripeSettings(concurrency=1),
        run=RunSettings(state_dir=state_dir, grace=GRACE),
        schedule=ScheduleSettings(quick_overlap=OVERLAP, **schedule),
    )


def tenant(n: int, account: str) -> dict[str, Any]:
    return {"_id": f"t{n}", "_type": "tenant", "schoolName": f"School {n}",
            "stripeConnect": {"accountId": account}}


def clip_pass(n: int) -> dict[str, Any]:
    return {"_id": f"p{n}", "_type": "pass", "name": "10 Clip Card", "type": "multi",
            "price": 2000, "validityType": "days", "validityDays": 90, "classesLimit": 10,
            "isActive": True, "tenant": {"_type": "reference", "_ref": f"t{n}"}}


def session(sid: str, school: int, created: datetime) -> dict[str, Any]:
    return {"id": sid, "object": "checkout.session", "status": "complete", "mode": "payment",
            "payment_status": "paid", "payment_intent": f"pi_{sid}", "amount_total": 200000,
            "currency": "nok", "created": int(created.timestamp()),
            "customer_details": {"email": "student@example.com", "name": "Student"},
            "metadata": {"type": "pass_purchase", "passId": f"p{school}", "userId": "user_a",
                         "tenantId": f"t{school}"}}


class RecordingStripe(FakeStripe):
    """FakeStripe that also records the window each account was read with."""

    def __init__(self, sessions: dict[str, list[dict[str, Any]]], page_size: int = 3) -> None:
        super().__init__(sessions, page_size)
        self.windows: list[tuple[str, int, int]] = []

    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage:
        if index == 0 and starting_after is None:  # an account's first page: its whole window
            self.windows.append((account, since, until))
        return super().session_page(account, since, until, starting_after, index=index)

    def window_of(self, account: str) -> tuple[datetime, datetime]:
        _, since, until = [w for w in self.windows if w[0] == account][-1]
        return datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)


def two_schools(sessions: dict[str, list[dict[str, Any]]] | None = None
                ) -> tuple[RecordingStripe, FakeSanity]:
    stripe = RecordingStripe(sessions or {A: [], B: []})
    sanity = FakeSanity([tenant(1, A), tenant(2, B), clip_pass(1), clip_pass(2),
                         {"_id": "u1", "_type": "user", "clerkId": "user_a"}])
    return stripe, sanity


class Pings:
    """A fake HTTP GET for the heartbeat: records the URLs."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str, *, timeout: float) -> Any:
        self.urls.append(url)
        return types.SimpleNamespace(status_code=200)


HB_URL = "https://hc.example.test/ping/0b7e2c6a-hb-token"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def runner(settings: Settings, stripe: FakeStripe, sanity: FakeSanity, ledger: Ledger,
           clock: Callable[[], datetime], pings: Pings,
           cancel: threading.Event | None = None) -> Callable[[str], int]:
    """The daemon's pass runner over fakes, wired as `cmd_daemon` wires it."""
    cancel = cancel or threading.Event()

    def execute(kind: str) -> RunOutcome:
        return execute_run(settings, stripe, sanity, ledger,
                           RunLock(settings.run.state_dir, kind=kind), RunOptions(kind=kind),
                           clock=clock, cancel=cancel)

    return make_pass_runner(execute, Heartbeat(HB_URL, get=pings), cancel)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True, level="debug", secrets=[HB_URL])
    yield stream
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class Calls:
    """A fake `run_pass`: records (kind, monotonic time); a kind can be made to block."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.block: dict[str, threading.Event] = {}
        self.started = threading.Event()

    def __call__(self, kind: str) -> int:
        self.calls.append((kind, time.monotonic()))
        self.started.set()
        gate = self.block.get(kind)
        if gate is not None:
            gate.wait(10)
        return 0

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]


def start_in_thread(daemon: Daemon) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    thread.start()
    return thread, result


# ---- the schedule ------------------------------------------------------------------------------


def test_scheduler_is_built_with_deliberate_job_options_and_starts_nothing(tmp_path: Path):
    settings = settings_for(tmp_path, weekly_at=WeeklyAt("mon", 8, 0))
    calls = Calls()
    scheduler = build_scheduler(settings, calls, lambda: None, clock=lambda: T0)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"quick", "deep", "weekly"}
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1
    # Not APScheduler's 1 s default: a pass may start up to one interval late.
    assert jobs["quick"].misfire_grace_time == 30
    assert jobs["deep"].misfire_grace_time == 3600
    assert jobs["weekly"].misfire_grace_time == 86400
    assert jobs["quick"].executor == jobs["deep"].executor == "passes"
    assert jobs["quick"].args == ("quick",) and jobs["deep"].args == ("deep",)
    assert jobs["quick"].next_run_time == T0  # the start-up pass
    assert jobs["deep"].trigger.get_next_fire_time(None, T0) == T0 + timedelta(hours=1)
    assert jobs["quick"].trigger.get_next_fire_time(T0, T0) == T0 + timedelta(seconds=30)
    # Monday 08:00 in Oslo (UTC+1 in November) after Friday noon UTC.
    weekly = jobs["weekly"].trigger.get_next_fire_time(None, T0)
    assert weekly == datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("Europe/Oslo"))
    assert weekly.astimezone(UTC).hour == 7
    assert not scheduler.running and calls.calls == []


def test_weekly_time_follows_the_timezone_setting(tmp_path: Path):
    settings = settings_for(tmp_path, weekly_at=WeeklyAt("sun", 20, 30),
                            timezone=ZoneInfo("America/New_York"))
    scheduler = build_scheduler(settings, Calls(), lambda: None, clock=lambda: T0)
    weekly = next(j for j in scheduler.get_jobs() if j.id == "weekly")
    fire = weekly.trigger.get_next_fire_time(None, T0)
    assert fire.astimezone(UTC) == datetime(2026, 11, 23, 1, 30, tzinfo=UTC)


# ---- one pass through execute_run --------------------------------------------------------------


def test_pass_skips_when_another_process_holds_the_lock(tmp_path: Path, logs: io.StringIO):
    settings = settings_for(tmp_path)
    stripe, sanity = two_schools({A: [session("cs_1", 1, T0 - timedelta(hours=1))], B: []})
    pings = Pings()
    other = RunLock(tmp_path, kind="run")
    assert other.acquire()
    try:
        with Ledger.open(tmp_path) as ledger:
            code = runner(settings, stripe, sanity, ledger, Clock(T0), pings)(QUICK)
            assert code == 0
            assert ledger.recent_runs() == []
    finally:
        other.release()
    assert stripe.windows == [] and sanity.of_type("subscription") == []
    assert pings.urls == []  # a skipped pass is neither a success nor a failure
    skips = [e for e in events(logs) if e["event"] == "run_skipped"]
    assert len(skips) == 1 and skips[0]["holder"]["kind"] == "run"


def test_next_quick_pass_after_downtime_covers_the_whole_missed_span(tmp_path: Path):
    settings = settings_for(tmp_path)
    clock = Clock(T0)
    stripe, sanity = two_schools()
    pings = Pings()
    with Ledger.open(tmp_path) as ledger:
        run_pass = runner(settings, stripe, sanity, ledger, clock, pings)
        assert run_pass(QUICK) == 0
        first_until = T0 - GRACE
        assert ledger.watermark(A) == first_until and ledger.watermark(B) == first_until
        # Down for six hours; purchases made meanwhile that the webhook missed.
        late = T0 + timedelta(hours=3)
        stripe.sessions[A].append(session("cs_down_a", 1, late))
        stripe.sessions[B].append(session("cs_down_b", 2, first_until - timedelta(minutes=2)))
        clock.now = T0 + timedelta(hours=6)
        assert run_pass(QUICK) == 0
        for account in (A, B):
            since, until = stripe.window_of(account)
            assert since == first_until - OVERLAP  # from the watermark, minus the overlap
            assert until == clock.now - GRACE
            assert ledger.watermark(account) == clock.now - GRACE
        created = {d["stripeSessionId"] for d in sanity.of_type("subscription")}
        assert created == {"cs_down_a", "cs_down_b"}
        assert [r.status for r in ledger.recent_runs()] == ["ok", "ok"]
    assert pings.urls == [HB_URL, HB_URL]


def test_failed_account_keeps_its_watermark_until_a_pass_reads_it(tmp_path: Path):
    settings = settings_for(tmp_path)
    clock = Clock(T0)
    stripe, sanity = two_schools()
    pings = Pings()
    with Ledger.open(tmp_path) as ledger:
        run_pass = runner(settings, stripe, sanity, ledger, clock, pings)
        run_pass(QUICK)
        w0 = T0 - GRACE
        # B fails for an hour; a purchase made in that hour must still be found.
        stripe.failing_accounts[B] = account_error(B)
        stripe.sessions[B].append(session("cs_b_missed", 2, T0 + timedelta(minutes=20)))
        clock.now = T0 + timedelta(hours=1)
        assert run_pass(QUICK) == 1  # done, an account could not be read
        assert ledger.watermark(A) == clock.now - GRACE
        assert ledger.watermark(B) == w0  # not advanced
        assert ledger.recent_runs()[0].status == "partial"
        assert sanity.of_type("subscription") == []
        del stripe.failing_accounts[B]
        clock.now = T0 + timedelta(hours=2)
        assert run_pass(QUICK) == 0
        assert stripe.window_of(B)[0] == w0 - OVERLAP
        assert stripe.window_of(A)[0] == T0 + timedelta(hours=1) - GRACE - OVERLAP
        assert [d["stripeSessionId"] for d in sanity.of_type("subscription")] == ["cs_b_missed"]
        assert ledger.watermark(B) == clock.now - GRACE
    assert pings.urls == [HB_URL, fail_url(HB_URL), HB_URL]


def test_deep_pass_reads_the_deep_window_and_leaves_watermarks_alone(tmp_path: Path):
    settings = settings_for(tmp_path, deep_window=timedelta(days=3))
    stripe, sanity = two_schools({A: [session("cs_old", 1, T0 - timedelta(days=2))], B: []})
    with Ledger.open(tmp_path) as ledger:
        ledger.advance_watermark(A, T0 - timedelta(minutes=30))
        assert runner(settings, stripe, sanity, ledger, Clock(T0), Pings())(DEEP) == 0
        assert stripe.window_of(A) == (T0 - GRACE - timedelta(days=3), T0 - GRACE)
        assert ledger.watermark(A) == T0 - timedelta(minutes=30)
        assert ledger.recent_runs()[0].kind == DEEP
    assert [d["stripeSessionId"] for d in sanity.of_type("subscription")] == ["cs_old"]


def test_pass_errors_are_logged_pinged_and_never_raised(tmp_path: Path, logs: io.StringIO):
    pings = Pings()
    hb = Heartbeat(HB_URL, get=pings)

    def broken(kind: str) -> RunOutcome:
        raise RuntimeError("boom")

    assert make_pass_runner(broken, hb, threading.Event())(QUICK) == 2
    from jobs.core.errors import ServiceUnavailable

    def down(kind: str) -> RunOutcome:
        raise ServiceUnavailable("Sanity is unreachable")

    assert make_pass_runner(down, hb, threading.Event())(DEEP) == 2
    assert pings.urls == [fail_url(HB_URL)] * 2
    lines = events(logs)
    assert [e["event"] for e in lines if e["level"] == "error"] == ["pass_crashed", "pass_failed"]
    assert HB_URL not in logs.getvalue()


def test_no_pass_starts_once_stopping(tmp_path: Path):
    cancel = threading.Event()
    cancel.set()
    started: list[str] = []
    run_pass = make_pass_runner(lambda kind: started.append(kind), Heartbeat(None), cancel)
    assert run_pass(QUICK) == 0 and started == []


# ---- stopping ----------------------------------------------------------------------------------


class GatedSanity(FakeSanity):
    """Holds the first transaction open until `release` is set."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        super().__init__(docs)
        self.writing = threading.Event()
        self.release = threading.Event()

    def commit(self, mutations: Any, transaction_id: str, *, dry_run: bool = False) -> Any:
        self.writing.set()
        self.release.wait(10)
        return super().commit(mutations, transaction_id, dry_run=dry_run)


def test_stop_during_a_write_finishes_that_transaction_and_records_interrupted(
        tmp_path: Path, logs: io.StringIO):
    settings = settings_for(tmp_path)
    before = datetime.now(UTC) - timedelta(hours=1)
    sessions = {A: [session(f"cs_a{n}", 1, before - timedelta(seconds=n)) for n in range(3)],
                B: [session(f"cs_b{n}", 2, before - timedelta(seconds=n)) for n in range(3)]}
    stripe = RecordingStripe(sessions)
    _, plain = two_schools()
    sanity = GatedSanity(list(plain.docs.values()))
    cancel = threading.Event()
    pings = Pings()
    with Ledger.open(tmp_path) as ledger:
        def execute(kind: str) -> RunOutcome:
            return execute_run(settings, stripe, sanity, ledger, RunLock(tmp_path),
                               RunOptions(kind=kind), cancel=cancel)

        scheduler = build_scheduler(settings, make_pass_runner(
            execute, Heartbeat(HB_URL, get=pings), cancel), lambda: None)
        daemon = Daemon(scheduler, cancel)
        thread, result = start_in_thread(daemon)
        assert sanity.writing.wait(5)  # the start-up quick pass is writing its first page
        daemon.request_stop("SIGTERM")
        sanity.release.set()
        thread.join(5)
        assert result == [0] and not thread.is_alive()
        runs = ledger.recent_runs()
        assert [(r.kind, r.status) for r in runs] == [(QUICK, "interrupted")]
        assert ledger.watermarks() == []  # an interrupted pass moves no watermark
    written = sorted(d["stripeSessionId"] for d in sanity.of_type("subscription"))
    # Exactly one whole transaction (one account's page), nothing of the other.
    assert written in (["cs_a0", "cs_a1", "cs_a2"], ["cs_b0", "cs_b1", "cs_b2"])
    assert len([c for c in sanity.commits if not c[2]]) == 1
    assert runs[0].counts["created"] == 3 and runs[0].counts["failed"] == 3
    assert pings.urls == []  # stopping is not a failure
    names = [e["event"] for e in events(logs)]
    assert names.index("daemon_stopping") < names.index("run_finished")
    assert "daemon_stopped" in names


class SignalOnSubmit(ThreadPoolExecutor):
    """A pass executor that raises `sig` in this process while the scheduler is submitting a
    job: the handler runs at that exact point, inside the scheduler's job processing."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(max_workers=1)
        self.sig = sig

    def _do_submit_job(self, job: Any, run_times: Any) -> None:
        os.kill(os.getpid(), self.sig)  # the handler runs before the next line
        super()._do_submit_job(job, run_times)


def with_executor(scheduler: BaseScheduler, executor: ThreadPoolExecutor) -> BaseScheduler:
    scheduler.remove_executor(PASSES_EXECUTOR)
    scheduler.add_executor(executor, PASSES_EXECUTOR)
    return scheduler


def test_a_signal_landing_inside_the_scheduler_stops_it_cleanly(tmp_path: Path):
    """A plain `scheduler.shutdown()` in a signal handler re-enters the scheduler from its own
    thread: when the signal lands while it submits a job, the job goes to a closed pool ("cannot
    schedule new futures after shutdown") and `start()` even dies on the emptied job store. The
    daemon's handler only sets events; the stopper thread does the rest. Real signals, on the
    main thread, as in production."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    settings = settings_for(tmp_path)
    handler = Keep(level=logging.ERROR)
    aps = logging.getLogger("apscheduler")
    aps.addHandler(handler)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}
    try:
        # The plain way.
        plain = with_executor(build_scheduler(settings, Calls(), lambda: None),
                              SignalOnSubmit(signal.SIGUSR1))
        signal.signal(signal.SIGUSR1, lambda *_: plain.shutdown(wait=True))
        with pytest.raises(JobLookupError):
            plain.start()
        assert any("cannot schedule new futures after shutdown" in str(r.exc_info[1])
                   for r in records if r.exc_info)
        records.clear()

        # The daemon's way.
        cancel = threading.Event()
        runs: list[str] = []
        daemon = Daemon(with_executor(
            build_scheduler(settings, make_pass_runner(
                lambda kind: runs.append(kind), Heartbeat(None), cancel), lambda: None),
            SignalOnSubmit(signal.SIGTERM)), cancel)
        daemon.install_signal_handlers()
        began = time.monotonic()
        assert daemon.run() == 0
        assert time.monotonic() - began < 2
        assert cancel.is_set() and runs == []  # the pass submitted as the signal came: not run
        assert [r.getMessage() for r in records] == []
    finally:
        aps.removeHandler(handler)
        for sig, old in saved.items():
            signal.signal(sig, old)


def test_a_pass_that_does_not_finish_is_abandoned_after_the_stop_timeout(tmp_path: Path,
                                                                         logs: io.StringIO):
    settings = settings_for(tmp_path)
    calls = Calls()
    calls.block[QUICK] = hang = threading.Event()
    abandoned: list[bool] = []
    exits: list[int] = []
    daemon = Daemon(build_scheduler(settings, calls, lambda: None), threading.Event(),
                    stop_timeout=0.3, on_abandon=lambda: abandoned.append(True),
                    exit_now=exits.append)
    thread, _ = start_in_thread(daemon)
    try:
        assert calls.started.wait(2)
        began = time.monotonic()
        daemon.request_stop("SIGTERM")
        wait_for(lambda: bool(exits), timeout=3)
        assert 0.25 < time.monotonic() - began < 1.5
        assert exits == [0] and abandoned == [True]
        assert any(e["event"] == "daemon_stop_timeout" for e in events(logs))
    finally:
        hang.set()
        thread.join(5)


class HungPass:
    """A daemon whose quick pass hangs until released: what it exits with, when, and whether
    it marked the pass abandoned."""

    def __init__(self, tmp_path: Path, *, stop_timeout: float,
                 on_abandon: Callable[[], None] | None = None,
                 abandon_timeout: float = 5.0) -> None:
        self.calls = Calls()
        self.calls.block[QUICK] = self.hang = threading.Event()
        self.abandoned: list[bool] = []
        self.exits: list[tuple[int, float]] = []
        self.daemon = Daemon(
            build_scheduler(settings_for(tmp_path), self.calls, lambda: None),
            threading.Event(), stop_timeout=stop_timeout,
            on_abandon=on_abandon or (lambda: self.abandoned.append(True)),
            exit_now=lambda code: self.exits.append((code, time.monotonic())),
            abandon_timeout=abandon_timeout)
        self.thread, _ = start_in_thread(self.daemon)
        assert self.calls.started.wait(2)

    def exited(self, timeout: float) -> tuple[int, float]:
        wait_for(lambda: bool(self.exits), timeout=timeout)
        return self.exits[0]

    def release(self) -> None:
        self.hang.set()
        self.thread.join(5)


def test_a_pass_outliving_the_stop_timeout_after_leadership_was_lost_exits_2(
        tmp_path: Path, logs: io.StringIO):
    """Not asked to end (its lock went), a leader that cannot get back to standing by exits 2,
    so systemd or Kubernetes starts it anew; one line says why."""
    hung = HungPass(tmp_path, stop_timeout=0.3)
    try:
        hung.daemon.request_stop("leadership lost")
        code, _ = hung.exited(timeout=3)
        assert code == 2 and hung.abandoned == [True]
        timeouts = [e for e in events(logs) if e["event"] == "daemon_stop_timeout"]
        assert len(timeouts) == 1
        assert timeouts[0]["reason"] == "leadership lost" and timeouts[0]["exit_code"] == 2
    finally:
        hung.release()


def test_a_repeated_step_down_does_not_cut_the_wait_for_the_pass_short(tmp_path: Path):
    """Leadership lost, reported again (the watch and a pass's own check): the pass still gets
    the whole stop timeout. A signal after it does cut the wait, and the exit is then 0."""
    hung = HungPass(tmp_path, stop_timeout=1.0)
    try:
        began = time.monotonic()
        hung.daemon.request_stop("leadership lost")
        hung.daemon.request_stop("leadership lost")
        code, at = hung.exited(timeout=5)
        assert code == 2 and at - began >= 0.9  # waited the stop timeout out
    finally:
        hung.release()

    hung = HungPass(tmp_path, stop_timeout=30)
    try:
        hung.daemon.request_stop("leadership lost")
        hung.daemon.request_stop("SIGTERM")
        code, _ = hung.exited(timeout=5)  # not the 30 s stop timeout
        assert code == 0 and hung.abandoned == [True]
    finally:
        hung.release()


def test_marking_the_abandoned_pass_waits_a_few_seconds_at_most(tmp_path: Path,
                                                                logs: io.StringIO):
    """A ledger that does not answer does not keep the process past systemd's stop timeout:
    the next pass marks the run instead."""
    never = threading.Event()

    def marking_that_hangs() -> None:
        never.wait(30)

    hung = HungPass(tmp_path, stop_timeout=0.2, on_abandon=marking_that_hangs,
                    abandon_timeout=0.3)
    try:
        hung.daemon.request_stop("SIGTERM")
        code, _ = hung.exited(timeout=5)  # not the 30 s the marking would take
        assert code == 0
        assert [e["detail"] for e in events(logs) if e["event"] == "abandoned_run_not_marked"] \
            == ["the next pass marks it interrupted"]
    finally:
        never.set()
        hung.release()


def test_abandoned_runs_of_this_process_only_are_marked_interrupted(tmp_path: Path):
    with Ledger.open(tmp_path) as ledger:
        ledger.start_run("mine", "quick", T0, T0, False, [])
        ledger.start_run("theirs", "run", T0, T0, False, [], pid=os.getpid() + 100_000)
        assert mark_own_runs_interrupted(ledger) == ["mine"]
        run = ledger.run("mine")
        assert run is not None and run.status == "interrupted"
        other = ledger.run("theirs")
        assert other is not None and other.status == "running"


def test_first_deep_pass_follows_the_last_one_in_the_ledger(tmp_path: Path):
    settings = settings_for(tmp_path)
    with Ledger.open(tmp_path, clock=lambda: T0 - timedelta(minutes=20)) as ledger:
        assert next_deep_at(ledger, settings, T0) == T0 + timedelta(seconds=1)  # overdue
        ledger.start_run("d1", "deep", T0, T0, False, [])
        ledger.finish_run("d1", "ok", None, None)
        assert next_deep_at(ledger, settings, T0) == T0 + timedelta(minutes=40)


def test_scheduler_errors_become_our_log_lines_and_its_chatter_is_dropped(logs: io.StringIO):
    aps = logging.getLogger("apscheduler")
    saved = (aps.level, aps.propagate, list(aps.handlers))
    try:
        route_scheduler_logs()
        route_scheduler_logs()  # idempotent: one handler
        child = logging.getLogger("apscheduler.scheduler")
        child.info("Running job %s", "quick")
        child.warning("Run time of job %s was missed", "quick")
        try:
            raise RuntimeError("cannot schedule new futures after shutdown")
        except RuntimeError:
            child.exception("Error submitting job %s", "quick")
    finally:
        aps.setLevel(saved[0])
        aps.propagate = saved[1]
        aps.handlers[:] = saved[2]
    lines = events(logs)
    assert [(e["logger"], e["event"], e["level"]) for e in lines] == [
        ("apscheduler", "Error submitting job quick", "error")]
    assert lines[0]["error"] == "RuntimeError: cannot schedule new futures after shutdown"


# ---- the weekly job ----------------------------------------------------------------------------


def test_weekly_job_calls_the_report_sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sent: list[tuple[Settings, Ledger]] = []
    module = types.ModuleType("jobs.commands.report")
    module.send_weekly_from_settings = lambda s, ledger: sent.append((s, ledger))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jobs.commands.report", module)
    settings = settings_for(tmp_path)
    with Ledger.open(tmp_path) as ledger:
        make_weekly(settings, ledger)()
        assert sent == [(settings, ledger)]


def test_weekly_job_logs_a_missing_or_failing_sender_and_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: io.StringIO):
    settings = settings_for(tmp_path)
    with Ledger.open(tmp_path) as ledger:
        monkeypatch.setitem(sys.modules, "jobs.commands.report", None)  # import fails
        make_weekly(settings, ledger)()
        module = types.ModuleType("jobs.commands.report")
        monkeypatch.setitem(sys.modules, "jobs.commands.report", module)  # no such function
        make_weekly(settings, ledger)()

        def fails(s: Settings, ledger: Ledger) -> None:
            raise OSError("SMTP server refused the connection")

        module.send_weekly_from_settings = fails  # type: ignore[attr-defined]
        make_weekly(settings, ledger)()
    errors = [(e["event"], e["error_type"]) for e in events(logs) if e["level"] == "error"]
    assert errors == [("weekly_report_unavailable", "ModuleNotFoundError"),
                      ("weekly_report_unavailable", "AttributeError"),
                      ("weekly_report_failed", "OSError")]


def test_weekly_job_reaches_the_real_sender(tmp_path: Path, logs: io.StringIO):
    # No SMTP settings here: the real `jobs.commands.report` refuses, and the job only logs it.
    with Ledger.open(tmp_path) as ledger:
        make_weekly(settings_for(tmp_path), ledger)()
    errors = [e for e in events(logs) if e["level"] == "error"]
    assert [(e["event"], e["error_type"]) for e in errors] == [
        ("weekly_report_failed", "ConfigError")]
    assert "SMTP_HOST" in errors[0]["error"]


# ---- the heartbeat against a local HTTP server -------------------------------------------------


@pytest.fixture
def ping_server() -> Iterator[PingServer]:
    server = PingServer()
    yield server
    server.close()


def test_heartbeat_pings_success_and_fail_urls(ping_server: PingServer):
    hb = Heartbeat(Secret(f"{ping_server.url}/ping/abc-123/"))
    assert hb.success() is True
    assert hb.fail() is True
    assert hb.start() is True
    assert ping_server.paths == ["/ping/abc-123/", "/ping/abc-123/fail", "/ping/abc-123/start"]
    assert fail_url("https://hc.example/ping/x?rid=1") == "https://hc.example/ping/x/fail?rid=1"
    assert start_url("https://hc.example/ping/x?rid=1") == "https://hc.example/ping/x/start?rid=1"


def test_heartbeat_failures_are_logged_without_the_url_and_never_raise(
        ping_server: PingServer, logs: io.StringIO):
    token = "9f1c-secret-ping-token"
    slow = Heartbeat(f"{ping_server.url}/slow/{token}", timeout=0.1)
    began = time.monotonic()
    assert slow.success() is False
    assert time.monotonic() - began < 0.25  # the short timeout, not the server's 0.3 s
    assert Heartbeat(f"{ping_server.url}/missing/{token}").fail() is False
    ping_server.close()
    assert Heartbeat(f"{ping_server.url}/ping/{token}", timeout=0.5).success() is False
    lines = [e for e in events(logs) if e["event"] == "heartbeat_failed"]
    assert [e.get("error") or e.get("status") for e in lines] == [
        "ReadTimeout", 404, "ConnectionError"]
    assert token not in logs.getvalue() and "127.0.0.1" not in logs.getvalue()
    assert Heartbeat(None).success() is False  # no URL: nothing to do


def test_a_quiet_school_is_read_every_other_quick_pass_and_by_every_deep_pass(tmp_path: Path):
    settings = settings_for(tmp_path, quick_interval=timedelta(seconds=30))
    clock = Clock(T0)
    # School A sold an hour ago; school B not for two days.
    stripe, sanity = two_schools({A: [session("cs_a", 1, T0 - timedelta(hours=1))],
                                  B: [session("cs_b", 2, T0 - timedelta(days=2))]})
    with Ledger.open(tmp_path) as ledger:
        run_pass = runner(settings, stripe, sanity, ledger, clock, Pings())
        read: list[set[str]] = []
        for _ in range(4):  # four quick passes, 30 s apart
            stripe.windows.clear()
            assert run_pass(QUICK) == 0
            read.append({w[0] for w in stripe.windows})
            clock.now += timedelta(seconds=30)
        assert read == [{"platform", A, B}, {A}, {"platform", A, B}, {A}]
        stripe.windows.clear()
        assert run_pass(DEEP) == 0
        assert {w[0] for w in stripe.windows} == {"platform", A, B}
        # A sale at B makes it busy: read by the very next quick pass, and every one after.
        clock.now += timedelta(seconds=30)
        stripe.sessions[B].append(session("cs_b2", 2, clock.now - GRACE - timedelta(minutes=1)))
        for _ in range(2):
            stripe.windows.clear()
            assert run_pass(QUICK) == 0
            assert {w[0] for w in stripe.windows} >= {A, B}
            clock.now += timedelta(seconds=30)
