"""Logging: structlog configured once, JSON lines for machines, readable lines on a terminal.

Every line carries an ISO timestamp (UTC), the level, and the context bound with
`structlog.contextvars` (`run_id`, `account`, `session_id`). One processor, `Scrubber`, runs last
before rendering: it replaces every configured secret wherever it appears in any string (event,
values, exception text) and masks e-mail addresses (`ka***@example.com`). Exceptions are turned
into text before it, so no renderer can print a secret from a traceback.

The only state is structlog's own configuration; `configure_logging` may be called again
(tests do), and loggers made before it follow the latest configuration.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from jobs.core.errors import ConfigError

REDACTED = "[REDACTED]"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
_EMAIL = re.compile(r"(?<![\w.%+-])([\w.%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_PLAIN = (int, float, bool, type(None))


def mask_email(match: re.Match[str]) -> str:
    """`kari.nordmann@example.com` -> `ka***@example.com`; one letter kept of a short local part."""
    local, domain = match.group(1), match.group(2)
    keep = 2 if len(local) > 2 else 1
    return f"{local[:keep]}***@{domain}"


class Scrubber:
    """The redaction processor: secrets out, e-mail addresses masked, in every string."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        unique = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, unique))) if unique else None

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return {self.text(str(key)): self.value(item) for key, item in event_dict.items()}

    def text(self, value: str) -> str:
        if self._secrets is not None:
            value = self._secrets.sub(REDACTED, value)
        # Every address has an "@": most values are ids and names, and the search for one
        # is far cheaper than the pattern.
        return _EMAIL.sub(mask_email, value) if "@" in value else value

    def value(self, item: object) -> object:
        if isinstance(item, str):
            return self.text(item)
        if isinstance(item, _PLAIN):
            return item
        if isinstance(item, Mapping):
            return {self.text(str(k)): self.value(v) for k, v in item.items()}
        if isinstance(item, (list, tuple, set, frozenset)):
            return [self.value(v) for v in item]
        # Anything else (an exception, a Path, an object) is rendered to text here, while it
        # can still be scrubbed, rather than by the renderer after this processor.
        return self.text(str(item))


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that keeps the name it was made for (`structlog.get_logger("jobs.x")`)."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


def _add_logger_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def configure_logging(
    *,
    stream: TextIO | None = None,
    json: bool | None = None,
    level: str = "info",
    secrets: Iterable[str] = (),
) -> None:
    """Configure structlog for the whole process. `stream` defaults to the current stderr;
    `json=None` means JSON lines unless the stream is a terminal."""
    out = stream if stream is not None else sys.stderr
    threshold = _LEVELS.get(level.lower())
    if threshold is None:
        raise ConfigError(f"log level: {level!r} is not one of debug, info, warning, error")
    terminal = _is_terminal(out)
    as_json = (not terminal) if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(
            colors=terminal and not no_color(),
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            Scrubber(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # Without an explicit stream, sys.stderr is looked up per line: it may be replaced
        # after configuration (pytest's capture, a daemon redirecting its output).
        logger_factory=lambda *args: _NamedPrintLogger(
            stream if stream is not None else sys.stderr, str(args[0]) if args else None),
        # Not cached: a reconfiguration (another stream, new secrets) must reach every logger.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **context: Any) -> Any:
    """A logger whose lines carry `logger=name` (and `context`); safe to create at import:
    it takes the configuration current when it logs."""
    return structlog.get_logger(name, **context)


def no_color(environ: Mapping[str, str] | None = None) -> bool:
    """`NO_COLOR` set to anything but the empty string turns colour off (no-color.org)."""
    return bool((os.environ if environ is None else environ).get("NO_COLOR", ""))


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False
