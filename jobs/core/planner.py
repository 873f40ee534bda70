"""Pure: from a classified page and what Sanity holds, one decision per session.

Nothing here guesses: a purchase that cannot be decided is `needs_manual` with its reason,
and what is already present is never rewritten, only reported when it looks wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from jobs.core import rules
from jobs.core.classify import Classified, PurchaseKeys
from jobs.core.model import (
    PLATFORM,
    Anomaly,
    Creation,
    Decision,
    LookupKeys,
    PageFacts,
    PagePlan,
    Pass,
    PlanContext,
    Session,
)

Doc = Mapping[str, Any]

VISIBLE_FIELDS = ("type", "startDate", "endDate", "passId", "user")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def subscription_id(session_id: str) -> str:
    return f"subscription-{session_id}"


def user_doc_id(clerk_id: str) -> str:
    return f"user-{clerk_id}"


def is_draft(doc: Doc) -> bool:
    return str(doc.get("_id", "")).startswith("drafts.")


def ref(doc: Doc, field: str) -> str | None:
    value = doc.get(field)
    target = value.get("_ref") if isinstance(value, Mapping) else None
    return target if isinstance(target, str) and target else None


def is_active(doc: Doc, now_ms: int) -> bool:
    """§1.2: active means isActive and an end date still ahead (the broken shape's own names
    count too: `status`/`expiryDate`)."""
    if doc.get("isActive") is False or doc.get("status") not in (None, "active"):
        return False
    end = rules.parse_instant_ms(doc.get("endDate") or doc.get("expiryDate"))
    return end is None or end > now_ms


def lookup_keys(page: Sequence[Classified]) -> LookupKeys:
    """The ids one page needs looked up; empty payment intents are never asked for."""
    sids: list[str] = []
    pis: list[str] = []
    uids: list[str] = []
    upgrades: list[str] = []
    for item in page:
        if item.session is None or item.outcome not in ("candidate", "ignored"):
            continue
        if item.outcome == "ignored" and item.kind != "refunded":
            continue
        sids.append(item.session.id)
        if item.session.payment_intent:
            pis.append(item.session.payment_intent)
        if item.keys and item.keys.user_id:
            uids.append(item.keys.user_id)
        if item.keys and item.keys.kind == "pass_upgrade" and item.keys.upgrade_from:
            upgrades.append(item.keys.upgrade_from)
    return LookupKeys(*(tuple(dict.fromkeys(v)) for v in (sids, pis, uids, upgrades)))


def page_matches(session: Session, facts: PageFacts) -> list[Doc]:
    """`matching_subscriptions` over a page's facts, through their index (same answer,
    same order)."""
    index = facts.subs_by_key
    own = subscription_id(session.id)
    keys = [("sid", session.id), ("id", own), ("id", "drafts." + own)]
    if session.payment_intent:
        keys.append(("pi", session.payment_intent))
    found = sorted({n for key in keys for n in index.get(key, ())})
    return [facts.subs[n] for n in found]


def matching_subscriptions(session: Session, subs: Iterable[Doc]) -> list[Doc]:
    """Every subscription (any shape, drafts too) that records this purchase."""
    own_ids = (subscription_id(session.id), "drafts." + subscription_id(session.id))
    pi = session.payment_intent
    found = []
    for doc in subs:
        if doc.get("stripeSessionId") == session.id or doc.get("_id") in own_ids or (
            pi and pi in (doc.get("stripePaymentId"), doc.get("stripePaymentIntentId"),
                          doc.get("paymentId"))
        ):
            found.append(doc)
    return found


def plan_page(page: Sequence[Classified], facts: PageFacts, ctx: PlanContext) -> PagePlan:
    account = page[0].account if page else PLATFORM
    return PagePlan(account=account, decisions=[decide(item, facts, ctx) for item in page])


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


def _base(item: Classified) -> Decision:
    s = item.session
    if s is None:
        return Decision(item.session_id, item.account, "failed", detail=item.kind or "")
    return Decision(
        session_id=s.id,
        account=s.account,
        outcome="failed",
        email=s.email,
        amount=rules.major_units(s.amount_total),
        currency=s.currency,
        paid_at=rules.iso_ms(s.created * 1000),
    )


def decide(item: Classified, facts: PageFacts, ctx: PlanContext) -> Decision:
    base = _base(item)
    session = item.session
    if session is None or item.outcome == "failed":
        return replace(base, outcome="failed", detail=item.kind or "malformed session")
    if item.outcome in ("ignored", "pending"):
        decision = replace(base, outcome=item.outcome, reason=item.kind)  # type: ignore[arg-type]
        if item.kind == "refunded":
            active = [d for d in page_matches(session, facts)
                      if not is_draft(d) and is_active(d, ctx.now_ms)]
            if active:
                ids = tuple(str(d.get("_id")) for d in active)
                decision = replace(decision, anomalies=(Anomaly(
                    "refunded_but_active", session.id, ids,
                    "payment refunded but its subscription is still active"),))
        return decision
    assert item.keys is not None
    return _decide_purchase(base, session, item.keys, facts, ctx)


def _manual(base: Decision, reason: str, detail: str, **extra: Any) -> Decision:
    return replace(base, outcome="needs_manual", reason=reason, detail=detail, **extra)


def _decide_purchase(
    base: Decision, session: Session, keys: PurchaseKeys, facts: PageFacts, ctx: PlanContext
) -> Decision:
    catalog = ctx.catalog
    pass_ = catalog.passes.get(keys.pass_id) if keys.pass_id else None
    tenant_id = _tenant(session, keys, pass_, ctx)
    base = replace(base, tenant=tenant_id, pass_id=keys.pass_id,
                   pass_name=pass_.name if pass_ else None)
    person = _person(keys.user_id, facts.users)
    old = _upgrade_source(keys, facts)

    # Drafts count: the app reads in the raw perspective, so a student books with a draft.
    matches = page_matches(session, facts)
    if matches:
        ids = tuple(str(d.get("_id")) for d in matches)
        found = _present_anomalies(session, matches, pass_, tenant_id, ctx)
        if isinstance(person, _Person):
            found += _wrong_users(session, matches, person)
        if old is not None and upgrade_open(old):
            found += (Anomaly("upgrade_incomplete", session.id, (str(old["_id"]),),
                                  f"the upgrade to {keys.pass_id} exists, but {old['_id']} is "
                                  "still active without upgradedToPassId"),)
        return replace(base, outcome="already_present", subscription_ids=ids, anomalies=found)

    if pass_ is None:
        if keys.pass_id is None:
            return _manual(base, "metadata_missing", "no passId in the session, its line item, "
                           "or a unique pass name")
        return _manual(base, "pass_not_found", f"pass {keys.pass_id} does not exist")
    if tenant_id is None or pass_.tenant_id != tenant_id or (
        keys.tenant_id is not None and keys.tenant_id != tenant_id
    ):
        detail = _tenant_detail(session, keys, pass_, tenant_id, ctx)
        return _manual(base, "tenant_mismatch", detail)
    grant = rules.entitlement(pass_)
    if isinstance(grant, rules.Rejection):
        return _manual(base, grant.reason, grant.detail)
    start_ms = session.created * 1000
    end_ms = rules.end_date_ms(pass_, start_ms)
    if isinstance(end_ms, rules.Rejection):
        return _manual(base, end_ms.reason, end_ms.detail)

    if keys.kind == "pass_upgrade" and old is None:
        detail = ("no upgradeFromSubscriptionId" if keys.upgrade_from is None
                  else f"subscription {keys.upgrade_from} to upgrade from does not exist")
        return _manual(base, "upgrade_source_missing", detail)

    if isinstance(person, str):
        return _manual(base, *_person_problem(person, keys.user_id))
    user_ref, new_user = person.user_ref, person.new_user(session, ctx)
    if old is not None:
        # The webhook copies the old subscription's student; we also check it is this buyer's,
        # so a wrong id never deactivates (and re-grants) another student's pass.
        owner = ref(old, "user")
        if owner not in person.refs:
            return _manual(base, "upgrade_source_missing",
                           f"subscription {keys.upgrade_from} belongs to another student")
        user_ref, new_user = owner, None
    # Manual duplicates (§4#16) are looked for by the re-check just before the write
    # (`jobs.core.recheck`), by the buyer's refs: a plain field lookup, no join in the page's query.
    doc = _subscription(session, keys, pass_, grant, start_ms, end_ms, tenant_id,
                        str(user_ref), old, ctx)
    deactivate = None
    # A source already inactive was settled by someone else: existing documents stay as they are.
    if old is not None and old.get("isActive") is not False:
        deactivate = {"id": old["_id"], "set": {
            "isActive": False, "upgradedAt": rules.iso_ms(ctx.now_ms),
            "upgradedToPassId": pass_.id, "upgradedToPassName": pass_.name}}
    anomalies: tuple[Anomaly, ...] = ()
    if end_ms <= ctx.now_ms or end_ms <= start_ms:
        anomalies += (Anomaly("expired_on_arrival", session.id, (doc["_id"],),
                              f"endDate {doc['endDate']} is already past"),)
    expected_currency = rules.checkout_currency(catalog.tenants[tenant_id].currency)
    if session.currency and session.currency.lower() != expected_currency:
        # §2.1: the school may have changed its currency since; the webhook writes it anyway.
        anomalies += (Anomaly("currency_differs", session.id, (doc["_id"],),
                              f"paid in {session.currency.upper()}, the school now sells in "
                              f"{expected_currency.upper()}"),)
    if len(person.by_clerk) > 1 and old is None:
        anomalies += (Anomaly("duplicate_users", session.id, (doc["_id"],),
                              f"{len(person.by_clerk)} user documents carry this Clerk id ("
                              + ", ".join(person.by_clerk) + f"); linked to {user_ref}"),)
    return replace(base, outcome="created", user_id=str(user_ref), pass_name=pass_.name,
                   subscription_ids=(doc["_id"],), anomalies=anomalies,
                   creation=Creation(doc, new_user, deactivate, person.refs))


def _upgrade_source(keys: PurchaseKeys, facts: PageFacts) -> Doc | None:
    if keys.kind != "pass_upgrade" or keys.upgrade_from is None:
        return None
    return next((d for d in facts.upgrades
                 if d.get("_id") == keys.upgrade_from and not is_draft(d)), None)


def upgrade_open(old: Doc) -> bool:
    """§2.8: the webhook deactivates the source and names the new pass on it."""
    return old.get("isActive") is not False and not old.get("upgradedToPassId")


def _wrong_users(session: Session, present: list[Doc], person: _Person) -> tuple[Anomaly, ...]:
    out = []
    for doc in present:
        owner = ref(doc, "user")
        if owner is not None and owner not in person.refs:
            out.append(Anomaly("wrong_user", session.id, (str(doc.get("_id")),),
                               f"linked to user {owner}, not one of the buyer's "
                               f"({person.clerk_id})"))
    return tuple(out)


def _tenant(session: Session, keys: PurchaseKeys, pass_: Pass | None,
            ctx: PlanContext) -> str | None:
    if session.account != PLATFORM:
        tenant = ctx.catalog.tenant_of_account(session.account)
        return tenant.id if tenant else None
    if keys.tenant_id is not None:
        return keys.tenant_id if keys.tenant_id in ctx.catalog.tenants else None
    return pass_.tenant_id if pass_ and pass_.tenant_id in ctx.catalog.tenants else None


def _tenant_detail(session: Session, keys: PurchaseKeys, pass_: Pass, tenant_id: str | None,
                   ctx: PlanContext) -> str:
    if tenant_id is None:
        if session.account != PLATFORM:
            return f"no school has Stripe account {session.account}"
        return f"school {keys.tenant_id or pass_.tenant_id} is unknown"
    if pass_.tenant_id != tenant_id:
        return f"pass {pass_.id} belongs to school {pass_.tenant_id}, not {tenant_id}"
    return f"metadata names school {keys.tenant_id}, the account belongs to {tenant_id}"


class _Person:
    """The student's user documents: which one a new subscription points at."""

    def __init__(self, clerk_id: str, user_ref: str, refs: tuple[str, ...], exists: bool,
                 by_clerk: tuple[str, ...] = ()) -> None:
        self.clerk_id = clerk_id
        self.user_ref = user_ref
        self.refs = refs
        self.exists = exists
        self.by_clerk = by_clerk

    def new_user(self, session: Session, ctx: PlanContext) -> dict[str, Any] | None:
        if self.exists:
            return None
        stamp = rules.iso_ms(ctx.now_ms)
        return {
            "_id": self.user_ref, "_type": "user", "clerkId": self.clerk_id,
            "name": session.name or "Customer", "email": session.email or "",
            "role": "student", "isActive": True, "createdAt": stamp, "updatedAt": stamp,
            "createdViaRecovery": True, "reconcileRunId": ctx.run_id,
        }


def chosen_user(user_id: str, by_clerk: Sequence[Doc]) -> Doc:
    """§2.3 step 6: the app shows a pass linked to any user with the Clerk id, so one is
    picked the same way every time: our own `user-<clerk id>`, else the oldest document."""
    own = user_doc_id(user_id)
    for doc in by_clerk:
        if doc.get("_id") == own:
            return doc
    return min(by_clerk, key=lambda d: (str(d.get("_createdAt") or "~"), str(d.get("_id"))))


def _person(user_id: str | None, users: Iterable[Doc]) -> _Person | str:
    """§1.5: the clerkId user, else the legacy user whose _id is the Clerk id, else a new one."""
    if user_id is None:
        return "missing"
    if not set(user_id) <= _ID_CHARS or len(user_id) > 120:
        return "invalid"
    published = [u for u in users if not is_draft(u)]
    by_clerk = [u for u in published if u.get("clerkId") == user_id]
    legacy = [u for u in published if u.get("_id") == user_id]
    refs = tuple(dict.fromkeys([user_id, *(str(u["_id"]) for u in by_clerk + legacy)]))
    if by_clerk:
        ids = tuple(sorted(str(u["_id"]) for u in by_clerk))
        return _Person(user_id, str(chosen_user(user_id, by_clerk)["_id"]), refs, True, ids)
    if legacy:
        return _Person(user_id, user_id, refs, True)
    return _Person(user_id, user_doc_id(user_id), (*refs, user_doc_id(user_id)), False)


def _person_problem(problem: str, user_id: str | None) -> tuple[str, str]:
    if problem == "missing":
        return "user_unknown", "no userId in the session or its line item"
    return "user_unknown", "userId is not a usable Clerk id"


def _present_anomalies(session: Session, published: list[Doc], pass_: Pass | None,
                       tenant_id: str | None, ctx: PlanContext) -> tuple[Anomaly, ...]:
    out: list[Anomaly] = []
    ids = tuple(str(d.get("_id")) for d in published)
    # A draft and its published version are one document in two states, not two passes.
    documents = {i.removeprefix("drafts.") for i in ids}
    if len(documents) > 1:
        out.append(Anomaly("duplicate_subscriptions", session.id, ids,
                           f"{len(documents)} subscriptions record this purchase"))
    if all(is_draft(d) for d in published):
        out.append(Anomaly("draft_only", session.id, ids,
                           "only a draft records this purchase (the app shows it; "
                           "nothing is published)"))
    expected = rules.mapped_type(pass_.type) if pass_ else None
    tenant_passes = ctx.catalog.pass_ids_of(tenant_id)
    for doc in published:
        one = (str(doc.get("_id")),)
        missing = [f for f in VISIBLE_FIELDS if doc.get(f) in (None, "")]
        if missing:
            out.append(Anomaly("invisible_shape", session.id, one,
                               "the app cannot show it: missing " + ", ".join(missing)))
        elif expected is not None and doc.get("type") != expected:
            out.append(Anomaly("mistyped_subscription", session.id, one,
                               f"type {doc.get('type')!r}, the pass maps to {expected!r}"))
        if tenant_id is not None:
            own = ref(doc, "tenant")
            if own is not None and own != tenant_id:
                out.append(Anomaly("wrong_tenant", session.id, one,
                                   f"tenant {own}, the purchase belongs to {tenant_id}"))
            elif own is None and not ({doc.get("passId"), ref(doc, "pass")} & tenant_passes):
                out.append(Anomaly("wrong_tenant", session.id, one,
                                   f"no tenant and its pass is not one of {tenant_id}'s"))
    return tuple(out)


def _subscription(session: Session, keys: PurchaseKeys, pass_: Pass, grant: rules.Entitlement,
                  start_ms: int, end_ms: int, tenant_id: str, user_ref: str, old: Doc | None,
                  ctx: PlanContext) -> dict[str, Any]:
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
