"""Chat alerts: the alerts of `jobs.reports.alerts`, posted to a Slack-compatible incoming webhook.

Slack, Mattermost and Rocket.Chat take the same `{"text": ...}` body, and Discord does at the
webhook URL with `/slack` appended; so one plain POST with `requests` covers them, retried by
the project's one retry policy, with nothing between the job and the URL that could log it.

The same alerts as the e-mail, de-duplicated by the same keys (recorded in the ledger as
`chat:<key>`, so chat and e-mail are each sent once, independently). The webhook URL carries
its own token: it never reaches a log line (errors are logged by class or HTTP status only).
A post that fails is recorded and tried again with the next alerts; it never fails a run.
A student's e-mail address stays out of the channel (masked as in the logs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import requests
import structlog

from jobs.adapters.logs import Scrubber
from jobs.adapters.retry import call_with_retry
from jobs.config.values import Secret
from jobs.core.errors import RetriableError
from jobs.reports.alerts import Alert, AlertRecords

log = structlog.get_logger("jobs.chat")

KEY_PREFIX = "chat:"
TIMEOUT = 5.0  # seconds per attempt; three attempts and their waits stay under half a minute
ATTEMPTS = 3


def _escape(text: str) -> str:
    """Slack's three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MASK = Scrubber(())  # e-mail addresses masked as in the logs; no secrets to know of here


def render_chat(alerts: Sequence[Alert], *, key_mode: str | None = None) -> dict[str, Any]:
    """The webhook body: one message, the alerts most urgent first (as `evaluate` sorted them)."""
    mode = " [TEST MODE]" if key_mode == "test" else ""
    count = f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}"
    blocks = [f"*Pass reconciler{mode}: {count}*"]
    for alert in alerts:
        facts = [f"{k}: {v}" for k, v in alert.facts]
        lines = [f"*{_escape(alert.title)}*", _escape(alert.meaning),
                 f"_What to do:_ {_escape(alert.fix)}"]
        if facts:
            lines.append(_escape(" · ".join(facts)))
        if alert.link:
            lines.append(f"<{alert.link}|Open the payment in Stripe>")
        blocks.append("\n".join(lines))
    return {"text": _MASK.text("\n\n".join(blocks))}


Post = Callable[..., requests.Response]


class ChatWebhook:
    """Posts a message to one incoming-webhook URL (a secret)."""

    def __init__(self, url: Secret, *, post: Post | None = None, timeout: float = TIMEOUT,
                 attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = url.reveal()
        self._post = post or requests.post
        self._timeout = timeout
        self._attempts = attempts
        self._sleep = sleep

    def send(self, body: dict[str, Any]) -> str | None:
        """Post `body`; None when the receiver took it, else why not (no URL in it)."""

        def once() -> str | None:
            try:
                response = self._post(self._url, json=body, timeout=self._timeout)
            except requests.RequestException as error:
                raise RetriableError(f"chat webhook unreachable ({type(error).__name__})") from None
            status = response.status_code
            if status == 429 or status >= 500:
                raise RetriableError(f"chat webhook answered HTTP {status}",
                                     retry_after=_seconds(response.headers.get("Retry-After")))
            return None if 200 <= status < 300 else f"chat webhook refused it: HTTP {status}"

        try:
            return call_with_retry(once, what="chat alert", attempts=self._attempts,
                                   sleep=self._sleep, base=0.5, cap=5.0)
        except RetriableError as error:
            return str(error)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def deliver_chat(alerts: Sequence[Alert], chat: ChatWebhook, ledger: AlertRecords, *,
                 key_mode: str | None = None) -> tuple[int, str | None]:
    """Post the alerts not posted before in one message; record each attempt.
    Returns (how many were in the message, the error or None)."""
    todo: dict[str, Alert] = {}
    for alert in alerts:
        if alert.key not in todo and not ledger.alert_sent(KEY_PREFIX + alert.key):
            todo[alert.key] = alert
    if not todo:
        return 0, None
    error = chat.send(render_chat(tuple(todo.values()), key_mode=key_mode))
    for alert in todo.values():
        ledger.record_alert(KEY_PREFIX + alert.key, alert.kind, error is None, error)
    log.info("chat_alerts_sent" if error is None else "chat_alerts_not_sent",
             count=len(todo), kinds=sorted({a.kind for a in todo.values()}), error=error)
    return len(todo), error
