"""Pure: what is wrong with subscriptions that already exist, for the planner and the audit.

Each per-document rule reads one document as stored (any shape) plus what its caller knows,
and says in words what is wrong, or None. The planner calls them with what a purchase tells
(its pass and tenant), `audit` (`reconcile audit`) with what the document tells (its own
pass), so both judge a document the same way. Kinds are design.md's anomaly kinds, plus
`end_date_off` (an end date more than a day away from the pass's rule, domain §2.5 / §4 #11),
which only an audit can see.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core import rules
from jobs.core.matching import is_draft, ref
from jobs.core.model import PAYMENT_ID_FIELDS, Anomaly, Catalog, Pass
from jobs.core.reasons import Explanation, explain_anomaly

Doc = Mapping[str, Any]

VISIBLE_FIELDS = ("type", "startDate", "endDate", "passId", "user")
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


def document_id(doc: Doc) -> str:
    """A draft and its published version are one document in two states, not two passes."""
    return str(doc.get("_id", "")).removeprefix("drafts.")


def session_of(doc: Doc) -> str | None:
    """The Checkout Session a subscription records: its field, else its deterministic id."""
    sid = doc.get("stripeSessionId")
    if isinstance(sid, str) and sid:
        return sid
    own = document_id(doc)
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


def is_active(doc: Doc, now_ms: int) -> bool:
    """§1.2: active means isActive and an end date still ahead (the broken shape's own names
    count too: `status`/`expiryDate`)."""
    if deactivated(doc) or doc.get("status") not in (None, "active"):
        return False
    end = rules.parse_instant_ms(doc.get("endDate") or doc.get("expiryDate"))
    return end is None or end > now_ms


def _ids(docs: Iterable[Doc]) -> tuple[str, ...]:
    return tuple(sorted(str(d.get("_id")) for d in docs))


# ---- one document: what is wrong with it in words, None when nothing ---------------------


def invisible(doc: Doc) -> str | None:
    """The app shows a subscription only with these fields, and with dates it can read."""
    missing = [f for f in VISIBLE_FIELDS if doc.get(f) in (None, "")]
    problems = ["missing " + ", ".join(missing)] if missing else []
    for name in ("startDate", "endDate"):
        value = doc.get(name)
        if value not in (None, "") and rules.parse_instant_ms(value) is None:
            problems.append(f"{name} {value!r} is not a date")
    return "the app cannot show it: " + "; ".join(problems) if problems else None


def mistyped(doc: Doc, pass_: Pass | None) -> str | None:
    """§4 #12: the type against the mapping (§2.4) of the pass the caller knows; without a
    mapped type to compare with, a type the app does not know."""
    kind = doc.get("type")
    if kind in (None, ""):
        return None  # a missing type is an invisible shape
    expected = rules.mapped_type(pass_.type) if pass_ is not None else None
    if pass_ is not None and expected is not None:
        return None if kind == expected else (
            f"type {kind!r}, the pass {pass_.id} ({pass_.type}) maps to {expected!r}")
    if kind in rules.SUBSCRIPTION_TYPES:
        return None
    return f"type {kind!r} is not one the app knows ({', '.join(rules.SUBSCRIPTION_TYPES)})"


def wrong_tenant(doc: Doc, expected: str | None, tenant_passes: Collection[str],
                 schools: Container[str], source: str) -> str | None:
    """§1.9: the app shows a subscription in school T when its tenant is T, or when it has no
    tenant and its pass is one of T's (`tenant_passes`). `expected` is T (None: the caller
    knows none, so only whether its tenant is a school is judged); `source` names where T
    comes from, for the words ("the purchase", "its pass p1")."""
    own = ref(doc, "tenant")
    if own is not None:
        if own not in schools:
            return f"tenant {own} is no school"
        if expected is not None and own != expected:
            return f"tenant {own}, {source} belongs to {expected}"
        return None
    pids = {p for p in (doc.get("passId"), ref(doc, "pass")) if isinstance(p, str)}
    if expected in schools and not pids.isdisjoint(tenant_passes):
        return None
    pid = pass_id_of(doc)
    if pid is None:
        return "no tenant and no pass: the app shows it nowhere"
    if expected in schools:
        return f"no tenant, and its pass {pid} is not one of {expected}'s"
    return f"no tenant, and its pass {pid} is no school's pass: the app shows it nowhere"


def end_date_off(doc: Doc, pass_: Pass | None) -> str | None:
    start = rules.parse_instant_ms(doc.get("startDate"))
    end = rules.parse_instant_ms(doc.get("endDate"))
    if pass_ is None or start is None or end is None:
        return None
    expected = rules.end_date_ms(pass_, start)
    if isinstance(expected, rules.Rejection) or abs(end - expected) <= rules.DAY_MS:
        return None
    days = (end - expected) / rules.DAY_MS
    return (f"endDate {doc.get('endDate')}, the pass's rule from startDate gives "
            f"{rules.iso_ms(expected)} ({days:+.1f} days)")


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


def refunded_active(doc: Doc, refunded: Mapping[str, int], now_ms: int) -> str | None:
    """Without the session, the refunds of its payment intents against what it recorded
    as paid."""
    if not is_active(doc, now_ms):
        return None  # switched off or expired: nothing left to take back
    hits = sorted(p for p in payment_intents(doc) if refunded.get(p, 0) > 0)
    if not hits:
        return None
    back = sum(refunded[p] for p in hits)
    paid = paid_minor(doc)
    if paid is not None and back < paid:
        return None  # a partial refund leaves the pass due
    how = (f"refunded {back / 100:g} of {paid / 100:g}" if paid is not None
           else f"refunded {back / 100:g}; what was paid is not recorded")
    return f"payment {', '.join(hits)} {how}, the subscription is still active"


# ---- several documents ----------------------------------------------------------------------


def purchase_records(session_id: str, docs: Sequence[Doc]) -> tuple[Anomaly, ...]:
    """What the documents recording one purchase (at least one, drafts included) say
    together: several documents, or drafts only."""
    ids = tuple(str(d.get("_id")) for d in docs)
    documents = {document_id(d) for d in docs}
    out = []
    if len(documents) > 1:
        out.append(Anomaly("duplicate_subscriptions", session_id, ids,
                           f"{len(documents)} subscriptions record this purchase"))
    if all(is_draft(d) for d in docs):
        out.append(Anomaly("draft_only", session_id, ids,
                           "only a draft records this purchase (the app shows it; "
                           "nothing is published)"))
    return tuple(out)


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


def drafts_only(drafts: Sequence[Doc], published: Sequence[Doc]) -> list[Finding]:
    """Drafts with no published version and no published subscription of their purchase."""
    ids = {str(d.get("_id")) for d in published}
    sessions = {s for d in published if (s := session_of(d))}
    payments = {p for d in published for p in payment_intents(d)}
    out = []
    for draft in drafts:
        sid = session_of(draft)
        if document_id(draft) in ids or (sid and sid in sessions) or (
                payment_intents(draft) & payments):
            continue
        out.append(Finding("draft_only", (str(draft.get("_id")),),
                           "only a draft, never published (the app shows it; published-only "
                           "readers do not)", sid))
    return out


# ---- the audit --------------------------------------------------------------------------


def judge(doc: Doc, catalog: Catalog, refunded: Mapping[str, int],
          now_ms: int) -> list[Finding]:
    """One document's findings, knowing only what it says itself: its own pass, whose
    school is where it belongs."""
    pass_ = pass_of(doc, catalog)
    tenant = pass_.tenant_id if pass_ is not None else None
    source = f"its pass {pass_.id}" if pass_ is not None else "its pass"
    details = (
        ("mistyped_subscription", mistyped(doc, pass_)),
        ("wrong_tenant", wrong_tenant(doc, tenant, catalog.pass_ids_of(tenant),
                                      catalog.tenants, source)),
        ("invisible_shape", invisible(doc)),
        ("end_date_off", end_date_off(doc, pass_)),
        ("refunded_but_active", refunded_active(doc, refunded, now_ms)),
    )
    return [Finding(kind, (str(doc.get("_id")),), detail, session_of(doc))
            for kind, detail in details if detail is not None]


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
        if not deactivated(doc):  # superseded or switched off by hand: its look no longer matters
            out += judge(doc, catalog, refunded, now_ms)
    out += drafts_only(drafts, published)
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(out, key=lambda f: (order.get(f.kind, len(order)), f.subscription_ids))
