"""One reconciliation pass: read every account's window, plan, then write.

Reading and planning stream page by page (`jobs.run.read`): fetchers read time segments of
every account at once under the shared rate budget (`jobs.run.segments`), each page is parsed
as it arrives and planned here, in a pool of its own (line items where needed, one Sanity
lookup). Writing starts only when the whole window is planned (`jobs.run.apply`: the safety
cap must know the total first). Until then a page's creations are kept compressed
(`jobs.run.batches`), so memory follows the outcomes, not the raw pages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from jobs.core import rules
from jobs.core.catalog import catalog_from
from jobs.core.classify import (
    Classified,
    Parsed,
    classify,
    needs_line_items,
    parse_line_items,
    parse_page,
    with_products,
)
from jobs.core.errors import (
    ConfigError,
)
from jobs.core.matching import lookup_keys
from jobs.core.model import (
    PLATFORM,
    Catalog,
    Decision,
    LineItem,
    PageFacts,
    PlanContext,
    Session,
)
from jobs.core.planner import plan_page
from jobs.core.ports import SanityStore, StripeSource
from jobs.core.runreport import RunReport
from jobs.run.apply import ApplyStep
from jobs.run.progress import ReadProgress
from jobs.run.read import WindowRead
from jobs.run.refunds import AccountRefunds, Refunded, refunds_could_change

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
    """Decisions handed on in batches of `size` (fewer, larger ledger transactions: planning
    threads queueing for the ledger one page at a time held the whole read back)."""

    def __init__(self, sink: Callable[[list[Decision]], None], size: int) -> None:
        self._sink = sink
        self._size = size
        self._rows: list[Decision] = []
        self._lock = threading.Lock()

    def add(self, rows: list[Decision]) -> None:
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
        on_present: Callable[[list[Decision]], None] | None = None,
        cancel: threading.Event | None = None,
        key_mode: str | None = None,
        progress: ReadProgress | None = None,
        before_commit: Callable[[Sequence[Decision]], None] | None = None,
    ) -> None:
        """`key_mode` ("live"/"test"): data of the other mode stops the run before it writes.
        `workers`: Stripe fetchers (segments read at once, `stripe.concurrency`);
        transactions written at once; `plan_workers` (default twice that): pages planned at
        once (line items, Sanity lookups). The rate budget lives in the source.
        `on_present`: receives the decisions of purchases found already present, in
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
        self.apply = ApplyStep(sanity, workers=self.workers, cancel=self.cancel,
                               before_commit=before_commit, hand_over=self.hand_over_present)

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
        batches = WindowRead(self, req, ctx, report).read(accounts)
        self.apply.apply(batches, report, req)
        if self.on_present is not None:
            self.on_present.flush()
        report.finished_at = rules.iso_ms(int(self.clock() * 1000))
        return report

    def hand_over_present(self, decisions: Iterable[Decision]) -> None:
        """Purchases found already present go to `on_present` (the ledger), batched."""
        found = [d for d in decisions if d.outcome == "already_present"]
        if found and self.on_present is not None:
            self.on_present.add(found)

    def plan_sessions(self, raws: list[dict[str, Any]], account: str, ctx: PlanContext,
                      refunds: Mapping[str, int] | None = None) -> list[Decision]:
        """Plan the given raw sessions of one account exactly as a run plans one page (line
        items where needed, one Sanity lookup); nothing is written. `refunds` (refunded minor
        units per payment intent) default to the account's refunds since the oldest session.
        The planned creations are re-checked as a write would (`ApplyStep.settle`).
        For `reconcile diagnose`, which picks its sessions itself."""
        if not raws:
            return []
        if refunds is None:
            created = [r.get("created") for r in raws if isinstance(r, Mapping)]
            since = min((c for c in created if isinstance(c, int)), default=0)
            refunds = self.stripe.refunded(account, since)
        return self.apply.settle(self._plan_page(raws, account, refunds, ctx))

    def _plan_page(self, raws: list[dict[str, Any]], account: str, refunds: Mapping[str, int],
                   ctx: PlanContext) -> list[Decision]:
        return self._plan_parsed(parse_page(raws, account, ctx.now_ms // 1000), account,
                                 refunds, ctx)

    def plan_refunds_aware(self, page: list[Parsed], account: str, refunds: AccountRefunds,
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

