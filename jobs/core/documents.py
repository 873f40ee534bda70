"""Pure: the document a purchase's creation writes (the subscription), and the mutations of
several purchases as one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobs.core import rules
from jobs.core.classify import PurchaseKeys
from jobs.core.matching import Doc, subscription_id
from jobs.core.model import (
    Decision,
    Pass,
    PlanContext,
    Session,
)


def transaction_mutations(decisions: Iterable[Decision]) -> list[dict[str, Any]]:
    """The mutations of several purchases as one transaction: each new student created once."""
    out: list[dict[str, Any]] = []
    created: set[str] = set()
    for decision in decisions:
        if decision.creation is None:
            continue
        for mutation in decision.creation.mutations():
            doc = mutation.get("createIfNotExists")
            if doc is not None:
                if doc["_id"] in created:
                    continue
                created.add(doc["_id"])
            out.append(mutation)
    return out


def subscription_document(session: Session, keys: PurchaseKeys, pass_: Pass,
                          grant: rules.Entitlement, start_ms: int, end_ms: int, tenant_id: str,
                          user_ref: str, old: Doc | None, ctx: PlanContext) -> dict[str, Any]:
    """The subscription the app's webhook would have written for this purchase, marked as
    recovered by this run (an upgrade names the subscription it upgrades)."""
    md = session.metadata
    doc: dict[str, Any] = {
        "_id": subscription_id(session.id),
        "_type": "subscription",
        "user": {"_type": "reference", "_ref": user_ref},
        "tenant": {"_type": "reference", "_ref": tenant_id},
        "type": grant.type,
        "startDate": rules.iso_ms(start_ms),
        "endDate": rules.iso_ms(end_ms),
    }
    if grant.remaining_clips is not None:
        doc["remainingClips"] = grant.remaining_clips
    doc["passId"] = pass_.id
    doc["passName"] = pass_.name
    if old is not None:
        doc.update(rules.upgrade_amounts(session, md, pass_))
        doc["isUpgrade"] = True
        doc["upgradedFromSubscriptionId"] = old["_id"]
    else:
        doc.update(rules.purchase_amounts(session, md, pass_))
    doc["stripePaymentId"] = session.payment_intent
    doc["stripeSessionId"] = session.id
    doc["isActive"] = True
    doc["createdViaRecovery"] = True
    doc["recoveredAt"] = rules.iso_ms(ctx.now_ms)
    doc["reconcileRunId"] = ctx.run_id
    return doc
