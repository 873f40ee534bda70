"""`reconcile daemon`: APScheduler runs quick passes, deep passes and the weekly report.

- quick pass every `schedule.quick_interval` (and once at start-up): each account from its
  watermark minus the overlap up to now minus the grace (`execute_run` computes the window);
- deep pass every `schedule.deep_interval`: the last `deep_window` plus the pending sessions;
- weekly report at `schedule.weekly_at` in `schedule.timezone`.

Passes run on one worker thread, one at a time: a pass due while another runs waits for it
(within its misfire grace) instead of losing the race for the run lock. `max_instances=1` drops a
pass whose previous run of the same kind is still going; the run lock, taken by `execute_run`,
keeps a `reconcile run` from cron and the daemon apart. Jobs are closures in the memory job store:
nothing is pickled, and the window comes from the ledger's watermarks, not from scheduler state.

Stopping (SIGTERM/SIGINT): the handler only sets events. A stopper thread removes every job (so
nothing becomes due again), shuts the scheduler down and waits for the pass under way, which sees
the `cancel` event, finishes the transaction it is writing, writes no more and is recorded as
`interrupted`. If it has not finished after `stop_timeout` (a network call hanging), the run is
marked `interrupted` in the ledger (waiting at most `ABANDON_TIMEOUT` for it) and the process
leaves anyway, inside systemd's stop timeout: with 0 (130 after Ctrl-C) when a signal asked for
the stop, with 2 when nobody did (a leader that lost its lock could not stand by again: systemd or
Kubernetes starts it anew).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobEvent,
    SchedulerEvent,
)
from apscheduler.schedulers.base import BaseScheduler

from jobs.adapters.heartbeat import Heartbeat
from jobs.adapters.ledger import Ledger
from jobs.adapters.metrics import Metrics
from jobs.config.settings import Settings
from jobs.core.errors import ConfigError, ReconcilerError
from jobs.run.schedule import (
    STOP_TIMEOUT,
    WEEKLY,
    WEEKLY_MODULE,
    RunPass,
    Weekly,
    build_scheduler,
    next_deep_at,
    utc_now,
)

if TYPE_CHECKING:
    from jobs.run.leader import Leadership

log = structlog.get_logger("jobs.daemon")

ABANDON_TIMEOUT = 5.0  # seconds to mark an abandoned pass; with STOP_TIMEOUT within systemd's 35 s
SIGNALS = ("SIGTERM", "SIGINT")


# ---- the jobs --------------------------------------------------------------------------------


def make_pass_runner(execute: Callable[[str], Any], heartbeat: Heartbeat,
                     cancel: threading.Event) -> RunPass:
    """`execute(kind)` runs one pass and returns a `jobs.run.service.RunOutcome` (or raises).

    The runner never raises: an error is logged and answered with the exit code it maps to, so
    the scheduler goes on. The heartbeat is pinged after a pass that ran: success when it ended
    `ok`, `/fail` when it failed or ended `partial` (an account unreadable, a write refused, the
    safety cap). A pass skipped for the lock or interrupted by a stop pings nothing.
    """

    def run_pass(kind: str) -> int:
        if cancel.is_set():
            log.info("pass_not_started", kind=kind, reason="the daemon is stopping")
            return 0
        try:
            outcome = execute(kind)
        except ReconcilerError as error:
            # Service down, credentials rejected, bad state dir: the next pass tries again.
            log.error("pass_failed", kind=kind, error=str(error), exit_code=error.exit_code)
            heartbeat.fail()
            return error.exit_code
        except Exception:
            log.exception("pass_crashed", kind=kind)
            heartbeat.fail()
            return 2
        if outcome.skipped or outcome.status == "interrupted":
            return int(outcome.exit_code)
        if outcome.status == "ok":
            heartbeat.success()
        else:
            heartbeat.fail()
        return int(outcome.exit_code)

    return run_pass


def make_weekly(settings: Settings, ledger: Ledger,
                cancel: threading.Event | None = None) -> Weekly:
    """The weekly job: `jobs.commands.report.send_weekly_from_settings(settings, ledger)`, imported
    when it runs; missing or failing, it is logged and the daemon goes on."""

    def weekly() -> None:
        if cancel is not None and cancel.is_set():
            return
        try:
            send = importlib.import_module(WEEKLY_MODULE).send_weekly_from_settings
        except Exception as error:  # missing, or broken at import: logged, the daemon goes on
            log.error("weekly_report_unavailable", error=_one_line(error),
                      error_type=type(error).__name__)
            return
        try:
            send(settings, ledger)
        except Exception as error:
            log.error("weekly_report_failed", error=_one_line(error),
                      error_type=type(error).__name__)
            return
        log.info("weekly_report_done")

    return weekly


# ---- the process -----------------------------------------------------------------------------


class Daemon:
    """Owns a built scheduler: runs it until asked to stop, then stops it cleanly."""

    def __init__(
        self,
        scheduler: BaseScheduler,
        cancel: threading.Event,
        *,
        stop_timeout: float = STOP_TIMEOUT,
        on_abandon: Callable[[], None] = lambda: None,
        exit_now: Callable[[int], None] = os._exit,
        abandon_timeout: float = ABANDON_TIMEOUT,
    ) -> None:
        self.scheduler = scheduler
        self.cancel = cancel
        self.stop_timeout = stop_timeout
        self.abandon_timeout = abandon_timeout
        self._on_abandon = on_abandon
        self._exit_now = exit_now
        self._stop_asked = threading.Event()
        self._force = threading.Event()
        self._stopped = threading.Event()
        self._reason = "requested"
        self._signal: str | None = None  # the signal that asked for a stop, if one did
        scheduler.add_listener(self._on_started, EVENT_SCHEDULER_STARTED)
        scheduler.add_listener(self._on_dropped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

    def request_stop(self, reason: str = "requested") -> None:
        """Ask for a clean stop. Safe in a signal handler: it only sets events (the main thread
        may be inside the scheduler or a log write when the signal lands). A signal after the
        first request stops waiting for the pass under way; the same report again (leadership
        lost, seen by two checks) does not."""
        if reason in SIGNALS and self._signal is None:
            self._signal = reason
        if self._stop_asked.is_set():
            if reason in SIGNALS:
                self._force.set()
            return
        self._reason = reason
        self.cancel.set()
        self._stop_asked.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask for a clean stop (main thread only)."""

        def handler(signum: int, _frame: object) -> None:
            self.request_stop(signal.Signals(signum).name)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    def run(self) -> int:
        """Block until stopped (BlockingScheduler) and return the exit code: 0, or 130 when
        Ctrl-C (SIGINT) stopped it, as a shell expects."""
        if not self._stop_asked.is_set():
            self.scheduler.start()  # the stopper thread starts with it (see _on_started)
            self._stopped.wait()  # a BackgroundScheduler's start() returns at once
            log.info("daemon_stopped")
        return 130 if self._reason == "SIGINT" else 0

    def _on_started(self, _event: SchedulerEvent) -> None:
        tz = self.scheduler.timezone
        jobs = {job.id: job.next_run_time for job in self.scheduler.get_jobs()}
        log.info("daemon_started", **{f"next_{k}": v.astimezone(tz).isoformat() if v else None
                                      for k, v in jobs.items()})
        threading.Thread(target=self._stop_when_asked, name="daemon-stopper", daemon=True).start()

    def _on_dropped(self, event: JobEvent) -> None:
        reason = ("the previous one is still running" if event.code == EVENT_JOB_MAX_INSTANCES
                  else "it could not start within its misfire grace time")
        log.info("pass_skipped" if event.job_id != WEEKLY else "weekly_report_skipped",
                 kind=event.job_id, reason=reason)

    def _stop_when_asked(self) -> None:
        self._stop_asked.wait()
        log.info("daemon_stopping", reason=self._reason,
                 detail="finishing the transaction under way, then exiting")
        # Jobs first: APScheduler's main loop looks for due jobs once more after a shutdown and
        # would submit one to the closed pool ("cannot schedule new futures after shutdown").
        self.scheduler.remove_all_jobs()
        closer = threading.Thread(target=self._shutdown, name="daemon-shutdown", daemon=True)
        closer.start()
        deadline = time.monotonic() + self.stop_timeout
        while closer.is_alive() and not self._force.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            closer.join(min(remaining, 0.1))
        if closer.is_alive():
            code = {"SIGTERM": 0, "SIGINT": 130}.get(self._signal or "", 2)
            log.error("daemon_stop_timeout", seconds=self.stop_timeout, reason=self._reason,
                      exit_code=code,
                      detail="the pass under way did not finish; it is recorded as interrupted "
                             "and the process exits without it")
            try:
                self._abandon()
            finally:
                _flush()
                self._exit_now(code)

    def _abandon(self) -> None:
        """`on_abandon` (marking the pass interrupted), waited for `abandon_timeout` at most: a
        ledger that does not answer is left to the next pass (it marks the run then)."""
        failed: list[BaseException] = []

        def mark() -> None:
            try:
                self._on_abandon()
            except Exception as error:
                failed.append(error)

        marker = threading.Thread(target=mark, name="daemon-abandon", daemon=True)
        marker.start()
        marker.join(self.abandon_timeout)
        if marker.is_alive() or failed:
            log.warning("abandoned_run_not_marked",
                        error=_one_line(failed[0]) if failed else
                        f"no answer within {self.abandon_timeout:g}s",
                        detail="the next pass marks it interrupted")

    def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=True)  # waits for the pass under way
        self._stopped.set()


def mark_own_runs_interrupted(ledger: Ledger) -> list[str]:
    """Runs of this process still `running` become `interrupted` (an abandoned pass)."""
    me = os.getpid()
    return ledger.reap_stale_runs(lambda pid: pid != me)


class _ToStructlog(logging.Handler):
    """APScheduler logs through stdlib logging; send its errors to our (scrubbed) log lines."""

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        structlog.get_logger("apscheduler").error(
            record.getMessage(), level_name=record.levelname,
            error=f"{type(error).__name__}: {error}" if error is not None else None)


def route_scheduler_logs() -> None:
    """Only APScheduler's errors, as our JSON lines: its per-run info lines are noise, and the
    skips it warns about are logged by `Daemon` as `pass_skipped`."""
    logger = logging.getLogger("apscheduler")
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog())


def cmd_daemon(args: argparse.Namespace, settings: Settings) -> int:
    """`reconcile daemon`. With the ledger in PostgreSQL, daemons on several hosts share the
    work: this one stands by until it leads (`jobs.run.leader`)."""
    from jobs.run.compose import database_url, open_ledger

    del args  # the daemon takes its schedule from the settings
    settings.require("stripe", "sanity")
    url = database_url(settings)
    if url is None:
        return _serve(settings)
    from jobs.run.compose import leadership
    from jobs.run.leader import lead_or_stand_by

    open_ledger(settings).close()  # the database is there and migrated, or exit 2 now
    return lead_or_stand_by(leadership(url), lambda leading: _serve(settings, leading))


def _serve(settings: Settings, leadership: Leadership | None = None) -> int:
    """Wire the real services and block until SIGTERM/SIGINT (a leader: or until it is not)."""
    from jobs.adapters import systemd_notify
    from jobs.adapters.logs import no_color
    from jobs.run.compose import (
        build_metrics,
        build_services,
        notifier,
        open_ledger,
        run_lock,
        student_mail,
    )
    from jobs.run.progress import progress_for
    from jobs.run.service import RunOptions, RunOutcome, execute_run

    metrics = build_metrics(settings)
    services = build_services(settings, metrics)
    route_scheduler_logs()
    cancel = threading.Event()
    notify = notifier(settings)
    heartbeat = services.heartbeat
    with open_ledger(settings) as ledger:
        students = student_mail(settings, ledger, services.sanity, dry_run=False)

        def execute(kind: str) -> RunOutcome:
            if leadership is not None and not leadership.may_start_pass(kind):
                return RunOutcome(exit_code=0, skipped=True, status="skipped")

            def one_pass() -> RunOutcome:
                # A lock object per pass: flock is per open file, so each pass really competes.
                return execute_run(settings, services.stripe, services.sanity, ledger,
                                   run_lock(settings, kind=kind),
                                   RunOptions(kind=kind), cancel=cancel, notify=notify,
                                   on_start=heartbeat.start,
                                   progress=progress_for(sys.stderr, json_logs=settings.log.json,
                                                         color=not no_color()),
                                   students=students)

            return one_pass() if metrics is None else metrics.timed(kind, one_pass, ledger)

        now = utc_now()
        scheduler = build_scheduler(
            settings, make_pass_runner(execute, heartbeat, cancel),
            make_weekly(settings, ledger, cancel), clock=lambda: now,
            first_deep=next_deep_at(ledger, settings, now))

        def abandon() -> None:
            mark_own_runs_interrupted(ledger)

        daemon = Daemon(scheduler, cancel, on_abandon=abandon)
        daemon.install_signal_handlers()
        systemd_notify.attach(scheduler, cancel)
        log.info("daemon_configured", quick_every=str(settings.schedule.quick_interval),
                 deep_every=str(settings.schedule.deep_interval),
                 weekly_at=f"{settings.schedule.weekly_at} {settings.schedule.timezone.key}",
                 heartbeat=heartbeat.enabled)
        stop_metrics = _serve_metrics(metrics, settings, ledger)
        try:
            return daemon.run() if leadership is None else leadership.run(daemon)
        finally:
            stop_metrics()


def _serve_metrics(metrics: Metrics | None, settings: Settings,
                   ledger: Ledger) -> Callable[[], None]:
    """Serve `/metrics` when `metrics.listen` is set; returns the function that stops it."""
    listen = settings.metrics.listen
    if metrics is None or listen is None:
        return lambda: None
    metrics.refresh(ledger)
    try:
        return metrics.serve(*listen)
    except OSError as error:
        raise ConfigError(f"RECONCILER_METRICS_LISTEN: cannot listen on {listen[0]}:{listen[1]}"
                          f" ({error.strerror or error})") from error


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
