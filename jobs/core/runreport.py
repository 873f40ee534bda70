"""The run report of design.md: built from decisions, rendered as the JSON contract."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from jobs.core.model import Anomaly, Decision

COUNT_KEYS = ("sessions_scanned", "pass_purchases", "already_present", "created", "needs_manual",
              "pending", "failed", "ignored")


@dataclass
class AccountSummary:
    account: str
    tenant: str | None
    pages: int = 0
    sessions: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "tenant": self.tenant, "pages": self.pages,
                "sessions": self.sessions, "error": self.error}


def _one(value: str | None) -> str | None:
    """One shared copy of a value rows repeat (an account, a school, a pass): the decisions
    of a large run come back from their compressed batches each with copies of their own."""
    return sys.intern(value) if value is not None else None


def _kept(d: Decision) -> Decision:
    """A decision as the report keeps it: without its documents (written, or never to be)
    and its anomalies (listed apart), the values rows repeat shared."""
    return replace(d, account=sys.intern(d.account), tenant=_one(d.tenant),
                   reason=_one(d.reason), currency=_one(d.currency), pass_id=_one(d.pass_id),
                   pass_name=_one(d.pass_name), anomalies=(), creation=None)


def _failure(session_id: str, account: str, error: str) -> Decision:
    """A failed session: of a malformed one, or one whose write failed, only its id, its
    account and the error are sure."""
    return Decision(session_id, sys.intern(account), "failed", detail=error)


@dataclass
class RunReport:
    """What one run did. Each list holds the decisions of its outcome (a failed one's
    `detail` is the error); purchases found already present are only counted (the ledger
    records them as they are found). `to_json` is design.md's report, for printing."""

    run_id: str
    started_at: str
    since: str
    until: str
    dry_run: bool
    finished_at: str | None = None
    accounts: dict[str, AccountSummary] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    created: list[Decision] = field(default_factory=list)
    needs_manual: list[Decision] = field(default_factory=list)
    pending: list[Decision] = field(default_factory=list)
    failed: list[Decision] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    anomalies: list[Anomaly] = field(default_factory=list)
    cap_exceeded: bool = False
    error: str | None = None

    def account(self, name: str, tenant: str | None = None) -> AccountSummary:
        if name not in self.accounts:
            self.accounts[name] = AccountSummary(name, tenant)
        return self.accounts[name]

    def add(self, d: Decision) -> None:
        """Count one session's outcome; every session lands in exactly one list or count."""
        self.counts["sessions_scanned"] += 1
        if d.outcome in ("created", "already_present", "needs_manual"):
            self.counts["pass_purchases"] += 1
        self.counts[d.outcome] += 1
        self.anomalies.extend(d.anomalies)
        if d.outcome == "created":
            self.created.append(_kept(d))
        elif d.outcome == "needs_manual":
            self.needs_manual.append(_kept(d))
        elif d.outcome == "pending":
            self.pending.append(_kept(d))
        elif d.outcome == "failed":
            self.failed.append(_failure(d.session_id, d.account, d.detail))
        elif d.outcome == "ignored":
            self.ignored[d.reason or "unknown"] += 1

    def add_write_failure(self, d: Decision, error: str) -> None:
        """A planned creation whose transaction failed: a pass purchase that needs a person."""
        self.counts["sessions_scanned"] += 1
        self.counts["pass_purchases"] += 1
        self.counts["failed"] += 1
        self.failed.append(_failure(d.session_id, d.account, error))

    def totals(self) -> dict[str, int]:
        """Every count of design.md, zeros included, in its order."""
        return {k: self.counts.get(k, 0) for k in COUNT_KEYS}

    @property
    def needs_person(self) -> bool:
        return bool(self.needs_manual or self.failed or self.cap_exceeded or self.error
                    or any(a.error for a in self.accounts.values()))

    def exit_code(self) -> int:
        return 1 if self.needs_person else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "dry_run": self.dry_run,
            "window": {"since": self.since, "until": self.until},
            "accounts": [a.to_json() for a in self.accounts.values()],
            "counts": self.totals(),
            "created": [_created_json(d) for d in self.created],
            "needs_manual": [_needs_manual_json(d) for d in self.needs_manual],
            "pending": [{"session_id": d.session_id, "account": d.account, "reason": d.reason,
                         "paid_at": d.paid_at} for d in self.pending],
            "failed": [{"session_id": d.session_id, "account": d.account, "error": d.detail}
                       for d in self.failed],
            "ignored": dict(sorted(self.ignored.items())),
            "anomalies": [{"kind": a.kind, "session_id": a.session_id,
                           "subscription_ids": list(a.subscription_ids), "detail": a.detail}
                          for a in self.anomalies],
            "cap_exceeded": self.cap_exceeded,
            "error": self.error,
        }


def _created_json(d: Decision) -> dict[str, Any]:
    return {"session_id": d.session_id, "account": d.account, "tenant": d.tenant,
            "subscription_id": d.subscription_ids[0] if d.subscription_ids else None,
            "user_id": d.user_id, "pass_id": d.pass_id, "pass_name": d.pass_name,
            "email": d.email, "amount": d.amount, "currency": d.currency, "paid_at": d.paid_at}


def _needs_manual_json(d: Decision) -> dict[str, Any]:
    return {"session_id": d.session_id, "account": d.account, "reason": d.reason,
            "detail": d.detail, "email": d.email, "amount": d.amount, "currency": d.currency,
            "tenant": d.tenant, "pass_id": d.pass_id, "pass_name": d.pass_name,
            "paid_at": d.paid_at}
