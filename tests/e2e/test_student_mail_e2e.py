"""The student e-mails end to end: the real CLI on a generated world, a real SMTP server.

Each purchase the job creates gets exactly one e-mail, to the buyer's address on the Checkout
Session, naming the school, the pass and its end date; nothing for any other outcome, nothing
again on a rerun, after a SIGKILL between the write and the e-mail, or when the mail server
was down during the run (a later pass sends them).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobs.adapters.ledger import Ledger
from jobs.reports.student_notice import address_problem, local_date, message_id
from sandbox.sanity_server import SanityStandIn
from tests.e2e.harness import Sandbox, start_sandbox
from tests.integration.smtp_server import Received, Server, free_port, smtp_server

OPS = "ops@example.org"
SENDER_DOMAIN = "school-mail.example.org"


@pytest.fixture
def world(tmp_path: Path, sanity: SanityStandIn) -> Iterator[Sandbox]:
    box = start_sandbox(tmp_path, sanity, seed=11, sessions=600)
    box.extra_env.update({
        "RECONCILER_NOTIFY_STUDENTS": "true",
        "RECONCILER_NOTIFY_FROM": f"Dance school <hello@{SENDER_DOMAIN}>",
        "NEXT_PUBLIC_BASE_URL": "https://app.example.org",
        "REPORT_FROM": "reconciler@example.org", "REPORT_TO": OPS,
        "SMTP_STARTTLS": "false"})
    yield box
    box.stripe.stop()


def use_mail(box: Sandbox, port: int) -> None:
    box.extra_env.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)})


def buyers(tmp_path: Path) -> dict[str, str | None]:
    """Session id -> customer_details.email, as Stripe holds them."""
    data = json.loads((tmp_path / "world" / "stripe.json").read_text())["data"]
    return {s["id"]: (s.get("customer_details") or {}).get("email")
            for account in data.values() for s in account["checkout_sessions"]}


def created(box: Sandbox) -> dict[str, dict[str, Any]]:
    """The truth's created purchases: session id -> the expected subscription."""
    return {sid: e["expected"] for sid, e in box.truth["sessions"].items()
            if e["outcome"] == "created"}


def to_students(mail: Server) -> list[Received]:
    return [m for m in mail.messages if OPS not in m.rcpt_tos]


def by_session(box: Sandbox, messages: list[Received]) -> Counter[str]:
    """How many e-mails each session got (the Message-ID is derived from the session)."""
    ids = {message_id(sid, SENDER_DOMAIN): sid for sid in box.truth["sessions"]}
    # A long Message-ID is folded onto its own line by the sender: compare it unfolded.
    return Counter(ids.get(str(m.message["Message-ID"]).strip(), "?") for m in messages)


def expected_tells(box: Sandbox, tmp_path: Path) -> set[str]:
    """Created purchases with a usable address, whose pass had not expired on arrival."""
    emails = buyers(tmp_path)
    return {sid for sid in created(box) if address_problem(emails.get(sid)) is None
            and "expired_on_arrival" not in box.truth["sessions"][sid].get("anomalies", [])}


def notice_states(box: Sandbox) -> Counter[str]:
    with Ledger.open(box.state_dir) as ledger:
        rows = ledger._query("SELECT state FROM student_notices")
    return Counter(r["state"] for r in rows)


def test_one_email_per_created_purchase_and_none_on_a_rerun(
        world: Sandbox, tmp_path: Path) -> None:
    with smtp_server("plain") as mail:
        use_mail(world, mail.port)
        code, report, stderr = world.run_report()
        assert code == 1, stderr
        want = expected_tells(world, tmp_path)
        assert len(want) >= 10
        got = by_session(world, to_students(mail))
        assert set(got) == want and set(got.values()) == {1}
        # Right address, school, pass and end date, for every one of them.
        emails = buyers(tmp_path)
        schools = {d["_id"]: d.get("schoolName") for d in world.docs().values()
                   if d.get("_type") == "tenant"}
        oslo = ZoneInfo("Europe/Oslo")
        for m in to_students(mail):
            sid = next(s for s in want
                       if message_id(s, SENDER_DOMAIN) == str(m.message["Message-ID"]).strip())
            doc = created(world)[sid]
            assert m.rcpt_tos == [emails[sid]] and m.message["To"] == emails[sid]
            text = m.message.get_body(("plain",)).get_content()
            school = schools[doc["tenant"]["_ref"]]
            assert school in m.message["Subject"] and doc["passName"] in text
            assert f"Gyldig til og med: {local_date(doc['endDate'], oslo, 'nb')}" in text
        assert report["student_emails"]["told"] == len(want)
        skipped = {p["session_id"] for p in report["student_emails"]["not_delivered"]}
        assert skipped == set(created(world)) - want
        # A rerun finds everything present and tells nobody again.
        world.run_report()
        assert by_session(world, to_students(mail)) == got


def test_a_dry_run_tells_nobody(world: Sandbox) -> None:
    with smtp_server("plain") as mail:
        use_mail(world, mail.port)
        world.run_report("--dry-run")
        assert to_students(mail) == []
        assert notice_states(world) == Counter()


def test_sigkill_between_the_write_and_the_email_then_a_rerun_tells_each_once(
        world: Sandbox, tmp_path: Path) -> None:
    with smtp_server("plain") as mail:
        use_mail(world, mail.port)
        world.sanity.set_latency(150)  # writes take a while: the kill lands among them
        proc = subprocess.Popen(world.command("run", *world.window_args), cwd=world.root,
                                env=world.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # By progress, not by the clock: right after the first transaction reached Sanity.
        deadline = time.monotonic() + 60
        while (not any(e.get("kind") == "mutate" for e in world.sanity.log())
               and proc.poll() is None and time.monotonic() < deadline):
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert to_students(mail) == []  # killed before any e-mail
        intents = notice_states(world)
        assert intents["intent"] >= 1  # recorded before the transaction
        world.sanity.set_latency(0)
        code, report, stderr = world.run_report()
        assert code == 1, stderr
        got = by_session(world, to_students(mail))
        assert set(got) == expected_tells(world, tmp_path) and set(got.values()) == {1}
        # Some purchases were written by the killed run: present now, told all the same.
        assert report["counts"]["created"] < len(created(world))
        assert notice_states(world)["uncertain"] == 0
        world.run_report()
        assert by_session(world, to_students(mail)) == got


def test_smtp_down_during_the_run_then_a_later_pass_sends_them(
        world: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    use_mail(world, port)  # nobody answers there during the first run
    code, report, stderr = world.run_report()
    assert code == 1, stderr
    want = expected_tells(world, tmp_path)
    assert report["student_emails"]["told"] == 0
    assert report["student_emails"]["unsent"] == len(want)
    # What can never be sent is reported at once, server or not (e.g. expired on arrival).
    skipped = {p["session_id"] for p in report["student_emails"]["not_delivered"]}
    assert skipped == set(created(world)) - want
    monkeypatch.setattr("tests.integration.smtp_server.free_port", lambda: port)
    with smtp_server("plain") as mail:
        code, report, _ = world.run_report()
        assert report["counts"]["created"] == 0  # the passes were there since the first run
        got = by_session(world, to_students(mail))
        assert set(got) == want and set(got.values()) == {1}
        assert report["student_emails"]["told"] == len(want)


def test_diagnose_fix_tells_the_student_and_the_run_does_not_again(
        world: Sandbox, tmp_path: Path) -> None:
    emails = buyers(tmp_path)
    sid = sorted(expected_tells(world, tmp_path))[0]
    with smtp_server("plain") as mail:
        use_mail(world, mail.port)
        done = world.run("diagnose", "--session", sid, "--fix", "--json")
        view = json.loads(done.stdout)
        assert view["fix"]["student_emails"]["told"] == 1, done.stderr
        (one,) = to_students(mail)
        assert one.rcpt_tos == [emails[sid]]
        world.run_report()
        got = by_session(world, to_students(mail))
        assert got[sid] == 1 and set(got) == expected_tells(world, tmp_path)
