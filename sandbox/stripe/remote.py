"""Stripe stand-in controls from another process: `RemoteControls` over `/_sandbox/…`."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from sandbox.stripe.data import JSON


class RemoteControls:
    """The `Controls` of a stand-in in another process, over `/_sandbox/…` (JSON in/out)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}/_sandbox/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            return json.loads(answer.read() or b"null")

    def set_latency(self, seconds: float) -> None:
        self._call("POST", "latency", {"seconds": seconds})

    def set_rate_limit(self, rate: float | None, endpoint: str | None = None) -> None:
        self._call("POST", "rate_limit", {"rate": rate, "endpoint": endpoint})

    def inject_fault(self, endpoint: str, *, times: int = 1, **fields: Any) -> None:
        self._call("POST", "faults", {"endpoint": endpoint, "times": times, **fields})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def pending_faults(self) -> dict[str, int]:
        result: dict[str, int] = self._call("GET", "faults")
        return result

    def log(self) -> list[JSON]:
        result: list[JSON] = self._call("GET", "log")["requests"]
        return result

    def reset_log(self) -> None:
        self._call("DELETE", "log")

    def stats(self) -> JSON:
        result: JSON = self._call("GET", "stats")
        return result

    def set_now(self, now: float | None) -> None:
        self._call("POST", "now", {"now": now})

    def add_sessions(self, account: str, sessions: list[JSON]) -> int:
        """Sessions created at run time (each with its private `_line_items`); the
        account's session count after."""
        return int(self._call("POST", "sessions", {"account": account,
                                                   "sessions": sessions})["sessions"])

    def reset(self) -> None:
        self._call("POST", "reset", {})
