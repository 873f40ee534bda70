"""Alerts after a run: which to send is decided in `jobs.alerts`; this wires it to mail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.ledger import Ledger
from jobs.service import Notify
from jobs.settings import Settings


def notifier(settings: Settings) -> Notify | None:
    """None when no mail is configured: alerts then live in the ledger and the logs only."""
    if settings.missing("smtp"):
        return None

    def notify(report: Mapping[str, Any] | None, ledger: Ledger) -> None:
        del report, ledger  # wired to jobs.alerts once it lands

    return notify
