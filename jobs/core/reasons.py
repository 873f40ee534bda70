"""Plain words for every reason a purchase needs a person and every anomaly: what it means and
the step that fixes it. The weekly report, the alerts and the runbook all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    """One reason or anomaly kind, for a reader who does not know the code."""

    code: str
    title: str  # a short line, e.g. "The payment does not say which pass was bought"
    meaning: str  # what happened, in one or two sentences
    fix: str  # the step that fixes it


# How a fixed purchase leaves the "needs you" list: the job must see it again.
AFTER_FIX = (
    "The purchase leaves the \"needs you\" list the next time a run reads it: quick runs cover "
    "the last minutes, the deep run the last days; for an older payment run "
    "`reconcile run --since <payment date>` (or check it with `reconcile diagnose --session "
    "<session id>`)."
)

# A subscription made by hand must carry the payment's session id, or the job (and the app's
# own duplicate check) cannot tell that the purchase already has its pass.
_BY_HAND = (
    "create the subscription by hand in Sanity Studio with `stripeSessionId` set to the "
    "payment's session id (cs_...) and `stripePaymentId` to its payment id (pi_...), so the job "
    "sees the purchase as done"
)

NEEDS_MANUAL: dict[str, Explanation] = {
    e.code: e
    for e in (
        Explanation(
            "metadata_missing",
            "The payment does not say which pass was bought",
            "The Stripe payment carries no pass id (not in its metadata, not on its product), "
            "and its line description matches no single pass of the school.",
            "Open the payment in Stripe, read the line description and the amount, and ask the "
            f"school which pass it was; then {_BY_HAND}. Never pick a pass from the amount alone: "
            "several passes share a price.",
        ),
        Explanation(
            "pass_not_found",
            "The pass this payment names does not exist (any more)",
            "The payment names a pass id that matches no published pass: it was deleted, or "
            "only a draft exists.",
            "In Sanity Studio, restore or publish that pass (the payment's line description "
            "gives its name); the next run then creates the subscription. If the pass is gone "
            f"for good, {_BY_HAND}.",
        ),
        Explanation(
            "pass_type_unknown",
            "The pass has a type or expiry the app does not know",
            "The pass type is not one of single, multi-pass, multi (clip card) or unlimited "
            "(e.g. an old course pass), or the pass has no valid expiry (neither validity days "
            "nor a fixed expiry date).",
            "In Sanity Studio, give the pass one of the four types and a validity (days, or a "
            "fixed expiry date); the next run then creates the subscription.",
        ),
        Explanation(
            "pass_without_class_count",
            "The clip card has no number of classes",
            "A multi or multi-pass pass has no usable `classesLimit` (missing, not a number, or "
            "below 1), so the job cannot tell how many classes the student bought.",
            "In Sanity Studio, set the pass's number of classes (`classesLimit`, 1 or more); the "
            "next run then creates the subscription.",
        ),
        Explanation(
            "tenant_mismatch",
            "The payment and the pass belong to different schools",
            "The school that took the payment (its Stripe account), the school named in the "
            "payment and the school that owns the pass do not agree, or the Stripe account is "
            "linked to no school.",
            "Check in Stripe which school's account took the payment. If that account belongs "
            "to no school, set the school's Stripe account id (`stripeConnect.accountId`) in "
            f"Sanity Studio; if the pass is simply from another school, {_BY_HAND} for the "
            "right school's pass.",
        ),
        Explanation(
            "user_unknown",
            "The payment does not say which student bought it",
            "The payment carries no student id (`userId`), so the job cannot tell whose pass it "
            "is. The e-mail shown is only what the buyer typed at checkout.",
            "Find the student's account from the e-mail together with the school (ask the "
            f"student if several accounts share it), then {_BY_HAND}.",
        ),
        Explanation(
            "user_ambiguous",
            "Several student accounts have the same sign-in id",
            "More than one user document in Sanity has the buyer's sign-in id (`clerkId`), so "
            "the job cannot tell which one should get the pass.",
            "In Sanity Studio, keep the user document the student really uses and remove or "
            "re-point the duplicates; the next run then creates the subscription.",
        ),
        Explanation(
            "upgrade_source_missing",
            "An upgrade whose old pass cannot be found",
            "The payment is an upgrade, but the subscription it upgrades from is not named or "
            "does not exist (published) any more.",
            "Find the student's previous pass in Sanity Studio. Create the new subscription by "
            "hand (with `stripeSessionId` set to this payment's session id) and set "
            "`isActive: false` on the old one, so the student does not keep both.",
        ),
        Explanation(
            "manual_duplicate_suspected",
            "Someone seems to have given this pass by hand already",
            "The student already has a subscription for the same pass, made by hand (no Stripe "
            "session id, a missing or made-up payment id), starting within 7 days of this "
            "payment. Creating another would give the pass twice.",
            "Open that subscription in Sanity Studio. If it is this purchase, set its "
            "`stripeSessionId` and `stripePaymentId` to this payment's ids, so the job "
            f"recognises it. If it is a different purchase, {_BY_HAND}.",
        ),
    )
}

ANOMALIES: dict[str, Explanation] = {
    e.code: e
    for e in (
        Explanation(
            "duplicate_subscriptions",
            "One payment has more than one subscription",
            "Several published subscriptions point at the same Stripe payment, so the student "
            "may have been given the pass twice (two webhook deliveries, or a script).",
            "Keep the subscription the student has been using (bookings, clips used) and set "
            "`isActive: false` on the others. Do not delete them blindly.",
        ),
        Explanation(
            "mistyped_subscription",
            "A subscription has the wrong type for its pass",
            "The subscription's type does not match its pass (e.g. a clip card stored as "
            "`single`), or, with no pass to compare with, is no type the app knows, so the app "
            "counts the wrong number of classes.",
            "In Sanity Studio, set the subscription's type to match the pass. For a clip card "
            "stored as single, set `remainingClips` to classesLimit - max(0, 1 - remaining); "
            "never reset the clips blindly.",
        ),
        Explanation(
            "wrong_tenant",
            "A subscription points at the wrong school",
            "The subscription's school is not the school that took the payment (or it has no "
            "school and its pass is not that school's), so the student may not see it.",
            "In Sanity Studio, set the subscription's `tenant` to the school that took the "
            "payment.",
        ),
        Explanation(
            "invisible_shape",
            "A subscription exists but the app cannot show it",
            "The subscription lacks one of type, startDate, endDate, passId or user (the shape "
            "some old repair scripts wrote), or its startDate or endDate is not a date "
            "(`Invalid Date`), so the student does not see the pass.",
            "In Sanity Studio, fill in the missing fields (or the broken date) from the pass "
            "and the payment (start = payment date), or replace the document with a correctly "
            "shaped one.",
        ),
        Explanation(
            "draft_only",
            "Only an unpublished draft records this payment",
            "A draft subscription for this payment exists but was never published. The app "
            "shows drafts to the student, so the pass is usable and the job wrote nothing.",
            "Publish the draft in Sanity Studio (or delete it only if a published copy exists); "
            "never create a second subscription for the payment.",
        ),
        Explanation(
            "refunded_but_active",
            "A refunded payment still has an active pass",
            "The payment was fully refunded, but its subscription is still active.",
            "Ask the school whether the student should keep the pass; if not, set "
            "`isActive: false` on the subscription.",
        ),
        Explanation(
            "wrong_user",
            "A pass is linked to another student",
            "The subscription for this payment points at a user document that is not the "
            "buyer's (none of the buyer's Clerk id documents), so the buyer does not see it.",
            "In Sanity Studio, set the subscription's `user` to the buyer's user document "
            "(run `reconcile diagnose --session <id>` to see which one).",
        ),
        Explanation(
            "upgrade_incomplete",
            "An upgrade left the old pass active",
            "The upgraded pass exists, but the pass it replaced is still active and does not "
            "name the new pass, so the student holds both.",
            "Run `reconcile diagnose --session <id> --fix`: it deactivates the old pass the way "
            "the app's webhook does, only if nobody changed it meanwhile.",
        ),
        Explanation(
            "duplicate_users",
            "One student has several user documents",
            "Several user documents carry the buyer's Clerk id. The app shows a pass linked to "
            "any of them; the job linked the new pass to one chosen the same way every time "
            "(`user-<clerk id>` when present, else the oldest).",
            "Nothing is urgent. Merge the student's user documents when convenient.",
        ),
        Explanation(
            "currency_differs",
            "Paid in another currency than the school's current one",
            "The payment's currency is not the school's configured Stripe currency (the school "
            "changed it, or the payment predates its Stripe Connect set-up). The job created "
            "the pass as the app's webhook would have.",
            "Nothing to do unless the amount looks wrong; check the school's currency setting.",
        ),
        Explanation(
            "expired_on_arrival",
            "A pass was created already expired",
            "The job created the subscription, but its end date is already past (the pass has "
            "a fixed expiry date in the past), so the student cannot use it.",
            "Check the pass's expiry in Sanity Studio and, if the student should be able to use "
            "what they paid for, move the subscription's `endDate` forward.",
        ),
    )
}

# Outcomes that are not a reason code but still need (or explain) a person's attention.
FAILED_WRITE = Explanation(
    "write_failed",
    "The job could not save the subscription",
    "Sanity refused or did not answer the write for this purchase; nothing was saved for it.",
    "The next run tries again by itself. If it keeps failing, read the error below and run "
    "`reconcile doctor` (a token without create rights is the usual cause).",
)
MALFORMED = Explanation(
    "malformed_session",
    "Stripe returned a payment the job cannot read",
    "The checkout session lacks fields every session has (id, creation time, metadata), so "
    "the job could not judge it.",
    "Open the payment in Stripe and check it by hand; tell the developers, with the session id.",
)
CAP_HIT = Explanation(
    "cap_hit",
    "Not written: the safety cap stopped the run",
    "The run found more missing subscriptions than the safety cap allows and wrote none of "
    "them, in case something is wrong.",
    "Check a few of the purchases in Stripe and Sanity. If they really lack their pass (the "
    "webhook was down), run `reconcile run --max-creates N` once with N above the number found.",
)
INTERRUPTED = Explanation(
    "interrupted",
    "Not written: the run was stopped",
    "The run was stopped before it wrote this purchase.",
    "Nothing to do: the next run picks it up. If runs keep being stopped, check the scheduler.",
)
PENDING = Explanation(
    "async_payment",
    "Payment not settled yet",
    "The student paid with a delayed method (e.g. bank debit); the money has not arrived yet.",
    "Nothing to do: the job re-checks it for 30 days and creates the pass once it is paid.",
)


def _unknown(code: str) -> Explanation:
    return Explanation(code, code.replace("_", " ").capitalize(),
                       "A reason this version of the report has no words for.",
                       "Look the purchase up with `reconcile diagnose` and check it by hand "
                       f"({code}).")


def explain_reason(code: str | None) -> Explanation:
    """The plain words for a needs_manual reason code."""
    return NEEDS_MANUAL.get(code or "") or _unknown(code or "unknown")


def explain_anomaly(kind: str) -> Explanation:
    """The plain words for an anomaly kind."""
    return ANOMALIES.get(kind) or _unknown(kind)


def explain_failure(error: str | None) -> Explanation:
    """The plain words for a `failed` session, chosen by the error the run recorded."""
    text = (error or "").lower()
    if text.startswith("malformed session"):
        return MALFORMED
    if "safety cap" in text:
        return CAP_HIT
    if "interrupted" in text:
        return INTERRUPTED
    return FAILED_WRITE


def explain_outcome(outcome: str, reason: str | None, detail: str | None) -> Explanation:
    """The plain words for a session row the report shows as needing a person."""
    if outcome == "failed":
        return explain_failure(detail)
    return explain_reason(reason)


def runbook_markdown() -> str:
    """The runbook's "what each reason means" section, generated from the same words."""
    lines = ["## Purchases that need a person", "", AFTER_FIX, ""]
    for e in [*NEEDS_MANUAL.values(), FAILED_WRITE, CAP_HIT, MALFORMED]:
        lines += [f"### `{e.code}`: {e.title}", "", e.meaning, "", f"**Fix:** {e.fix}", ""]
    lines += ["## Anomalies (the job found something odd it did not change)", ""]
    for e in ANOMALIES.values():
        lines += [f"### `{e.code}`: {e.title}", "", e.meaning, "", f"**Fix:** {e.fix}", ""]
    return "\n".join(lines).rstrip() + "\n"

