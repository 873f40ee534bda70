"""Alerts after a run: which to send is decided in `jobs.reports.alerts`; this wires it to mail and
chat (both built by `jobs.run.compose` and handed in)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog

from jobs.config.settings import Settings
from jobs.core.ports import RunLedger
from jobs.core.runreport import RunReport
from jobs.reports.alerts import Alert, AlertMailer, AlertRecords, deliver, evaluate
from jobs.reports.weekly import Links
from jobs.run.service import Notify

log = structlog.get_logger("jobs.notify")


class ChatAlerts(Protocol):
    """Posts the alerts not posted before to the chat webhook and records each attempt."""

    def __call__(self, alerts: Sequence[Alert], ledger: AlertRecords, *,
                 key_mode: str | None = None) -> object: ...


def make_notify(settings: Settings, *, chat: ChatAlerts | None,
                mailer: Callable[[], AlertMailer] | None) -> Notify | None:
    """None when neither mail nor a chat webhook is configured: alerts then live in the ledger
    and the logs only. Each channel is tried on its own: one failing never stops the other.
    `mailer` makes the mailer of one delivery."""
    if mailer is None and chat is None:
        return None
    key_mode = settings.stripe.key_mode if settings.stripe.secret_key else "test"
    links = Links(settings.stripe.dashboard_url, key_mode)
    tz = settings.schedule.timezone

    def notify(report: RunReport | None, ledger: RunLedger) -> None:
        alerts = evaluate(report, ledger, settings.alerts, datetime.now(UTC), links=links, tz=tz)
        if not alerts:
            return
        if chat is not None:
            try:
                chat(alerts, ledger, key_mode=key_mode)
            except Exception as error:  # logged by class: the message could carry the URL
                log.error("chat_alerts_failed", error_type=type(error).__name__)
        if mailer is not None:
            delivery = deliver(alerts, mailer(), ledger, tz=tz, key_mode=key_mode)
            log.info("alerts", found=len(alerts), delivery=str(delivery))

    return notify
