"""The weekly e-mail at any volume: under 90 KB of HTML, figures first, rows by payment time."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from jobs.adapters.mailer import compose
from jobs.config.settings import SmtpSettings
from jobs.reports.render import CAPS, column, render_weekly, report_csv
from tests.unit.mail_world import heavy_report

LIMIT = 90_000  # bytes of HTML; Gmail clips a part beyond about 102 KB
GMAIL_CLIP = 102_000


@pytest.mark.parametrize("needing", [10, 500])
def test_the_html_part_stays_under_90_kb(needing: int) -> None:
    report = heavy_report(needing)
    rendered = render_weekly(report)
    size = len(rendered.html.encode("utf-8"))
    print(f"weekly HTML with {needing} needing a person: {size} bytes")
    assert size < LIMIT
    # As sent: the HTML part with its transfer encoding stays under the clip too.
    message = compose(SmtpSettings(host="127.0.0.1", report_from="ops@example.org",
                                   report_to=("a@example.org",)),
                      rendered.subject, rendered.text, rendered.html)
    part = message.get_body(("html",))
    assert part is not None and len(part.as_bytes()) < GMAIL_CLIP
    html = rendered.html
    # Every needing-person card shown up to the cap, and the rest counted, not dropped silently.
    shown = min(needing, CAPS.needs_you)
    assert html.count(">Open the payment in Stripe</a>") == shown
    if needing > CAPS.needs_you:
        assert (f"{needing - CAPS.needs_you} more purchases needing you</b> not shown here: "
                f"all {needing} are in the attached JSON and CSV.") in html
        assert f"{needing - CAPS.created} more created</b>" in html
        assert f"{needing - CAPS.anomalies} more anomalies</b>" in html
    else:
        assert "more purchases needing you" not in html


def test_figures_come_before_every_list_and_cards_are_by_payment_time() -> None:
    report = heavy_report(40)
    html = render_weekly(report).html
    figures = html.index('id="figures"')
    assert figures < html.index("Needs you") < html.index("What the job created")
    paid = [row.paid_at for row in report.needs_you]
    assert paid == sorted(paid)
    created = [c.paid_at for c in report.created]
    assert created == sorted(created)
    # The cards shown are the oldest payments.
    first_ids = re.findall(r"checkout/sessions/(cs_live_\w+)\"[^>]*font-weight:bold", html)
    assert first_ids == [row.session_id for row in report.needs_you[:CAPS.needs_you]]


def test_the_csv_attachment_holds_every_row_and_no_formula() -> None:
    report = heavy_report(30)
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert len(rows) == len(report.needs_you) + len(report.created) == 60
    assert [r["session_id"] for r in rows[:30]] == [n.session_id for n in report.needs_you]
    assert all(r["stripe_url"].startswith("https://dashboard.stripe.com/") for r in rows)


def test_csv_cells_cannot_start_a_spreadsheet_formula() -> None:
    from dataclasses import replace

    report = heavy_report(1)
    evil = replace(report.needs_you[0], email='=HYPERLINK("http://x")', school="+1",
                   pass_name="@a")
    rows = list(csv.DictReader(io.StringIO(report_csv(replace(report, needs_you=(evil,))))))
    assert (rows[0]["email"], rows[0]["school"], rows[0]["pass"]) == (
        "'=HYPERLINK(\"http://x\")", "'+1", "'@a")


def test_text_columns_line_up() -> None:
    lines = column([("Mon 06 May 09:14", "kari@example.com", "1,250.00 NOK", "4 min"),
                    ("Tue 07 May 10:00", "a@b.no", "99.00 EUR", "2 h 5 min")],
                   header=("Paid", "Student", "Amount", "Repair"))
    assert lines == [
        "Paid              Student                 Amount     Repair",
        "Mon 06 May 09:14  kari@example.com  1,250.00 NOK      4 min",
        "Tue 07 May 10:00  a@b.no               99.00 EUR  2 h 5 min",
    ]
    text = render_weekly(heavy_report(12)).text
    block = text.split("WHAT THE JOB CREATED")[1].split("\n\n")[0].splitlines()[1:]
    assert len(block) == 13  # the header and every creation: the text part is not capped
    # Every line's amount column ends at the same place.
    ends = {line.index(" NOK") if " NOK" in line else line.index(" EUR") if " EUR" in line
            else line.index(" SEK") for line in block[1:]}
    assert len(ends) == 1


def test_an_interrupted_write_leaves_the_old_file_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from jobs.reports.render import write_private

    path = tmp_path / "report.html"
    write_private(path, "old report")

    def interrupted(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_private(path, "new report, half written")
    assert path.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
