"""A real SMTP server in the test process (aiosmtpd): plain, STARTTLS + AUTH, implicit TLS.

The TLS certificate is self-signed for 127.0.0.1/localhost, made at test time with the
`openssl` command; clients trust it through `Tls.client_context()`. aiosmtpd's Controller
cannot bind port 0, so a free port is picked first.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"
Mode = Literal["plain", "starttls", "tls"]


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it; the socket is closed again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server (hostname and chain) against this one certificate."""
        return ssl.create_default_context(cafile=str(self.cert))


def self_signed(directory: Path) -> Tls:
    """A key and self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return Tls(cert, key)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated_as: str | None
    tls: bool


@dataclass
class Recorder:
    """The server's handler: keeps every message; refuses or defers the addresses it is told."""

    refuse: dict[str, str] = field(default_factory=dict)  # address -> reply, e.g. "550 ..."
    messages: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        self.rcpt_attempts += 1
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login if session.auth_data is not None else None
        self.messages.append(Received(
            envelope.mail_from, list(envelope.rcpt_tos), message,
            login.decode() if isinstance(login, bytes) else login,
            session.ssl is not None  # after STARTTLS
            or server.transport.get_extra_info("ssl_object") is not None,  # implicit TLS
        ))
        return "250 Message accepted"


class Users:
    """AUTH LOGIN / PLAIN against a fixed user table."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.failures = 0

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
        self.failures += 1
        return AuthResult(success=False, handled=False)


@dataclass
class Server:
    host: str
    port: int
    recorder: Recorder
    users: Users | None

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages


@contextmanager
def smtp_server(mode: Mode = "plain", *, tls: Tls | None = None,
                users: dict[str, str] | None = None,
                refuse: dict[str, str] | None = None) -> Iterator[Server]:
    """Run an SMTP server on 127.0.0.1 for the `with` block.

    plain: no TLS, no AUTH. starttls: STARTTLS required before anything else, AUTH (LOGIN,
    PLAIN) required, offered only after STARTTLS. tls: TLS from the first byte, AUTH required
    when `users` is given.
    """
    recorder = Recorder(refuse=dict(refuse or {}))
    checker = Users(users) if users is not None else None
    kwargs: dict[str, Any] = {"hostname": HOST, "port": free_port(), "ready_timeout": 5.0}
    if mode != "plain" and tls is None:
        raise ValueError(f"mode {mode} needs a Tls")
    if mode == "starttls":
        assert tls is not None
        kwargs.update(tls_context=tls.server_context(), require_starttls=True,
                      auth_require_tls=True, auth_required=checker is not None,
                      authenticator=checker)
    elif mode == "tls":
        assert tls is not None
        # The whole connection is TLS already; aiosmtpd only counts STARTTLS as "TLS" for AUTH.
        kwargs.update(ssl_context=tls.server_context(), auth_require_tls=False,
                      auth_required=checker is not None, authenticator=checker)
    controller = Controller(recorder, **kwargs)
    controller.start()
    try:
        yield Server(HOST, kwargs["port"], recorder, checker)
    finally:
        controller.stop()
