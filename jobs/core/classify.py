"""Pure: what a raw Stripe Checkout Session is, before anything is looked up in Sanity.

First match wins (docs/architecture.md): malformed -> failed; not complete; platform plan;
class drop-in; no pass evidence; unpaid (pending) or otherwise not paid; refunded; else a
pass purchase candidate with the keys it carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jobs.core.model import PLATFORM, Catalog, LineItem, ListedItem, Session

PASS_KINDS = ("pass_purchase", "pass_upgrade")
# `subscription-<session id>` must stay a valid, public Sanity id (<= 128 chars, no dots).
_SESSION_ID = re.compile(r"^[A-Za-z0-9_]{1,115}$")
_KEYS = ("passId", "userId", "tenantId", "upgradeFromSubscriptionId")
FUTURE_SKEW_S = 300


@dataclass(frozen=True)
class PurchaseKeys:
    """The keys of a pass purchase, each from session metadata or the line item."""

    kind: str  # pass_purchase | pass_upgrade
    pass_id: str | None
    user_id: str | None
    tenant_id: str | None
    upgrade_from: str | None
    pass_via: str | None  # metadata | product_metadata | description


@dataclass(frozen=True)
class Classified:
    """One session and what it is: outcome `candidate` goes on to the planner."""

    session_id: str
    account: str
    outcome: str  # candidate | ignored | pending | failed
    kind: str | None = None  # ignored/pending kind, or the failure text
    session: Session | None = None
    keys: PurchaseKeys | None = None


def text(value: Any) -> str | None:
    """A metadata value that counts: a non-empty string."""
    return value if isinstance(value, str) and value.strip() else None


def parse_session(raw: Any, account: str, now_s: int) -> Session | str:
    """The session as data, or the one-line reason it cannot be used."""
    if not isinstance(raw, Mapping):
        return "malformed session: not an object"
    sid = raw.get("id")
    if not isinstance(sid, str) or not _SESSION_ID.match(sid):
        return "malformed session: id missing or not a Stripe id"
    created = raw.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or created <= 0:
        return "malformed session: created is not a timestamp"
    if created > now_s + FUTURE_SKEW_S:
        return "malformed session: created lies in the future"
    metadata = raw.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        return "malformed session: metadata is not an object"
    amount = raw.get("amount_total")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        return "malformed session: amount_total is not an integer"
    if amount is not None and amount < 0:
        return "malformed session: amount_total is negative"
    details = raw.get("customer_details")
    details = details if isinstance(details, Mapping) else {}
    pi = raw.get("payment_intent")
    if isinstance(pi, Mapping):  # expanded
        pi = pi.get("id")
    livemode = raw.get("livemode")
    session = Session(
        id=sid,
        account=account,
        created=created,
        status=_str(raw.get("status")),
        mode=_str(raw.get("mode")),
        payment_status=_str(raw.get("payment_status")),
        payment_intent=text(pi),
        amount_total=amount,
        currency=_str(raw.get("currency")),
        metadata=dict(metadata),
        email=text(details.get("email")) or text(raw.get("customer_email")),
        name=text(details.get("name")),
        livemode=livemode if isinstance(livemode, bool) else None,
    )
    if needs_line_items(session):
        session = replace(session, line_items=listed_line_items(raw.get("line_items")))
    return session


Parsed = Session | tuple[str, str]  # a session, or (its id or "", why it is malformed)


def parse_page(raws: Iterable[Any], account: str, now_s: int) -> list[Parsed]:
    """A page's raw sessions as the small `Session` values planning needs (the raw dicts can
    go at once); a malformed one as (id, reason)."""
    out: list[Parsed] = []
    for raw in raws:
        parsed = parse_session(raw, account, now_s)
        if isinstance(parsed, str):
            sid = raw.get("id") if isinstance(raw, Mapping) else None
            out.append((sid if isinstance(sid, str) else "", parsed))
        else:
            out.append(parsed)
    return out


def mode_conflict(raw: Any, key_mode: str | None) -> str | None:
    """Why a session cannot have come from an account of the key's mode (§4#18), or None.

    A live key seeing test data (or the reverse) means the configuration points at the wrong
    place: nothing of that run may be written."""
    if key_mode not in ("live", "test") or not isinstance(raw, Mapping):
        return None
    raw_id = raw.get("id")
    sid = raw_id if isinstance(raw_id, str) else ""
    livemode = raw.get("livemode")
    if sid.startswith("cs_live_") or livemode is True:
        seen = "live"
    elif sid.startswith("cs_test_") or livemode is False:
        seen = "test"
    else:
        return None
    if seen == key_mode:
        return None
    return (f"STRIPE_SECRET_KEY is a {key_mode}-mode key but Stripe returned {seen}-mode "
            f"session {sid or '?'}: refusing to write")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_line_items(raw: Any) -> list[LineItem]:
    """Line items (with `price.product` expanded) as data; junk entries are skipped."""
    items = raw.get("data") if isinstance(raw, Mapping) else raw
    out: list[LineItem] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        price = item.get("price") if isinstance(item.get("price"), Mapping) else {}
        product = price.get("product") if isinstance(price, Mapping) else None
        meta = product.get("metadata") if isinstance(product, Mapping) else None
        out.append(LineItem(
            description=text(item.get("description")),
            product_metadata=dict(meta) if isinstance(meta, Mapping) else {},
        ))
    return out


def listed_line_items(raw: Any) -> tuple[ListedItem, ...] | None:
    """Line items as listed with their session, or None when they were not listed or the
    list is incomplete (`has_more`); junk entries are skipped."""
    if not isinstance(raw, Mapping) or raw.get("has_more") is not False:
        return None
    items = raw.get("data")
    if not isinstance(items, list):
        return None
    out: list[ListedItem] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        price = item.get("price")
        product = price.get("product") if isinstance(price, Mapping) else None
        if isinstance(product, Mapping):  # expanded after all
            product = product.get("id")
        out.append(ListedItem(text(item.get("description")),
                              product if isinstance(product, str) and product else None))
    return tuple(out)


def with_products(listed: Sequence[ListedItem],
                  products: Mapping[str, Mapping[str, Any]]) -> list[LineItem]:
    """Listed line items completed with their products' metadata (a product not found,
    e.g. deleted, has none: the description is then the only evidence)."""
    out: list[LineItem] = []
    for item in listed:
        product = products.get(item.product_id) if item.product_id else None
        meta = product.get("metadata") if isinstance(product, Mapping) else None
        out.append(LineItem(item.description, dict(meta) if isinstance(meta, Mapping) else {}))
    return out


def needs_line_items(session: Session) -> bool:
    """Only a session whose own metadata lacks a key is worth one more request."""
    if session.status != "complete" or session.mode == "subscription":
        return False
    md = session.metadata
    if text(md.get("classId")):
        return False
    if text(md.get("type")) not in (None, *PASS_KINDS):
        return False  # an explicit non-pass type: nothing on the line item changes that
    if text(md.get("type")) == "pass_upgrade" and not text(md.get("upgradeFromSubscriptionId")):
        return True
    return not (text(md.get("passId")) and text(md.get("userId")))


def _tenant_for_names(session: Session, catalog: Catalog) -> str | None:
    """Whose catalogue a line-item description is looked up in: only a connected account
    says which school sold it (§4#9); the platform account has no catalogue of its own."""
    if session.account == PLATFORM:
        return None
    tenant = catalog.tenant_of_account(session.account)
    return tenant.id if tenant else None


def purchase_keys(
    session: Session, line_items: Sequence[LineItem], catalog: Catalog
) -> PurchaseKeys | None:
    """The pass keys, metadata first, then line-item product metadata, then description."""
    md = session.metadata
    product = line_items[0].product_metadata if line_items else {}
    found: dict[str, str | None] = {}
    for key in _KEYS:
        found[key] = text(md.get(key)) or text(product.get(key))
    pass_via = None
    if text(md.get("passId")):
        pass_via = "metadata"
    elif text(product.get("passId")):
        pass_via = "product_metadata"
    else:
        tenant_id = _tenant_for_names(session, catalog)
        description = line_items[0].description if line_items else None
        if tenant_id and description:
            named = catalog.passes_named(tenant_id, description)
            if len(named) == 1:
                found["passId"], pass_via = named[0].id, "description"
    md_type = text(md.get("type"))
    upgrade = md_type == "pass_upgrade" or text(product.get("isUpgrade")) == "true"
    # The webhook dispatches on metadata.type and skips anything else, passId or not.
    if md_type is not None and md_type not in PASS_KINDS:
        return None
    if md_type not in PASS_KINDS and pass_via is None:
        return None
    return PurchaseKeys(
        kind="pass_upgrade" if upgrade else "pass_purchase",
        pass_id=found["passId"],
        user_id=found["userId"],
        tenant_id=found["tenantId"],
        upgrade_from=found["upgradeFromSubscriptionId"],
        pass_via=pass_via,
    )


def classify(
    session: Session,
    line_items: Sequence[LineItem],
    catalog: Catalog,
    refunded_minor: int = 0,
) -> Classified:
    def done(outcome: str, kind: str | None, keys: PurchaseKeys | None = None) -> Classified:
        return Classified(session.id, session.account, outcome, kind, session, keys)

    if session.status != "complete":
        return done("ignored", "not_complete")
    if session.mode == "subscription":
        return done("ignored", "platform_plan")
    if text(session.metadata.get("classId")):
        return done("ignored", "class_dropin")
    keys = purchase_keys(session, line_items, catalog)
    if keys is None:
        return done("ignored", "not_a_pass")
    if session.payment_status == "unpaid":
        return done("pending", "async_payment", keys)
    if session.payment_status != "paid":
        return done("ignored", "not_paid", keys)
    if refunded_minor > 0 and refunded_minor >= (session.amount_total or 0):
        return done("ignored", "refunded", keys)
    return done("candidate", None, keys)


def classify_raw(
    raw: Any,
    account: str,
    now_s: int,
    catalog: Catalog,
    line_items: Mapping[str, Sequence[LineItem]],
    refunds: Mapping[str, int],
) -> Classified:
    """Parse and classify one raw session; a malformed one becomes `failed`."""
    parsed = parse_session(raw, account, now_s)
    if isinstance(parsed, str):
        sid = raw.get("id") if isinstance(raw, Mapping) else None
        return Classified(sid if isinstance(sid, str) else "", account, "failed", parsed)
    refunded = refunds.get(parsed.payment_intent, 0) if parsed.payment_intent else 0
    return classify(parsed, line_items.get(parsed.id, ()), catalog, refunded)
