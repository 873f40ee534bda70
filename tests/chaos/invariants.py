"""What must hold after any run, faults or not, and after the runs settle.

Each check returns a list of violations (strings naming the session or document), so a
failing test says exactly what broke. The truth is the world generator's (independent of the
job's planner); the Stripe data gives each session's account and payment intent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandbox.world.generate import World
from tests.e2e.harness import comparable, expected_changes, state_problems

Docs = Mapping[str, Mapping[str, Any]]
FINAL_STATUSES = {"ok", "partial", "failed", "interrupted"}


def session_index(world: World) -> dict[str, tuple[str, str | None]]:
    """session id -> (account, payment intent) over every account of the world."""
    out: dict[str, tuple[str, str | None]] = {}
    for account, data in world.stripe["data"].items():
        for session in data.get("checkout_sessions", []):
            pi = session.get("payment_intent")
            pi = pi.get("id") if isinstance(pi, dict) else pi
            out[str(session.get("id"))] = (account, pi if isinstance(pi, str) and pi else None)
    return out


class Records:
    """Published subscriptions indexed by what records a purchase: session id, payment
    intent (any of the three fields) and the deterministic id."""

    def __init__(self, docs: Docs) -> None:
        self.by_session: dict[str, set[str]] = {}
        self.by_pi: dict[str, set[str]] = {}
        self.ids: set[str] = set()
        for doc_id, doc in docs.items():
            if doc.get("_type") != "subscription" or doc_id.startswith("drafts."):
                continue
            self.ids.add(doc_id)
            sid = doc.get("stripeSessionId")
            if isinstance(sid, str):
                self.by_session.setdefault(sid, set()).add(doc_id)
            for key in ("stripePaymentId", "stripePaymentIntentId", "paymentId"):
                pi = doc.get(key)
                if isinstance(pi, str) and pi:
                    self.by_pi.setdefault(pi, set()).add(doc_id)

    def of(self, session_id: str, pi: str | None) -> list[str]:
        found = set(self.by_session.get(session_id, ()))
        if pi:
            found |= self.by_pi.get(pi, set())
        own = f"subscription-{session_id}"
        if own in self.ids:
            found.add(own)
        return sorted(found)


def recording(docs: Docs | Records, session_id: str, pi: str | None) -> list[str]:
    """Published subscriptions that record this purchase (session id, payment intent, or the
    deterministic id), the way the app and the job both look for them."""
    records = docs if isinstance(docs, Records) else Records(docs)
    return records.of(session_id, pi)


def write_invariants(world: World, truth: Mapping[str, Any], before: Docs,
                     after: Docs) -> list[str]:
    """Hold after every run, even one cut short: no doubles, nothing for what must not be
    created, no half-applied transaction, nothing written that the truth does not call for."""
    index = session_index(world)
    problems: list[str] = []
    creates, _ = expected_changes(truth)
    records_before, records_after = Records(before), Records(after)
    for sid, entry in truth["sessions"].items():
        _, pi = index.get(sid, ("?", None))
        was, now = records_before.of(sid, pi), records_after.of(sid, pi)
        if entry["outcome"] == "created":
            if len(now) > 1:
                problems.append(f"{sid}: {len(now)} subscriptions {now} (must be at most one)")
        elif now != was:
            problems.append(f"{sid} ({entry['outcome']} {entry['reason']}): subscriptions "
                            f"changed from {was} to {now}")
        old = entry.get("deactivates")
        if old and entry["outcome"] == "created":
            new_id = entry["expected"]["_id"]
            deactivated = after.get(old, {}).get("isActive") is False
            if (new_id in after) != deactivated:
                problems.append(f"upgrade {sid} half applied: new {new_id} "
                                f"{'exists' if new_id in after else 'missing'}, old {old} "
                                f"{'deactivated' if deactivated else 'active'}")
    for doc_id in sorted(set(after) - set(before)):
        if doc_id not in creates:
            problems.append(f"unexpected new document {doc_id}")
    created_users = {d for d in set(after) - set(before) if after[d].get("_type") == "user"}
    referenced = {str((after[d].get("user") or {}).get("_ref")) for d in set(after) - set(before)
                  if after[d].get("_type") == "subscription"}
    for user in sorted(created_users - referenced):
        problems.append(f"user {user} created without its subscription (half-applied)")
    upgraded = {e["deactivates"] for e in truth["sessions"].values()
                if e["outcome"] == "created" and e.get("deactivates")}
    for doc_id, doc in before.items():
        changed = after.get(doc_id)
        if changed is None:
            problems.append(f"{doc_id} vanished")
        elif doc_id not in upgraded and comparable(changed) != comparable(doc):
            problems.append(f"{doc_id} was changed")
    return problems


def settled_invariants(world: World, truth: Mapping[str, Any], before: Docs,
                       after: Docs) -> list[str]:
    """Hold once a clean run has followed the faults: exactly the truth's end state."""
    index = session_index(world)
    problems = list(state_problems(truth, before, after))
    records = Records(after)
    for sid, entry in truth["sessions"].items():
        if entry["outcome"] == "created":
            _, pi = index.get(sid, ("?", None))
            found = records.of(sid, pi)
            if len(found) != 1:
                problems.append(f"{sid}: paid pass has {len(found)} subscriptions {found}")
    return problems


def report_honesty(world: World, truth: Mapping[str, Any], report: Mapping[str, Any] | None,
                   after: Docs) -> list[str]:
    """What a finished run says against what Sanity holds right after it.

    Every `created` exists; a purchase still missing is named (failed) or its account is
    reported unreadable; 'nothing needs a person' is only said when nothing is missing."""
    if report is None:
        return []
    index = session_index(world)
    problems: list[str] = []
    failed = {f.get("session_id") for f in report.get("failed") or ()}
    broken = {a["account"] for a in report.get("accounts") or () if a.get("error")}
    for item in report.get("created") or ():
        if not report.get("dry_run") and item["subscription_id"] not in after:
            problems.append(f"report says created {item['subscription_id']}, Sanity lacks it")
    if report.get("dry_run") or report.get("cap_exceeded") or report.get("error"):
        return problems
    records = Records(after)
    for sid, entry in truth["sessions"].items():
        if entry["outcome"] != "created":
            continue
        account, pi = index.get(sid, ("?", None))
        if records.of(sid, pi) or sid in failed or account in broken:
            continue
        problems.append(f"{sid} is missing after the run and the report does not say so")
    return problems


def ledger_invariants(runs: Sequence[Mapping[str, Any]], sessions: Iterable[Mapping[str, Any]],
                      after: Docs, *, settled: bool) -> list[str]:
    """The ledger agrees with Sanity and its run statuses are honest."""
    problems: list[str] = []
    for row in sessions:
        if row["outcome"] == "created" and row.get("subscription_id") not in after:
            problems.append(f"ledger says {row['session_id']} created "
                            f"{row.get('subscription_id')}, Sanity lacks it")
    for run in runs:
        status = run["status"]
        if status == "running":
            if settled:
                problems.append(f"run {run['run_id']} still 'running' after the runs settled")
            continue
        if status not in FINAL_STATUSES:
            problems.append(f"run {run['run_id']} has status {status!r}")
            continue
        counts = json.loads(run["counts"]) if run.get("counts") else None
        errors = json.loads(run["account_errors"]) if run.get("account_errors") else {}
        if status == "ok" and (run.get("error") or errors or (counts or {}).get("failed")):
            problems.append(f"run {run['run_id']} 'ok' but error={run.get('error')!r} "
                            f"accounts={errors} failed={(counts or {}).get('failed')}")
        if status == "partial" and not (errors or (counts or {}).get("failed")
                                        or run.get("error")):
            problems.append(f"run {run['run_id']} 'partial' with nothing failed")
        if status == "failed" and not (run.get("error") or errors):
            problems.append(f"run {run['run_id']} 'failed' without a cause")
    return problems
