"""Alerts after a run: which to send is decided in `jobs.alerts`; this wires it to mail."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from jobs.alerts import deliver, evaluate
from jobs.ledger import Ledger
from jobs.mailer import Mailer
from jobs.service import Notify
from jobs.settings import Settings
from jobs.weekly import Links

log = structlog.get_logger("jobs.notify")


def notifier(settings: Settings) -> Notify | None:
    """None when no mail is configured: alerts then live in the ledger and the logs only."""
    if settings.missing("smtp"):
        return None
    key_mode = settings.stripe.key_mode if settings.stripe.secret_key else "test"
    links = Links(settings.stripe.dashboard_url, key_mode)
    tz = settings.schedule.timezone

    def notify(report: Mapping[str, Any] | None, ledger: Ledger) -> None:
        alerts = evaluate(report, ledger, settings.alerts, datetime.now(UTC), links=links, tz=tz)
        if not alerts:
            return
        delivery = deliver(alerts, Mailer(settings.smtp), ledger, tz=tz, key_mode=key_mode)
        log.info("alerts", found=len(alerts), delivery=str(delivery))

    return notify
