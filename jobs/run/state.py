"""Where the job's state lives, from the settings: the ledger and the run lock.

Unset `RECONCILER_DATABASE_URL`: the SQLite ledger and a `flock` in the state directory (one
host). Set: both in PostgreSQL (any number of hosts, no local state).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from jobs.adapters.ledger import Ledger
from jobs.adapters.lock import RunLockLike
from jobs.config.settings import Settings


def database_url(settings: Settings) -> str | None:
    url = settings.database.url
    return None if url is None else url.reveal()


def open_ledger(settings: Settings, *,
                clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Ledger:
    return Ledger.for_settings(settings.run.state_dir, database_url(settings), clock=clock)


def run_lock(settings: Settings, kind: str = "run") -> RunLockLike:
    """A new lock object (flock is per open file and an advisory lock per session, so each
    object really competes)."""
    url = database_url(settings)
    if url is not None:
        from jobs.adapters.pg_lock import AdvisoryLock

        return AdvisoryLock(url, kind=kind)
    from jobs.adapters.lock import RunLock

    return RunLock(settings.run.state_dir, kind=kind)
