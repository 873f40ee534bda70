"""Pure: a planned creation against what Sanity holds just before its transaction.

The page's look-up and its write can lie minutes apart in a large run (the whole window is
planned first), and Stripe retries a failed delivery for days: the webhook may write in
between. So just before each transaction the job asks again, in one query, what records its
purchases (drafts included) and which manual subscriptions (§4#16) its buyers have; `recheck`
turns each planned creation into what it must be now. `upgrade_completion` is the patch that
finishes a half-done upgrade (`diagnose --fix`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from jobs.core import rules
from jobs.core.anomalies import payment_intents, purchase_records
from jobs.core.matching import Doc, is_draft, matching_subscriptions, ref
from jobs.core.model import Decision, Session
from jobs.core.planner import upgrade_open

STRIPE_SESSION_PREFIXES = ("cs_live_", "cs_test_")


def is_stripe_id(value: Any, prefixes: tuple[str, ...]) -> bool:
    return isinstance(value, str) and value.startswith(prefixes)


def is_manual(doc: Doc) -> bool:
    """§4#16: no Stripe session id and no Stripe payment intent (absent, or a fake such as
    `manual_recovery_session_<ms>` / `manual_recovery_<ms>` / `admin_created_<ms>`)."""
    if is_stripe_id(doc.get("stripeSessionId"), STRIPE_SESSION_PREFIXES):
        return False
    return not payment_intents(doc)


def manual_suspects(paid_ms: int, pass_id: str, pass_name: str | None, refs: Iterable[str],
                    manual: Iterable[Doc]) -> list[str]:
    """§4#16: a hand-made subscription of the same person and pass, starting no earlier than
    a day before the purchase (a recovery is run hours or days after it)."""
    earliest = paid_ms - rules.DAY_MS
    people = set(refs)
    out = []
    for doc in manual:
        if not is_manual(doc) or ref(doc, "user") not in people:
            continue
        same_pass = pass_id in (doc.get("passId"), ref(doc, "pass")) or (
            not doc.get("passId") and not ref(doc, "pass") and pass_name is not None
            and doc.get("passName") == pass_name)
        if not same_pass:
            continue
        when = next((rules.parse_instant_ms(doc.get(k)) for k in
                     ("startDate", "purchaseDate", "_createdAt") if doc.get(k)), None)
        # No date at all: it cannot be ruled out, so a person looks at it.
        if when is None or when >= earliest:
            out.append(str(doc.get("_id")))
    return list(dict.fromkeys(out))


def recheck(decision: Decision, found: Iterable[Doc], manual: Iterable[Doc] = ()) -> Decision:
    """A planned creation against what Sanity holds just before its transaction: a
    subscription (drafts included) that now records the purchase, usually the webhook's
    late delivery, turns it into `already_present`; a manual subscription of the buyer for
    the same pass (§4#16) sends it to a person. Either way the creation is dropped."""
    creation = decision.creation
    if creation is None:
        return decision
    pi = creation.subscription.get("stripePaymentId")
    session = Session(decision.session_id, decision.account, 0, None, None, None,
                      pi if isinstance(pi, str) else None, None, None, {}, None, None, None)
    matches = matching_subscriptions(session, found)
    if matches:
        return replace(decision, outcome="already_present", creation=None,
                       subscription_ids=tuple(str(d.get("_id")) for d in matches),
                       anomalies=purchase_records(session.id, matches),
                       detail="written by someone else (the app's webhook) after this run's "
                              "look-up")
    paid_ms = rules.parse_instant_ms(creation.subscription.get("startDate"))
    pass_id = creation.subscription.get("passId")
    if paid_ms is None or not isinstance(pass_id, str):
        return decision
    suspects = manual_suspects(paid_ms, pass_id, decision.pass_name, creation.person_refs,
                               manual)
    if not suspects:
        return decision
    return replace(decision, outcome="needs_manual", reason="manual_duplicate_suspected",
                   detail="a subscription without Stripe ids exists for this person and pass: "
                          + ", ".join(suspects),
                   subscription_ids=tuple(suspects), anomalies=(), creation=None)


def upgrade_completion(decision: Decision, old: Doc, now_ms: int) -> dict[str, Any] | None:
    """The patch that finishes an upgrade the webhook left half done (`upgrade_incomplete`):
    the old subscription deactivated and pointed at the new pass, as §2.8's webhook does,
    guarded by the revision it was judged on, so a document changed since is left alone.
    None when there is nothing (any more) to do."""
    rev = old.get("_rev")
    if is_draft(old) or not upgrade_open(old) or not isinstance(rev, str) or not rev:
        return None
    return {"patch": {"id": old["_id"], "ifRevisionID": rev, "set": {
        "isActive": False, "upgradedAt": rules.iso_ms(now_ms),
        "upgradedToPassId": decision.pass_id, "upgradedToPassName": decision.pass_name}}}
