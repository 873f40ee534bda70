"""Pure: from a classified page and what Sanity holds, one decision per session.

Nothing here guesses: a purchase that cannot be decided is `needs_manual` with its reason,
and what is already present is never rewritten, only reported when it looks wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from jobs.core import rules
from jobs.core.anomalies import (
    deactivated,
    invisible,
    is_active,
    mistyped,
    purchase_records,
    wrong_tenant,
)
from jobs.core.classify import Classified, PurchaseKeys
from jobs.core.documents import subscription_document
from jobs.core.matching import (
    Doc,
    PersonMatch,
    find_person,
    is_draft,
    page_matches,
    person_problem,
    ref,
)
from jobs.core.model import (
    PLATFORM,
    Anomaly,
    Creation,
    Decision,
    PageFacts,
    PagePlan,
    Pass,
    PlanContext,
    Session,
)


def plan_page(page: Sequence[Classified], facts: PageFacts, ctx: PlanContext) -> PagePlan:
    account = page[0].account if page else PLATFORM
    return PagePlan(account=account, decisions=[decide(item, facts, ctx) for item in page])



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
            # The classification knows the refund; "still active" is the audit's rule too.
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
    person = find_person(keys.user_id, facts.users)
    old = _upgrade_source(keys, facts)

    # Drafts count: the app reads in the raw perspective, so a student books with a draft.
    matches = page_matches(session, facts)
    if matches:
        ids = tuple(str(d.get("_id")) for d in matches)
        found = _present_anomalies(session, matches, pass_, tenant_id, ctx)
        if isinstance(person, PersonMatch):
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
        return _manual(base, *person_problem(person, keys.user_id))
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
    doc = subscription_document(session, keys, pass_, grant, start_ms, end_ms, tenant_id,
                        str(user_ref), old, ctx)
    deactivate = None
    # A source already inactive was settled by someone else: existing documents stay as they are.
    if old is not None and not deactivated(old):
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
    return not deactivated(old) and not old.get("upgradedToPassId")


def _wrong_users(session: Session, present: list[Doc],
                 person: PersonMatch) -> tuple[Anomaly, ...]:
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


def _present_anomalies(session: Session, present: list[Doc], pass_: Pass | None,
                       tenant_id: str | None, ctx: PlanContext) -> tuple[Anomaly, ...]:
    """The shared rules (`jobs.core.anomalies`) over what records the purchase, drafts
    included, judged by the purchase's pass and school."""
    out = list(purchase_records(session.id, present))
    tenant_passes = ctx.catalog.pass_ids_of(tenant_id)
    for doc in present:
        details = [("invisible_shape", invisible(doc)),
                   ("mistyped_subscription", mistyped(doc, pass_))]
        # A purchase of no known school cannot say where its pass belongs.
        if tenant_id is not None:
            details.append(("wrong_tenant", wrong_tenant(doc, tenant_id, tenant_passes,
                                                         ctx.catalog.tenants, "the purchase")))
        out += [Anomaly(kind, session.id, (str(doc.get("_id")),), detail)
                for kind, detail in details if detail is not None]
    return tuple(out)
