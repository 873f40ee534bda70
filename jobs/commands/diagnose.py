"""`reconcile diagnose`: one person or one purchase, end to end, in plain words.

Finds the Checkout Sessions (`--email`: Stripe's `customer_details[email]` filter on every
account; `--session`: that id on the platform and every connected account; `--user`: the last
90 days of every account filtered on `metadata.userId`, since Stripe has no such filter), plans
them with the engine's own rules (`Reconciler.plan_sessions`), and shows each purchase's chain:
session, what it is, pass, student, existing subscriptions, verdict. `--fix` writes the plan for
exactly those purchases the way a run writes its own (`jobs.run.apply`): deterministic ids,
createIfNotExists, the safety cap, the re-check just before the write, `--dry-run`; recorded in
the ledger as a run of kind `diagnose`.

E-mails are shown on stdout (the operator asked for that person); logs mask them.

The parts: `jobs.run.find_sessions` finds and plans (`diagnose`), `jobs.core.purchase_view` builds
each purchase's chain and verdict (pure), `jobs.reports.diagnosis` prints it; here are `--fix`
(`apply_fix`) and the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog

from jobs.config.settings import Settings
from jobs.core import rules
from jobs.core.diagnosis import JSON, Diagnosis, Query
from jobs.core.errors import ConfigError, CredentialsRejected, ReconcilerError
from jobs.core.model import Decision
from jobs.core.ports import SanityStore
from jobs.core.purchase_view import to_json
from jobs.core.recheck import upgrade_completion
from jobs.core.records import RunStatus
from jobs.core.runreport import RunReport
from jobs.reports.diagnosis import render_text
from jobs.run.apply import ApplyStep
from jobs.run.batches import Batch
from jobs.run.find_sessions import diagnose
from jobs.run.reconcile import RunRequest

log = structlog.get_logger("jobs.diagnose")


class FixLedger(Protocol):
    """What `--fix` needs of the ledger: the `diagnose` run and its report."""

    def start_run(self, run_id: str, kind: str, since: datetime, until: datetime,
                  dry_run: bool, accounts: list[str], *, pid: int | None = None) -> None: ...

    def finish_run(self, run_id: str, status: RunStatus, report: RunReport | None,
                   error: str | None) -> None: ...

    def record_report(self, report: RunReport) -> None: ...


def _batches(creations: Sequence[Decision]) -> list[Batch]:
    """The planned creations as a run holds them: one batch per account, in order."""
    by_account: dict[str, list[Decision]] = {}
    for decision in creations:
        by_account.setdefault(decision.account, []).append(decision)
    return [Batch.of(account, 0, found) for account, found in by_account.items()]


def _fix_error(report: RunReport, planned: set[str]) -> str | None:
    """What kept the fix from writing: the cap, or the first planned write that failed (a
    malformed session found by the diagnosis is its verdict, not the fix's error)."""
    if report.cap_exceeded:
        return f"{report.error} (raise --max-creates)"
    return next((f.detail for f in report.failed if f.session_id in planned), None)


def apply_fix(diagnosis: Diagnosis, sanity: SanityStore, ledger: FixLedger, *, run_id: str,
              dry_run: bool, max_creates: int, now: datetime,
              clock: Callable[[], datetime] = lambda: datetime.now(UTC),
              before_commit: Callable[[Sequence[Decision]], None] | None = None) -> JSON:
    """Write the planned creations of exactly these purchases as a run writes its own
    (`jobs.run.apply.ApplyStep`: the safety cap, the re-check just before each write unit,
    the transactions, the dry run validated by Sanity), then complete half-done upgrades;
    recorded as a `diagnose` run. Credentials refused propagate (exit 2). `before_commit`
    sees a transaction's purchases just before its real write (the student e-mails)."""
    decisions = diagnosis.decisions()
    creations = [d for d in decisions if d.creation is not None]
    times = [s.created for s, _, _ in diagnosis.purchases if s is not None]
    first, last = min(times, default=int(now.timestamp())), max(times, default=0) + 1
    until = max(first + 1, last)
    report = RunReport(run_id=run_id, started_at=rules.iso_ms(int(now.timestamp() * 1000)),
                       since=rules.iso_ms(first * 1000), until=rules.iso_ms(until * 1000),
                       dry_run=dry_run)
    accounts = list(dict.fromkeys(d.account for d in decisions))
    for account in accounts:
        report.account(account)
    ledger.start_run(run_id, "diagnose", datetime.fromtimestamp(first, UTC),
                     datetime.fromtimestamp(until, UTC), dry_run, accounts)
    for decision in decisions:
        if decision.creation is None:
            report.add(decision)
    written: list[Decision] = []
    step = ApplyStep(sanity, workers=1, cancel=threading.Event(), before_commit=before_commit,
                     hand_over=written.extend)
    request = RunRequest(run_id=run_id, since=first, until=until, dry_run=dry_run,
                         validate=dry_run, max_creates=max_creates, kind="diagnose")
    try:
        if creations:
            step.apply(_batches(creations), report, request)
    except CredentialsRejected as refused:
        ledger.finish_run(run_id, "failed", None, str(refused))
        raise
    # The verdicts tell what the write found: a purchase the webhook wrote since the
    # diagnosis is present now, not fixed.
    settled = {d.session_id: d for d in written}
    diagnosis.purchases = [(s, raw, settled.get(d.session_id, d))
                           for s, raw, d in diagnosis.purchases]
    error = _fix_error(report, {d.session_id for d in creations})
    completed, upgrade_error = _complete_upgrades(decisions, sanity, run_id, dry_run, now,
                                                  error)
    error = error or upgrade_error
    report.error = error
    report.finished_at = rules.iso_ms(int(clock().timestamp() * 1000))
    ledger.record_report(report)
    ledger.finish_run(run_id, "partial" if error else "ok", report, error)
    log.info("diagnose_fix", run_id=run_id, dry_run=dry_run, planned=len(creations),
             written=0 if dry_run else len(report.created), error=error)
    return {"run_id": run_id, "dry_run": dry_run, "error": error,
            "created": [d.subscription_ids[0] for d in report.created if d.subscription_ids],
            "sessions": [d.session_id for d in creations], "upgrades_completed": completed}


def _complete_upgrades(decisions: list[Decision], sanity: SanityStore, run_id: str, dry_run: bool,
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
    from jobs.run.compose import build_services, open_ledger, run_lock, student_mail
    from jobs.run.service import new_run_id
    from jobs.run.student_mail import tell_students

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
                    students = student_mail(settings, ledger, services.sanity,
                                            dry_run=args.dry_run)
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
