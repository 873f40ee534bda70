"""The app's mapping rules (domain §2.4 type/clips, §2.5 dates, §2.6 and §1.3 amounts)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.core import rules
from jobs.core.rules import Entitlement, Rejection
from tests.support.sessions import CREATED_S, DAY_MS, metadata, pass_, session

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
BASE_MS = CREATED_S * 1000


# §2.4 pass type -> subscription type and remainingClips ------------------------------------

@pytest.mark.parametrize("limit", [None, 0, 5, "10", -3])
def test_single_is_one_clip_whatever_the_classes_limit(limit):
    assert rules.entitlement(pass_(type_="single", classes_limit=limit)) == Entitlement("single", 1)


@pytest.mark.parametrize(("pass_type", "sub_type"), [("multi-pass", "multi-pass"),
                                                      ("multi", "clipcard")])
def test_counted_passes_take_classes_limit(pass_type, sub_type):
    assert rules.entitlement(pass_(type_=pass_type, classes_limit=8)) == Entitlement(sub_type, 8)


def test_a_whole_float_classes_limit_is_a_count():
    grant = rules.entitlement(pass_(type_="multi", classes_limit=10.0))
    assert grant == Entitlement("clipcard", 10)
    assert isinstance(grant.remaining_clips, int)


@pytest.mark.parametrize("limit", [None, 5])
def test_unlimited_is_monthly_without_remaining_clips(limit):
    assert rules.entitlement(pass_(type_="unlimited", classes_limit=limit)) == Entitlement(
        "monthly", None)


@pytest.mark.parametrize("pass_type", ["subscription", "course", "clipcard", "monthly", "Single",
                                       "", None, 3, ["multi"]])
def test_unknown_pass_types_are_rejected(pass_type):
    grant = rules.entitlement(pass_(type_=pass_type))
    assert isinstance(grant, Rejection)
    assert grant.reason == "pass_type_unknown"


@pytest.mark.parametrize("pass_type", ["multi", "multi-pass"])
@pytest.mark.parametrize("limit", [None, 0, -1, "10", "", True, float("nan"), float("inf")])
def test_counted_pass_without_a_usable_class_count_is_rejected(pass_type, limit):
    grant = rules.entitlement(pass_(type_=pass_type, classes_limit=limit))
    assert isinstance(grant, Rejection)
    assert grant.reason == "pass_without_class_count"


@pytest.mark.parametrize(("pass_type", "expected"), [
    ("single", "single"), ("multi-pass", "multi-pass"), ("multi", "clipcard"),
    ("unlimited", "monthly"), ("subscription", None), (None, None), (1, None)])
def test_mapped_type(pass_type, expected):
    assert rules.mapped_type(pass_type) == expected


# §2.5 end date, first match wins -------------------------------------------------------------

def test_fixed_date_wins_even_when_already_past():
    p = pass_(validity_type="date", expiry_date="2025-09-01T00:00:00.000Z", validity_days=90)
    assert rules.end_date_ms(p, BASE_MS) == rules.parse_instant_ms("2025-09-01T00:00:00Z")
    assert rules.end_date_ms(p, BASE_MS) < BASE_MS


def test_fixed_date_only_as_a_date_is_midnight_utc():
    p = pass_(validity_type="date", expiry_date="2026-10-01", validity_days=None)
    assert rules.iso_ms(rules.end_date_ms(p, BASE_MS)) == "2026-10-01T00:00:00.000Z"


def test_validity_days_count_from_the_base():
    p = pass_(validity_type="days", validity_days=90)
    assert rules.end_date_ms(p, BASE_MS) == BASE_MS + 90 * DAY_MS


@pytest.mark.parametrize("validity_type", [None, ""])
def test_validity_days_without_validity_type(validity_type):
    p = pass_(validity_type=validity_type, validity_days=7)
    assert rules.end_date_ms(p, BASE_MS) == BASE_MS + 7 * DAY_MS


def test_expiry_date_ignored_unless_validity_type_is_date():
    p = pass_(validity_type="days", validity_days=30, expiry_date="2025-01-01T00:00:00Z")
    assert rules.end_date_ms(p, BASE_MS) == BASE_MS + 30 * DAY_MS


def test_date_type_without_expiry_falls_back_to_validity_days():
    # domain §2.5 rule 3 reads "validityDays set (no validityType)"; the app's own code is
    # `else if (pass.validityDays)` whatever the type, which this pins (see report: ambiguous).
    p = pass_(validity_type="date", expiry_date=None, validity_days=7)
    assert rules.end_date_ms(p, BASE_MS) == BASE_MS + 7 * DAY_MS


@pytest.mark.parametrize("p", [
    pass_(validity_type="days", validity_days=None),
    pass_(validity_type="days", validity_days=0),
    pass_(validity_type=None, validity_days=None, expiry_date=None),
    pass_(validity_type=None, validity_days=None, expiry_date="2026-12-01T00:00:00Z"),
    pass_(validity_type="date", validity_days=None, expiry_date=None),
    pass_(validity_type="date", validity_days=None, expiry_date="not a date"),
], ids=["days-without-days", "zero-days", "nothing", "expiry-without-date-type",
        "date-type-without-date", "unparseable-date"])
def test_no_valid_expiry_configuration_is_a_rejection(p):
    end = rules.end_date_ms(p, BASE_MS)
    assert isinstance(end, Rejection)
    assert end.reason == "pass_type_unknown"
    assert "no valid expiry configuration" in end.detail


def test_iso_output_has_milliseconds_and_z():
    assert rules.iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert rules.iso_ms(BASE_MS) == "2026-08-17T19:53:20.000Z"
    assert rules.iso_ms(BASE_MS + 7) == "2026-08-17T19:53:20.007Z"
    assert rules.iso_ms(BASE_MS + 90 * DAY_MS + 512) == "2026-11-15T19:53:20.512Z"


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # 1970..2100
def test_iso_ms_round_trips(epoch_ms):
    text = rules.iso_ms(epoch_ms)
    assert ISO_MS.match(text)
    assert rules.parse_instant_ms(text) == epoch_ms


def test_fixed_expiry_date_is_kept_to_the_millisecond_for_old_dates():
    p = pass_(validity_type="date", expiry_date="1987-05-07T00:26:30.943Z")
    assert rules.iso_ms(rules.end_date_ms(p, BASE_MS)) == "1987-05-07T00:26:30.943Z"


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-10-01T00:00:00.000Z", "2026-10-01T00:00:00.000Z"),
    ("2026-10-01T02:00:00+02:00", "2026-10-01T00:00:00.000Z"),
    ("2026-10-01T00:00:00", "2026-10-01T00:00:00.000Z"),
    ("2026-10-01", "2026-10-01T00:00:00.000Z"),
])
def test_parse_instant(text, expected):
    assert rules.iso_ms(rules.parse_instant_ms(text)) == expected


@pytest.mark.parametrize("value", [None, "", "  ", "yesterday", 1_786_996_400, {"$date": 1}])
def test_parse_instant_rejects_non_dates(value):
    assert rules.parse_instant_ms(value) is None


# §2.6 amounts --------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("2000", 2000.0), ("1999.50", 1999.5), ("  7", 7.0), ("+4", 4.0), ("-4", -4.0),
    (".5", 0.5), ("5.", 5.0), ("3e2", 300.0), ("1e", 1.0), ("12abc", 12.0), ("0x1A", 0.0),
    ("1,5", 1.0), ("abc", None), ("", None), ("  ", None), ("-", None), (None, None),
    (True, None), ([], None), (12, 12.0), (float("nan"), None)])
def test_js_parse_float(value, expected):
    assert rules.js_parse_float(value) == expected


def amounts(md=None, **session_overrides):
    s = session(md=metadata() if md is None else md, **session_overrides)
    return rules.purchase_amounts(s, s.metadata, pass_(price=2000))


def test_amount_total_in_ore_becomes_nok():
    got = amounts(metadata(originalPrice=None, finalPrice=None), amount_total=199_950)
    assert got["purchasePrice"] == 1999.5
    assert got["finalPrice"] == 1999.5
    assert got["originalPrice"] == 2000


def test_whole_amounts_are_stored_like_the_apps_integers():
    got = amounts()
    assert json.dumps([got["purchasePrice"], got["originalPrice"], got["finalPrice"]]) == (
        "[2000, 2000, 2000]")


@pytest.mark.parametrize("total", [0, None])
def test_no_amount_total_falls_back_to_the_pass_price(total):
    got = amounts(metadata(originalPrice=None, finalPrice=None), amount_total=total)
    assert got["purchasePrice"] == 2000
    assert got["finalPrice"] == 2000


def test_metadata_prices_parse_like_parse_float():
    got = amounts(metadata(originalPrice="2000 kr", finalPrice="1800.50", discountAmount="199.5",
                           promoCode="SUMMER10"), amount_total=180_050)
    assert got == {"purchasePrice": 1800.5, "originalPrice": 2000, "finalPrice": 1800.5,
                   "discountAmount": 199.5, "promoCode": "SUMMER10"}


def test_unparseable_metadata_prices_fall_back():
    got = amounts(metadata(originalPrice="n/a", finalPrice="", discountAmount="lots"),
                  amount_total=150_000)
    assert got["originalPrice"] == 2000  # pass price
    assert got["finalPrice"] == 1500  # amount_total / 100
    assert got["discountAmount"] == 0


@pytest.mark.parametrize("discount", [None, "0", "", "abc"])
def test_discount_defaults_to_zero(discount):
    assert amounts(metadata(discountAmount=discount))["discountAmount"] == 0


@pytest.mark.parametrize("promo", [None, ""])
def test_promo_code_is_null_when_absent(promo):
    got = amounts(metadata(promoCode=promo))
    assert "promoCode" in got
    assert got["promoCode"] is None


# §1.3 / §2.8 upgrade amounts ---------------------------------------------------------------

def upgrade_md(**overrides):
    md = {"type": "pass_upgrade", "upgradeFromSubscriptionId": "subOld",
          "originalPassPrice": "250", "newPassPrice": "2000", "upgradeCost": "1750"}
    return metadata(**{**md, **overrides})


def test_upgrade_price_is_the_new_pass_price_and_cost_the_difference():
    s = session(md=upgrade_md(), amount_total=175_000)
    got = rules.upgrade_amounts(s, s.metadata, pass_(price=2100))
    assert got == {"purchasePrice": 2000, "upgradeCost": 1750}


def test_upgrade_without_price_metadata_uses_pass_price_and_amount_paid():
    s = session(md=upgrade_md(newPassPrice=None, upgradeCost=None), amount_total=100)
    got = rules.upgrade_amounts(s, s.metadata, pass_(price=2100))
    assert got == {"purchasePrice": 2100, "upgradeCost": 1}


def test_upgrade_amounts_carry_no_promo_fields():
    s = session(md=upgrade_md(promoCode="X"), amount_total=175_000)
    got = rules.upgrade_amounts(s, s.metadata, pass_())
    assert not {"promoCode", "discountAmount", "originalPrice", "finalPrice"} & set(got)


@given(st.integers(min_value=-86_400_000, max_value=253_402_300_799_999))
@settings(max_examples=300, deadline=None)
def test_iso_ms_reads_back_to_the_same_millisecond(epoch_ms):
    text = rules.iso_ms(epoch_ms)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    assert rules.parse_instant_ms(text) == epoch_ms
