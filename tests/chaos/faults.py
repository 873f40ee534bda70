"""Fault schedules: what each stand-in answers wrongly, and a hypothesis strategy for them.

A `Fault` names a service, the request it hits (a Stripe operation or a Sanity request kind),
what goes wrong and how many times in a row. `apply` queues the schedule in the stand-ins
(faults are consumed by the next matching requests, in order).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.chaos.boxes import SANITY_TIMEOUT_S, STRIPE_TIMEOUT_S, ChaosBox

STRIPE_OPS = (
    "GET /v1/checkout/sessions",
    "GET /v1/checkout/sessions/{session}/line_items",
    "GET /v1/refunds",
    "*",
)
SANITY_KINDS = ("query", "mutate")
# What can go wrong with one answer. `timeout` waits longer than the client's timeout;
# `slow` waits, but less; `drop_after` (Sanity writes) commits and then drops the connection.
STRIPE_KINDS = ("429", "429_retry_after", "500", "503", "500_no_retry", "409", "timeout",
                "drop", "slow", "malformed")
SANITY_FAULT_KINDS = (*STRIPE_KINDS, "drop_after")


@dataclass(frozen=True)
class Fault:
    service: str  # stripe | sanity
    target: str  # Stripe operation, or Sanity kind (query | mutate | doc)
    kind: str
    times: int = 1
    account: str | None = None  # Stripe only: just this account's requests

    @property
    def label(self) -> str:
        return f"{self.service}:{self.kind}"

    def __str__(self) -> str:
        where = f" ({self.account})" if self.account else ""
        return f"{self.service} {self.target}{where}: {self.kind} x{self.times}"


def stripe_fields(kind: str) -> dict[str, Any]:
    """`Controls.inject_fault` keyword arguments of the Stripe stand-in for one kind."""
    return {
        "429": {"status": 429},
        "429_retry_after": {"status": 429, "headers": {"Retry-After": "7"}},
        "500": {"status": 500},
        "503": {"status": 503, "headers": {"Stripe-Should-Retry": "true"}},
        "500_no_retry": {"status": 500, "headers": {"Stripe-Should-Retry": "false"}},
        "409": {"status": 409, "body": {"error": {"type": "idempotency_error",
                                                  "message": "Keys for idempotent requests "
                                                  "can only be used with the same parameters"}}},
        "timeout": {"delay": STRIPE_TIMEOUT_S + 0.3},
        "drop": {"drop": True},
        "slow": {"delay": STRIPE_TIMEOUT_S / 4},
        "malformed": {"status": 200, "malformed": True},
    }[kind]


def sanity_fields(kind: str) -> dict[str, Any]:
    """`SanityStandIn.inject_fault` keyword arguments for one kind."""
    return {
        "429": {"status": 429},
        "429_retry_after": {"status": 429, "headers": {"Retry-After": "7"}},
        "500": {"status": 500},
        "503": {"status": 503},
        "500_no_retry": {"status": 500},
        "409": {"status": 409},
        "timeout": {"delay_ms": (SANITY_TIMEOUT_S + 0.3) * 1000},
        "drop": {"drop": True},
        "drop_after": {"drop_after": True},
        "slow": {"delay_ms": SANITY_TIMEOUT_S * 250},
        "malformed": {"malformed": True},
    }[kind]


def apply(box: ChaosBox, schedule: Sequence[Fault]) -> None:
    """Queue every fault of the schedule in the stand-ins."""
    for fault in schedule:
        if fault.service == "stripe":
            box.stripe.controls.inject_fault(fault.target, times=fault.times,
                                             account=fault.account, **stripe_fields(fault.kind))
        else:
            for _ in range(fault.times):
                box.sanity.inject_fault(fault.target, **sanity_fields(fault.kind))


def clear(box: ChaosBox) -> None:
    box.stripe.controls.clear_faults()
    box.sanity.clear_faults()


# Up to 7 in a row: past the 6 attempts, so that sometimes a request is given up. Waits
# cost real time, so those come at most twice in a row.
_WAITS = ("timeout", "slow")


def _times(kind: str) -> st.SearchStrategy[int]:
    return st.integers(1, 2) if kind in _WAITS else st.integers(1, 7)


def stripe_faults(accounts: Sequence[str]) -> st.SearchStrategy[Fault]:
    def build(kind: str) -> st.SearchStrategy[Fault]:
        return st.builds(Fault, service=st.just("stripe"), target=st.sampled_from(STRIPE_OPS),
                         kind=st.just(kind), times=_times(kind),
                         account=st.none() | st.sampled_from(list(accounts)))

    return st.sampled_from(STRIPE_KINDS).flatmap(build)


def sanity_faults() -> st.SearchStrategy[Fault]:
    def build(kind: str) -> st.SearchStrategy[Fault]:
        return st.builds(Fault, service=st.just("sanity"), target=st.sampled_from(SANITY_KINDS),
                         kind=st.just(kind), times=_times(kind))

    return st.sampled_from(SANITY_FAULT_KINDS).flatmap(build)


def schedules(accounts: Sequence[str], max_size: int = 8) -> st.SearchStrategy[list[Fault]]:
    """A fault schedule touching Stripe, Sanity or both."""
    return st.lists(stripe_faults(accounts) | sanity_faults(), min_size=1, max_size=max_size)


def random_schedule(rng: random.Random, accounts: Sequence[str], max_size: int = 8
                    ) -> list[Fault]:
    """The same distribution as `schedules`, from a seeded `random.Random` (for soak loops,
    which run for a time rather than a number of examples)."""
    out = []
    for _ in range(rng.randint(1, max_size)):
        if rng.random() < 0.5:
            kind = rng.choice(STRIPE_KINDS)
            out.append(Fault("stripe", rng.choice(STRIPE_OPS), kind,
                             rng.randint(1, 2 if kind in _WAITS else 7),
                             rng.choice([None, *accounts])))
        else:
            kind = rng.choice(SANITY_FAULT_KINDS)
            out.append(Fault("sanity", rng.choice(SANITY_KINDS), kind,
                             rng.randint(1, 2 if kind in _WAITS else 7)))
    return out
