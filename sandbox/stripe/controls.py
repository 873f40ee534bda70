"""Stripe stand-in controls: the knobs (latency, rate limits, injected faults, a fixed clock)
and the records (request log, stats) of one stand-in; `control` serves them over HTTP under
`/_sandbox/…` for `RemoteControls`."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.stripe.data import JSON


@dataclass(frozen=True)
class Fault:
    """One injected answer. `status` (+ `headers`, `body`: dict -> JSON, str -> raw text,
    None -> Stripe's error body for that status); `delay` seconds first; `drop` closes the
    connection without an answer; `malformed` sends a truncated JSON body. A fault with only
    a delay slows the request, which is then answered normally. `account` restricts it."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    account: str | None = None


class _Bucket:
    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.capacity = rate, max(1.0, rate)
        self.tokens, self.stamp = self.capacity, now

    def wait(self, now: float) -> float:
        """Refill; 0 when a token is there (not taken yet), else seconds until there is one."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class Controls:
    """The stand-in's knobs and records; thread-safe. The same operations are served over
    HTTP under `/_sandbox/…` (see `RemoteControls`)."""

    LOG_LIMIT = 200_000

    def __init__(self, now: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base_now = now or time.time
        self._fixed_now: float | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self.latency = 0.0
        self._limits: dict[str, _Bucket] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._log: deque[JSON] = deque(maxlen=self.LOG_LIMIT)
        self._counts: dict[str, int] = {}
        self._limited = 0

    def now(self) -> float:
        """The server's wall clock (events retention); fixed by `set_now`."""
        return self._fixed_now if self._fixed_now is not None else self._base_now()

    def set_now(self, now: float | None) -> None:
        self._fixed_now = now

    def set_latency(self, seconds: float) -> None:
        """Every API request sleeps this long first (in its own thread)."""
        self.latency = max(0.0, float(seconds))

    def set_rate_limit(self, rate: float | None, endpoint: str | None = None) -> None:
        """Requests/second for one operation ("GET /v1/checkout/sessions"), or for all when
        `endpoint` is None; `rate=None` removes the limit."""
        key = endpoint or "*"
        with self._lock:
            if rate is None:
                self._limits.pop(key, None)
            else:
                self._limits[key] = _Bucket(float(rate), self._clock())

    def inject_fault(self, endpoint: str, *, times: int = 1, **fields: Any) -> None:
        """Queue `times` copies of a `Fault(**fields)` for an operation ("*" = any)."""
        fault = Fault(**fields)
        with self._lock:
            self._faults.setdefault(endpoint, deque()).extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> dict[str, int]:
        with self._lock:
            return {op: len(q) for op, q in self._faults.items() if q}

    def take_fault(self, op: str, account: str) -> Fault | None:
        with self._lock:
            for key in (op, "*"):
                queue = self._faults.get(key)
                for fault in queue or ():
                    if fault.account is None or fault.account == account:
                        queue.remove(fault)  # type: ignore[union-attr]
                        return fault
        return None

    def rate_check(self, op: str) -> tuple[str, float] | None:
        """None, or (Stripe-Rate-Limited-Reason, seconds to wait). Takes a token on success."""
        with self._lock:
            now = self._clock()
            endpoint, overall = self._limits.get(op), self._limits.get("*")
            for bucket, reason in ((endpoint, "endpoint-rate"), (overall, "global-rate")):
                if bucket is not None:
                    wait = bucket.wait(now)
                    if wait > 0:
                        self._limited += 1
                        return reason, wait
            for bucket in (endpoint, overall):
                if bucket is not None:
                    bucket.tokens -= 1
        return None

    def record(self, entry: JSON) -> None:
        with self._lock:
            self._log.append(entry)
            key = entry.get("endpoint") or "unknown"
            self._counts[key] = self._counts.get(key, 0) + 1

    def log(self) -> list[JSON]:
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        """Forget the request log and the counters of `stats()`."""
        with self._lock:
            self._log.clear()
            self._counts.clear()
            self._limited = 0

    def stats(self) -> JSON:
        with self._lock:
            return {"requests": dict(self._counts), "total": sum(self._counts.values()),
                    "rate_limited": self._limited, "cpu_seconds": time.process_time()}

    def reset(self) -> None:
        """Back to a plain stand-in: no latency, limits, faults, fixed clock or log."""
        with self._lock:
            self.latency = 0.0
            self._limits.clear()
            self._faults.clear()
            self._fixed_now = None
        self.reset_log()


def control(controls: Controls, method: str, path: str, payload: Any) -> Any:
    """Serve one `/_sandbox/<path>` call; raises KeyError for an unknown one."""
    body = payload if isinstance(payload, dict) else {}
    if (method, path) == ("GET", "log"):
        return {"requests": controls.log()}
    if (method, path) == ("DELETE", "log"):
        controls.reset_log()
    elif (method, path) == ("GET", "stats"):
        return controls.stats()
    elif (method, path) == ("POST", "latency"):
        controls.set_latency(float(body.get("seconds", 0)))
    elif (method, path) == ("POST", "rate_limit"):
        controls.set_rate_limit(body.get("rate"), body.get("endpoint"))
    elif (method, path) == ("POST", "faults"):
        fields = {k: v for k, v in body.items() if k not in ("endpoint", "times")}
        controls.inject_fault(str(body["endpoint"]), times=int(body.get("times", 1)), **fields)
    elif (method, path) == ("GET", "faults"):
        return controls.pending_faults()
    elif (method, path) == ("DELETE", "faults"):
        controls.clear_faults()
    elif (method, path) == ("POST", "now"):
        controls.set_now(body.get("now"))
    elif (method, path) == ("POST", "reset"):
        controls.reset()
    else:
        raise KeyError(path)
    return {"ok": True}
