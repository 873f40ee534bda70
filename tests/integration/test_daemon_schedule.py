"""The daemon's schedule in real time: passes fire on their intervals, an overlapping pass is
skipped and a queued one still runs late. These wait on the clock (about 2.5 s together), so
they live here, not with the unit tests."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from jobs.commands.daemon import Daemon
from jobs.run.schedule import DEEP, QUICK, build_scheduler
from tests.unit.test_daemon import Calls, events, logs, settings_for, start_in_thread, wait_for

__all__ = ["logs"]  # the captured-log fixture, used by name


def test_quick_and_deep_passes_run_on_schedule(tmp_path: Path):
    settings = settings_for(tmp_path, quick_interval=timedelta(seconds=0.2),
                            deep_interval=timedelta(seconds=0.5))
    calls = Calls()
    scheduler = build_scheduler(settings, calls, lambda: None,
                                scheduler_cls=BackgroundScheduler)
    began = time.monotonic()
    scheduler.start()
    try:
        time.sleep(1.1)
    finally:
        scheduler.shutdown(wait=True)
    kinds = calls.kinds()
    assert kinds[0] == QUICK and calls.calls[0][1] - began < 0.15  # quick at start-up
    assert 5 <= kinds.count(QUICK) <= 7, kinds  # t = 0, 0.2, ... 1.0
    assert 1 <= kinds.count(DEEP) <= 3, kinds  # t = 0.5, 1.0
    first_deep = next(t for k, t in calls.calls if k == DEEP)
    assert 0.4 < first_deep - began < 0.8  # one deep interval after start, not at start-up


def test_overlapping_pass_is_skipped_and_a_queued_pass_still_runs_late(tmp_path: Path,
                                                                       logs: io.StringIO):
    # Quick every 0.1 s, but the first quick pass takes 1.3 s: the quick passes due meanwhile
    # are dropped (max_instances=1); the deep pass due at 0.2 s waits for the worker and runs
    # 1.1 s late, which APScheduler's default misfire grace of 1 s would have dropped.
    settings = settings_for(tmp_path, quick_interval=timedelta(seconds=0.1),
                            deep_interval=timedelta(seconds=5))
    calls = Calls()
    calls.block[QUICK] = gate = threading.Event()
    now = datetime.now(UTC)
    scheduler = build_scheduler(settings, calls, lambda: None, scheduler_cls=BlockingScheduler,
                                clock=lambda: now, first_deep=now + timedelta(seconds=0.2))
    daemon = Daemon(scheduler, threading.Event())
    thread, result = start_in_thread(daemon)
    try:
        calls.started.wait(2)
        time.sleep(1.3)
        assert calls.kinds() == [QUICK]  # still the first one
    finally:
        gate.set()
    wait_for(lambda: DEEP in calls.kinds())
    daemon.request_stop()
    thread.join(5)
    assert result == [0]
    skipped = [e for e in events(logs) if e["event"] == "pass_skipped"]
    assert len(skipped) >= 5 and {e["kind"] for e in skipped} == {QUICK}
    assert "previous one is still running" in skipped[0]["reason"]
    assert calls.kinds()[1] == DEEP  # next after the long quick pass: the queued deep pass
