"""SMTP servers that misbehave, on 127.0.0.1 only.

- `scripted_server`: a real aiosmtpd server whose conversations follow a script, one action
  per conversation: `ok`, `defer` (451 at RCPT), `refuse` (550 at RCPT), `reject` (554 after
  DATA), `drop` (connection cut after DATA, before any reply).
- `raw_server`: a TCP listener that accepts and then closes at once (`close`), never says a
  word (`hang`: slower than the client's timeout), or reads what the client sends first (a TLS
  ClientHello) and then closes cleanly (`eof`: the connection dropped mid-handshake).
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.integration.smtp_server import HOST, Recorder, Tls, Users, free_port

ACTIONS = ("ok", "defer", "refuse", "reject", "drop")


@dataclass
class ScriptedRecorder(Recorder):
    """A Recorder that plays one scripted action per conversation (then `ok` for ever)."""

    script: deque[str] = field(default_factory=deque)
    played: list[str] = field(default_factory=list)
    _current: dict[int, str] = field(default_factory=dict)

    def _action(self, session: Any) -> str:
        key = id(session)
        if key not in self._current:
            self._current[key] = self.script.popleft() if self.script else "ok"
            self.played.append(self._current[key])
        return self._current[key]

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        action = self._action(session)
        if action == "defer":
            return "451 4.3.0 try again later"
        if action == "refuse":
            return "550 5.1.1 no such user"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        action = self._action(session)
        if action == "reject":
            return "554 5.7.1 message rejected"
        if action == "drop":
            server.transport.abort()  # gone before the reply: the client cannot know
            return "451 never sent"
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def scripted_server(script: Sequence[str], *, tls: Tls | None,
                    users: dict[str, str]) -> Iterator[tuple[int, ScriptedRecorder, Users]]:
    """SMTP with AUTH playing `script`: implicit TLS with `tls`, else plain text (loopback
    only, offering no STARTTLS); yields (port, recorder, users)."""
    recorder = ScriptedRecorder(script=deque(script))
    checker = Users(users)
    port = free_port()
    controller = Controller(recorder, hostname=HOST, port=port, ready_timeout=5.0,
                            ssl_context=tls.server_context() if tls else None,
                            auth_require_tls=False, auth_required=True,
                            authenticator=checker)
    controller.start()
    try:
        yield port, recorder, checker
    finally:
        controller.stop()


@contextmanager
def raw_server(mode: str) -> Iterator[int]:
    """`close`: accept and hang up at once; `hang`: accept and say nothing; `eof`: read the
    client's first bytes, then close."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            if mode == "close":
                conn.close()
            elif mode == "eof":
                conn.settimeout(2)
                with suppress(OSError):
                    conn.recv(4096)
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()
