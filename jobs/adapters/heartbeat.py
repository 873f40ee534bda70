"""Heartbeat pings, healthchecks.io style: GET <url>/start when a pass starts, <url> after a good
pass, <url>/fail after a bad one (a pass that hangs after its start ping is noticed by the monitor).

The URL carries its own token, so it is a secret: it never reaches a log line, not even inside an
exception message (requests puts the URL in its errors, so only the error's class is logged).
A ping that fails is logged and forgotten: the monitor notices the missing ping by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
import structlog

from jobs.config.values import Secret

log = structlog.get_logger("jobs.heartbeat")

DEFAULT_TIMEOUT = 5.0  # seconds; a pass must not wait long on its monitor


class Getter(Protocol):
    def __call__(self, url: str, *, timeout: float) -> requests.Response: ...


def fail_url(url: str) -> str:
    """`https://hc.example/ping/<uuid>` -> `.../ping/<uuid>/fail` (a query string stays last)."""
    return _suffixed(url, "fail")


def start_url(url: str) -> str:
    """`https://hc.example/ping/<uuid>` -> `.../ping/<uuid>/start`."""
    return _suffixed(url, "start")


def _suffixed(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix))


class Heartbeat:
    """Pings a monitor (a no-op without a URL); `success()` / `fail()` say if it got through."""

    def __init__(self, url: Secret | str | None, *, timeout: float = DEFAULT_TIMEOUT,
                 get: Getter | Callable[..., requests.Response] | None = None) -> None:
        self._url = url.reveal() if isinstance(url, Secret) else url
        self._timeout = timeout
        self._get = get or requests.get

    @property
    def enabled(self) -> bool:
        return bool(self._url)

    def success(self) -> bool:
        return self._ping(outcome="success")

    def fail(self) -> bool:
        return self._ping(outcome="fail")

    def start(self) -> bool:
        return self._ping(outcome="start")

    def _ping(self, *, outcome: str) -> bool:
        if not self._url:
            return False
        target = self._url if outcome == "success" else _suffixed(self._url, outcome)
        try:
            response = self._get(target, timeout=self._timeout)
        except Exception as error:  # any failure to ping is logged, never raised
            log.warning("heartbeat_failed", outcome=outcome, error=type(error).__name__)
            return False
        if not 200 <= response.status_code < 300:
            log.warning("heartbeat_failed", outcome=outcome, status=response.status_code)
            return False
        log.debug("heartbeat_sent", outcome=outcome)
        return True
