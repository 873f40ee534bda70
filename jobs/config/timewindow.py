"""Durations ("10m", "2h", "90s", "1h30m", "2d12h", seconds) and the run window (`--window`,
`--since/--until`).

Errors are `ConfigError`s naming the option: a bad window means the run cannot start (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jobs.core.errors import ConfigError

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)[ \t]*([smhd]?)", re.IGNORECASE)
# Several parts, each with its unit ("1h30m", "2d 12h"); a bare number stands alone.
_COMPOUND = re.compile(r"(?:\d+[ \t]*[smhd][ \t]*)+", re.IGNORECASE)
# Ten years: longer is a typo, and timedelta overflows not far beyond.
MAX_DURATION = timedelta(days=3650)
DURATION_HINT = "use e.g. 90s, 10m, 2h, 1h30m, 3d or a number of seconds"


@dataclass(frozen=True)
class TimeWindow:
    """A half-open interval [since, until) of Stripe `created` times, both aware UTC."""

    since: datetime
    until: datetime

    @property
    def since_unix(self) -> int:
        return int(self.since.timestamp())

    @property
    def until_unix(self) -> int:
        return int(self.until.timestamp())


def parse_duration(
    text: str | int, *, name: str = "duration", allow_zero: bool = False
) -> timedelta:
    """`"90s"`, `"10m"`, `"2h"`, `"3d"`, `"1h30m"`, `"600"` or `600` (seconds) -> timedelta;
    positive unless `allow_zero`."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ConfigError(f"{name}: must be a duration ({DURATION_HINT})")
    if isinstance(text, int):
        seconds = text
    else:
        stripped = text.strip()
        single = _DURATION.fullmatch(stripped)
        if single is None and _COMPOUND.fullmatch(stripped) is None:
            raise ConfigError(f"{name}: {quote_value(text)} is not a duration ({DURATION_HINT})")
        seconds = sum(int(count) * _UNITS[unit.lower()]
                      for count, unit in _DURATION.findall(stripped))
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"{name}: must be {'zero or more' if allow_zero else 'positive'}")
    if seconds > MAX_DURATION.total_seconds():
        raise ConfigError(f"{name}: longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def parse_instant(text: str, *, name: str = "time") -> datetime:
    """ISO 8601 date or date-time -> aware UTC datetime; a time without an offset is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{name}: {quote_value(text)} is not an ISO 8601 time (e.g. 2026-08-01T12:00:00+02:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_window(
    *,
    now: datetime,
    window: str | None = None,
    since: str | None = None,
    until: str | None = None,
    grace: timedelta = timedelta(0),
    default: timedelta | None = None,
) -> TimeWindow:
    """The run window from the CLI options.

    `--window W`: [now - W, now - grace). `--since S [--until U]`: [S, U), U defaulting to
    now - grace. `--window W --until U`: [U - W, U). Neither: `default` like `--window`.
    The grace keeps out sessions the webhook may still be handling.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if window is not None and since is not None:
        raise ConfigError("--window and --since: give one of them, not both")
    end = parse_instant(until, name="--until") if until is not None else now - grace
    if since is not None:
        start = parse_instant(since, name="--since")
    elif window is not None:
        span = parse_duration(window, name="--window")
        start = (end if until is not None else now) - span
    elif default is not None:
        start = now - default
    else:
        raise ConfigError("--window or --since: one of them is required")
    if start >= end:
        raise ConfigError(
            f"window: since {start.isoformat()} is not before until {end.isoformat()}"
            + (f" (until = now - grace {grace})" if until is None and grace else "")
        )
    return TimeWindow(since=start.astimezone(UTC), until=end.astimezone(UTC))


def quote_value(text: str) -> str:
    """A user's (non-secret) value quoted for an error message, kept to one short line."""
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= 40 else one_line[:37] + "...")
