"""Student e-mails from `reconcile daemon`: several passes, a SIGTERM mid-write, one e-mail each.

Uses the small world of `test_daemon_process` (three schools, three purchases each, none in
Sanity yet) and a real SMTP server in this process.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.adapters.ledger import Ledger
from sandbox.sanity_server import SanityStandIn
from tests.integration.smtp_server import Server, smtp_server
from tests.integration.test_daemon_process import (
    PER_SCHOOL,
    SCHOOLS,
    Sandbox,
    sanity_node,  # noqa: F401 (the module's Sanity stand-in fixture)
    sigterm_mid_write,
    stop,
    wait_for,
)

DOMAIN = "school.example.org"


@pytest.fixture
def box(tmp_path: Path, sanity_node: SanityStandIn) -> Iterator[tuple[Sandbox, Server]]:  # noqa: F811
    sandbox = Sandbox(tmp_path, sanity_node)
    with smtp_server("plain") as mail:
        sandbox.env.update({
            "RECONCILER_NOTIFY_STUDENTS": "true", "SMTP_HOST": mail.host,
            "SMTP_PORT": str(mail.port), "SMTP_STARTTLS": "false",
            "RECONCILER_NOTIFY_FROM": f"School <hello@{DOMAIN}>",
            "REPORT_FROM": "ops@example.org", "REPORT_TO": "ops@example.org"})
        yield sandbox, mail
    sandbox.close()


def told(mail: Server) -> Counter[str]:
    """E-mails per Message-ID (one per purchase), the ops alerts left out."""
    return Counter(str(m.message["Message-ID"]).strip() for m in mail.messages
                   if "ops@example.org" not in m.rcpt_tos)


def finished_runs(state: Path) -> int:
    if not (state / "ledger.sqlite").exists():
        return 0
    with Ledger.open(state) as ledger:
        return sum(1 for r in ledger.recent_runs() if r.status != "running")


def test_the_daemons_passes_tell_each_student_once(box: tuple[Sandbox, Server]) -> None:
    sandbox, mail = box
    proc = sandbox.start("daemon")
    try:
        # The start-up quick pass creates the nine passes; the overdue deep pass behind it
        # finds them present.
        wait_for(lambda: finished_runs(sandbox.state) >= 2, timeout=60, what="two passes",
                 proc=proc)
        code, _, err, _ = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, err
    counts = told(mail)
    assert len(counts) == SCHOOLS * PER_SCHOOL and set(counts.values()) == {1}


def test_sigterm_mid_write_then_a_run_tells_each_student_once(
        box: tuple[Sandbox, Server]) -> None:
    sandbox, mail = box
    code, err, seconds = sigterm_mid_write(sandbox)
    assert code == 0 and seconds < 10, err
    written = len(sandbox.subscriptions())
    assert 1 <= written < SCHOOLS * PER_SCHOOL
    assert told(mail) == Counter()  # a stopping daemon does not wait for the mail server
    done = sandbox.start("run", "--json")
    out, err = done.communicate(timeout=120)
    report = json.loads(out)
    assert report["counts"]["created"] == SCHOOLS * PER_SCHOOL - written, err
    assert report["student_emails"]["told"] == SCHOOLS * PER_SCHOOL
    counts = told(mail)
    assert len(counts) == SCHOOLS * PER_SCHOOL and set(counts.values()) == {1}
