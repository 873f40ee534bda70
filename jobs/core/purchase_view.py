"""`reconcile diagnose`, the chain of each purchase in plain data (pure): session, what it
is, pass, student, existing subscriptions, verdict; and the command's exit code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.core import rules
from jobs.core.anomalies import explain as explain_anomaly
from jobs.core.diagnosis import JSON, Diagnosis
from jobs.core.matching import is_draft, matching_subscriptions, ref
from jobs.core.model import PLATFORM, Decision, Session
from jobs.core.reasons import PENDING, explain_failure, explain_reason

SHOWN_METADATA = ("type", "passId", "userId", "tenantId", "upgradeFromSubscriptionId", "classId")

IGNORED_WORDS = {
    "not_complete": "the checkout was never completed (abandoned or expired): nothing was bought",
    "not_paid": "the checkout completed without a payment, so no pass is due",
    "class_dropin": "a class drop-in (metadata classId): it becomes a booking, not a pass",
    "platform_plan": "a school's own platform plan (mode subscription), not a student's pass",
    "not_a_pass": "nothing in the payment says it is a pass purchase",
    "refunded": "the payment was refunded in full, so no pass is due",
}


def _sub_view(doc: Mapping[str, Any]) -> JSON:
    return {"_id": doc.get("_id"), "draft": is_draft(doc),
            "type": doc.get("type"), "passId": doc.get("passId") or ref(doc, "pass"),
            "passName": doc.get("passName"), "user": ref(doc, "user"),
            "tenant": ref(doc, "tenant"),
            "isActive": doc.get("isActive"), "startDate": doc.get("startDate"),
            "endDate": doc.get("endDate"), "remainingClips": doc.get("remainingClips"),
            "stripeSessionId": doc.get("stripeSessionId")}


def verdict(decision: Decision, fixed: JSON | None) -> tuple[str, str, str]:
    """(headline, meaning, fix) in plain words for one purchase."""
    o = decision.outcome
    if o == "created":
        sub = decision.subscription_ids[0] if decision.subscription_ids else "?"
        if fixed is not None and not fixed["error"] and not fixed["dry_run"]:
            return ("FIXED", f"created {sub}", "nothing more to do")
        return ("MISSING", f"no subscription records this purchase; the job would create {sub}",
                "run diagnose again with --fix (or wait for the next run)")
    if o == "already_present":
        return ("OK", "the purchase has its subscription: "
                + ", ".join(decision.subscription_ids), "nothing to do")
    if o == "needs_manual":
        e = explain_reason(decision.reason)
        return (f"NEEDS A PERSON ({decision.reason}): {e.title}",
                f"{e.meaning} ({decision.detail})", e.fix)
    if o == "pending":
        return ("PENDING", PENDING.meaning, PENDING.fix)
    if o == "ignored":
        return (f"NO PASS DUE ({decision.reason})",
                IGNORED_WORDS.get(decision.reason or "", decision.reason or ""), "nothing to do")
    e = explain_failure(decision.detail)
    return (f"FAILED: {e.title}", f"{e.meaning} ({decision.detail})", e.fix)


def purchase_view(d: Diagnosis, session: Session | None, raw: Mapping[str, Any],
                  decision: Decision) -> JSON:
    tenant = d.catalog.tenant_of_account(decision.account) if decision.account != PLATFORM else (
        d.catalog.tenants.get(decision.tenant or ""))
    found = raw.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    pass_ = d.catalog.passes.get(decision.pass_id or "")
    uid = d.clerk_ids.get(decision.session_id)
    existing = matching_subscriptions(session, d.subs) if session else []
    head, meaning, fix = verdict(decision, d.fix)
    return {
        "session_id": decision.session_id, "account": decision.account,
        "school": tenant.name if tenant else None, "tenant": tenant.id if tenant else None,
        "created": decision.paid_at, "status": raw.get("status"),
        "payment_status": raw.get("payment_status"), "mode": raw.get("mode"),
        "amount": decision.amount, "currency": decision.currency, "email": decision.email,
        "payment_intent": session.payment_intent if session else None,
        "metadata": {k: metadata[k] for k in SHOWN_METADATA if k in metadata},
        "line_items": d.line_items.get(decision.session_id),
        "outcome": decision.outcome, "reason": decision.reason, "detail": decision.detail,
        "verdict": head, "meaning": meaning, "fix": fix,
        "pass": None if pass_ is None else {
            "id": pass_.id, "name": pass_.name, "type": pass_.type,
            "subscription_type": rules.mapped_type(pass_.type),
            "classes_limit": pass_.classes_limit, "validity_type": pass_.validity_type,
            "validity_days": pass_.validity_days, "expiry_date": pass_.expiry_date,
            "is_active": pass_.is_active, "tenant": pass_.tenant_id,
            "school": school.name if (school := d.catalog.tenants.get(pass_.tenant_id or ""))
            else None},
        "student": {"user_id": uid, "documents": [
            u for u in d.users if uid and uid in (u.get("clerkId"), u.get("_id"))]},
        "existing": [_sub_view(s) for s in existing],
        "would_create": decision.subscription_ids[0] if decision.creation else None,
        "new_user": decision.creation.user["_id"] if decision.creation and
        decision.creation.user else None,
        "anomalies": [{"kind": a.kind, "title": explain_anomaly(a.kind).title,
                       "detail": a.detail, "subscription_ids": list(a.subscription_ids)}
                      for a in decision.anomalies],
    }


def to_json(d: Diagnosis) -> JSON:
    return {
        "query": d.query.describe(),
        "searched": [{"account": a, "error": d.found.errors.get(a)} for a in d.accounts],
        "notes": d.found.notes,
        "users": d.users,
        "subscriptions": [_sub_view(s) for s in d.subs],
        "purchases": [purchase_view(d, s, r, dec) for s, r, dec in d.purchases],
        "fix": d.fix,
        "exit_code": exit_code(d),
    }


def exit_code(d: Diagnosis) -> int:
    """1 when something needs a person: an unreadable account, a purchase not found, a purchase
    missing (and not fixed), needing manual action, failed, or showing an anomaly."""
    if d.found.errors or (d.query.session is not None and not d.purchases):
        return 1
    if d.fix is not None and d.fix.get("error"):
        return 1
    fixed = d.fix is not None and not d.fix["dry_run"]
    for decision in d.decisions():
        if decision.outcome in ("needs_manual", "failed") or decision.anomalies:
            return 1
        if decision.outcome == "created" and not fixed:
            return 1
    return 0
