"""Shared fixtures: the Stripe and Sanity stand-ins and the PostgreSQL server (started only by
tests that ask), and the chaos suite's `--soak` option (so `pytest --soak` works from the
repository root)."""

pytest_plugins = [
    "tests.integration.conftest_sanity",
    "tests.integration.conftest_stripe",
    "tests.chaos.soak_option",
    "tests.support.pg",
    "tests.support.ledger",
]
