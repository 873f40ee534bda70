"""The Stripe stand-in: the HTTP API the real SDK talks to (127.0.0.1 only), its data and
controls."""
