"""The app's own `webhookLog` documents (domain.md §1.7) for a built world.

Read off what was built, after everything else, so no other document, Stripe object or truth
entry changes (the reconciler never reads webhookLog; `reconcile doctor` does):

- a delivered `checkout.session.completed` whose subscription the webhook made: `processing`
  (with `details.sessionId` and the full metadata) then `success`. Only a share of them is
  logged (`success_share`) to keep the dataset small, but always each account's newest one;
- a delivered purchase a person must look at (`needs_manual`): `processing` then `error`, with
  the text the HEAD webhook throws for that reason (§2.3 #9: it answers 200, Stripe counts the
  delivery as successful);
- a lost purchase (Stripe could not deliver): for some `processing` then `error` (Sanity refused
  the write, the pass could not be read), for a few `processing` alone (the function timed out
  mid-way, §4 #7), for the rest nothing: the endpoint was never called. Their events keep
  `_delivery_success: false` although the HEAD webhook answers 200 on errors: stripe.json is
  left exactly as built;
- a few `signature_verification_failed` with `eventId: 'unknown'` (§4 #6).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from sandbox.world.docs import parse_ms
from sandbox.world.ids import Ids, iso_ms, iso_s

Doc = dict[str, Any]
COMPLETED = "checkout.session.completed"
SIGNATURE_FAILED = "signature_verification_failed"
SUCCESS_SHARE = 0.25  # of the successful deliveries, the share that gets its two log documents
LOST_ERROR_SHARE = 0.45  # of the lost deliveries: reached the app and failed with an error
LOST_STUCK_SHARE = 0.1  # ... reached it and never finished (`processing` with nothing after)

PERMISSION_ERROR = 'Insufficient permissions; permission "create" required'
MISSING_METADATA = "Missing required metadata: passId, userId, or tenantId"
SIGNATURE_ERROR = ("No signatures found matching the expected signature for payload. Are you "
                   "passing the raw request body you received from Stripe?")
_ROUTE = "    at POST (src/app/api/stripe/webhook/route.js:{}:{})"


def _metadata_error(metadata: Mapping[str, Any]) -> str | None:
    if not all(metadata.get(key) for key in ("passId", "userId", "tenantId")):
        return MISSING_METADATA
    return None


def manual_error(reason: str | None, metadata: Mapping[str, Any],
                 passes: Mapping[str, Doc]) -> str:
    """What the HEAD webhook threw for a purchase a person must look at (§2.3-§2.5, §2.8)."""
    missing = _metadata_error(metadata)
    if missing is not None:
        return missing
    pass_id = str(metadata.get("passId"))
    if reason == "pass_not_found" or pass_id not in passes:
        return f"Pass not found: {pass_id}"
    if reason == "pass_type_unknown":
        pass_type = passes[pass_id].get("type")
        if pass_type in ("single", "multi-pass", "multi", "unlimited"):
            return "Pass has no valid expiry configuration"
        return f"Invalid pass type: {pass_type}"
    if reason == "upgrade_source_missing":
        return ("Original subscription not found: "
                f"{metadata.get('upgradeFromSubscriptionId') or 'undefined'}")
    # The webhook would have gone on (it checks no tenant, takes the first user): the write
    # failed instead, as with the token that lacked create rights (§4 #10).
    return PERMISSION_ERROR


def lost_error(rng: random.Random, metadata: Mapping[str, Any]) -> str:
    """An error for a lost delivery whose purchase is in order: the failure was the app's."""
    missing = _metadata_error(metadata)
    if missing is not None:
        return missing
    if rng.random() < 0.35:
        return f"Pass not found: {metadata['passId']}"
    return PERMISSION_ERROR


class _Log:
    """Mints the documents; one `Ids`/`Random` pair, so the same world gives the same log."""

    def __init__(self, ids: Ids, rng: random.Random) -> None:
        self.ids = ids
        self.rng = rng
        self.docs: list[Doc] = []

    def add(self, event_type: str, event_id: str, status: str, details: Doc, at_ms: int) -> None:
        created = iso_s(at_ms // 1000)
        self.docs.append({
            "_id": self.ids.sanity(), "_type": "webhookLog", "_createdAt": created,
            "_updatedAt": created, "_rev": self.ids.rev(), "eventType": event_type,
            "eventId": event_id, "status": status, "details": details,
            "timestamp": iso_ms(at_ms)})

    def delivery(self, event: Doc, outcome: str | None, *, error: str | None = None,
                 made_s: int | None = None) -> None:
        """`processing`, then `outcome` (`success`/`error`, or None: nothing followed).

        `made_s`: the second the webhook wrote the subscription, which `success` follows; the
        log never starts before Stripe sent the event."""
        session = event["data"]["object"]
        start_ms = event["created"] * 1000 + self.rng.randint(80, 1500)
        if made_s is None:
            done_ms = start_ms + self.rng.randint(250, 2800)
        else:
            made_ms = made_s * 1000 + self.rng.randint(0, 999)
            start_ms = max(start_ms, made_ms - self.rng.randint(250, 2800))
            done_ms = max(made_ms, start_ms + 250)
        took = done_ms - start_ms
        self.add(COMPLETED, event["id"], "processing",
                 {"sessionId": session["id"], "metadata": session["metadata"]}, start_ms)
        if outcome == "success":
            self.add(COMPLETED, event["id"], "success",
                     {"sessionId": session["id"], "processingTimeMs": took}, done_ms)
        elif outcome == "error":
            assert error is not None
            stack = f"Error: {error}\n" + _ROUTE.format(self.rng.randint(60, 420),
                                                         self.rng.randint(5, 40))
            self.add(COMPLETED, event["id"], "error",
                     {"sessionId": session["id"], "error": error, "stack": stack,
                      "processingTimeMs": took}, done_ms)

    def signature_failure(self, at_ms: int) -> None:
        self.add(SIGNATURE_FAILED, "unknown", "error",
                 {"error": SIGNATURE_ERROR, "signatureLength": self.rng.choice([0, 0, 164, 246]),
                  "bodyLength": self.rng.randint(2400, 5200)}, at_ms)


def webhook_log(
    ids: Ids,
    rng: random.Random,
    stripe_data: Mapping[str, Mapping[str, list[Doc]]],
    docs: list[Doc],
    truth: Mapping[str, Doc],
    *,
    since: int,
    until: int,
    success_share: float = SUCCESS_SHARE,
) -> list[Doc]:
    """The webhookLog documents of a built world, oldest first (see the module docstring).

    `stripe_data` is stripe.json's `data` (events newest first per account), `docs` the Sanity
    documents, `truth` the truth entries by session id; `[since, until)` the window (unix s)."""
    made_at: dict[str, str] = {}  # event id -> `_createdAt` of the subscription it made
    passes: dict[str, Doc] = {}
    for doc in docs:
        if doc["_id"].startswith("drafts."):
            continue
        if doc["_type"] == "subscription" and "webhookEventId" in doc:
            made_at[doc["webhookEventId"]] = doc["_createdAt"]
        elif doc["_type"] == "pass":
            passes[doc["_id"]] = doc
    log = _Log(ids, rng)
    completed = 0
    for data in stripe_data.values():
        newest_logged = False
        for event in data["events"]:
            if event["type"] != COMPLETED:
                continue
            completed += 1
            session = event["data"]["object"]
            entry = truth.get(session["id"])
            if entry is None:
                continue
            if not event["_delivery_success"]:
                roll = rng.random()
                if roll < LOST_ERROR_SHARE:
                    log.delivery(event, "error", error=lost_error(rng, session["metadata"]))
                elif roll < LOST_ERROR_SHARE + LOST_STUCK_SHARE:
                    log.delivery(event, None)
            elif entry["outcome"] == "already_present" and event["id"] in made_at:
                if not newest_logged or rng.random() < success_share:
                    newest_logged = True
                    log.delivery(event, "success",
                                 made_s=parse_ms(made_at[event["id"]]) // 1000)
            elif entry["outcome"] == "needs_manual":
                log.delivery(event, "error", error=manual_error(
                    entry["reason"], session["metadata"], passes))
    for _ in range(min(3 + completed // 2000, 25)):
        log.signature_failure(rng.randint(since * 1000, until * 1000 - 1))
    log.docs.sort(key=lambda doc: doc["timestamp"])
    return log.docs
