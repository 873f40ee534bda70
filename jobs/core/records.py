"""The ledger's records as frozen values (runs, session outcomes, pending, anomalies,
watermarks, kept reports, student e-mails), and the epoch codecs they are stored with.

Pure: the ledger (`jobs.adapters.ledger`) hands these out and the run reads them through the
ports (`jobs.core.ports`), so neither side needs the other's module for its types."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

RunStatus = Literal["ok", "partial", "failed", "interrupted"]  # a finished run

# ---- time codecs -------------------------------------------------------------------------


def to_epoch(value: datetime | int | float | str | None) -> float | None:
    """Epoch seconds from a datetime, a unix timestamp or an ISO 8601 string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return to_epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise ValueError(f"not a time: {value!r}")


def from_epoch(value: float | None) -> datetime | None:
    """Aware UTC datetime from stored epoch seconds."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def to_datetime(value: float) -> datetime:
    """Aware UTC datetime from non-null stored epoch seconds."""
    return datetime.fromtimestamp(value, UTC)


# ---- row types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One run as the ledger knows it."""

    run_id: str
    kind: str
    since: datetime
    until: datetime
    dry_run: bool
    accounts: list[str]
    pid: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: dict[str, int]
    account_errors: dict[str, str]
    error: str | None

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        return cls(
            run_id=row["run_id"],
            kind=row["kind"],
            since=to_datetime(row["since"]),
            until=to_datetime(row["until"]),
            dry_run=bool(row["dry_run"]),
            accounts=json.loads(row["accounts"]),
            pid=row["pid"],
            started_at=to_datetime(row["started_at"]),
            finished_at=from_epoch(row["finished_at"]),
            status=row["status"],
            counts=json.loads(row["counts"]) if row["counts"] else {},
            account_errors=json.loads(row["account_errors"]) if row["account_errors"] else {},
            error=row["error"],
        )


@dataclass(frozen=True)
class SessionOutcome:
    """What the job knows about one checkout session: now, when first seen, and its repair."""

    session_id: str
    account: str
    tenant: str | None
    outcome: str
    reason: str | None
    detail: str | None
    amount: float | None
    currency: str | None
    email: str | None
    pass_id: str | None
    pass_name: str | None
    subscription_id: str | None
    user_id: str | None
    paid_at: datetime | None
    first_seen_at: datetime
    first_outcome: str
    first_run_id: str
    last_seen_at: datetime
    last_run_id: str
    created_at: datetime | None
    created_run_id: str | None

    @property
    def repair_seconds(self) -> float | None:
        """Seconds from payment (session.created) to our subscription's creation, if repaired."""
        if self.created_at is None or self.paid_at is None:
            return None
        return (self.created_at - self.paid_at).total_seconds()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SessionOutcome:
        values: dict[str, Any] = dict(row)
        for name in ("paid_at", "created_at"):
            values[name] = from_epoch(values[name])
        for name in ("first_seen_at", "last_seen_at"):
            values[name] = to_datetime(values[name])
        return cls(**values)


@dataclass(frozen=True)
class PendingSession:
    """A session waiting for an asynchronous payment to settle."""

    account: str
    session_id: str
    reason: str | None
    first_seen_at: datetime
    last_checked_at: datetime


@dataclass(frozen=True)
class AnomalyRecord:
    """One anomaly (kind + session), with when it was first and last reported."""

    kind: str
    session_id: str | None
    subscription_ids: list[str]
    detail: str | None
    first_seen_at: datetime
    first_run_id: str
    last_seen_at: datetime
    last_run_id: str
    times_seen: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AnomalyRecord:
        return cls(
            kind=row["kind"],
            session_id=row["session_id"] or None,
            subscription_ids=json.loads(row["subscription_ids"]),
            detail=row["detail"],
            first_seen_at=to_datetime(row["first_seen_at"]),
            first_run_id=row["first_run_id"],
            last_seen_at=to_datetime(row["last_seen_at"]),
            last_run_id=row["last_run_id"],
            times_seen=row["times_seen"],
        )


@dataclass(frozen=True)
class Watermark:
    """Reconciled-up-to time of one account for one pass kind."""

    account: str
    kind: str
    until: datetime
    run_id: str | None
    updated_at: datetime


@dataclass(frozen=True)
class UnsentReport:
    """A report file kept on disk because mailing it failed."""

    path: Path
    error: str
    kept_at: datetime


@dataclass(frozen=True)
class NoticeRow:
    """One student e-mail as the ledger records it (`jobs.adapters.notice_ledger`)."""

    session_id: str
    run_id: str
    account: str
    tenant: str | None
    email: str | None
    content: Mapping[str, Any]
    state: str
    reason: str | None
    attempts: int
    message_id: str | None
    recorded_at: datetime
    owed_at: datetime | None
    sent_at: datetime | None
    updated_at: datetime
