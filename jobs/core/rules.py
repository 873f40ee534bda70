"""The app's own mapping rules (domain §2.4-2.6), as pure functions.

Values come from documents as stored, so every function judges its inputs instead of
trusting them: a `classesLimit` of "10" or a `validityDays` of null is a fact to handle.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.core.model import Pass, Session

DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SUBSCRIPTION_TYPES = ("single", "multi-pass", "clipcard", "monthly")
_PASS_TO_SUBSCRIPTION = {
    "single": "single",
    "multi-pass": "multi-pass",
    "multi": "clipcard",
    "unlimited": "monthly",
}
_FLOAT_PREFIX = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Rejection:
    """Why a pass cannot be turned into a subscription: a needs_manual reason and detail."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Entitlement:
    type: str
    remaining_clips: int | None  # None: the key is omitted (monthly)


def number(value: Any) -> float | None:
    """A finite number stored as a number (not a string, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def js_parse_float(value: Any) -> float | None:
    """JavaScript's parseFloat for metadata strings; None where JS gives NaN."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    match = _FLOAT_PREFIX.match(value)
    if match is None:
        return None
    parsed = float(match.group(0))
    return parsed if math.isfinite(parsed) else None


def tidy(value: float) -> float | int:
    """2000.0 -> 2000, so stored numbers read like the app's."""
    return int(value) if value.is_integer() else value


def mapped_type(pass_type: Any) -> str | None:
    return _PASS_TO_SUBSCRIPTION.get(pass_type) if isinstance(pass_type, str) else None


def entitlement(pass_: Pass) -> Entitlement | Rejection:
    """§2.4: pass type -> subscription type and clips."""
    sub_type = mapped_type(pass_.type)
    if sub_type is None:
        return Rejection("pass_type_unknown", f"pass type {pass_.type!r} has no subscription type")
    if sub_type == "single":
        return Entitlement("single", 1)
    if sub_type == "monthly":
        return Entitlement("monthly", None)
    limit = number(pass_.classes_limit)
    if limit is None or limit < 1 or not limit.is_integer():
        return Rejection(
            "pass_without_class_count",
            f"{pass_.type} pass has classesLimit {pass_.classes_limit!r}",
        )
    return Entitlement(sub_type, int(limit))


def parse_instant_ms(value: Any) -> int | None:
    """An ISO 8601 date or datetime (naive = UTC) as epoch milliseconds."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: a float timestamp * 1000 can lose the last millisecond.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso_ms(epoch_ms: int) -> str:
    """JavaScript's Date.toISOString(): millisecond precision, `Z`. Whole seconds and
    milliseconds apart (integers: no float rounding into the next second); `time.gmtime`
    because this runs for every session a run reads."""
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def end_date_ms(pass_: Pass, base_ms: int) -> int | Rejection:
    """§2.5, first match wins: fixed date, then validity days from `base_ms`."""
    if pass_.validity_type == "date":
        fixed = parse_instant_ms(pass_.expiry_date)
        if fixed is not None:
            return fixed
    days = number(pass_.validity_days)
    if days is not None and days > 0:
        return base_ms + int(days * DAY_MS)
    return Rejection("pass_type_unknown", "pass has no valid expiry configuration")


CHECKOUT_CURRENCIES = ("usd", "nok", "eur", "sek", "dkk", "gbp")


def checkout_currency(school_currency: Any) -> str:
    """§2.1: the app charges in the school's stripeConnect.currency when it is one it supports,
    else in NOK."""
    code = school_currency.lower() if isinstance(school_currency, str) else ""
    return code if code in CHECKOUT_CURRENCIES else "nok"


def major_units(amount_minor: int | None) -> float | int | None:
    if amount_minor is None:
        return None
    return tidy(amount_minor / 100)


def purchase_amounts(session: Session, metadata: Mapping[str, Any], pass_: Pass) -> dict[str, Any]:
    """§2.6 for a purchase: what was paid, list price, discount and promo code."""
    price = number(pass_.price)
    pass_price = tidy(price) if price is not None else None
    paid = major_units(session.amount_total) if session.amount_total else None
    original = js_parse_float(metadata.get("originalPrice"))
    final = js_parse_float(metadata.get("finalPrice"))
    discount = js_parse_float(metadata.get("discountAmount"))
    promo = metadata.get("promoCode")
    return {
        "purchasePrice": paid if paid is not None else pass_price,
        "originalPrice": tidy(original) if original is not None else pass_price,
        "finalPrice": tidy(final) if final is not None else (
            paid if paid is not None else pass_price),
        "discountAmount": tidy(discount) if discount else 0,
        "promoCode": promo if isinstance(promo, str) and promo else None,
    }


def upgrade_amounts(session: Session, metadata: Mapping[str, Any], pass_: Pass) -> dict[str, Any]:
    """§1.3 upgrade document: the new pass's price and what the upgrade cost."""
    price = number(pass_.price)
    new_price = js_parse_float(metadata.get("newPassPrice"))
    cost = js_parse_float(metadata.get("upgradeCost"))
    paid = major_units(session.amount_total) if session.amount_total else None
    return {
        "purchasePrice": tidy(new_price) if new_price is not None else (
            tidy(price) if price is not None else None),
        "upgradeCost": tidy(cost) if cost is not None else paid,
    }
