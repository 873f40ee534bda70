"""After real runs: alerts arrive once, and the weekly report agrees with what the runs did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.reports.render import CAPS
from sandbox.sanity_server import SanityStandIn
from tests.e2e.harness import Sandbox, start_sandbox
from tests.integration.smtp_server import Server, smtp_server


@pytest.fixture
def world(tmp_path: Path, sanity: SanityStandIn) -> Iterator[tuple[Sandbox, Server]]:
    box = start_sandbox(tmp_path, sanity, seed=23, sessions=600)
    with smtp_server("plain") as mail:
        box.extra_env.update({"SMTP_HOST": mail.host, "SMTP_PORT": str(mail.port),
                              "REPORT_FROM": "reconciler@example.org",
                              "REPORT_TO": "ops@example.org"})
        yield box, mail
    box.stripe.stop()


def test_alerts_name_each_purchase_needing_a_person_once(world: tuple[Sandbox, Server]) -> None:
    box, mail = world
    code, report, stderr = box.run_report()
    assert code == 1, stderr
    assert len(mail.messages) == 1
    body = mail.messages[0].message.get_body(("plain",)).get_content()
    for item in report["needs_manual"]:
        assert item["session_id"] in body
    box.run_report()
    assert len(mail.messages) == 1  # nothing new: no second alert for the same purchases


def test_weekly_report_files_match_the_runs(world: tuple[Sandbox, Server],
                                            tmp_path: Path) -> None:
    box, _ = world
    _, report, _ = box.run_report()
    today = datetime.now(UTC).date().isoformat()
    out = tmp_path / "weekly"
    done = box.run("report", "--weekly", "--week-of", today, "--out", str(out))
    assert done.returncode == 1, done.stderr  # there are purchases that need a person
    assert {p.name for p in out.iterdir()} == {"report.html", "report.txt", "report.json",
                                             "report.csv"}
    weekly = json.loads((out / "report.json").read_text())
    created = len(report["created"])
    assert weekly["headline"]["repaired"] == created
    assert len(weekly["needs_you"]) == len(report["needs_manual"])
    html = (out / "report.html").read_text()
    # The oldest payments are shown, the rest counted; the CSV has every one.
    assert weekly["needs_you"][0]["session_id"] in html
    if len(weekly["needs_you"]) > CAPS.needs_you:
        assert f"{len(weekly['needs_you']) - CAPS.needs_you} more purchases needing you" in html
    table = (out / "report.csv").read_text()
    assert all(item["session_id"] in table for item in report["needs_manual"])


def test_weekly_report_is_sent_with_its_attachment(world: tuple[Sandbox, Server]) -> None:
    box, mail = world
    box.run_report()
    before = len(mail.messages)
    today = datetime.now(UTC).date().isoformat()
    done = box.run("report", "--weekly", "--week-of", today, "--send")
    assert done.returncode == 1, done.stderr
    assert len(mail.messages) == before + 1
    message = mail.messages[-1].message
    names = [part.get_filename() for part in message.iter_attachments()]
    assert any(name and name.endswith(".json") for name in names)
    assert message.get_body(("html",)) is not None and message.get_body(("plain",)) is not None


def test_report_json_puts_the_weekly_json_alone_on_stdout(world: tuple[Sandbox, Server],
                                                          tmp_path: Path) -> None:
    box, _ = world
    _, report, _ = box.run_report()
    today = datetime.now(UTC).date().isoformat()
    out = tmp_path / "weekly"
    done = box.run("report", "--weekly", "--week-of", today, "--json", "--out", str(out))
    assert done.returncode == 1, done.stderr
    weekly = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert weekly == json.loads((out / "report.json").read_text())
    assert len(weekly["needs_you"]) == len(report["needs_manual"])
    assert str(out / "report.json") in done.stderr  # the paths written went to stderr
