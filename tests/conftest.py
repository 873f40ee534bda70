"""Shared fixtures: the Stripe and Sanity stand-ins (started only by tests that ask)."""

pytest_plugins = ["tests.integration.conftest_sanity", "tests.integration.conftest_stripe"]
