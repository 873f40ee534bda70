"""The read of one pass: every account's window read in time segments, each page parsed as it
arrives and planned in a pool of its own while the fetchers read on.

At most `workers + plan_workers` pages are fetched but not yet planned (back-pressure), and
each is parsed into small values as it arrives, so memory stays flat however long the window.
Every outcome but the creations goes into the report as it is planned; the creations come
back as batches for the apply step (`jobs.run.apply`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog

from jobs.core.classify import Parsed, mode_conflict, parse_page
from jobs.core.errors import CredentialsRejected, ModeMismatch, ReconcilerError
from jobs.core.model import Decision, PlanContext, Session
from jobs.core.runreport import RunReport
from jobs.run.batches import Batch
from jobs.run.gather import ProductGatherer, wants_products
from jobs.run.refunds import AccountRefunds
from jobs.run.segments import SegmentReader

if TYPE_CHECKING:
    from jobs.run.reconcile import Reconciler, RunRequest

log = structlog.get_logger("jobs.reconcile")


class WindowRead:
    """One pass's read and plan; its steps are the methods, its state the attributes."""

    def __init__(self, owner: Reconciler, req: RunRequest, ctx: PlanContext,
                 report: RunReport) -> None:
        self.owner = owner
        self.req = req
        self.ctx = ctx
        self.report = report
        self.lock = threading.Lock()
        self.stop = owner.cancel  # also set when the run cannot go on (credentials rejected)
        # Time segments partition the window (`jobs.run.segments`), so a session can only come
        # twice when a pending one re-checked by id also lies in the window: only those are
        # remembered (a set of every session id would grow with the window).
        self.rechecked = {sid for _, sid in req.recheck}
        self.seen: set[str] = set()
        self.sessions = 0
        self.batches: list[Batch] = []
        self.refunds = AccountRefunds(owner.stripe.refunded, lazy=req.lazy_refunds)
        self.fatal: list[BaseException] = []
        self.now_s = ctx.now_ms // 1000
        self.planners = ThreadPoolExecutor(max_workers=owner.plan_workers,
                                           thread_name_prefix="plan")
        self.slots = threading.BoundedSemaphore(owner.workers + owner.plan_workers)
        self.gatherer = ProductGatherer(self.plan_group)
        progress = owner.progress
        self.reader = SegmentReader(
            owner.stripe, fetchers=owner.workers, start=self.start,
            deliver=lambda page, oldest: self.submit(page.account, page.index, page.sessions,
                                                     1, oldest=oldest),
            cancelled=self.stop.is_set, on_account_error=self.fail_account,
            on_account_done=self.read_all,
            on_page=progress.page if progress is not None else None)

    def read(self, accounts: Sequence[str]) -> list[Batch]:
        """Read and plan every account's window; the creations come back as batches."""
        req, progress = self.req, self.owner.progress
        windows = [(a, req.account_since.get(a, req.since), req.until) for a in accounts]
        if progress is not None:
            progress.begin(windows)
        try:
            stats = self.reader.read(windows)
        except CredentialsRejected:
            self.stop.set()
            raise
        finally:
            if progress is not None:
                progress.finish()
            self.planners.shutdown(wait=True)
        if self.fatal:
            raise self.fatal[0]
        log.info("read_finished", run_id=req.run_id, accounts=len(accounts),
                 segments=stats.segments, splits=stats.splits, pages=stats.pages,
                 sessions=self.sessions, creations=sum(b.count for b in self.batches))
        return self.batches

    def take(self, page_decisions: list[Decision], account: str, index: int) -> None:
        """A planned page: its creations kept as a batch, every other outcome reported."""
        with self.lock:
            fresh = [d for d in page_decisions if d.session_id not in self.seen]
            self.seen.update(d.session_id for d in fresh if d.session_id in self.rechecked)
            self.sessions += len(fresh)
            creations = []
            for decision in fresh:
                if decision.creation is not None:
                    creations.append(decision)
                else:
                    self.report.add(decision)
            if creations:
                self.batches.append(Batch.of(account, index, creations))
        self.owner.hand_over_present(fresh)

    def fail_account(self, account: str, error: ReconcilerError) -> None:
        # One account failing is its own error in the report; the others go on.
        with self.lock:
            summary = self.report.accounts[account]
            first = summary.error is None
            if first:
                summary.error = str(error)
        if first:
            log.error("account_failed", run_id=self.req.run_id, account=account,
                      error=str(error))

    def guarded(self, account: str, planning: Callable[[], None]) -> None:
        """Plan something of `account`; its errors are the account's (or the run's)."""
        try:
            if self.stop.is_set() or self.report.accounts[account].error is not None:
                return
            planning()
        except CredentialsRejected as error:
            self.stop.set()
            self.fatal.append(error)
        except ReconcilerError as error:
            self.reader.fail(account)
            self.fail_account(account, error)
        except BaseException as error:  # a bug: the run stops and raises it
            self.stop.set()
            self.fatal.append(error)

    def plan(self, account: str, index: int, page: list[Parsed], pages: int,
             oldest: bool) -> None:
        """Plan one parsed page (in the planners' pool)."""
        def planning() -> None:
            # Keyless sessions wait for a full products request (`jobs.run.gather`); the
            # rest of the page is planned now, but for the window's oldest page, which
            # waits for the account's last keyless sessions and shares its look-up with them.
            keyless = [s for s in page if isinstance(s, Session) and wants_products(s)]
            rest = [s for s in page if not (isinstance(s, Session) and wants_products(s))]
            if pages:  # a page of the window (re-checked sessions are no page)
                with self.lock:
                    summary = self.report.accounts[account]
                    summary.pages += pages
                    summary.sessions += len(page)
            if oldest:
                self.gatherer.hold(account, index, rest)
            elif rest:
                self.take(self.owner.plan_refunds_aware(rest, account, self.refunds, self.ctx),
                          account, index)
            self.gatherer.park(account, keyless)

        try:
            self.guarded(account, planning)
        finally:
            self.slots.release()
            self.gatherer.page_out(account)

    def plan_group(self, account: str, index: int, sessions: list[Session],
                   held: list[Parsed]) -> None:
        """Plan keyless sessions gathered across pages, once their products are asked for
        (the account's last ones with the rest of its held oldest page)."""
        group: list[Parsed] = [*held, *sessions]
        self.guarded(account, lambda: self.take(
            self.owner.plan_refunds_aware(group, account, self.refunds, self.ctx),
            account, index))

    def submit(self, account: str, index: int, raws: list[dict[str, Any]], pages: int,
               *, oldest: bool = False) -> None:
        """A page read: parsed now, planned in the pool (blocks while planning is behind)."""
        conflict = next(filter(None, (mode_conflict(r, self.owner.key_mode) for r in raws)),
                        None)
        if conflict is not None:
            # The key and the data are of different modes: the configuration points at
            # the wrong place, so nothing of this run may be written.
            self.stop.set()
            self.fatal.append(ModeMismatch(conflict))
            return
        parsed = parse_page(raws, account, self.now_s)
        self.slots.acquire()  # blocks while planning is behind: back-pressure on reading
        self.gatherer.page_in(account)
        self.planners.submit(self.plan, account, index, parsed, pages, oldest)

    def start(self, account: str) -> None:
        """An account's read begins: its refunds, then its pending sessions re-checked by id."""
        req = self.req
        self.refunds.start(account, req.account_since.get(account, req.since))
        mine = [sid for acct, sid in req.recheck if acct == account]
        if mine:
            stripe = self.owner.stripe
            raws = [r for r in (stripe.session(account, sid) for sid in mine) if r]
            self.submit(account, -1, raws, 0)

    def read_all(self, account: str) -> None:
        # Its last keyless sessions are planned in the pool: the fetcher reads on.
        self.planners.submit(self.gatherer.reading_done, account)
