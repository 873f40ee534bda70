"""Chat alerts against a local incoming-webhook receiver (127.0.0.1): the payload, the retries,
the de-duplication by the e-mail's keys, a receiver that is down, and a URL that never shows.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from jobs.adapters.chat import ChatWebhook, deliver_chat, render_chat
from jobs.adapters.ledger import Ledger
from jobs.config.settings import AlertSettings
from jobs.config.values import Secret
from jobs.core.runreport import RunReport
from jobs.reports.alerts import evaluate
from jobs.reports.weekly import Links
from sandbox.sanity_server import SanityStandIn
from tests.integration.test_daemon_process import (
    PER_SCHOOL,
    SCHOOLS,
    Sandbox,
    sanity_node,  # noqa: F401 - the module's Sanity stand-in fixture
)
from tests.support import reports
from tests.support.ping_server import PingServer

TOKEN = "XyZ-chat-webhook-token-123"
HOOK_PATH = f"/services/T0001/B0002/{TOKEN}"
EMAIL = "kari.nordmann@example.com"


@pytest.fixture
def receiver() -> Iterator[PingServer]:
    server = PingServer()
    yield server
    server.close()


def report(cap_exceeded: bool = False, error: str | None = None) -> RunReport:
    return reports.run_report(
        "20260101T000000Z-abc123", since="2026-01-01T00:00:00Z", until="2026-01-01T01:00:00Z",
        cap_exceeded=cap_exceeded, error=error, decisions=[reports.manual(
            "cs_test_needs1", "user_ambiguous", "acct_A", email=EMAIL, amount=1200,
            currency="nok", tenant="Dance Oslo", pass_name="10 klipp",
            paid_at="2026-01-01T00:30:00Z")])


def alerts_of(data: RunReport, ledger: Ledger) -> list[Any]:
    return evaluate(data, ledger, AlertSettings(), datetime(2026, 1, 1, 1, tzinfo=UTC),
                    links=Links("https://dashboard.stripe.com", "test"))


def test_the_receiver_gets_each_alert_once_with_the_e_mail_masked(
        receiver: PingServer, tmp_path: Path) -> None:
    chat = ChatWebhook(Secret(receiver.url + HOOK_PATH))
    with Ledger.open(tmp_path) as ledger:
        alerts = alerts_of(report(cap_exceeded=True, error="12 > cap 10"), ledger)
        assert [a.kind for a in alerts] == ["cap_hit", "needs_manual"]
        assert deliver_chat(alerts, chat, ledger, key_mode="test") == (2, None)
        # The same facts again (the next run still sees them): nothing new is posted.
        assert deliver_chat(alerts_of(report(cap_exceeded=True), ledger), chat, ledger) == (0, None)
        # Chat and e-mail are de-duplicated apart: the e-mail for these keys is still due.
        assert not ledger.alert_sent(alerts[0].key)
        assert ledger.alert_sent("chat:" + alerts[0].key)
    assert len(receiver.posts) == 1
    path, body = receiver.posts[0]
    assert path == HOOK_PATH and set(body) == {"text"}
    text = body["text"]
    assert text.startswith("*Pass reconciler [TEST MODE]: 2 alerts*")
    assert text.index("safety cap") < text.index("A purchase needs you")  # most urgent first
    assert "Session: cs_test_needs1" in text and "Amount: " in text
    assert ("<https://dashboard.stripe.com/acct_A/test/checkout/sessions/cs_test_needs1"
            "|Open the payment in Stripe>") in text
    assert EMAIL not in text and "ka***@example.com" in text


def test_a_busy_receiver_is_retried_with_the_project_policy(receiver: PingServer) -> None:
    receiver.failing_posts = 2
    waits: list[float] = []
    chat = ChatWebhook(Secret(receiver.url + HOOK_PATH), sleep=waits.append)
    assert chat.send({"text": "hello"}) is None
    assert len(waits) == 2 and receiver.posts == [(HOOK_PATH, {"text": "hello"})]


def test_a_receiver_that_is_down_is_recorded_and_never_raises(tmp_path: Path) -> None:
    down = PingServer()
    down.close()
    logs = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(logs),
                        processors=[structlog.processors.JSONRenderer()])
    try:
        chat = ChatWebhook(Secret(down.url + HOOK_PATH), sleep=lambda _s: None)
        with Ledger.open(tmp_path) as ledger:
            alerts = alerts_of(report(), ledger)
            count, error = deliver_chat(alerts, chat, ledger)
            assert count == 1 and error == "chat webhook unreachable (ConnectionError)"
            assert not ledger.alert_sent("chat:" + alerts[0].key)  # tried again next time
    finally:
        structlog.reset_defaults()
    assert TOKEN not in logs.getvalue() and "127.0.0.1" not in logs.getvalue()


def test_render_escapes_slack_control_characters() -> None:
    from jobs.reports.alerts import Alert

    body = render_chat([Alert(key="k", kind="cap_hit", title="a < b & c", meaning="m", fix="f")])
    assert "a &lt; b &amp; c" in body["text"]


# ---- the real job in a process -------------------------------------------------------------


@pytest.fixture
def box(tmp_path: Path, sanity_node: SanityStandIn) -> Iterator[Sandbox]:  # noqa: F811
    sandbox = Sandbox(tmp_path, sanity_node)
    yield sandbox
    sandbox.close()


def run(box: Sandbox, **env: str) -> tuple[int, str, float]:
    box.env.update(env)
    began = time.monotonic()
    proc = box.start("run")
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, time.monotonic() - began


def test_a_run_posts_its_missing_spike_to_the_chat(box: Sandbox, receiver: PingServer) -> None:
    code, err, _ = run(box, CHAT_WEBHOOK_URL=receiver.url + HOOK_PATH)
    assert code == 0, err[-2000:]
    assert len(receiver.posts) == 1
    text = receiver.posts[0][1]["text"]
    assert (f"The webhook looks broken now: {SCHOOLS * PER_SCHOOL} paid passes had no "
            "subscription") in text
    assert TOKEN not in err
    assert any(json.loads(line).get("event") == "chat_alerts_sent"
               for line in err.splitlines() if line.startswith("{"))


def test_a_chat_receiver_that_is_down_does_not_fail_the_run(box: Sandbox) -> None:
    down = PingServer()
    down.close()
    code, err, seconds = run(box, CHAT_WEBHOOK_URL=down.url + HOOK_PATH)
    assert code == 0, err[-2000:]
    assert len(box.subscriptions()) == SCHOOLS * PER_SCHOOL  # the run did its work
    assert seconds < 60
    assert TOKEN not in err and HOOK_PATH not in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failed = [e for e in events if e.get("event") == "chat_alerts_not_sent"]
    assert len(failed) == 1 and failed[0]["error"] == "chat webhook unreachable (ConnectionError)"


def test_failed_runs_are_posted_once_per_streak(box: Sandbox, receiver: PingServer) -> None:
    env = {"CHAT_WEBHOOK_URL": receiver.url + HOOK_PATH, "SANITY_API_TOKEN": "rejected-token"}
    codes = [run(box, **env)[0] for _ in range(4)]
    assert codes == [2, 2, 2, 2]
    texts = [body["text"] for _, body in receiver.posts]
    assert len(texts) == 1 and "The last 3 runs failed" in texts[0]
