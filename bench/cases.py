"""The case matrix: how many sessions over how many connected accounts, and the naive sample."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    sessions: int
    schools: int  # connected accounts (the platform account is read as well)
    naive_per_account: int | None  # None: the naive baseline reads everything
    run_naive: bool = True


CASES: dict[str, Case] = {
    "1k": Case("1k", 1_000, 1, naive_per_account=None),
    "10k": Case("10k", 10_000, 10, naive_per_account=200),
    "100k": Case("100k", 100_000, 50, naive_per_account=40),
}
DEFAULT = ("1k", "10k", "100k")
# A smoke run in well under a minute: the small cases, the naive baseline on small samples.
QUICK: dict[str, Case] = {
    "1k": Case("1k", 1_000, 1, naive_per_account=150),
    "10k": Case("10k", 10_000, 10, naive_per_account=20),
}


_CUSTOM = re.compile(r"^(\d+)(k?)/(\d+)$")
NAIVE_SAMPLE = 2_000  # sessions the naive baseline reads at most in a custom case


def custom(name: str) -> Case | None:
    """`20k/1`: 20,000 sessions over 1 connected account; the naive baseline on a sample of
    about 2,000 sessions when the world is larger."""
    match = _CUSTOM.match(name)
    if not match:
        return None
    sessions = int(match.group(1)) * (1000 if match.group(2) else 1)
    schools = int(match.group(3))
    per_account = None if sessions <= NAIVE_SAMPLE else max(1, NAIVE_SAMPLE // (schools + 1))
    return Case(name, sessions, schools, naive_per_account=per_account)


def select(names: str | None, quick: bool) -> list[Case]:
    table = QUICK if quick else CASES
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else (
        list(QUICK) if quick else list(DEFAULT))
    out = []
    for name in wanted:
        if name in table:
            out.append(table[name])
        elif name in CASES:
            out.append(CASES[name])
        elif (made := custom(name)) is not None:
            out.append(made)
        else:
            raise SystemExit(f"unknown case {name!r}; known: {', '.join(CASES)}, "
                             "or SESSIONS/ACCOUNTS such as 20k/1")
    return out
