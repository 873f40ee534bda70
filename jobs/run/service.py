"""One run as ops see it: the lock, the window, the ledger, the alerts around a reconciliation.

`reconcile run` and every daemon job come through `execute_run`, so a run started by cron
and one started by the scheduler are recorded, locked and alerted the same way.
"""

from __future__ import annotations

import gc
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from jobs.config.settings import Settings
from jobs.config.timewindow import TimeWindow
from jobs.core.errors import ReconcilerError
from jobs.core.ports import RunLedger, RunLockLike, SanityStore, StripeSource
from jobs.core.records import RunStatus
from jobs.core.runreport import RunReport
from jobs.run.lock_watch import watch_lock
from jobs.run.progress import ReadProgress
from jobs.run.reconcile import Reconciler, RunRequest
from jobs.run.rhythm import QUIET_AFTER, accounts_to_rest
from jobs.run.student_mail import NoticeSummary, StudentMail, tell_students

log = structlog.get_logger("jobs.service")

Notify = Callable[[RunReport | None, RunLedger], None]


@dataclass(frozen=True)
class RunOptions:
    kind: str = "run"  # run | quick | deep | diagnose
    window: TimeWindow | None = None  # None: from the watermarks (quick) or the deep window
    accounts: tuple[str, ...] | None = None
    dry_run: bool = False
    validate: bool = False
    max_creates: int | None = None


@dataclass
class RunOutcome:
    exit_code: int
    report: RunReport | None = None
    skipped: bool = False
    status: str = "ok"
    students: NoticeSummary | None = None  # what the pass did about students' e-mails

    def to_json(self) -> dict[str, Any] | None:
        """The run report as printed (design.md), with `student_emails` when they ran."""
        if self.report is None:
            return None
        data = self.report.to_json()
        if self.students is not None:
            data["student_emails"] = self.students.to_json()
        return data


def new_run_id(now: datetime) -> str:
    """Sortable and free of personal data: time plus a little randomness."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def plan_window(options: RunOptions, settings: Settings, ledger: RunLedger,
                now: datetime) -> tuple[int, int, dict[str, int], tuple[tuple[str, str], ...]]:
    """since, until, per-account since and pending sessions to re-check, for this run's kind."""
    until = now - settings.run.grace
    if options.window is not None:
        return options.window.since_unix, options.window.until_unix, {}, ()
    deep_since = until - settings.schedule.deep_window
    if options.kind == "deep":
        pending = tuple((acct, sid) for acct, sid, _ in ledger.pending_sessions())
        return int(deep_since.timestamp()), int(until.timestamp()), {}, pending
    # Quick pass / cron: each account from its own watermark minus the overlap, so a downtime
    # of any length is covered by the next pass; accounts never read start a deep window back.
    per_account = {
        w.account: int((w.until - settings.schedule.quick_overlap).timestamp())
        for w in ledger.watermarks() if w.kind == "quick"
    }
    return int(deep_since.timestamp()), int(until.timestamp()), per_account, ()


def is_quick(options: RunOptions) -> bool:
    """A pass from the watermarks (the daemon's quick pass, or `run` without a window)."""
    return options.window is None and options.kind in ("run", "quick")


def resting(options: RunOptions, settings: Settings, ledger: RunLedger,
            now: datetime) -> frozenset[str]:
    """Quiet accounts a quick pass over every account leaves for the next one."""
    if not is_quick(options) or options.accounts is not None:
        return frozenset()
    read = {w.account: w.until for w in ledger.watermarks() if w.kind == "quick"}
    return accounts_to_rest(read, ledger.sold_since(now - QUIET_AFTER), now - settings.run.grace,
                            settings.schedule.quick_interval, settings.schedule.deep_interval)


def run_status(report: RunReport, interrupted: bool) -> RunStatus:
    if interrupted:
        return "interrupted"
    errors = [a.error for a in report.accounts.values()]
    if errors and all(errors):
        return "failed"
    if report.failed or report.cap_exceeded or any(errors):
        return "partial"
    return "ok"


def execute_run(
    settings: Settings,
    stripe: StripeSource,
    sanity: SanityStore,
    ledger: RunLedger,
    lock: RunLockLike,
    options: RunOptions,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    cancel: threading.Event | None = None,
    notify: Notify | None = None,
    workers: int | None = None,
    on_start: Callable[[], object] | None = None,
    progress: ReadProgress | None = None,
    students: StudentMail | None = None,
) -> RunOutcome:
    """Lock, run, record. Exit 0 all good, 1 something needs a person; errors propagate (2).
    `on_start` is called once the lock is held (the heartbeat's start ping: a run skipped for
    the lock starts nothing). `students`: the student e-mails of a real pass
    (`jobs.run.compose.student_mail`), None when they are off or the run is dry."""
    if not lock.acquire(blocking=False, kind=options.kind):
        log.info("run_skipped", reason="another run holds the lock", holder=lock.holder())
        return RunOutcome(exit_code=0, skipped=True, status="skipped")
    if options.dry_run:
        students = None  # a dry run owes nobody an e-mail
    try:
        if on_start is not None:
            on_start()
        # We hold the lock, so no other run is alive: any run still marked running died.
        ledger.reap_stale_runs(lambda pid: False)
        now = clock()
        run_id = new_run_id(now)
        structlog.contextvars.bind_contextvars(run_id=run_id)
        since, until, account_since, recheck = plan_window(options, settings, ledger, now)
        if until <= since:
            raise ReconcilerError("the window is empty: --until must be after --since")
        req = RunRequest(
            run_id=run_id, since=since, until=until, accounts=options.accounts,
            dry_run=options.dry_run, validate=options.validate,
            max_creates=options.max_creates if options.max_creates is not None
            else settings.run.max_creates,
            recheck=recheck, account_since=account_since, kind=options.kind,
            lazy_refunds=is_quick(options), rest=resting(options, settings, ledger, now))
        cancel = cancel or threading.Event()
        ledger.start_run(run_id, options.kind, datetime.fromtimestamp(since, UTC),
                         datetime.fromtimestamp(until, UTC), options.dry_run,
                         list(options.accounts or ()))
        earliest = min([since, *account_since.values()])
        log.info("run_started", kind=options.kind, since=earliest, until=req.until,
                 dry_run=options.dry_run, resting=len(req.rest))
        key_mode = settings.stripe.key_mode if settings.stripe.secret_key else None
        # A shared lock (PostgreSQL) goes with its connection: once lost, another host may
        # start a run, so this one stops after the transaction under way and is `failed`.
        stop = _RunStop(cancel)
        stop_watch = watch_lock(lock, stop.lose_lock)
        reconciler = Reconciler(stripe, sanity, clock=lambda: clock().timestamp(),
                                key_mode=key_mode,
                                on_present=lambda found: ledger.record_present(run_id, found),
                                workers=workers or settings.stripe.concurrency, cancel=stop,
                                progress=progress,
                                before_commit=None if students is None else (
                                    lambda ds: students.before_commit(ds, run_id)))
        try:
            with few_collections():
                report = reconciler.run(req)
        except BaseException as error:
            ended: RunStatus = ("interrupted" if isinstance(error, KeyboardInterrupt)
                                else "failed")
            ledger.finish_run(run_id, ended, None, _one_line(error))
            if notify is not None and ended == "failed":
                _notify_quietly(notify, ledger)  # the failed-runs streak may call for an alert
            raise
        finally:
            stop_watch()
        if stop.lock_lost:
            return _lock_lost(ledger, run_id, report, notify)
        status = run_status(report, cancel.is_set())
        if cancel.is_set():
            log.warning("run_interrupted", detail="stopped by a signal; the transaction under "
                        "way was finished, the rest is left for the next run")
        ledger.record_report(report)
        _settle_rechecked(ledger, report, recheck)
        ledger.finish_run(run_id, status, report, report.error)
        if is_quick(options) and status != "interrupted":
            ledger.advance_watermarks_from_report(report, "quick")
        _log_outcomes(report)
        told = None
        if students is not None and not cancel.is_set():
            # A stopping daemon does not wait for a mail server: what this pass wrote is
            # recorded as intended, and the next pass sends it.
            told = tell_students(students, [d.session_id for d in report.created], run_id)
        log.info("run_finished", status=status, **{k: v for k, v in report.totals().items() if v})
        if notify is not None and not options.dry_run:
            notify(report, ledger)
        if options.kind == "deep" and not options.dry_run:
            prune_ledger(ledger, settings)
        code = report.exit_code()
        if status == "failed":
            code = 2  # not one account could be read: the service is down or the key is wrong
        elif status == "interrupted":
            code = 0
        return RunOutcome(exit_code=code, report=report, status=status, students=told)
    finally:
        structlog.contextvars.unbind_contextvars("run_id")
        lock.release()


def prune_ledger(ledger: RunLedger, settings: Settings) -> dict[str, int]:
    """The ledger's history beyond `run.ledger_retention`, forgotten after each deep pass (hourly
    from the daemon or cron): the delete finds nothing most hours and little on any one."""
    deleted = ledger.prune(settings.run.ledger_retention)
    if any(deleted.values()):
        log.info("ledger_pruned", retention_days=settings.run.ledger_retention.days, **deleted)
    return deleted


class _RunStop(threading.Event):
    """What a run checks to stop: its caller's `cancel` event (a signal, or the run giving up
    on rejected credentials: `set` sets it, as before), or its shared lock found lost. The
    caller's event is not set for a lost lock: a daemon's is shared by all its passes."""

    def __init__(self, cancel: threading.Event) -> None:
        super().__init__()
        self._cancel = cancel

    def is_set(self) -> bool:
        return self._cancel.is_set() or super().is_set()

    def set(self) -> None:
        self._cancel.set()

    def lose_lock(self) -> None:
        super().set()

    @property
    def lock_lost(self) -> bool:
        return super().is_set()


LOCK_LOST = ("the run lock was lost (its database connection dropped); stopped after the "
             "transaction under way")


def _lock_lost(ledger: RunLedger, run_id: str, report: RunReport,
               notify: Notify | None) -> RunOutcome:
    """Record what the run did before it lost its lock, as `failed`; the watermarks stay
    (the next run reads the window again)."""
    log.error("run_lock_lost", detail=LOCK_LOST)
    ledger.record_report(report)
    ledger.finish_run(run_id, "failed", report, LOCK_LOST)
    _log_outcomes(report)
    if notify is not None and not report.dry_run:
        _notify_quietly(notify, ledger)
    return RunOutcome(exit_code=2, report=report, status="failed")


@contextmanager
def few_collections(young: int = 10_000) -> Iterator[None]:
    """A run allocates about a hundred containers per session it reads (parsed JSON), all
    acyclic and freed by reference counting; with the default thresholds the cyclic
    collector runs thousands of times over them (a sixth of a large run's CPU). For the
    run: what exists before it is frozen out of collections, and a collection waits for
    `young` new containers."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _settle_rechecked(ledger: RunLedger, report: RunReport,
                      recheck: tuple[tuple[str, str], ...]) -> None:
    """A re-checked pending session that is now ignored (failed or expired payment) is settled:
    the report only counts ignored sessions, so name them here."""
    if not recheck or report.dry_run:
        return
    # Sessions found present were recorded as found, which closed their pending rows.
    named = {d.session_id for d in (*report.created, *report.needs_manual, *report.pending,
                                    *report.failed)}
    for _account, session_id in recheck:
        if session_id not in named:
            ledger.settle_pending(session_id, "ignored")


def _log_outcomes(report: RunReport) -> None:
    """One line per purchase that changed or needs a person (e-mails are masked by the logger)."""
    verb = "would_create" if report.dry_run else "created"
    for d in report.created:
        log.info(verb, account=d.account, session_id=d.session_id,
                 subscription_id=d.subscription_ids[0] if d.subscription_ids else None,
                 pass_name=d.pass_name)
    for d in report.needs_manual:
        log.warning("needs_manual", account=d.account, session_id=d.session_id,
                    reason=d.reason, detail=d.detail, email=d.email)
    for d in report.failed:
        log.error("failed", account=d.account, session_id=d.session_id, error=d.detail)


def _notify_quietly(notify: Notify, ledger: RunLedger) -> None:
    """Alerts after a run that could not finish: never hide the run's own error behind a mail
    problem."""
    try:
        notify(None, ledger)
    except Exception as error:  # logged; the run's error is what the caller reports
        log.error("alerting_failed", error=_one_line(error))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__

