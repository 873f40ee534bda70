"""The narrow interfaces the orchestrator needs; adapters (and test fakes) implement them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SessionPage:
    """One page of raw Checkout Sessions (parsed JSON, newest first)."""

    account: str
    index: int
    sessions: list[dict[str, Any]]
    last_id: str | None
    has_more: bool


class StripeSource(Protocol):
    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage:
        """ONE page of complete sessions created in [since, until), newest first, after the
        session `starting_after`: the unit of a segmented read (`jobs.run.segments`)."""
        ...

    def line_items(self, account: str, session_id: str) -> list[dict[str, Any]]: ...

    def products(self, account: str, product_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def refunds(self, account: str, since: int) -> list[dict[str, Any]]: ...

    def session(self, account: str, session_id: str) -> dict[str, Any] | None: ...


class SanityStore(Protocol):
    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def lookup_page(
        self,
        session_ids: list[str],
        payment_intents: list[str],
        user_ids: list[str],
        upgrade_ids: list[str],
    ) -> dict[str, Any]: ...

    def recheck(self, session_ids: list[str], payment_intents: list[str],
                person_refs: list[str]) -> dict[str, Any]: ...

    def commit(
        self, mutations: Sequence[dict[str, Any]], transaction_id: str, *, dry_run: bool = False
    ) -> Any: ...

    def get_documents(self, ids: Iterable[str]) -> list[dict[str, Any]]: ...
