"""The GROQ queries of the operator tools (`diagnose`, `doctor`, `audit`), next to the ones the
run sends (`jobs.adapters.sanity_store`): what the app's documents are asked, in one place."""

from __future__ import annotations

# ---- diagnose: one person's or purchase's documents --------------------------------------

_PEOPLE = ('*[_type == "user" && (clerkId in $uids || _id in $uids'
           ' || (defined(email) && lower(email) in $emails))]')
FACTS_QUERY = f"""{{
  "users": {_PEOPLE}{{_id, clerkId, email, name, role, "tenant": tenant._ref, isActive}},
  "subs": *[_type == "subscription" && (stripeSessionId in $sids || _id in $detIds
    || stripePaymentId in $pis || stripePaymentIntentId in $pis || paymentId in $pis
    || user._ref in $uids || user._ref in {_PEOPLE}._id || user._ref in {_PEOPLE}.clerkId)]
}}"""


# ---- doctor: the app's webhook log --------------------------------------------------------

LOGGED_QUERY = '*[_type == "webhookLog" && details.sessionId in $sids].details.sessionId'
WEBHOOK_LOG_QUERY = """*[_type == "webhookLog" && timestamp >= $since
  && (status == "error" || eventType == $signature)] | order(timestamp desc) {
  eventType, eventId, status, timestamp, "error": details.error, "sessionId": details.sessionId
}"""


# ---- audit: every subscription, page by page ---------------------------------------------

FIELDS = """_id, _type, type, startDate, endDate, passId, passName, pass, user, tenant,
  isActive, isUpgrade, stripeSessionId, stripePaymentId, stripePaymentIntentId, paymentId,
  purchasePrice, finalPrice, upgradeCost, amount, status, purchaseDate, expiryDate"""


def page_query(size: int) -> str:
    # The slice is written into the query: GROQ slices take literal numbers.
    return (f'*[_type == "subscription" && _id > $last] | order(_id asc) [0...{int(size)}]'
            f"{{{FIELDS}}}")
