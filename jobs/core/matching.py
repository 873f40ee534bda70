"""Pure: which Sanity documents belong to a purchase (its subscriptions, its person), and what a
page must look up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jobs.core import rules
from jobs.core.classify import Classified
from jobs.core.model import (
    PAYMENT_ID_FIELDS,
    LookupKeys,
    PageFacts,
    PlanContext,
    Session,
)

Doc = Mapping[str, Any]

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
            pi and any(doc.get(f) == pi for f in PAYMENT_ID_FIELDS)
        ):
            found.append(doc)
    return found

class PersonMatch:
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


def find_person(user_id: str | None, users: Iterable[Doc]) -> PersonMatch | str:
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
        return PersonMatch(user_id, str(chosen_user(user_id, by_clerk)["_id"]), refs, True, ids)
    if legacy:
        return PersonMatch(user_id, user_id, refs, True)
    return PersonMatch(user_id, user_doc_id(user_id), (*refs, user_doc_id(user_id)), False)


def person_problem(problem: str, user_id: str | None) -> tuple[str, str]:
    if problem == "missing":
        return "user_unknown", "no userId in the session or its line item"
    return "user_unknown", "userId is not a usable Clerk id"
