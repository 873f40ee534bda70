"""What `reconcile diagnose` works on: the `Query`, the sessions `Found`, the `Diagnosis`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.core.model import Catalog, Decision, Session

JSON = dict[str, Any]


@dataclass(frozen=True)
class Query:
    """Exactly one of the three is set."""

    email: str | None = None
    session: str | None = None
    user: str | None = None

    def describe(self) -> JSON:
        return {k: v for k, v in (("email", self.email), ("session", self.session),
                                  ("user", self.user)) if v is not None}


@dataclass
class Found:
    """The raw sessions found per account, the accounts that could not be searched, notes."""

    sessions: dict[str, list[JSON]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Diagnosis:
    """What was searched and found, the people and subscriptions Sanity holds, each purchase
    with its plan; `fix` once `--fix` ran."""

    query: Query
    accounts: list[str]
    found: Found
    catalog: Catalog
    users: list[JSON]
    subs: list[JSON]
    purchases: list[tuple[Session | None, JSON, Decision]]  # parsed, raw, decision
    clerk_ids: dict[str, str] = field(default_factory=dict)  # session id -> the userId it names
    line_items: dict[str, list[str]] = field(default_factory=dict)  # session id -> descriptions
    fix: JSON | None = None

    def decisions(self) -> list[Decision]:
        return [d for _, _, d in self.purchases]
