"""The narrow interfaces the orchestrator needs; adapters (and test fakes) implement them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from jobs.core.model import Decision
from jobs.core.records import RunRecord, RunStatus, Watermark
from jobs.core.runreport import RunReport


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

    def refunded(self, account: str, since: int) -> dict[str, int]:
        """Refunded minor units per payment intent, of the refunds created since `since`
        (failed and canceled refunds do not count)."""
        ...

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


class RunLockLike(Protocol):
    """What a run needs of its lock: a `flock` in the state directory
    (`jobs.adapters.lock`) or a PostgreSQL advisory lock (`jobs.adapters.pg_lock`)."""

    def acquire(self, blocking: bool = False, kind: str | None = None) -> bool: ...
    def release(self) -> None: ...
    def holder(self) -> dict[str, Any] | None: ...
    def alive(self) -> bool: ...


class RunLedger(Protocol):
    """What one run (`jobs.run.service`) and its alerts need of the ledger."""

    def reap_stale_runs(self, alive: Callable[[int], bool]) -> list[str]: ...
    def start_run(self, run_id: str, kind: str, since: datetime, until: datetime,
                  dry_run: bool, accounts: list[str], *, pid: int | None = None) -> None: ...
    def finish_run(self, run_id: str, status: RunStatus, report: RunReport | None,
                   error: str | None) -> None: ...
    def record_present(self, run_id: str, decisions: Iterable[Decision]) -> None: ...
    def record_report(self, report: RunReport) -> None: ...
    def settle_pending(self, session_id: str, outcome: str,
                       reason: str | None = None) -> bool: ...
    def pending_sessions(self, max_age_days: int = 30) -> list[tuple[str, str, datetime]]: ...
    def watermarks(self) -> list[Watermark]: ...
    def advance_watermarks_from_report(self, report: RunReport, kind: str) -> list[str]: ...
    def sold_since(self, since: datetime) -> set[str]: ...
    def prune(self, keep: timedelta) -> dict[str, int]: ...
    # The alerts after a run (`jobs.reports.alerts`): recent runs, and which were sent.
    def recent_runs(self, limit: int = 10) -> list[RunRecord]: ...
    def last_success(self) -> RunRecord | None: ...
    def alert_sent(self, key: str) -> bool: ...
    def record_alert(self, key: str, kind: str, sent: bool,
                     detail: str | None = None) -> None: ...
