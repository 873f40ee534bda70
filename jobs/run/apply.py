"""The apply step of a pass: the safety cap, then the write or the dry run.

Writing starts only when the whole window is planned, because the cap must know the total: a
run that would create more than `max_creates` subscriptions writes nothing. Each write unit's
purchases are re-checked against Sanity just before the write (`jobs.core.recheck`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from jobs.core.documents import transaction_mutations
from jobs.core.errors import AccountError, CredentialsRejected, ReconcilerError, WriteRejected
from jobs.core.model import Decision
from jobs.core.ports import SanityStore
from jobs.core.recheck import recheck
from jobs.core.runreport import RunReport
from jobs.run.batches import Batch, Transaction, transactions, write_units

if TYPE_CHECKING:
    from jobs.run.reconcile import RunRequest

log = structlog.get_logger("jobs.reconcile")


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


class ApplyStep:
    """Cap, write, dry run: the one place a run's planned creations reach Sanity."""

    def __init__(self, sanity: SanityStore, *, workers: int, cancel: threading.Event,
                 before_commit: Callable[[Sequence[Decision]], None] | None,
                 hand_over: Callable[[Iterable[Decision]], None]) -> None:
        """`workers`: write units at once; `cancel`: a stop finishes the transaction under way
        and writes no more; `before_commit` hears of a transaction's purchases just before
        its write; `hand_over` takes the decisions written (the already-present ones go to
        the ledger)."""
        self.sanity = sanity
        self.workers = workers
        self.cancel = cancel
        self.before_commit = before_commit
        self.hand_over = hand_over

    def apply(self, batches: list[Batch], report: RunReport, req: RunRequest) -> None:
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
                    self.hand_over([d for d, error in outcomes if error is None])
            log.info("write_finished", run_id=req.run_id, transactions=len(txs),
                     purchases=planned, seconds=round(time.monotonic() - started, 3))

    @staticmethod
    def _not_written(batches: list[Batch], report: RunReport, why: str) -> None:
        for batch in batches:
            for decision in batch.decisions():
                report.add_write_failure(decision, why)

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
