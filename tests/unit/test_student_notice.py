"""The student's e-mail as data and text: no server, no ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.adapters.ledger import Ledger
from jobs.adapters.ledger_schema import MIGRATIONS, apply_migrations, connect
from jobs.core.model import Creation, Decision
from jobs.reports.student_notice import (
    School,
    address_problem,
    local_date,
    message_id,
    notice_row,
    page_link,
    render_notice,
    school_of,
)

OSLO = ZoneInfo("Europe/Oslo")
CONTENT = {"pass_name": "Drop-in <b>salsa</b>", "type": "single",
           "end_date": "2026-06-30T21:59:59.000Z", "clips": 1}


@pytest.mark.parametrize(("email", "problem"), [
    (None, "no e-mail address on the Checkout Session"),
    ("  ", "no e-mail address on the Checkout Session"),
    ("anna", "not a usable e-mail address"),
    ("anna@localhost", "not a usable e-mail address"),
    ("anna@example.org\r\nBcc: x@example.org", "not a usable e-mail address"),
    ("a" * 250 + "@example.org", "not a usable e-mail address"),
    ("anna.nordmann+pass@example.no", None),
])
def test_addresses_that_cannot_be_written_to_are_named(email: str | None,
                                                        problem: str | None) -> None:
    assert address_problem(email) == problem


def test_dates_are_the_schools_local_day_in_its_language() -> None:
    # 21:59:59 UTC on 30 June is 23:59:59 in Oslo (summer time); 23:30 UTC on 31 Dec is 1 Jan.
    assert local_date("2026-06-30T21:59:59.000Z", OSLO, "nb") == "30. juni 2026"
    assert local_date("2026-12-31T23:30:00Z", OSLO, "en") == "1 January 2027"
    assert local_date("not a date", OSLO, "nb") is None
    assert local_date(None, OSLO, "en") is None


def test_the_link_needs_the_app_url_and_the_schools_slug() -> None:
    school = school_of({"_id": "t1", "schoolName": "Nord", "slug": {"current": "nord"}})
    assert page_link("https://app.example.org/", school) == \
        "https://app.example.org/nord/subscriptions"
    assert page_link(None, school) is None
    assert page_link("https://app.example.org", school_of({"_id": "t2"})) is None


def test_the_html_escapes_what_comes_from_the_data_and_carries_no_image_or_tracking() -> None:
    html = render_notice(CONTENT, School("t1", "Nord & Co", "nord"), language="nb", tz=OSLO,
                         app_url="https://app.example.org").html
    assert "Drop-in &lt;b&gt;salsa&lt;/b&gt;" in html and "Nord &amp; Co" in html
    assert "<img" not in html.lower() and "<script" not in html.lower()
    assert "http" not in html.replace("https://app.example.org/nord/subscriptions", "")


def test_without_a_school_name_or_link_the_email_still_reads_well() -> None:
    text = render_notice({**CONTENT, "clips": None}, None, language="en", tz=OSLO,
                         app_url="https://app.example.org").text
    assert "The pass you bought at your dance school" in text
    assert "See your passes" not in text and "Classes:" not in text
    assert "Valid until: 30 June 2026" in text
    with pytest.raises(ValueError):
        render_notice(CONTENT, None, language="de", tz=OSLO, app_url=None)


def test_what_is_recorded_is_the_pass_as_written_and_the_id_hides_the_session() -> None:
    doc = {"_id": "subscription-cs_test_1", "passName": "10 klipp", "type": "clipcard",
           "endDate": "2026-09-01T10:00:00.000Z", "remainingClips": 10}
    row = notice_row(Decision("cs_test_1", "acct_1", "created", tenant="t1",
                              email="a@example.org", creation=Creation(doc)), "run-1")
    assert row["content"] == {"subscription_id": "subscription-cs_test_1",
                              "pass_name": "10 klipp", "type": "clipcard",
                              "end_date": "2026-09-01T10:00:00.000Z", "clips": 10}
    assert (row["run_id"], row["email"], row["tenant"]) == ("run-1", "a@example.org", "t1")
    mid = message_id("cs_test_1", "example.org")
    assert mid == message_id("cs_test_1", "example.org") != message_id("cs_test_2", "example.org")
    assert "cs_test_1" not in mid


def test_a_ledger_of_the_previous_version_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    conn = connect(path)
    apply_migrations(conn, MIGRATIONS[:1])
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.schema_version == len(MIGRATIONS)
    tables = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "student_notices" in tables
