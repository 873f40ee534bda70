"""Pure: what is wrong with the subscriptions that already exist (`reconcile audit`).

Each rule reads documents as stored (any shape, drafts included) plus the catalogue, the
refunds of the window and the time, and returns findings; nothing here does I/O. Kinds are
design.md's anomaly kinds, plus `end_date_off` (an end date more than a day away from the
pass's rule, domain §2.5 / §4 #11), which only an audit can see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core import rules
from jobs.core.matching import VISIBLE_FIELDS, is_draft, ref
from jobs.core.model import PAYMENT_ID_FIELDS, Catalog, Pass
from jobs.core.reasons import Explanation, explain_anomaly

Doc = Mapping[str, Any]

KINDS = (
    "duplicate_subscriptions",
    "mistyped_subscription",
    "wrong_tenant",
    "invisible_shape",
    "end_date_off",
    "refunded_but_active",
    "draft_only",
)

END_DATE_OFF = Explanation(
    "end_date_off",
    "A subscription's end date does not follow its pass",
    "The end date is more than a day away from what the pass's validity gives from the start "
    "date (the old expiry bugs: validity ignored, fixed dates in the past, 30-day defaults). "
    "The pass is read as it is now; if it was changed after the purchase, compare by hand.",
    "In Sanity Studio, set the subscription's `endDate` to the start date plus the pass's "
    "validity (or the pass's fixed expiry date), if the student should have that.",
)

# The audit's words for draft_only: it looks at subscriptions, not at one run's purchase.
DRAFT_ONLY = Explanation(
    "draft_only",
    "A subscription exists only as an unpublished draft",
    "A draft subscription was never published and no published subscription records its "
    "purchase. The app reads drafts too, so the student sees and books with it; the job "
    "counts it as present and never creates a second one.",
    "Publish the draft in Sanity Studio, so readers of published documents see it too. Never "
    "create another subscription for its purchase.",
)
AUDIT_WORDS = {e.code: e for e in (END_DATE_OFF, DRAFT_ONLY)}


@dataclass(frozen=True)
class Finding:
    kind: str
    subscription_ids: tuple[str, ...]
    detail: str
    session_id: str | None = None


def explain(kind: str) -> Explanation:
    return AUDIT_WORDS.get(kind) or explain_anomaly(kind)


def session_of(doc: Doc) -> str | None:
    """The Checkout Session a subscription records: its field, else its deterministic id."""
    sid = doc.get("stripeSessionId")
    if isinstance(sid, str) and sid:
        return sid
    own = str(doc.get("_id", "")).removeprefix("drafts.")
    return own.removeprefix("subscription-") if own.startswith("subscription-cs_") else None


def payment_intents(doc: Doc) -> set[str]:
    """Real payment intents only: fake ids (`manual_recovery_…`, `debug_test_payment`) are
    shared by many hand-made documents and prove nothing."""
    return {v for f in PAYMENT_ID_FIELDS
            if isinstance(v := doc.get(f), str) and v.startswith("pi_")}


def pass_of(doc: Doc, catalog: Catalog) -> Pass | None:
    for pid in (doc.get("passId"), ref(doc, "pass")):
        if isinstance(pid, str) and pid in catalog.passes:
            return catalog.passes[pid]
    return None


def pass_id_of(doc: Doc) -> str | None:
    value = doc.get("passId")
    return value if isinstance(value, str) and value else ref(doc, "pass")


def deactivated(doc: Doc) -> bool:
    return doc.get("isActive") is False


def _ids(docs: Iterable[Doc]) -> tuple[str, ...]:
    return tuple(sorted(str(d.get("_id")) for d in docs))


# ---- the rules --------------------------------------------------------------------------


def duplicates(published: Sequence[Doc]) -> list[Finding]:
    """Several published subscriptions of one purchase (same session or payment intent), at
    least two of them still active: deactivating the extras is the documented fix."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, doc in enumerate(published):
        sid = session_of(doc)
        keys = [("session", sid)] if sid else []
        keys += [("payment", pi) for pi in sorted(payment_intents(doc))]
        for key in keys:
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    groups: dict[int, list[Doc]] = {}
    for i in parent:
        groups.setdefault(find(i), []).append(published[i])
    out = []
    for group in groups.values():
        active = [d for d in group if not deactivated(d)]
        if len(group) > 1 and len(active) > 1:
            sids = sorted({s for d in group if (s := session_of(d))})
            pis = sorted({p for d in group for p in payment_intents(d)})
            what = ", ".join([*(f"session {s}" for s in sids), *(f"payment {p}" for p in pis)])
            out.append(Finding("duplicate_subscriptions", _ids(group),
                               f"{len(group)} subscriptions ({len(active)} active) record one "
                               f"purchase ({what})", sids[0] if sids else None))
    return out


def mistyped(doc: Doc, pass_: Pass | None) -> Finding | None:
    kind = doc.get("type")
    if kind in (None, ""):
        return None  # a missing type is an invisible shape
    expected = rules.mapped_type(pass_.type) if pass_ is not None else None
    if pass_ is not None and expected is not None and kind != expected:
        detail = f"type {kind!r}, its pass {pass_.id} ({pass_.type}) maps to {expected!r}"
    elif expected is None and kind not in rules.SUBSCRIPTION_TYPES:
        detail = f"type {kind!r} is not one the app knows ({', '.join(rules.SUBSCRIPTION_TYPES)})"
    else:
        return None
    return Finding("mistyped_subscription", (str(doc.get("_id")),), detail, session_of(doc))


def wrong_tenant(doc: Doc, pass_: Pass | None, catalog: Catalog) -> Finding | None:
    """Domain §1.9: a tenant-less subscription is fine when its pass is some school's pass."""
    tenant = ref(doc, "tenant")
    pid = pass_id_of(doc)
    if tenant is not None:
        if tenant not in catalog.tenants:
            detail = f"tenant {tenant} is no school"
        elif pass_ is not None and pass_.tenant_id != tenant:
            detail = f"tenant {tenant}, its pass {pass_.id} belongs to {pass_.tenant_id}"
        else:
            return None
    elif pass_ is not None and pass_.tenant_id in catalog.tenants:
        return None
    else:
        detail = (f"no tenant, and its pass {pid} is no school's pass: the app shows it nowhere"
                  if pid else "no tenant and no pass: the app shows it nowhere")
    return Finding("wrong_tenant", (str(doc.get("_id")),), detail, session_of(doc))


def invisible(doc: Doc) -> Finding | None:
    problems = [f"missing {f}" for f in VISIBLE_FIELDS if doc.get(f) in (None, "")]
    for name in ("startDate", "endDate"):
        if doc.get(name) not in (None, "") and rules.parse_instant_ms(doc.get(name)) is None:
            problems.append(f"{name} {doc.get(name)!r} is not a date")
    if not problems:
        return None
    return Finding("invisible_shape", (str(doc.get("_id")),),
                   "the app cannot show it: " + ", ".join(problems), session_of(doc))


def end_date_off(doc: Doc, pass_: Pass | None) -> Finding | None:
    start = rules.parse_instant_ms(doc.get("startDate"))
    end = rules.parse_instant_ms(doc.get("endDate"))
    if pass_ is None or start is None or end is None:
        return None
    expected = rules.end_date_ms(pass_, start)
    if isinstance(expected, rules.Rejection) or abs(end - expected) <= rules.DAY_MS:
        return None
    days = (end - expected) / rules.DAY_MS
    return Finding("end_date_off", (str(doc.get("_id")),),
                   f"endDate {doc.get('endDate')}, the pass's rule from startDate gives "
                   f"{rules.iso_ms(expected)} ({days:+.1f} days)", session_of(doc))


def paid_minor(doc: Doc) -> int | None:
    """What the purchase cost in minor units, as the subscription recorded it."""
    if doc.get("isUpgrade") is True:
        cost = rules.number(doc.get("upgradeCost"))
        return round(cost * 100) if cost is not None else None
    for name in ("purchasePrice", "finalPrice"):
        value = rules.number(doc.get(name))
        if value is not None:
            return round(value * 100)
    amount = rules.number(doc.get("amount"))  # the alternate shape keeps øre
    return round(amount) if amount is not None else None


def refunded_active(doc: Doc, refunded: Mapping[str, int], now_ms: int) -> Finding | None:
    if deactivated(doc):
        return None
    end = rules.parse_instant_ms(doc.get("endDate"))
    if end is not None and end <= now_ms:
        return None  # expired: nothing left to take back
    hits = sorted(p for p in payment_intents(doc) if refunded.get(p, 0) > 0)
    if not hits:
        return None
    back = sum(refunded[p] for p in hits)
    paid = paid_minor(doc)
    if paid is not None and back < paid:
        return None  # a partial refund leaves the pass due
    how = (f"refunded {back / 100:g} of {paid / 100:g}" if paid is not None
           else f"refunded {back / 100:g}; what was paid is not recorded")
    return Finding("refunded_but_active", (str(doc.get("_id")),),
                   f"payment {', '.join(hits)} {how}, the subscription is still active",
                   session_of(doc))


def drafts_only(drafts: Sequence[Doc], published: Sequence[Doc]) -> list[Finding]:
    """Drafts with no published version and no published subscription of their purchase."""
    ids = {str(d.get("_id")) for d in published}
    sessions = {s for d in published if (s := session_of(d))}
    payments = {p for d in published for p in payment_intents(d)}
    out = []
    for draft in drafts:
        own = str(draft.get("_id"))
        sid = session_of(draft)
        if own.removeprefix("drafts.") in ids or (sid and sid in sessions) or (
                payment_intents(draft) & payments):
            continue
        out.append(Finding("draft_only", (own,),
                           "only a draft, never published (the app shows it; published-only "
                           "readers do not)", sid))
    return out


def audit(subs: Iterable[Doc], catalog: Catalog, refunded: Mapping[str, int],
          now_ms: int) -> list[Finding]:
    """Every finding over every subscription, ordered by kind then ids."""
    published: list[Doc] = []
    drafts: list[Doc] = []
    for doc in subs:
        if str(doc.get("_id", "")).startswith("versions."):
            continue
        (drafts if is_draft(doc) else published).append(doc)
    out = duplicates(published)
    for doc in published:
        pass_ = pass_of(doc, catalog)
        if deactivated(doc):
            continue  # superseded or switched off by hand: what it looks like no longer matters
        for finding in (mistyped(doc, pass_), wrong_tenant(doc, pass_, catalog), invisible(doc),
                        end_date_off(doc, pass_), refunded_active(doc, refunded, now_ms)):
            if finding is not None:
                out.append(finding)
    out += drafts_only(drafts, published)
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(out, key=lambda f: (order.get(f.kind, len(order)), f.subscription_ids))
