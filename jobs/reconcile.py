"""One reconciliation pass: read every account's window, plan, then write.

Reading and planning stream page by page (one Sanity lookup per page). Writing starts only
when the whole window is planned, because the safety cap must know the total first: a run
that would create more than `max_creates` subscriptions writes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from jobs import rules
from jobs.classify import (
    Classified,
    classify_raw,
    needs_line_items,
    parse_line_items,
    parse_session,
)
from jobs.errors import (
    AccountError,
    ConfigError,
    CredentialsRejected,
    ReconcilerError,
    WriteRejected,
)
from jobs.model import PLATFORM, Catalog, Decision, PageFacts, Pass, PlanContext, Tenant
from jobs.planner import lookup_keys, plan_page, transaction_mutations
from jobs.ports import SanityStore, StripeSource
from jobs.runreport import RunReport

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


@dataclass
class _Batch:
    """The creations planned from one page: written as one transaction."""

    account: str
    index: int
    decisions: list[Decision] = field(default_factory=list)


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
        account = connect.get("accountId") if isinstance(connect, Mapping) else None
        name = doc.get("schoolName")
        out_tenants[tid] = Tenant(tid, name if isinstance(name, str) else None,
                                  account if isinstance(account, str) and account else None)
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


def refunded_by_intent(refunds: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Refunded minor units per payment intent (failed and canceled refunds do not count)."""
    out: dict[str, int] = {}
    for refund in refunds:
        pi = refund.get("payment_intent")
        amount = refund.get("amount")
        if (isinstance(pi, str) and isinstance(amount, int)
                and refund.get("status") in ("succeeded", "pending", None)):
            out[pi] = out.get(pi, 0) + amount
    return out


class Reconciler:
    """Runs passes against the given Stripe source and Sanity store."""

    def __init__(
        self,
        stripe: StripeSource,
        sanity: SanityStore,
        *,
        clock: Callable[[], float] = time.time,
        workers: int = 4,
        on_page: Callable[[list[Decision]], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.stripe = stripe
        self.sanity = sanity
        self.clock = clock
        self.workers = max(1, workers)
        self.on_page = on_page
        # Set from a signal handler: stop reading, finish the transaction under way, write no more.
        self.cancel = cancel or threading.Event()

    def run(self, req: RunRequest) -> RunReport:
        started = self.clock()
        report = RunReport(run_id=req.run_id, started_at=rules.iso_ms(int(started * 1000)),
                           since=rules.iso_ms(req.since * 1000),
                           until=rules.iso_ms(req.until * 1000), dry_run=req.dry_run)
        catalog = catalog_from(*self.sanity.load_catalog())
        accounts = accounts_to_read(catalog, req.accounts)
        ctx = PlanContext(now_ms=int(started * 1000), run_id=req.run_id, catalog=catalog)
        for account in accounts:
            tenant = catalog.tenant_of_account(account) if account != PLATFORM else None
            report.account(account, tenant.id if tenant else None)
        lock = threading.Lock()
        stop = self.cancel  # also set when the run cannot go on (credentials rejected)
        seen: set[str] = set()
        batches: list[_Batch] = []

        def take(page_decisions: list[Decision], account: str, index: int) -> None:
            with lock:
                fresh = [d for d in page_decisions if d.session_id not in seen or not d.session_id]
                seen.update(d.session_id for d in fresh)
                batch = _Batch(account, index)
                for decision in fresh:
                    if decision.creation is not None:
                        batch.decisions.append(decision)
                    else:
                        report.add(decision)
                if batch.decisions:
                    batches.append(batch)
            if self.on_page is not None:
                self.on_page(fresh)

        def read_account(account: str) -> None:
            summary = report.accounts[account]
            bound = log.bind(run_id=req.run_id, account=account)
            try:
                since = req.account_since.get(account, req.since)
                refunds = refunded_by_intent(self.stripe.refunds(account, since))
                for page in self.stripe.session_pages(account, since, req.until):
                    if stop.is_set():
                        return
                    decisions = self._plan_page(page.sessions, account, refunds, ctx)
                    with lock:
                        summary.pages += 1
                        summary.sessions += len(page.sessions)
                    take(decisions, account, page.index)
                mine = [sid for acct, sid in req.recheck if acct == account]
                if mine:
                    raws = [r for r in (self.stripe.session(account, sid) for sid in mine) if r]
                    take(self._plan_page(raws, account, refunds, ctx), account, -1)
            except CredentialsRejected:
                stop.set()
                raise
            except ReconcilerError as error:
                # One account failing is its own error in the report; the others go on.
                summary.error = str(error)
                bound.error("account_failed", error=str(error))

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for future in [pool.submit(read_account, a) for a in accounts]:
                future.result()

        planned = sum(len(b.decisions) for b in batches)
        if self.cancel.is_set():
            report.error = "interrupted before writing; nothing written"
            for batch in batches:
                for decision in batch.decisions:
                    report.add_write_failure(decision, "not written: run interrupted")
        elif planned > req.max_creates:
            report.cap_exceeded = True
            report.error = (f"safety cap: {planned} subscriptions to create, more than "
                            f"max_creates={req.max_creates}; nothing written")
            log.error("cap_exceeded", run_id=req.run_id, planned=planned,
                      max_creates=req.max_creates)
            for batch in batches:
                for decision in batch.decisions:
                    report.add_write_failure(decision, "not written: safety cap exceeded")
        elif req.dry_run:
            self._dry_run(batches, report, req)
        else:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                results = list(pool.map(lambda b: self._write(b, req), batches))
            for outcomes in results:
                for decision, error in outcomes:
                    if error is None:
                        report.add(decision)
                    else:
                        report.add_write_failure(decision, error)
        report.finished_at = rules.iso_ms(int(self.clock() * 1000))
        return report

    def plan_sessions(self, raws: list[dict[str, Any]], account: str, ctx: PlanContext,
                      refunds: Mapping[str, int] | None = None) -> list[Decision]:
        """Plan the given raw sessions of one account exactly as a run plans one page (line
        items where needed, one Sanity lookup); nothing is written. `refunds` (refunded minor
        units per payment intent) default to the account's refunds since the oldest session.
        For `reconcile diagnose`, which picks its sessions itself."""
        if not raws:
            return []
        if refunds is None:
            created = [r.get("created") for r in raws if isinstance(r, Mapping)]
            since = min((c for c in created if isinstance(c, int)), default=0)
            refunds = refunded_by_intent(self.stripe.refunds(account, since))
        return self._plan_page(raws, account, refunds, ctx)

    def _plan_page(self, raws: list[dict[str, Any]], account: str, refunds: Mapping[str, int],
                   ctx: PlanContext) -> list[Decision]:
        now_s = ctx.now_ms // 1000
        items: dict[str, list[Any]] = {}
        for raw in raws:
            parsed = parse_session(raw, account, now_s)
            if not isinstance(parsed, str) and needs_line_items(parsed):
                items[parsed.id] = parse_line_items(self.stripe.line_items(account, parsed.id))
        page: list[Classified] = [classify_raw(r, account, now_s, ctx.catalog, items, refunds)
                                  for r in raws]
        keys = lookup_keys(page)
        facts = PageFacts()
        if keys.session_ids:
            facts = PageFacts.from_result(self.sanity.lookup_page(
                list(keys.session_ids), list(keys.payment_intents), list(keys.user_ids),
                list(keys.upgrade_ids)))
        return plan_page(page, facts, ctx).decisions

    def _write(self, batch: _Batch, req: RunRequest) -> list[tuple[Decision, str | None]]:
        """One transaction per page; if Sanity refuses it, one per purchase to isolate the bad."""
        if self.cancel.is_set():
            return [(d, "not written: run interrupted") for d in batch.decisions]
        mutations = transaction_mutations(batch.decisions)
        tx = f"{req.run_id}-{batch.account}-{batch.index}"
        try:
            self.sanity.commit(mutations, tx)
            return [(d, None) for d in batch.decisions]
        except CredentialsRejected:
            raise
        except WriteRejected as error:
            if len(batch.decisions) == 1:
                return [(batch.decisions[0], str(error))]
            log.warning("transaction_refused_splitting", run_id=req.run_id, transaction=tx,
                        error=str(error))
        except ReconcilerError as error:
            return [(d, f"write failed: {error}") for d in batch.decisions]
        out: list[tuple[Decision, str | None]] = []
        for n, decision in enumerate(batch.decisions):
            try:
                assert decision.creation is not None
                self.sanity.commit(decision.creation.mutations(), f"{tx}-{n}")
                out.append((decision, None))
            except CredentialsRejected:
                raise
            except ReconcilerError as error:
                out.append((decision, f"write failed: {error}"))
        return out

    def _dry_run(self, batches: list[_Batch], report: RunReport, req: RunRequest) -> None:
        for batch in batches:
            error: str | None = None
            if req.validate:
                mutations = transaction_mutations(batch.decisions)
                try:
                    self.sanity.commit(mutations, f"{req.run_id}-{batch.account}-{batch.index}",
                                       dry_run=True)
                except CredentialsRejected:
                    raise
                except (WriteRejected, AccountError, ReconcilerError) as failure:
                    error = f"validation failed: {failure}"
            for decision in batch.decisions:
                if error is None:
                    report.add(decision)
                else:
                    report.add_write_failure(decision, error)
