"""Every GROQ query the job sends, in one place: the run's (catalog, look-up, re-check, a
run's documents) and the operator tools' (`diagnose`, `doctor`, `audit`). Only
`jobs.adapters.sanity_store` sends them; everything else asks the store by name."""

from __future__ import annotations

# ---- the run ----------------------------------------------------------------------------

PUBLISHED = '!(_id in path("drafts.**")) && !(_id in path("versions.**"))'

CATALOG_QUERY = f"""{{
  "tenants": *[_type == "tenant" && {PUBLISHED}]{{
    _id, schoolName, slug, status, stripeConnect
  }},
  "passes": *[_type == "pass" && {PUBLISHED}]{{
    _id, name, type, price, validityType, validityDays, expiryDate, classesLimit, isActive, tenant
  }}
}}"""

_SUBS_OF_PURCHASES = """*[_type == "subscription" && (
    stripeSessionId in $sids || _id in $detIds || stripePaymentId in $pis
    || stripePaymentIntentId in $pis || paymentId in $pis)]"""

LOOKUP_QUERY = f"""{{
  "subs": {_SUBS_OF_PURCHASES},
  "users": *[_type == "user" && {PUBLISHED} && (clerkId in $uids || _id in $uids)],
  "upgrades": *[_type == "subscription" && {PUBLISHED} && _id in $upIds]
}}"""

# Just before a transaction: what now records its purchases (the webhook may have written
# since the look-up), and the buyers' §4#16 manual subscriptions (no Stripe session id, no
# payment intent), drafts included. Every clause a plain field lookup: the buyers' refs come
# from the page's look-up, not from a sub-query inside the filter.
RECHECK_QUERY = f"""{{
  "subs": {_SUBS_OF_PURCHASES},
  "manual": *[_type == "subscription" && user._ref in $refs
    && (!defined(stripeSessionId) || !(string::startsWith(stripeSessionId, "cs_live_")
        || string::startsWith(stripeSessionId, "cs_test_")))
    && !(string::startsWith(stripePaymentId, "pi_") == true
        || string::startsWith(stripePaymentIntentId, "pi_") == true
        || string::startsWith(paymentId, "pi_") == true)]
}}"""

RUN_DOCUMENTS_QUERY = '*[_type == "subscription" && reconcileRunId == $runId]'


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
