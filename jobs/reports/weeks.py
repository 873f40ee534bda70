"""Week arithmetic and small figures of the weekly report; which category a ledger row counts in
(pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jobs.core.model import PLATFORM
from jobs.core.records import SessionOutcome

TARGET_AUTOMATIC_RATE = 0.98
TARGET_MANUAL_RATE = 0.02
TARGET_REPAIR_SECONDS = 300.0
TREND_WEEKS = 8
REPORT_VERSION = 1

CATEGORIES = ("automatic", "repaired", "open", "fixed_by_person", "fixed_elsewhere",
              "still_missing")
NEEDS_PERSON_OUTCOMES = ("needs_manual", "failed")


# ---- weeks -------------------------------------------------------------------------------


def monday_of(day: date) -> date:
    """The Monday of the ISO week holding `day`."""
    return day - timedelta(days=day.weekday())


def week_bounds(week_start: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) in `tz`, in UTC (a DST week is 167 or 169 hours).

    UTC because Python compares and subtracts two datetimes of the same zone by wall clock.
    """
    start = datetime.combine(monday_of(week_start), time(0), tzinfo=tz)
    end = datetime.combine(monday_of(week_start) + timedelta(days=7), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def last_complete_week(now: datetime, tz: ZoneInfo) -> date:
    """The Monday of the last week that ended before `now` (in `tz`): the default report week."""
    return monday_of(now.astimezone(tz).date()) - timedelta(days=7)


# ---- pure helpers ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks.

    The "inclusive" definition (numpy's default, Excel's PERCENTILE.INC): p0 is the minimum,
    p100 the maximum, p50 the median. None for no values.
    """
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rate(part: int, whole: int) -> float | None:
    """part / whole, or None when there is nothing to divide."""
    return part / whole if whole else None


def stripe_payment_url(dashboard_base: str, account: str | None, session_id: str,
                       key_mode: str) -> str:
    """The Checkout Session's page in the Stripe dashboard.

    A connected account's object is reached through `/<acct_id>/` (the platform's view of that
    account); test-mode objects live under `/test/`. The session id's own prefix (`cs_test_` /
    `cs_live_`) wins over the key's mode, which is only the fallback.
    """
    if session_id.startswith("cs_test_"):
        mode = "test"
    elif session_id.startswith("cs_live_"):
        mode = "live"
    else:
        mode = key_mode
    parts = [dashboard_base.rstrip("/")]
    if account and account != PLATFORM:
        parts.append(quote(account, safe=""))
    if mode == "test":
        parts.append("test")
    parts += ["checkout", "sessions", quote(session_id, safe="")]
    return "/".join(parts)


def major_units(amount: float | None) -> float | None:
    """An amount in major units (kroner, euros), as the run report and the ledger hold it."""
    return None if amount is None else round(float(amount), 2)


def _is_malformed(row: SessionOutcome) -> bool:
    return row.outcome == "failed" and (row.detail or "").lower().startswith("malformed session")


def purchase_category(row: SessionOutcome) -> str | None:
    """Which of CATEGORIES a ledger row is, or None when it is not (yet) a paid pass purchase."""
    if _is_malformed(row):
        return None
    if row.outcome in NEEDS_PERSON_OUTCOMES:
        return "open"
    if row.created_at is not None or row.outcome == "created":
        return "repaired"
    if row.outcome == "already_present":
        if row.first_outcome in ("already_present", "pending"):
            return "automatic"
        if row.first_outcome in NEEDS_PERSON_OUTCOMES:
            return "fixed_by_person"
        return "fixed_elsewhere"
    if row.outcome == "would_create":
        return "still_missing"
    return None  # pending, pending_expired, ignored


def needed_person(row: SessionOutcome, category: str | None) -> bool:
    """Whether a purchase needed (or needs) a person: open now, or first seen as needs_manual."""
    return category in ("open", "fixed_by_person") or (
        category is not None and row.first_outcome == "needs_manual")
