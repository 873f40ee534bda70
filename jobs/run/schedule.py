"""The daemon's schedule: the quick and deep passes and the weekly report as APScheduler
jobs, and when the first deep pass is due after a restart."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from jobs.config.settings import Settings
from jobs.core.records import RunRecord

QUICK, DEEP, WEEKLY = "quick", "deep", "weekly"
PASSES_EXECUTOR = "passes"
WEEKLY_MODULE = "jobs.commands.report"  # send_weekly_from_settings(settings, ledger)

# Misfire grace, on purpose (APScheduler's default of 1 s silently drops a pass that starts a
# second late, e.g. queued behind another pass). A pass may start up to one interval late; later
# than that the next one is due anyway, and it covers the gap from the watermark.
WEEKLY_GRACE = timedelta(hours=24)  # a report a day late beats no report for a week
STOP_TIMEOUT = 25.0  # seconds; the brief allows 30 s, systemd's default stop timeout is 90 s
RESTART_DEEP_DELAY = timedelta(seconds=1)  # an overdue deep pass queues behind the start-up quick

RunPass = Callable[[str], int]
Weekly = Callable[[], None]
Clock = Callable[[], datetime]


class RunHistory(Protocol):
    """What the schedule reads from the ledger: the runs started in a window."""

    def runs_between(self, start: datetime, end: datetime) -> list[RunRecord]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def _interval(delta: timedelta) -> float:
    return max(0.01, delta.total_seconds())


def _grace(delta: timedelta) -> int:
    """APScheduler wants whole seconds here."""
    return max(1, math.ceil(delta.total_seconds()))


def build_scheduler(
    settings: Settings,
    run_pass: RunPass,
    weekly: Weekly,
    *,
    scheduler_cls: type[BaseScheduler] = BlockingScheduler,
    clock: Clock = utc_now,
    first_deep: datetime | None = None,
) -> BaseScheduler:
    """The scheduler with its three jobs, not started.

    `run_pass(kind)` runs one pass ("quick" or "deep") and returns its exit code; `weekly()` sends
    the weekly report. Both must not raise (see `make_pass_runner`, `make_weekly`). The quick
    pass is due at once (the start-up pass); the deep pass at `first_deep`, by default one deep
    interval from now.
    """
    sched = settings.schedule
    now = clock()
    scheduler = scheduler_cls(
        timezone=sched.timezone,
        executors={
            # One worker: passes queue behind each other instead of racing for the lock.
            PASSES_EXECUTOR: ThreadPoolExecutor(max_workers=1),
            "default": ThreadPoolExecutor(max_workers=1),  # the weekly report
        },
    )
    # Given per job (not as job_defaults) so they are on the jobs before the scheduler starts.
    once = {"coalesce": True, "max_instances": 1}
    scheduler.add_job(
        run_pass, IntervalTrigger(seconds=_interval(sched.quick_interval), start_date=now,
                                  timezone=sched.timezone),
        args=[QUICK], id=QUICK, name="quick pass", executor=PASSES_EXECUTOR,
        next_run_time=now, misfire_grace_time=_grace(sched.quick_interval), **once)
    deep_start = first_deep or now + sched.deep_interval
    scheduler.add_job(
        run_pass, IntervalTrigger(seconds=_interval(sched.deep_interval), start_date=deep_start,
                                  timezone=sched.timezone),
        args=[DEEP], id=DEEP, name="deep pass", executor=PASSES_EXECUTOR,
        misfire_grace_time=_grace(sched.deep_interval), **once)
    at = sched.weekly_at
    scheduler.add_job(
        weekly, CronTrigger(day_of_week=at.day, hour=at.hour, minute=at.minute,
                            timezone=sched.timezone),
        id=WEEKLY, name="weekly report", misfire_grace_time=_grace(WEEKLY_GRACE), **once)
    return scheduler


def next_deep_at(ledger: RunHistory, settings: Settings, now: datetime) -> datetime:
    """When the first deep pass is due: one interval after the last deep pass that ran, so a
    restart does not postpone it by a whole interval (a crash loop would starve it); at once
    (behind the start-up quick pass) when it is overdue."""
    interval = settings.schedule.deep_interval
    recent = [r for r in ledger.runs_between(now - interval, now + timedelta(seconds=1))
              if r.kind == DEEP and r.status in ("ok", "partial") and not r.dry_run]
    if not recent:
        return now + RESTART_DEEP_DELAY
    return max(now + RESTART_DEEP_DELAY, max(r.started_at for r in recent) + interval)
