"""Durations and run windows from the CLI options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobs.config.timewindow import parse_duration, parse_instant, parse_window
from jobs.core.errors import ConfigError

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("10m", timedelta(minutes=10)), ("2h", timedelta(hours=2)),
    ("3d", timedelta(days=3)), ("600", timedelta(seconds=600)), (600, timedelta(seconds=600)),
    ("2 h", timedelta(hours=2)), ("1h30m", timedelta(hours=1, minutes=30)),
    ("2d12h", timedelta(days=2, hours=12)), ("1h 30m 15s", timedelta(seconds=5415)),
    ("2D12H", timedelta(days=2, hours=12)),
])
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("", "not a duration"), ("2w", "not a duration"), ("1.5h", "not a duration"),
    ("-2h", "not a duration"), ("0", "must be positive"), ("99999d", "longer than"),
    ("1h30", "not a duration"), ("h30m", "not a duration"), ("1.5h30m", "not a duration"),
    ("0h0m", "must be positive"), ("3000d3000d", "longer than"),
])
def test_parse_duration_rejects(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"^--window: .*{problem}"):
        parse_duration(text, name="--window")


def test_zero_only_when_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-08-01T12:00:00+02:00", datetime(2026, 8, 1, 10, 0, tzinfo=UTC)),
    ("2026-08-01T12:00:00Z", datetime(2026, 8, 1, 12, 0, tzinfo=UTC)),
    ("2026-08-01T12:00", datetime(2026, 8, 1, 12, 0, tzinfo=UTC)),  # naive -> UTC
    ("2026-08-01", datetime(2026, 8, 1, tzinfo=UTC)),
])
def test_parse_instant_is_aware_utc(text: str, expected: datetime) -> None:
    value = parse_instant(text)
    assert value == expected
    assert value.tzinfo is UTC


def test_window_reaches_back_from_now_and_stops_at_the_grace() -> None:
    window = parse_window(now=NOW, window="2h", grace=GRACE)
    assert (window.since, window.until) == (NOW - timedelta(hours=2), NOW - GRACE)
    assert window.until_unix - window.since_unix == 2 * 3600 - 600


def test_since_until_and_defaults() -> None:
    explicit = parse_window(now=NOW, since="2026-08-19T00:00:00Z", until="2026-08-19T06:00:00Z",
                            grace=GRACE)
    assert explicit.since == datetime(2026, 8, 19, tzinfo=UTC)
    assert explicit.until == datetime(2026, 8, 19, 6, tzinfo=UTC)
    open_end = parse_window(now=NOW, since="2026-08-19T00:00:00+02:00", grace=GRACE)
    assert open_end.until == NOW - GRACE
    assert open_end.since == datetime(2026, 8, 18, 22, tzinfo=UTC)
    ending = parse_window(now=NOW, window="1d", until="2026-08-10T00:00:00Z")
    assert ending.since == datetime(2026, 8, 9, tzinfo=UTC)
    default = parse_window(now=NOW, default=timedelta(days=3), grace=GRACE)
    assert default.since == NOW - timedelta(days=3)


def test_local_now_gives_utc_bounds() -> None:
    oslo_now = NOW.astimezone(timezone(timedelta(hours=2)))
    window = parse_window(now=oslo_now, window="1h")
    assert window.until == NOW and window.until.tzinfo is UTC


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"window": "2h", "since": "2026-08-19"}, "not both"),
    ({}, "one of them is required"),
    ({"since": "yesterday"}, "--since: 'yesterday' is not an ISO 8601 time"),
    ({"since": "2026-08-21T00:00:00Z"}, "is not before until"),
    ({"window": "5m"}, "is not before until"),  # the whole window lies inside the grace
])
def test_window_errors(kwargs: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_window(now=NOW, grace=GRACE, **kwargs)  # type: ignore[arg-type]


def test_compound_durations_reach_the_window_and_the_settings() -> None:
    from jobs.config.settings import load_settings

    window = parse_window(now=NOW, window="1h30m", grace=GRACE)
    assert window.since == NOW - timedelta(hours=1, minutes=30)
    settings = load_settings({"HOME": "/nonexistent", "RECONCILER_DEEP_WINDOW": "2d12h"})
    assert settings.schedule.deep_window == timedelta(days=2, hours=12)
    with pytest.raises(ConfigError, match="RECONCILER_DEEP_WINDOW: '2d12' is not a duration"):
        load_settings({"HOME": "/nonexistent", "RECONCILER_DEEP_WINDOW": "2d12"})
