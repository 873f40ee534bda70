"""One home per outside system: Stripe, Sanity, SMTP, the ledger, locks, chat, metrics."""
