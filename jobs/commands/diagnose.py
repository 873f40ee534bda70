"""`reconcile diagnose`: one person or one purchase, end to end, in plain words.

Finds the Checkout Sessions (`--email`: Stripe's `customer_details[email]` filter on every
account; `--session`: that id on the platform and every connected account; `--user`: the last
90 days of every account filtered on `metadata.userId`, since Stripe has no such filter), plans
them with the engine's own rules (`Reconciler.plan_sessions`), and shows each purchase's chain:
session, what it is, pass, student, existing subscriptions, verdict. `--fix` writes the plan for
exactly those purchases: deterministic ids, createIfNotExists, one transaction, the safety cap,
`--dry-run`; recorded in the ledger as a run of kind `diagnose`.

E-mails are shown on stdout (the operator asked for that person); logs mask them.

The parts: `jobs.run.find_sessions` finds and plans (`diagnose`), `jobs.core.purchase_view` builds
each
purchase's chain and verdict (pure), `jobs.reports.diagnosis` prints it; here are `--fix`
(`apply_fix`) and the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from jobs.adapters.ledger import RunStatus
from jobs.config.settings import Settings
from jobs.core import rules
from jobs.core.diagnosis import JSON, Diagnosis, Query
from jobs.core.documents import transaction_mutations
from jobs.core.errors import ConfigError, CredentialsRejected, ReconcilerError
from jobs.core.model import Decision
from jobs.core.purchase_view import to_json
from jobs.core.recheck import upgrade_completion
from jobs.core.runreport import RunReport
from jobs.reports.diagnosis import render_text
from jobs.run.find_sessions import diagnose

log = structlog.get_logger("jobs.diagnose")


class FixStore(Protocol):
    """What `--fix` needs of Sanity: the superseded documents, and transactions."""

    def get_documents(self, ids: Iterable[str]) -> list[dict[str, Any]]: ...

    def commit(self, mutations: Sequence[dict[str, Any]], transaction_id: str, *,
               dry_run: bool = False) -> Any: ...


class FixLedger(Protocol):
    """What `--fix` needs of the ledger: the `diagnose` run and its report."""

    def start_run(self, run_id: str, kind: str, since: datetime, until: datetime,
                  dry_run: bool, accounts: list[str], *, pid: int | None = None) -> None: ...

    def finish_run(self, run_id: str, status: RunStatus, report: RunReport | None,
                   error: str | None) -> None: ...

    def record_report(self, report: RunReport) -> None: ...


def apply_fix(diagnosis: Diagnosis, sanity: FixStore, ledger: FixLedger, *, run_id: str,
              dry_run: bool, max_creates: int, now: datetime,
              clock: Callable[[], datetime] = lambda: datetime.now(UTC),
              before_commit: Callable[[list[Any]], None] | None = None) -> JSON:
    """Write the planned creations of exactly these purchases in ONE transaction (or none),
    and record it as a `diagnose` run. Credentials refused propagate (exit 2).
    `before_commit` sees the purchases just before a real write (the student e-mails)."""
    decisions = diagnosis.decisions()
    creations = [d for d in decisions if d.creation is not None]
    times = [s.created for s, _, _ in diagnosis.purchases if s is not None]
    first, last = min(times, default=int(now.timestamp())), max(times, default=0) + 1
    report = RunReport(run_id=run_id, started_at=rules.iso_ms(int(now.timestamp() * 1000)),
                       since=rules.iso_ms(first * 1000), until=rules.iso_ms(
                           max(first + 1, last) * 1000), dry_run=dry_run)
    accounts = list(dict.fromkeys(d.account for d in decisions))
    for account in accounts:
        report.account(account)
    ledger.start_run(run_id, "diagnose", datetime.fromtimestamp(first, UTC),
                     datetime.fromtimestamp(max(first + 1, last), UTC), dry_run, accounts)
    error: str | None = None
    if len(creations) > max_creates:
        error = (f"safety cap: {len(creations)} subscriptions to create, more than "
                 f"max_creates={max_creates}; nothing written (raise --max-creates)")
    elif creations:
        try:
            if before_commit is not None and not dry_run:
                before_commit(creations)
            sanity.commit(transaction_mutations(creations), f"{run_id}-diagnose",
                          dry_run=dry_run)
        except CredentialsRejected as refused:
            ledger.finish_run(run_id, "failed", None, str(refused))
            raise
        except ReconcilerError as failure:
            error = f"write failed: {failure}"
    for decision in decisions:
        if decision.creation is not None and error is not None:
            report.add_write_failure(decision, error)
        else:
            report.add(decision)
    written = error is None
    completed, upgrade_error = _complete_upgrades(decisions, sanity, run_id, dry_run, now,
                                                  error)
    error = error or upgrade_error
    report.error = error
    report.cap_exceeded = error is not None and error.startswith("safety cap")
    report.finished_at = rules.iso_ms(int(clock().timestamp() * 1000))
    ledger.record_report(report)
    ledger.finish_run(run_id, "partial" if error else "ok", report, error)
    log.info("diagnose_fix", run_id=run_id, dry_run=dry_run, planned=len(creations),
             written=0 if not written or dry_run else len(creations), error=error)
    return {"run_id": run_id, "dry_run": dry_run, "error": error,
            "created": [d.subscription_ids[0] for d in creations] if written else [],
            "sessions": [d.session_id for d in creations], "upgrades_completed": completed}


def _complete_upgrades(decisions: list[Decision], sanity: FixStore, run_id: str, dry_run: bool,
                       now: datetime, error: str | None) -> tuple[list[str], str | None]:
    """`upgrade_incomplete`: deactivate the superseded subscription, one patch each, guarded
    by the revision just read (`ifRevisionID`): changed meanwhile, it is left as it is."""
    wanted = {a.subscription_ids[0]: d for d in decisions for a in d.anomalies
              if a.kind == "upgrade_incomplete" and a.subscription_ids}
    if not wanted or error is not None:
        return [], error
    now_ms = int(now.timestamp() * 1000)
    done: list[str] = []
    for old in sanity.get_documents(list(wanted)):
        patch = upgrade_completion(wanted[old["_id"]], old, now_ms)
        if patch is None:
            continue
        try:
            sanity.commit([patch], f"{run_id}-upgrade-{len(done)}", dry_run=dry_run)
        except CredentialsRejected:
            raise
        except ReconcilerError as failure:
            return done, f"upgrade of {old['_id']} not completed: {failure}"
        done.append(str(old["_id"]))
    return done, None

# ---- the command ------------------------------------------------------------------------


def cmd_diagnose(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.run.bootstrap import build_services
    from jobs.run.service import new_run_id
    from jobs.run.state import open_ledger, run_lock
    from jobs.run.student_mail import student_mail, tell_students

    query = Query(email=args.email, session=args.session, user=args.user)
    if query.session is not None and not query.session.startswith("cs_"):
        raise ConfigError("--session: not a Checkout Session id (cs_...)")
    if query.email is not None and "@" not in query.email:
        raise ConfigError("--email: not an e-mail address")
    if args.dry_run and not args.fix:
        raise ConfigError("--dry-run goes with --fix (diagnose alone writes nothing)")
    settings.require("stripe", "sanity")
    now = datetime.now(UTC)
    run_id = new_run_id(now)
    services = build_services(settings)
    result = diagnose(query, services.stripe, services.sanity, now=now, run_id=run_id)
    if args.fix:
        lock = run_lock(settings)
        if not lock.acquire(blocking=False, kind="diagnose"):
            result.fix = {"run_id": run_id, "dry_run": args.dry_run, "created": [],
                          "sessions": [], "error": "not fixed: another run holds the lock "
                          f"({lock.holder()}); try again when it has finished"}
        else:
            try:
                with open_ledger(settings) as ledger:
                    students = student_mail(settings, ledger, services.sanity, args.dry_run)
                    result.fix = apply_fix(
                        result, services.sanity, ledger, run_id=run_id, dry_run=args.dry_run,
                        max_creates=args.max_creates if args.max_creates is not None
                        else settings.run.max_creates, now=now,
                        before_commit=None if students is None else (
                            lambda ds: students.before_commit(ds, run_id)))
                    if students is not None:
                        # Owed only where Sanity holds this run's own document (the webhook
                        # may have written the purchase first).
                        told = tell_students(students, (), run_id)
                        result.fix["student_emails"] = None if told is None else told.to_json()
            finally:
                lock.release()
    view = to_json(result)
    if args.json:
        sys.stdout.write(json.dumps(view, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(render_text(view))
    return int(view["exit_code"])
