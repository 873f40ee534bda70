"""Stripe stand-in HTTP shell: `StripeStandIn` serves `StripeApi` and the `/_sandbox/…`
controls on 127.0.0.1, applying latency, injected faults and rate limits before the API."""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from sandbox.gcpause import collector_paused
from sandbox.stripe.api import StripeApi, find_route
from sandbox.stripe.controls import Controls, control
from sandbox.stripe.data import PLATFORM, StripeData, dumps, load_data
from sandbox.stripe.errors import ApiError, default_error, rate_limit_error

API_VERSION = "2026-10-28.endive"
MALFORMED_BODY = b'{"object": "list", "data": [{"id": "cs_'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    api: StripeApi
    controls: Controls


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # One write per answer and no Nagle: keep-alive clients would otherwise wait for
        # delayed ACKs (tens of ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is in `Controls`."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or API_VERSION)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
        try:
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _dispatch(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        if split.path.startswith("/_sandbox/"):
            self._control(split.path.removeprefix("/_sandbox/"), payload)
            return
        controls = self.server.controls
        account = (self.headers.get("Stripe-Account") or "").strip() or PLATFORM
        found = find_route(self.command, split.path)
        op = found[0].op if found else None
        answer = self._answer(controls, op, account, split.path, split.query)
        # Recorded before the answer leaves: a client that has its answer finds it logged.
        controls.record({"method": self.command, "path": split.path, "query": split.query,
                         "account": account, "endpoint": op,
                         "status": 0 if answer is None else answer[0],
                         "duration": round(time.perf_counter() - started, 6)})
        if answer is None:  # a dropped connection: no answer at all
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._send(*answer)

    def _answer(self, controls: Controls, op: str | None, account: str, path: str,
                query: str) -> tuple[int, bytes, Mapping[str, str]] | None:
        """Latency, then an injected fault, then the rate limit, then the API.
        None means: drop the connection."""
        if controls.latency:
            time.sleep(controls.latency)
        fault = controls.take_fault(op, account) if op else None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                return None
            if fault.malformed or fault.status is not None:
                status = fault.status or 200
                if fault.malformed:
                    body = MALFORMED_BODY
                elif fault.body is None:
                    body = default_error(status).body()
                elif isinstance(fault.body, str):
                    body = fault.body.encode()
                else:
                    body = dumps(fault.body)
                return status, body, fault.headers
        limited = controls.rate_check(op) if op else None
        if limited is not None:
            reason, wait = limited
            return 429, rate_limit_error().body(), {
                "Retry-After": str(max(1, math.ceil(wait))),
                "Stripe-Rate-Limited-Reason": reason}
        status, body = self.server.api.handle(self.command, path, query, self.headers)
        return status, body, {}

    def _control(self, path: str, payload: bytes) -> None:
        try:
            body = json.loads(payload) if payload else None
            if (self.command, path) == ("POST", "sessions") and isinstance(body, dict):
                # Sessions created at run time: {"account": "platform" | "acct_…",
                # "sessions": [session with its private `_line_items`, …]}
                added = self.server.api.data.add_sessions(str(body["account"]),
                                                          list(body["sessions"]))
                self._send(200, dumps({"sessions": added}))
                return
            result = control(self.server.controls, self.command, path, body)
            self._send(200, dumps(result))
        except KeyError as error:
            self._send(404, ApiError(404, f"No such control: {error}").body())
        except (TypeError, ValueError) as error:
            self._send(400, ApiError(400, f"Bad control request: {error}").body())


class StripeStandIn:
    """The stand-in server: `start()`/`stop()` or a context manager; `.url`, `.controls`."""

    def __init__(self, data: Mapping[str, Any] | Path | str,
                 now: Callable[[], float] | None = None, *, port: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`now`: wall clock for event retention; `clock`: monotonic clock of the rate limits."""
        self.controls = Controls(now=now, clock=clock)
        with collector_paused():
            self.data = StripeData(load_data(data))
        self.api = StripeApi(self.data, self.controls.now)
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("stand-in not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StripeStandIn:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.api, server.controls = self.api, self.controls
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="stripe-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def add_sessions(self, account: str, sessions: Sequence[Mapping[str, Any]]) -> None:
        """Purchases made while the stand-in runs (`account`: "platform" or `acct_…`)."""
        self.data.add_sessions(account, [dict(s) for s in sessions])

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
