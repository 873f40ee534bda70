"""The seeded world generator: stripe.json, sanity.ndjson and truth.json for the stand-ins."""
