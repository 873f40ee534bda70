"""Sanity `subscription` documents of every shape the app's history left behind, and the document
a correct reconciler would create (domain.md §1.2, §1.3, §2.4-§2.6).

This is the generator's own reading of the rules, written independently of the job's planner so
that truth.json checks it rather than repeats it.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sandbox.world.ids import DAY_MS, Ids, iso_ms, iso_s, num, ref

Doc = dict[str, Any]

SUB_TYPE = {"single": "single", "multi-pass": "multi-pass", "multi": "clipcard",
            "unlimited": "monthly"}


@functools.lru_cache(maxsize=1 << 12)
def parse_ms(iso: str) -> int:
    """`2026-08-19T18:20:00.000Z` -> unix milliseconds."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def end_ms(pass_doc: Doc, base_ms: int) -> int | None:
    """§2.5 end date, first rule that applies; None when the pass has no valid configuration."""
    validity_type = pass_doc.get("validityType")
    days = pass_doc.get("validityDays")
    if validity_type == "date" and pass_doc.get("expiryDate"):
        return parse_ms(pass_doc["expiryDate"])
    if validity_type in ("days", None) and isinstance(days, int) and days >= 1:
        return base_ms + days * DAY_MS
    return None


def clips(pass_doc: Doc) -> int | None:
    """§2.4 `remainingClips` (None for monthly)."""
    if pass_doc["type"] == "single":
        return 1
    if pass_doc["type"] == "unlimited":
        return None
    return int(pass_doc["classesLimit"])


def _price(metadata: Doc, key: str) -> float | None:
    value = metadata.get(key)
    if isinstance(value, str) and value:
        return float(value)
    return None


def expected_subscription(
    session: Doc,
    pass_doc: Doc,
    *,
    tenant_id: str,
    user_ref: str,
    upgrade_from: str | None = None,
    head: Doc | None = None,
    base_ms: int | None = None,
) -> Doc:
    """The document a correct reconciler creates for a paid session (without the run markers
    `createdViaRecovery`, `recoveredAt`, `reconcileRunId`).

    `head` replaces `_id`/`_type` (other system fields); `base_ms` is the webhook's processing
    time, the base of its end date (and, for upgrades, its start date)."""
    created_ms = session["created"] * 1000
    end = end_ms(pass_doc, created_ms if base_ms is None else base_ms)
    assert end is not None, "only passes with an expiry configuration get a subscription"
    start_ms = base_ms if base_ms is not None and upgrade_from is not None else created_ms
    metadata = session["metadata"]
    amount = session["amount_total"]
    doc: Doc = head or {"_id": f"subscription-{session['id']}", "_type": "subscription"}
    doc.update({
        "user": ref(user_ref),
        "tenant": ref(tenant_id),
        "type": SUB_TYPE[pass_doc["type"]],
        "startDate": iso_ms(start_ms),
        "endDate": iso_ms(end),
    })
    remaining = clips(pass_doc)
    if remaining is not None:
        doc["remainingClips"] = remaining
    doc["passId"] = pass_doc["_id"]
    doc["passName"] = pass_doc["name"]
    if upgrade_from is None:
        paid = amount / 100 if amount else pass_doc["price"]
        original = _price(metadata, "originalPrice")
        final = _price(metadata, "finalPrice")
        doc["purchasePrice"] = num(paid)
        doc["originalPrice"] = num(pass_doc["price"] if original is None else original)
        doc["finalPrice"] = num(paid if final is None else final)
        doc["discountAmount"] = num(_price(metadata, "discountAmount") or 0)
        doc["promoCode"] = metadata.get("promoCode") or None
    else:
        # §1.3 upgrade shape: price of the new pass, the upgrade cost, no promo fields.
        new_price = _price(metadata, "newPassPrice")
        cost = _price(metadata, "upgradeCost")
        doc["purchasePrice"] = num(pass_doc["price"] if new_price is None else new_price)
        doc["isUpgrade"] = True
        doc["upgradedFromSubscriptionId"] = upgrade_from
        doc["upgradeCost"] = num(amount / 100 if cost is None else cost)
    doc["stripePaymentId"] = session["payment_intent"]
    doc["stripeSessionId"] = session["id"]
    doc["isActive"] = True
    return doc


def expected_user(clerk_id: str, details: Doc | None) -> Doc:
    """The user doc the job creates for a Clerk id nobody knows (§1.5 webhook shape, without
    the time-dependent `createdAt`/`updatedAt`)."""
    details = details or {}
    return {"_id": f"user-{clerk_id}", "_type": "user", "clerkId": clerk_id,
            "name": details.get("name") or "Customer", "email": details.get("email") or "",
            "role": "student", "isActive": True}


def system_fields(ids: Ids, doc_id: str, created_s: int) -> Doc:
    """`_id`, `_type` and the Sanity system fields of a subscription created at `created_s`."""
    return {"_id": doc_id, "_type": "subscription", "_createdAt": iso_s(created_s),
            "_updatedAt": iso_s(created_s), "_rev": ids.rev()}


def webhook_subscription(
    ids: Ids,
    session: Doc,
    pass_doc: Doc,
    *,
    tenant_id: str,
    user_ref: str,
    event_id: str,
    processed_s: int,
    upgrade_from: str | None = None,
    doc_id: str | None = None,
) -> Doc:
    """What the HEAD webhook wrote (§1.3): end date from processing time, webhook markers;
    upgrades also start at processing time."""
    doc = expected_subscription(
        session, pass_doc, tenant_id=tenant_id, user_ref=user_ref, upgrade_from=upgrade_from,
        head=system_fields(ids, doc_id or ids.sanity(), processed_s),
        base_ms=processed_s * 1000)
    doc["webhookEventId"] = event_id
    doc["createdViaWebhook"] = True
    return doc


def alternate_shape(
    ids: Ids, session: Doc, pass_doc: Doc, *, user_ref: str, tenant_id: str, created_s: int
) -> Doc:
    """The broken shape `fix-dancecity-missing-subscriptions.mjs` wrote (§1.2): no `type`,
    `startDate`, `endDate` or `passId`, so the app never shows it."""
    doc = system_fields(ids, ids.sanity(), created_s)
    end = end_ms(pass_doc, session["created"] * 1000) or session["created"] * 1000
    doc.update(
        {
            "user": ref(user_ref),
            "tenant": ref(tenant_id),
            "pass": ref(pass_doc["_id"]),
            "status": "active",
            "purchaseDate": iso_ms(session["created"] * 1000),
            "expiryDate": iso_ms(end),
            "classesUsed": 0,
            "classesLimit": pass_doc.get("classesLimit") or 1,
            "stripeSessionId": session["id"],
            "stripePaymentIntentId": session["payment_intent"],
            "amount": session["amount_total"],
            "currency": "nok",
        }
    )
    return doc


def historic_subscription(
    ids: Ids,
    pass_doc: Doc,
    *,
    user_ref: str,
    tenant_id: str | None,
    start_s: int,
    end_s: int,
    session_id: str | None,
    payment_id: str | None,
    active: bool = True,
    extra: Doc | None = None,
) -> Doc:
    """A subscription from before the window (webhook- or hand-made), e.g. an upgrade's source
    or background history; `session_id`/`payment_id` None leave those fields out."""
    doc = system_fields(ids, ids.sanity(), start_s)
    doc["user"] = ref(user_ref)
    if tenant_id is not None:
        doc["tenant"] = ref(tenant_id)
    doc["type"] = SUB_TYPE.get(pass_doc["type"], "single")
    doc["startDate"] = iso_ms(start_s * 1000)
    doc["endDate"] = iso_ms(end_s * 1000)
    remaining = clips(pass_doc) if pass_doc["type"] in SUB_TYPE else 1
    if remaining is not None:
        doc["remainingClips"] = remaining
    doc["passId"] = pass_doc["_id"]
    doc["passName"] = pass_doc["name"]
    doc["purchasePrice"] = pass_doc["price"]
    if payment_id is not None:
        doc["stripePaymentId"] = payment_id
    if session_id is not None:
        doc["stripeSessionId"] = session_id
    doc["isActive"] = active
    if extra:
        doc.update(extra)
    return doc
