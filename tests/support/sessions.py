"""Compact builders for the pure-core tests: raw sessions, line items, passes, tenants,
catalogs, Sanity documents and a tiny in-memory Sanity that answers `LookupKeys`.

Defaults describe one ordinary HEAD-era purchase: a paid 10-clip card bought on a school's
connected account with full metadata. Tests override only what they are about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jobs.core.classify import Classified, classify_raw, parse_line_items, parse_session
from jobs.core.model import (
    Catalog,
    Decision,
    LineItem,
    LookupKeys,
    PageFacts,
    Pass,
    PlanContext,
    Session,
    Tenant,
)
from jobs.core.recheck import is_manual, recheck

DAY_S = 86_400
DAY_MS = 86_400_000
NOW_S = 1_787_000_000  # 2026-08-17T20:53:20Z
NOW_MS = NOW_S * 1000
CREATED_S = NOW_S - 3_600  # an hour before "now"
RUN_ID = "run_test_0001"

T1 = "sOY5WwoEBY24iuIm0CkYss"  # dancecity
T2 = "tSalsaSchool0000000002"
ACCT1 = "acct_1DanceCity000001"
ACCT2 = "acct_1SalsaSchool0002"
ACCT_UNKNOWN = "acct_1NobodyKnowsThis"

P_SINGLE = "passDropIn000000000001"
P_CLIP = "passClip10000000000002"
P_COURSE = "passCourse200000000003"
P_UNLIMITED = "passUnlimited000000004"
P_OTHER = "passSalsa0000000000005"  # belongs to T2

USER = "user_2abcDEFghiJKLmno"  # a Clerk id
USER_DOC = "uSanityAuto00000000001"  # canonical Sanity user _id (clerkId == USER)


def tenant(id_: str = T1, account: str | None = ACCT1, name: str | None = "School") -> Tenant:
    return Tenant(id=id_, name=name, account_id=account)


def pass_(
    id_: str = P_CLIP,
    *,
    tenant_id: str | None = T1,
    type_: Any = "multi",
    name: str | None = "10 Single Clip Card",
    price: Any = 2000,
    validity_type: Any = "days",
    validity_days: Any = 90,
    expiry_date: Any = None,
    classes_limit: Any = 10,
    is_active: Any = True,
) -> Pass:
    return Pass(id=id_, name=name, type=type_, price=price, validity_type=validity_type,
                validity_days=validity_days, expiry_date=expiry_date,
                classes_limit=classes_limit, is_active=is_active, tenant_id=tenant_id)


def default_passes() -> list[Pass]:
    return [
        pass_(P_SINGLE, type_="single", name="Drop-in Class", price=250, validity_days=30,
              classes_limit=None),
        pass_(P_CLIP),
        pass_(P_COURSE, type_="multi-pass", name="2 Course Pass", price=2290,
              validity_type="date", validity_days=None,
              expiry_date="2026-10-01T00:00:00.000Z", classes_limit=2),
        pass_(P_UNLIMITED, type_="unlimited", name="Monthly Unlimited", price=400,
              validity_days=30, classes_limit=None),
        pass_(P_OTHER, tenant_id=T2, type_="single", name="Salsa Drop-in", price=200,
              validity_days=30, classes_limit=None),
    ]


def catalog(
    passes: Iterable[Pass] | None = None, tenants: Iterable[Tenant] | None = None
) -> Catalog:
    ps = default_passes() if passes is None else list(passes)
    ts = [tenant(), tenant(T2, ACCT2, "Salsa")] if tenants is None else list(tenants)
    return Catalog(tenants={t.id: t for t in ts}, passes={p.id: p for p in ps})


def with_pass(extra: Pass, base: Catalog | None = None) -> Catalog:
    """The default catalog with one pass added or replaced."""
    cat = base or catalog()
    return Catalog(tenants=cat.tenants, passes={**cat.passes, extra.id: extra})


def ctx(cat: Catalog | None = None, now_ms: int = NOW_MS, run_id: str = RUN_ID) -> PlanContext:
    return PlanContext(now_ms=now_ms, run_id=run_id, catalog=cat or catalog())


def metadata(**overrides: Any) -> dict[str, Any]:
    """HEAD purchase metadata (all strings); a value of None removes the key."""
    md: dict[str, Any] = {
        "passId": P_CLIP, "passType": "multi", "userId": USER, "type": "pass_purchase",
        "tenantId": T1, "tenantSlug": "dancecity",
        "originalPrice": "2000", "finalPrice": "2000", "discountAmount": "0",
    }
    md.update(overrides)
    return {k: v for k, v in md.items() if v is not None}


def raw_session(n: int | str = 1, *, md: Mapping[str, Any] | None = None,
                **overrides: Any) -> dict[str, Any]:
    """A raw Checkout Session dict as Stripe's list endpoint returns it."""
    raw: dict[str, Any] = {
        "id": f"cs_test_a1{n}",
        "object": "checkout.session",
        "created": CREATED_S,
        "status": "complete",
        "mode": "payment",
        "payment_status": "paid",
        "payment_intent": f"pi_3Test{n}",
        "amount_total": 200_000,
        "currency": "nok",
        "customer_details": {"email": "kari.nordmann@example.com", "name": "Kari Nordmann"},
        "customer_email": None,
        "livemode": False,
        "metadata": metadata() if md is None else dict(md),
    }
    raw.update(overrides)
    return raw


def session(n: int | str = 1, *, account: str = ACCT1, md: Mapping[str, Any] | None = None,
            **overrides: Any) -> Session:
    parsed = parse_session(raw_session(n, md=md, **overrides), account, NOW_S)
    assert isinstance(parsed, Session), parsed
    return parsed


def raw_line_items(description: str | None = "10 Single Clip Card",
                   **product_metadata: Any) -> dict[str, Any]:
    """`/line_items?expand[]=data.price.product` as Stripe returns it (one item)."""
    return {"object": "list", "data": [{
        "id": "li_1", "object": "item", "description": description, "quantity": 1,
        "price": {"id": "price_1", "product": {
            "id": "prod_1", "name": description, "metadata": dict(product_metadata)}},
    }]}


def items(description: str | None = "10 Single Clip Card", **product_metadata: Any
          ) -> list[LineItem]:
    return parse_line_items(raw_line_items(description, **product_metadata))


def classified(
    raw: Any,
    *,
    account: str = ACCT1,
    cat: Catalog | None = None,
    line_items: Sequence[LineItem] | None = None,
    refunded: int = 0,
    now_s: int = NOW_S,
) -> Classified:
    sid = raw.get("id") if isinstance(raw, Mapping) else None
    pi = raw.get("payment_intent") if isinstance(raw, Mapping) else None
    li = {sid: list(line_items)} if line_items is not None and isinstance(sid, str) else {}
    refunds = {pi: refunded} if refunded and isinstance(pi, str) else {}
    return classify_raw(raw, account, now_s, cat or catalog(), li, refunds)


def ref(target: str, type_: str = "reference") -> dict[str, str]:
    return {"_type": type_, "_ref": target}


def sub_doc(id_: str, **fields: Any) -> dict[str, Any]:
    """A canonical (visible) subscription document; a field set to None is removed."""
    doc: dict[str, Any] = {
        "_id": id_, "_type": "subscription", "user": ref(USER_DOC), "tenant": ref(T1),
        "type": "clipcard", "startDate": "2026-08-17T19:53:20.000Z",
        "endDate": "2026-11-15T19:53:20.000Z", "remainingClips": 10, "passId": P_CLIP,
        "passName": "10 Single Clip Card", "purchasePrice": 2000, "isActive": True,
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def alt_shape_doc(id_: str, **fields: Any) -> dict[str, Any]:
    """The broken shape written by fix-dancecity-missing-subscriptions.mjs (domain §1.2)."""
    doc: dict[str, Any] = {
        "_id": id_, "_type": "subscription", "pass": ref(P_CLIP), "status": "active",
        "purchaseDate": "2026-08-17T19:53:20.000Z", "expiryDate": "2026-11-15T19:53:20.000Z",
        "classesUsed": 0, "classesLimit": 10, "amount": 200_000, "currency": "nok",
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def user_doc(id_: str = USER_DOC, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": id_, "_type": "user", "clerkId": USER, "name": "Kari",
                           "email": "kari.nordmann@example.com", "role": "student"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def facts(subs: Iterable[Mapping[str, Any]] = (),
          users: Iterable[Mapping[str, Any]] | None = None,
          upgrades: Iterable[Mapping[str, Any]] = ()) -> PageFacts:
    """A page's look-up answer; `users` default: the buyer's one user document when the
    page finds subscriptions (the look-up returns the buyer's users with them)."""
    if users is None:
        users = [user_doc()] if subs else []
    return PageFacts(tuple(subs), tuple(users), tuple(upgrades))


class MemorySanity:
    """Documents by `_id`, answering `LookupKeys` the way the GROQ adapter is meant to.

    subs: any subscription (drafts too) recording one of the sessions / payment intents or
    carrying a deterministic id; users: clerkId or _id among the user ids; manual: the
    subscriptions without `stripeSessionId` of those persons; upgrades: by `_id`.
    """

    def __init__(self, docs: Iterable[Mapping[str, Any]] = ()) -> None:
        self.docs: dict[str, dict[str, Any]] = {str(d["_id"]): dict(d) for d in docs}

    def lookup(self, keys: LookupKeys) -> PageFacts:
        sids, pis = set(keys.session_ids), set(keys.payment_intents)
        uids = set(keys.user_ids)
        own_ids = {f"subscription-{s}" for s in sids}
        own_ids |= {"drafts." + i for i in own_ids}
        subs = [d for d in self.docs.values() if d.get("_type") == "subscription" and (
            d.get("stripeSessionId") in sids or d["_id"] in own_ids
            or (pis & {d.get("stripePaymentId"), d.get("stripePaymentIntentId"),
                       d.get("paymentId")}))]
        users = [d for d in self.docs.values() if d.get("_type") == "user" and (
            d.get("clerkId") in uids or d["_id"] in uids)]
        upgrades = [d for d in self.docs.values() if d.get("_type") == "subscription"
                    and d["_id"] in set(keys.upgrade_ids)]
        return facts(subs, users, upgrades)

    def recheck(self, decisions: Iterable[Decision]) -> list[Decision]:
        """The re-check just before the write, as the GROQ adapter answers it."""
        docs = [d for d in self.docs.values() if d.get("_type") == "subscription"]
        refs = {r for d in decisions if d.creation for r in d.creation.person_refs}
        manual = [d for d in docs if is_manual(d) and isinstance(d.get("user"), Mapping)
                  and d["user"].get("_ref") in refs]
        return [recheck(d, docs, manual) for d in decisions]

    def apply(self, mutations: Iterable[Mapping[str, Any]]) -> None:
        """createIfNotExists and patch-set, as Sanity applies them."""
        for mutation in mutations:
            if "createIfNotExists" in mutation:
                doc = dict(mutation["createIfNotExists"])
                self.docs.setdefault(str(doc["_id"]), doc)
            elif "patch" in mutation:
                patch = mutation["patch"]
                target = self.docs.get(str(patch["id"]))
                if target is not None:
                    target.update(patch.get("set", {}))
            else:  # pragma: no cover - the planner writes nothing else
                raise AssertionError(f"unexpected mutation {mutation}")

