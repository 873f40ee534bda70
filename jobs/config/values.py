"""Typed setting values and the converters from raw text (env) or TOML values to them.

Every converter takes `(raw, where)`: `raw` is a string from the environment or an env file, or a
TOML value (str, int, float, bool, list); `where` names the setting and its source for the
one-line `ConfigError`. Secret values are never echoed in a message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobs.config.timewindow import parse_duration
from jobs.config.timewindow import quote_value as _show
from jobs.core.errors import ConfigError

Converter = Callable[[object, str], object]

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = {name: name[:3] for name in _WEEKDAYS} | {name[:3]: name[:3] for name in _WEEKDAYS}
_LOOPBACK_NAMES = {"localhost"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Secret:
    """A secret string: `repr`/`str` show `Secret('***')`; `.reveal()` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class WeeklyAt:
    """A weekly moment in the schedule's timezone, e.g. `mon 08:00`."""

    day: str  # mon..sun, as APScheduler's CronTrigger(day_of_week=...) takes it
    hour: int
    minute: int

    def __str__(self) -> str:
        return f"{self.day} {self.hour:02d}:{self.minute:02d}"


def fail(where: str, problem: str) -> NoReturn:
    raise ConfigError(f"{where}: {problem}")


def text(raw: object, where: str) -> str:
    if not isinstance(raw, str):
        fail(where, "must be a string")
    return raw.strip()


def boolean(raw: object, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    word = text(raw, where).lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    fail(where, f"{_show(word)} is not a boolean (use true/false, 1/0, yes/no)")


def integer(minimum: int, maximum: int) -> Callable[[object, str], int]:
    def convert(raw: object, where: str) -> int:
        if isinstance(raw, bool):
            fail(where, "must be a whole number")
        if isinstance(raw, int):
            value = raw
        else:
            word = text(raw, where)
            if not re.fullmatch(r"[+-]?\d+", word):
                fail(where, f"{_show(word)} is not a whole number")
            value = int(word)
        if not minimum <= value <= maximum:
            fail(where, f"{value} is out of range ({minimum}..{maximum})")
        return value

    return convert


def fraction(raw: object, where: str) -> float:
    """A share of something: a number in (0, 1]."""
    if isinstance(raw, bool):
        fail(where, "must be a number between 0 and 1")
    try:
        value = float(raw) if isinstance(raw, (int, float)) else float(text(raw, where))
    except ValueError:
        fail(where, f"{_show(str(raw))} is not a number")
    if not 0 < value <= 1:
        fail(where, "must be more than 0 and at most 1")
    return value


def duration(raw: object, where: str) -> timedelta:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        fail(where, "must be a duration (e.g. 90s, 10m, 2h, 3d or seconds)")
    return parse_duration(raw, name=where)


def duration_or_zero(raw: object, where: str) -> timedelta:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        fail(where, "must be a duration (e.g. 0, 90s, 10m, 2h or seconds)")
    return parse_duration(raw, name=where, allow_zero=True)


def matching(pattern: str, what: str, max_length: int) -> Callable[[object, str], str]:
    compiled = re.compile(pattern)

    def convert(raw: object, where: str) -> str:
        value = text(raw, where)
        if len(value) > max_length or not compiled.fullmatch(value):
            fail(where, f"{_show(value)} is not a valid {what}")
        return value

    return convert


def choice(*options: str) -> Callable[[object, str], str]:
    def convert(raw: object, where: str) -> str:
        value = text(raw, where).lower()
        if value not in options:
            fail(where, f"{_show(value)} is not one of {', '.join(options)}")
        return value

    return convert


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http / plain SMTP may talk to."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(value: str, where: str, *, secret: bool) -> str:
    shown = "" if secret else f"{_show(value)} "
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        fail(where, f"{shown}is not a valid URL")
    if parts.scheme not in ("https", "http") or not host:
        fail(where, f"{shown}is not an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback(host):
        fail(where, "plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost)")
    if parts.username is not None or parts.password is not None:
        fail(where, "must not embed credentials (user:password@)")
    return value


def base_url(raw: object, where: str) -> str:
    """A service base URL: https (http for loopback), no credentials, query or fragment."""
    value = _check_url(text(raw, where), where, secret=False)
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        fail(where, "a base URL takes no query or fragment")
    return value.rstrip("/")


def secret_url(raw: object, where: str) -> Secret:
    """A URL that carries its own token (a heartbeat ping URL)."""
    return Secret(_check_url(text(raw, where), where, secret=True))


def stripe_key(raw: object, where: str) -> Secret:
    value = text(raw, where)
    if re.fullmatch(r"(sk|rk)_(live|test)_[A-Za-z0-9_]+", value):
        return Secret(value)
    if value.startswith("pk_"):
        fail(where, "is a publishable key (pk_...); a secret or restricted key is needed")
    if value.startswith("whsec_"):
        fail(where, "is a webhook signing secret (whsec_...); an API key is needed")
    fail(where, "does not look like a Stripe key (sk_live_, sk_test_, rk_live_ or rk_test_...)")


def token(raw: object, where: str) -> Secret:
    value = text(raw, where)
    if not value or re.search(r"\s", value):
        fail(where, "must be one word without spaces")
    return Secret(value)


def password(raw: object, where: str) -> Secret:
    if not isinstance(raw, str):
        fail(where, "must be a string")
    return Secret(raw)  # kept as written: a password may start or end with a space


def api_version(raw: object, where: str) -> str:
    """A pinned Sanity API date, YYYY-MM-DD (a leading `v` is tolerated)."""
    value = text(raw, where).removeprefix("v")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        fail(where, f"{_show(value)} is not a date YYYY-MM-DD (e.g. 2025-02-19)")
    return value


def address(raw: object, where: str) -> str:
    """An e-mail address, bare or as `Name <addr>`; kept as written for the header."""
    value = text(raw, where)
    _, addr = parseaddr(value)
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", addr):
        fail(where, f"{_show(value)} is not an e-mail address")
    return value


def address_list(raw: object, where: str) -> tuple[str, ...]:
    """Comma-separated addresses (env) or a TOML list of them; at least one."""
    items: list[object] = list(raw) if isinstance(raw, list) else [*text(raw, where).split(",")]
    # "a@x.com, b@y.com," from an env file: the empty piece after a trailing comma is no address.
    addresses = tuple(address(item, where) for item in items
                      if not (isinstance(item, str) and not item.strip()))
    if not addresses:
        fail(where, "lists no address")
    return addresses


def timezone(raw: object, where: str) -> ZoneInfo:
    value = text(raw, where)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        fail(where, f"{_show(value)} is not a known IANA timezone (e.g. Europe/Oslo)")


def weekly_at(raw: object, where: str) -> WeeklyAt:
    value = text(raw, where).lower()
    match = re.fullmatch(r"([a-z]+)\s+(\d{1,2}):(\d{2})", value)
    day = _DAYS.get(match.group(1)) if match else None
    if match is None or day is None:
        fail(where, f"{_show(value)} is not DAY HH:MM (e.g. mon 08:00)")
    hour, minute = int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59:
        fail(where, f"{_show(value)} has no such time of day")
    return WeeklyAt(day=day, hour=hour, minute=minute)


def path(raw: object, where: str) -> Path:
    """A path, `~` expanded; relative paths are resolved by the caller against their source."""
    value = text(raw, where)
    if not value:
        fail(where, "is empty")
    return Path(value).expanduser()


def loopback_listen(raw: object, where: str) -> tuple[str, int]:
    """`PORT` or `HOST:PORT` to listen on, the host loopback only (127.0.0.1 by default)."""
    value = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else text(raw, where)
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not re.fullmatch(r"\d{1,5}", port) or not 1 <= int(port) <= 65535:
        fail(where, f"{_show(value)} is not PORT or HOST:PORT (e.g. 127.0.0.1:9464)")
    if not is_loopback(host):
        fail(where, "must listen on a loopback address only (127.0.0.1, ::1, localhost)")
    return host, int(port)


MIN_RETENTION = timedelta(days=56)  # the weekly report's 8-week trend reads that far back


def retention(raw: object, where: str) -> timedelta:
    """How long the ledger keeps its history: a duration of at least 8 weeks (56d)."""
    value = duration(raw, where)
    if value < MIN_RETENTION:
        fail(where, f"must be at least {MIN_RETENTION.days}d (the weekly report's 8-week trend)")
    return value


def name_list(raw: object, where: str) -> tuple[str, ...]:
    """Names (e.g. tenant ids or slugs): comma-separated in the environment, a TOML list."""
    items = list(raw) if isinstance(raw, list) else text(raw, where).split(",")
    if any(not isinstance(item, str) for item in items):
        fail(where, "must be a list of names")
    return tuple(str(item).strip() for item in items if str(item).strip())


def language_map(raw: object, where: str) -> dict[str, str]:
    """School -> language (`nb` or `en`): a TOML table `{ "<tenant id or slug>" = "en" }`, or
    `school=en,other=nb` in the environment."""
    if isinstance(raw, dict):
        pairs = [(str(k), v) for k, v in raw.items()]
    else:
        pairs = []
        for piece in text(raw, where).split(","):
            if piece.strip():
                school, sep, lang = piece.partition("=")
                if not sep:
                    fail(where, f"{_show(piece.strip())} is not SCHOOL=LANGUAGE")
                pairs.append((school.strip(), lang.strip()))
    out: dict[str, str] = {}
    for school, lang in pairs:
        if lang not in ("nb", "en"):
            fail(where, f"{_show(str(lang))} for {school} is not a language of the student "
                 "e-mail (nb, en)")
        out[school] = str(lang)
    return out


def database_url(raw: object, where: str) -> Secret:
    """A PostgreSQL URL for the ledger (`postgresql://user:pw@host:port/db?sslmode=…`).

    Kept as a secret (it may carry a password); one with a password is refused from the config
    file, like every other secret (`where` names the TOML key as `database.url in <file>`)."""
    value = text(raw, where)
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        fail(where, "must be a postgresql:// URL (leave it unset for the local SQLite ledger)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        fail(where, "has a port that is not a number")
    has_password = bool(parts.password) or "password=" in parts.query
    if has_password and where.startswith("database.url"):
        fail(where, "holds a password, and secrets are not read from the config file; set "
                    "RECONCILER_DATABASE_URL in the environment or an env file (--env-file)")
    return Secret(value)
