"""Stripe stand-in fixtures, to be wired into conftest.py (or `pytest_plugins`).

    def test_x(stripe_standin):
        standin = stripe_standin(stripe_file(data={...}))      # started, stopped after the test
        client = stripe_test_client(standin)                   # real SDK, pointed at it
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import stripe

from jobs.adapters.stripe_client import make_client
from sandbox.stripe.server import StripeStandIn
from tests.support.stripe_data import TEST_KEY

__all__ = ["StandInFactory", "stripe_standin", "stripe_test_client"]

StandInFactory = Callable[..., StripeStandIn]


@pytest.fixture
def stripe_standin() -> Iterator[StandInFactory]:
    """A factory: `stripe_standin(data, now=None, clock=...)` starts a stand-in on 127.0.0.1
    (ephemeral port) serving `data` (a stripe.json dict or path); each is stopped after the test."""
    started: list[StripeStandIn] = []

    def start(data: Mapping[str, Any] | Path, now: Callable[[], float] | None = None,
              **options: Any) -> StripeStandIn:
        standin = StripeStandIn(data, now=now, **options).start()
        started.append(standin)
        return standin

    yield start
    for standin in started:
        standin.stop()


def stripe_test_client(standin: StripeStandIn, key: str = TEST_KEY,
                       timeout: float = 5.0) -> stripe.StripeClient:
    """The production client factory, pointed at the stand-in."""
    return make_client(key, standin.url, timeout)
