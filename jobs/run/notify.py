"""Alerts after a run: which to send is decided in `jobs.reports.alerts`; this wires it to mail and
chat."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from jobs.adapters.chat import ChatWebhook, deliver_chat
from jobs.adapters.ledger import Ledger
from jobs.adapters.mailer import Mailer
from jobs.config.settings import Settings
from jobs.core.runreport import RunReport
from jobs.reports.alerts import deliver, evaluate
from jobs.reports.weekly import Links
from jobs.run.service import Notify

log = structlog.get_logger("jobs.notify")


def notifier(settings: Settings) -> Notify | None:
    """None when neither mail nor a chat webhook is configured: alerts then live in the ledger
    and the logs only. Each channel is tried on its own: one failing never stops the other."""
    mail = not settings.missing("smtp")
    chat_url = settings.alerts.chat_webhook_url
    if not mail and chat_url is None:
        return None
    key_mode = settings.stripe.key_mode if settings.stripe.secret_key else "test"
    links = Links(settings.stripe.dashboard_url, key_mode)
    tz = settings.schedule.timezone
    chat = ChatWebhook(chat_url) if chat_url is not None else None

    def notify(report: RunReport | None, ledger: Ledger) -> None:
        alerts = evaluate(report, ledger, settings.alerts, datetime.now(UTC), links=links, tz=tz)
        if not alerts:
            return
        if chat is not None:
            try:
                deliver_chat(alerts, chat, ledger, key_mode=key_mode)
            except Exception as error:  # logged by class: the message could carry the URL
                log.error("chat_alerts_failed", error_type=type(error).__name__)
        if mail:
            delivery = deliver(alerts, Mailer(settings.smtp), ledger, tz=tz, key_mode=key_mode)
            log.info("alerts", found=len(alerts), delivery=str(delivery))

    return notify
