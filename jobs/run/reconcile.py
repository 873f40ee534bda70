"""One reconciliation pass: read every account's window, plan, then write.

Reading and planning stream page by page: fetchers read time segments of every account at
once under the shared rate budget (`jobs.run.segments`), each page is parsed as it arrives and
planned in a pool of its own (line items where needed, one Sanity lookup). Writing starts
only when the whole window is planned, because the safety cap must know the total first: a
run that would create more than `max_creates` subscriptions writes nothing. Until then a
page's creations are kept compressed (`jobs.run.batches`), so memory follows the outcomes, not
the raw pages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from jobs.core import rules
from jobs.core.classify import (
    Classified,
    classify,
    mode_conflict,
    needs_line_items,
    parse_line_items,
    parse_session,
    with_products,
)
from jobs.core.errors import (
    AccountError,
    ConfigError,
    CredentialsRejected,
    ModeMismatch,
    ReconcilerError,
    WriteRejected,
)
from jobs.core.model import (
    PLATFORM,
    Catalog,
    Decision,
    LineItem,
    PageFacts,
    Pass,
    PlanContext,
    Session,
    Tenant,
)
from jobs.core.planner import lookup_keys, plan_page, transaction_mutations
from jobs.core.ports import SanityStore, StripeSource
from jobs.core.recheck import recheck
from jobs.core.runreport import RunReport, present_row
from jobs.run.batches import Batch, Transaction, transactions, write_units
from jobs.run.gather import ProductGatherer, wants_products
from jobs.run.progress import ReadProgress
from jobs.run.refunds import AccountRefunds, Refunded, refunded_by_intent, refunds_could_change
from jobs.run.segments import SegmentReader

log = structlog.get_logger("jobs.reconcile")


@dataclass(frozen=True)
class RunRequest:
    run_id: str
    since: int
    until: int
    accounts: tuple[str, ...] | None = None  # None: the platform and every school's account
    dry_run: bool = False
    validate: bool = False  # with dry_run: ask Sanity to validate the planned transactions
    max_creates: int = 50
    recheck: tuple[tuple[str, str], ...] = ()  # (account, session id) pending from earlier runs
    account_since: Mapping[str, int] = field(default_factory=dict)  # per-account window start
    kind: str = "run"
    # A quick pass: an account's refunds are read only when a page plans a creation or a case
    # for a person (`jobs.run.refunds`); a deep pass reads them all to report refunded passes.
    lazy_refunds: bool = False
    # Quiet accounts this quick pass leaves out (`jobs.run.rhythm`).
    rest: frozenset[str] = frozenset()


Parsed = Session | tuple[str, str]  # a session, or (its id or "", why it is malformed)


def parse_page(raws: Iterable[Any], account: str, now_s: int) -> list[Parsed]:
    """A page's raw sessions as the small `Session` values planning needs (the raw dicts can
    go at once); a malformed one as (id, reason)."""
    out: list[Parsed] = []
    for raw in raws:
        parsed = parse_session(raw, account, now_s)
        if isinstance(parsed, str):
            sid = raw.get("id") if isinstance(raw, Mapping) else None
            out.append((sid if isinstance(sid, str) else "", parsed))
        else:
            out.append(parsed)
    return out


def catalog_from(
    tenants: Iterable[Mapping[str, Any]], passes: Iterable[Mapping[str, Any]]
) -> Catalog:
    """Published tenants and passes as data (drafts are not what the app sells)."""

    def tenant_ref(doc: Mapping[str, Any]) -> str | None:
        value = doc.get("tenant")
        target = value.get("_ref") if isinstance(value, Mapping) else None
        return target if isinstance(target, str) else None

    out_tenants: dict[str, Tenant] = {}
    for doc in tenants:
        tid = doc.get("_id")
        if not isinstance(tid, str) or tid.startswith("drafts."):
            continue
        connect = doc.get("stripeConnect")
        connect = connect if isinstance(connect, Mapping) else {}
        account, currency = connect.get("accountId"), connect.get("currency")
        name = doc.get("schoolName")
        out_tenants[tid] = Tenant(tid, name if isinstance(name, str) else None,
                                  account if isinstance(account, str) and account else None,
                                  currency if isinstance(currency, str) else None)
    out_passes: dict[str, Pass] = {}
    for doc in passes:
        pid = doc.get("_id")
        if not isinstance(pid, str) or pid.startswith("drafts."):
            continue
        name = doc.get("name")
        out_passes[pid] = Pass(
            id=pid, name=name if isinstance(name, str) else None, type=doc.get("type"),
            price=doc.get("price"), validity_type=doc.get("validityType"),
            validity_days=doc.get("validityDays"), expiry_date=doc.get("expiryDate"),
            classes_limit=doc.get("classesLimit"), is_active=doc.get("isActive"),
            tenant_id=tenant_ref(doc))
    return Catalog(out_tenants, out_passes)


def written_or_present(decision: Decision, results: Any) -> Decision:
    """The decision as the transaction's results tell it: a createIfNotExists that created
    nothing (the webhook wrote the same id first) is a purchase already present, not ours.
    Results that do not say (none returned, or a retried commit's "unknown") count as ours."""
    if not isinstance(results, list) or not decision.subscription_ids:
        return decision
    own = decision.subscription_ids[0]
    ops = {r.get("id"): r.get("operation") for r in results if isinstance(r, Mapping)}
    if any(op == "unknown" for op in ops.values()) or ops.get(own) == "create":
        return decision
    return replace(decision, outcome="already_present", creation=None, anomalies=(),
                   detail="the app's webhook created it while this run was writing")


def _payment_intent(decision: Decision) -> str | None:
    if decision.creation is None:
        return None
    value = decision.creation.subscription.get("stripePaymentId")
    return value if isinstance(value, str) and value else None


def accounts_to_read(catalog: Catalog, wanted: Sequence[str] | None) -> list[str]:
    """The platform plus every school's connected account, or the ones asked for."""
    known = [PLATFORM, *sorted({t.account_id for t in catalog.tenants.values() if t.account_id})]
    if wanted is None:
        return known
    unknown = [a for a in wanted if a not in known]
    if unknown:
        raise ConfigError(f"--account {unknown[0]} is not the platform nor any school's "
                          "stripeConnect.accountId")
    return [a for a in known if a in wanted]


PRESENT_BATCH = 2000


class _Batched:
    """Rows handed on in batches of `size` (fewer, larger ledger transactions: planning
    threads queueing for the ledger one page at a time held the whole read back)."""

    def __init__(self, sink: Callable[[list[dict[str, Any]]], None], size: int) -> None:
        self._sink = sink
        self._size = size
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)
            if len(self._rows) < self._size:
                return
            batch, self._rows = self._rows, []
        self._sink(batch)

    def flush(self) -> None:
        with self._lock:
            batch, self._rows = self._rows, []
        if batch:
            self._sink(batch)


class Reconciler:
    """Runs passes against the given Stripe source and Sanity store."""

    def __init__(
        self,
        stripe: StripeSource,
        sanity: SanityStore,
        *,
        clock: Callable[[], float] = time.time,
        workers: int = 4,
        plan_workers: int | None = None,
        on_present: Callable[[list[dict[str, Any]]], None] | None = None,
        cancel: threading.Event | None = None,
        key_mode: str | None = None,
        progress: ReadProgress | None = None,
        before_commit: Callable[[Sequence[Decision]], None] | None = None,
    ) -> None:
        """`key_mode` ("live"/"test"): data of the other mode stops the run before it writes.
        `workers`: Stripe fetchers (segments read at once, `stripe.concurrency`);
        transactions written at once; `plan_workers` (default twice that): pages planned at
        once (line items, Sanity lookups). The rate budget lives in the source.
        `on_present`: receives the report rows of purchases found already present, in
        batches as they are found (the report only counts them); the service hands them to
        the ledger. `progress` hears of every page read (`jobs.run.progress`)."""
        self.stripe = stripe
        self.progress = progress
        self.sanity = sanity
        self.clock = clock
        self.workers = max(1, workers)
        self.plan_workers = max(1, plan_workers if plan_workers is not None else 2 * workers)
        self.on_present = _Batched(on_present, PRESENT_BATCH) if on_present else None
        # Set from a signal handler: stop reading, finish the transaction under way, write no more.
        self.cancel = cancel or threading.Event()
        self.key_mode = key_mode
        # Called with a transaction's purchases just before it is written (the student
        # e-mails record their intent there, so a kill after the write still owes them).
        self.before_commit = before_commit

    def run(self, req: RunRequest) -> RunReport:
        started = self.clock()
        report = RunReport(run_id=req.run_id, started_at=rules.iso_ms(int(started * 1000)),
                           since=rules.iso_ms(req.since * 1000),
                           until=rules.iso_ms(req.until * 1000), dry_run=req.dry_run)
        catalog = catalog_from(*self.sanity.load_catalog())
        accounts = [a for a in accounts_to_read(catalog, req.accounts) if a not in req.rest]
        ctx = PlanContext(now_ms=int(started * 1000), run_id=req.run_id, catalog=catalog)
        for account in accounts:
            tenant = catalog.tenant_of_account(account) if account != PLATFORM else None
            report.account(account, tenant.id if tenant else None)
        batches = self._read(req, ctx, accounts, report)
        self._finish(batches, report, req)
        if self.on_present is not None:
            self.on_present.flush()
        report.finished_at = rules.iso_ms(int(self.clock() * 1000))
        return report

    def _read(self, req: RunRequest, ctx: PlanContext, accounts: Sequence[str],
              report: RunReport) -> list[Batch]:
        """Read and plan every account's window; every outcome but the creations goes into
        `report` as it is planned, the creations come back as batches."""
        lock = threading.Lock()
        stop = self.cancel  # also set when the run cannot go on (credentials rejected)
        # Time segments partition the window (`jobs.run.segments`), so a session can only come
        # twice when a pending one re-checked by id also lies in the window: only those are
        # remembered (a set of every session id would grow with the window).
        rechecked = {sid for _, sid in req.recheck}
        seen: set[str] = set()
        sessions = 0
        batches: list[Batch] = []
        refunds = AccountRefunds(self.stripe.refunds, lazy=req.lazy_refunds)
        fatal: list[BaseException] = []
        now_s = ctx.now_ms // 1000

        def take(page_decisions: list[Decision], account: str, index: int) -> None:
            nonlocal sessions
            with lock:
                fresh = [d for d in page_decisions if d.session_id not in seen]
                seen.update(d.session_id for d in fresh if d.session_id in rechecked)
                sessions += len(fresh)
                creations = []
                for decision in fresh:
                    if decision.creation is not None:
                        creations.append(decision)
                    else:
                        report.add(decision)
                if creations:
                    batches.append(Batch.of(account, index, creations))
            self._hand_over_present(fresh)

        def fail_account(account: str, error: ReconcilerError) -> None:
            # One account failing is its own error in the report; the others go on.
            with lock:
                summary = report.accounts[account]
                first = summary.error is None
                if first:
                    summary.error = str(error)
            if first:
                log.error("account_failed", run_id=req.run_id, account=account, error=str(error))

        # Pages are planned in a pool of their own while the fetchers read on; at most
        # `slots` pages are fetched but not yet planned (back-pressure), and each is parsed
        # into small values as it arrives, so memory stays flat however long the window.
        planners = ThreadPoolExecutor(max_workers=self.plan_workers, thread_name_prefix="plan")
        slots = threading.BoundedSemaphore(self.workers + self.plan_workers)

        def guarded(account: str, planning: Callable[[], None]) -> None:
            """Plan something of `account`; its errors are the account's (or the run's)."""
            try:
                if stop.is_set() or report.accounts[account].error is not None:
                    return
                planning()
            except CredentialsRejected as error:
                stop.set()
                fatal.append(error)
            except ReconcilerError as error:
                reader.fail(account)
                fail_account(account, error)
            except BaseException as error:  # a bug: the run stops and raises it
                stop.set()
                fatal.append(error)

        def plan(account: str, index: int, page: list[Parsed], pages: int) -> None:
            def planning() -> None:
                # Keyless sessions wait for a full products request (`jobs.run.gather`); the
                # rest of the page is planned now.
                keyless = [s for s in page if isinstance(s, Session) and wants_products(s)]
                rest = [s for s in page if not (isinstance(s, Session) and wants_products(s))]
                decisions = self._plan_refunds_aware(rest, account, refunds, ctx) if rest else []
                if pages:  # a page of the window (re-checked sessions are no page)
                    with lock:
                        summary = report.accounts[account]
                        summary.pages += pages
                        summary.sessions += len(page)
                take(decisions, account, index)
                gatherer.park(account, keyless)

            try:
                guarded(account, planning)
            finally:
                slots.release()
                gatherer.page_out(account)

        def plan_group(account: str, index: int, sessions: list[Session]) -> None:
            guarded(account, lambda: take(
                self._plan_refunds_aware(list(sessions), account, refunds, ctx), account, index))

        gatherer = ProductGatherer(plan_group)

        def submit(account: str, index: int, raws: list[dict[str, Any]], pages: int) -> None:
            conflict = next(filter(None, (mode_conflict(r, self.key_mode) for r in raws)), None)
            if conflict is not None:
                # The key and the data are of different modes: the configuration points at
                # the wrong place, so nothing of this run may be written.
                stop.set()
                fatal.append(ModeMismatch(conflict))
                return
            parsed = parse_page(raws, account, now_s)
            slots.acquire()  # blocks while planning is behind: back-pressure on reading
            gatherer.page_in(account)
            planners.submit(plan, account, index, parsed, pages)

        def start(account: str) -> None:
            since = req.account_since.get(account, req.since)
            refunds.start(account, since)
            mine = [sid for acct, sid in req.recheck if acct == account]
            if mine:
                raws = [r for r in (self.stripe.session(account, sid) for sid in mine) if r]
                submit(account, -1, raws, 0)

        def read_all(account: str) -> None:
            # Its last keyless sessions are planned in the pool: the fetcher reads on.
            planners.submit(gatherer.reading_done, account)

        reader = SegmentReader(
            self.stripe, fetchers=self.workers, start=start,
            deliver=lambda page: submit(page.account, page.index, page.sessions, 1),
            cancelled=stop.is_set, on_account_error=fail_account, on_account_done=read_all,
            on_page=self.progress.page if self.progress is not None else None)
        windows = [(a, req.account_since.get(a, req.since), req.until) for a in accounts]
        if self.progress is not None:
            self.progress.begin(windows)
        try:
            stats = reader.read(windows)
        except CredentialsRejected:
            stop.set()
            raise
        finally:
            if self.progress is not None:
                self.progress.finish()
            planners.shutdown(wait=True)
        if fatal:
            raise fatal[0]
        log.info("read_finished", run_id=req.run_id, accounts=len(accounts),
                 segments=stats.segments, splits=stats.splits, pages=stats.pages,
                 sessions=sessions, creations=sum(b.count for b in batches))
        return batches

    def _finish(self, batches: list[Batch], report: RunReport, req: RunRequest) -> None:
        """The safety cap, then write (or, in a dry run, validate) the planned creations."""
        planned = sum(b.count for b in batches)
        if self.cancel.is_set():
            report.error = "interrupted before writing; nothing written"
            self._not_written(batches, report, "not written: run interrupted")
        elif planned > req.max_creates:
            report.cap_exceeded = True
            report.error = (f"safety cap: {planned} subscriptions to create, more than "
                            f"max_creates={req.max_creates}; nothing written")
            log.error("cap_exceeded", run_id=req.run_id, planned=planned,
                      max_creates=req.max_creates)
            self._not_written(batches, report, "not written: safety cap exceeded")
        elif req.dry_run:
            self._dry_run(transactions(batches), report, req)
        else:
            started = time.monotonic()
            txs = transactions(batches)
            # As many write units at once as Stripe fetchers (`stripe.concurrency`): a stop
            # finishes the transactions under way and writes no more.
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="write") as pool:
                for outcomes in pool.map(lambda u: self._write_unit(u, req), write_units(txs)):
                    for decision, error in outcomes:
                        if error is None:
                            report.add(decision)
                        else:
                            report.add_write_failure(decision, error)
                    self._hand_over_present([d for d, error in outcomes if error is None])
            log.info("write_finished", run_id=req.run_id, transactions=len(txs),
                     purchases=planned, seconds=round(time.monotonic() - started, 3))

    def _hand_over_present(self, decisions: Iterable[Decision]) -> None:
        """Purchases found already present go to `on_present` (the ledger), batched."""
        rows = [present_row(d) for d in decisions if d.outcome == "already_present"]
        if rows and self.on_present is not None:
            self.on_present.add(rows)

    @staticmethod
    def _not_written(batches: list[Batch], report: RunReport, why: str) -> None:
        for batch in batches:
            for decision in batch.decisions():
                report.add_write_failure(decision, why)

    def plan_sessions(self, raws: list[dict[str, Any]], account: str, ctx: PlanContext,
                      refunds: Mapping[str, int] | None = None) -> list[Decision]:
        """Plan the given raw sessions of one account exactly as a run plans one page (line
        items where needed, one Sanity lookup); nothing is written. `refunds` (refunded minor
        units per payment intent) default to the account's refunds since the oldest session.
        The planned creations are re-checked as a write would (`settle`).
        For `reconcile diagnose`, which picks its sessions itself."""
        if not raws:
            return []
        if refunds is None:
            created = [r.get("created") for r in raws if isinstance(r, Mapping)]
            since = min((c for c in created if isinstance(c, int)), default=0)
            refunds = refunded_by_intent(self.stripe.refunds(account, since))
        return self.settle(self._plan_page(raws, account, refunds, ctx))

    def _plan_page(self, raws: list[dict[str, Any]], account: str, refunds: Mapping[str, int],
                   ctx: PlanContext) -> list[Decision]:
        return self._plan_parsed(parse_page(raws, account, ctx.now_ms // 1000), account,
                                 refunds, ctx)

    def _plan_refunds_aware(self, page: list[Parsed], account: str, refunds: AccountRefunds,
                            ctx: PlanContext) -> list[Decision]:
        """Plan a page with the refunds read so far; in a quick pass, read the account's
        refunds only when the page plans something they could change, and plan it again
        only when one of its payments was refunded."""
        decisions = self._plan_parsed(page, account, refunds.known(account), ctx)
        if not refunds.lazy or not refunds_could_change(decisions):
            return decisions
        refunded = refunds.get(account)
        intents = {s.payment_intent for s in page if isinstance(s, Session) and s.payment_intent}
        if not intents.intersection(refunded):
            return decisions
        return self._plan_parsed(page, account, refunded, ctx)

    def _plan_parsed(self, page: list[Parsed], account: str, refunds: Refunded,
                     ctx: PlanContext) -> list[Decision]:
        """One page: line items for the sessions that need them, one Sanity lookup, the plan."""
        line_items = self._line_items(account, [s for s in page if isinstance(s, Session)])
        classified: list[Classified] = []
        for item in page:
            if isinstance(item, tuple):
                classified.append(Classified(item[0], account, "failed", item[1]))
                continue
            refunded = refunds.get(item.payment_intent, 0) if item.payment_intent else 0
            classified.append(classify(item, line_items.get(item.id, []), ctx.catalog,
                                       refunded))
        keys = lookup_keys(classified)
        facts = PageFacts()
        if keys.session_ids:
            facts = PageFacts.from_result(self.sanity.lookup_page(
                list(keys.session_ids), list(keys.payment_intents), list(keys.user_ids),
                list(keys.upgrade_ids)))
        return plan_page(classified, facts, ctx).decisions

    def _line_items(self, account: str, sessions: Sequence[Session]) -> dict[str, list[LineItem]]:
        """The line items of the sessions whose own metadata lacks the pass keys: as listed
        with them plus their products, one request for the whole page; a session listed
        without them costs a line-items request of its own."""
        needing = [s for s in sessions if needs_line_items(s)]
        listed = [(s.id, s.line_items) for s in needing if s.line_items is not None]
        wanted = [i.product_id for _, items in listed for i in items if i.product_id]
        products = self.stripe.products(account, wanted) if wanted else {}
        out = {sid: with_products(items, products) for sid, items in listed}
        for session in needing:
            # A product the by-id listing did not return (deleted, or another request's
            # answer lost): the session's own line items still carry it, expanded.
            missing = session.line_items is not None and any(
                i.product_id and i.product_id not in products for i in session.line_items)
            if session.line_items is None or missing:
                out[session.id] = parse_line_items(self.stripe.line_items(account, session.id))
        return out

    def _write_unit(self, unit: Sequence[Transaction],
                    req: RunRequest) -> list[tuple[Decision, str | None]]:
        """Re-check the unit's purchases (the webhook may have written since the look-up,
        minutes ago in a large run), then write each transaction without the ones now
        present: those are reported already present, not created."""
        planned = [(tx, tx.decisions()) for tx in unit]
        if self.cancel.is_set():
            return [(d, "not written: run interrupted") for _, ds in planned for d in ds]
        every = [d for _, ds in planned for d in ds]
        try:
            checked_all = iter(self.settle(every))
        except CredentialsRejected:
            raise
        except ReconcilerError as error:
            return [(d, f"write failed: re-check failed: {error}") for d in every]
        out: list[tuple[Decision, str | None]] = []
        for tx, decisions in planned:
            checked = [next(checked_all) for _ in decisions]
            out.extend((d, None) for d in checked if d.creation is None)
            still = [d for d in checked if d.creation is not None]
            if still:
                out.extend(self._write(still, f"{req.run_id}-{tx.suffix}", req))
        return out

    def settle(self, decisions: Sequence[Decision]) -> list[Decision]:
        """The planned creations against Sanity now, in one query (`jobs.core.recheck`): what
        the webhook wrote since the look-up, and the buyers' manual subscriptions."""
        creating = [d for d in decisions if d.creation is not None]
        if not creating:
            return list(decisions)
        found = self.sanity.recheck(
            [d.session_id for d in creating],
            [pi for d in creating if (pi := _payment_intent(d))],
            list(dict.fromkeys(r for d in creating if d.creation
                               for r in d.creation.person_refs)))
        subs, manual = found.get("subs") or [], found.get("manual") or []
        return [recheck(d, subs, manual) for d in decisions]

    def _write(self, decisions: list[Decision], name: str,
               req: RunRequest) -> list[tuple[Decision, str | None]]:
        """One transaction; if Sanity refuses it, one per purchase to isolate the bad one."""
        if self.cancel.is_set():
            return [(d, "not written: run interrupted") for d in decisions]
        if self.before_commit is not None:
            self.before_commit(decisions)
        try:
            results = self.sanity.commit(transaction_mutations(decisions), name)
            return [(written_or_present(d, results), None) for d in decisions]
        except CredentialsRejected:
            raise
        except WriteRejected as error:
            if len(decisions) == 1:
                return [(decisions[0], str(error))]
            log.warning("transaction_refused_splitting", run_id=req.run_id, transaction=name,
                        error=str(error))
        except ReconcilerError as error:
            return [(d, f"write failed: {error}") for d in decisions]
        out: list[tuple[Decision, str | None]] = []
        for n, decision in enumerate(decisions):
            try:
                assert decision.creation is not None
                results = self.sanity.commit(decision.creation.mutations(), f"{name}-{n}")
                out.append((written_or_present(decision, results), None))
            except CredentialsRejected:
                raise
            except ReconcilerError as error:
                out.append((decision, f"write failed: {error}"))
        return out

    def _dry_run(self, txs: list[Transaction], report: RunReport, req: RunRequest) -> None:
        """What a write would do, re-checks included, without writing (`validate`: Sanity
        validates each transaction as a dry run)."""
        for unit in write_units(txs):
            planned = [(tx, tx.decisions()) for tx in unit]
            settled = iter(self.settle([d for _, ds in planned for d in ds]))
            for tx, decisions in planned:
                checked = [next(settled) for _ in decisions]
                for decision in checked:
                    if decision.creation is None:
                        report.add(decision)
                self._dry_run_tx(tx, [d for d in checked if d.creation is not None],
                                 report, req)

    def _dry_run_tx(self, tx: Transaction, decisions: list[Decision], report: RunReport,
                    req: RunRequest) -> None:
        if not decisions:
            return
        error: str | None = None
        if req.validate:
            try:
                self.sanity.commit(transaction_mutations(decisions),
                                   f"{req.run_id}-{tx.suffix}", dry_run=True)
            except CredentialsRejected:
                raise
            except (WriteRejected, AccountError, ReconcilerError) as failure:
                error = f"validation failed: {failure}"
        for decision in decisions:
            if error is None:
                report.add(decision)
            else:
                report.add_write_failure(decision, error)
