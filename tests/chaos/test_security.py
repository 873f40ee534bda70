"""Security: secrets never leave the process, e-mails are masked in logs, transport rules hold
(no plain http but to loopback, no plain SMTP to a remote host unless turned off), key mode
and data mode must agree, ids carry no personal data, and the job needs no more than a
restricted read key (and says so clearly with less)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import jobs.adapters.mailer as mailer_module
from jobs.adapters.mailer import MailError, send_once
from jobs.config.settings import load_settings
from jobs.core.errors import ConfigError
from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import StripeStandIn
from tests.chaos import bad_inputs as corpus
from tests.chaos.boxes import ChaosBox, open_box
from tests.chaos.invariants import settled_invariants, write_invariants
from tests.chaos.smtp_chaos import scripted_server
from tests.chaos.tally import Tally
from tests.e2e.harness import ROOT, Sandbox

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

# Distinctive secrets, so that any trace of them in any output is found.
STRIPE_KEY = "sk_test_ChaosSecretKey4b1d9e7f2a"
WRONG_STRIPE_KEY = "sk_test_ChaosWrongKey8f7e6d5c"
SANITY_TOKEN = "skChaosSanityToken3e9d1c7b"
WRONG_SANITY_TOKEN = "skChaosWrongToken6a5b4c3d"
SMTP_USER = "reports"
SMTP_PASSWORD = "smtpChaosPassword2f8e"
WRONG_SMTP_PASSWORD = "smtpChaosWrongPw9c1d"
SECRETS = {"STRIPE_SECRET_KEY": STRIPE_KEY, "wrong STRIPE_SECRET_KEY": WRONG_STRIPE_KEY,
           "SANITY_API_TOKEN": SANITY_TOKEN, "wrong SANITY_API_TOKEN": WRONG_SANITY_TOKEN,
           "SMTP_PASSWORD": SMTP_PASSWORD, "wrong SMTP_PASSWORD": WRONG_SMTP_PASSWORD}

# What a run reads: sessions (with their line items), refunds, products.
MINIMAL = ["checkout_sessions_read", "refunds_read", "products_read"]
KEYS = {
    STRIPE_KEY: {"mode": "test", "accounts": "*", "permissions": "*"},
    "rk_test_ChaosMinimal7c3e1a": {"mode": "test", "accounts": "*", "permissions": MINIMAL},
    "rk_test_ChaosNoRefunds5d2b": {"mode": "test", "accounts": "*",
                                   "permissions": ["checkout_sessions_read"]},
    "rk_test_ChaosNoProducts3b8d": {"mode": "test", "accounts": "*",
                                    "permissions": ["checkout_sessions_read", "refunds_read"]},
    "rk_test_ChaosNoSessions9e4f": {"mode": "test", "accounts": "*",
                                    "permissions": ["refunds_read"]},
    "rk_test_ChaosNothing1a2b3c": {"mode": "test", "accounts": "*", "permissions": []},
}


@pytest.fixture(scope="module")
def sanity_secret() -> Iterator[SanityStandIn]:
    with SanityStandIn(write_token=SANITY_TOKEN, read_token="skChaosReadToken0a1b2c") as server:
        yield server


@pytest.fixture(scope="module")
def smtp() -> Iterator[Any]:
    with scripted_server([], tls=None, users={SMTP_USER: SMTP_PASSWORD}) as (port, rec, _):
        yield port, rec


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, sanity_secret: SanityStandIn,
        smtp: Any) -> Iterator[ChaosBox]:
    port, _ = smtp
    chaos = open_box(tmp_path_factory.mktemp("security"), sanity_secret, seed=5,
                     sessions=300, keys=KEYS)
    chaos.extra_env.update({
        "STRIPE_SECRET_KEY": STRIPE_KEY, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
        "SMTP_USERNAME": SMTP_USER, "SMTP_PASSWORD": SMTP_PASSWORD,
        "REPORT_FROM": "reconciler@example.com", "REPORT_TO": "ops@example.com"})
    yield chaos
    chaos.stripe.stop()


@dataclass
class Outputs:
    """Everything the job let out: (where, bytes)."""

    items: list[tuple[str, bytes]] = field(default_factory=list)
    stderrs: list[tuple[str, str]] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)

    def add(self, where: str, data: str | bytes) -> None:
        self.items.append((where, data.encode() if isinstance(data, str) else data))

    def command(self, label: str, done: subprocess.CompletedProcess[str]) -> None:
        self.codes[label] = done.returncode
        self.add(f"{label} stdout", done.stdout)
        self.add(f"{label} stderr", done.stderr)
        self.stderrs.append((label, done.stderr))

    def files(self, label: str, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.add(f"{label} {path.relative_to(root)}", path.read_bytes())

    def mail(self, label: str, message: EmailMessage) -> None:
        self.add(f"{label} raw", message.as_bytes())
        for part in message.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            if payload:
                self.add(f"{label} part {part.get_content_type()}", payload)

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        return [f"{name} in {where}" for where, data in self.items
                for name, secret in secrets.items() if secret.encode() in data]


@pytest.fixture(scope="module")
def outputs(box: ChaosBox, smtp: Any, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """One tour of every command and failure, collecting all the job let out."""
    _, recorder = smtp
    out = Outputs()
    tmp = tmp_path_factory.mktemp("outputs")
    box.reset()
    # Faults, so that retries log their causes; debug level, so that every line is there.
    controls = box.stripe.controls
    controls.inject_fault("GET /v1/checkout/sessions", times=2, status=500)
    controls.inject_fault("GET /v1/checkout/sessions", status=429)
    controls.inject_fault("GET /v1/refunds", drop=True)
    box.sanity.inject_fault("query", status=503)
    box.sanity.inject_fault("mutate", drop=True)
    out.command("faulty run", box.run("run", *box.window_args, "--json", "--report-file",
                                      str(tmp / "r1.json"), "--log-level", "debug"))
    out.command("second run", box.run("run", *box.window_args, "--report-file",
                                      str(tmp / "r2.json"), "--log-level", "debug"))
    out.command("dry run", box.run("run", *box.window_args, "--dry-run", "--json"))
    out.command("status", box.run("status", "--json"))
    out.command("doctor", box.run("doctor", "--json"))
    today = time.strftime("%Y-%m-%d")
    out.command("weekly", box.run("report", "--weekly", "--week-of", today, "--send",
                                  "--out", str(tmp / "weekly")))
    out.command("weekly, wrong SMTP password", box.run(
        "report", "--weekly", "--week-of", today, "--send", SMTP_PASSWORD=WRONG_SMTP_PASSWORD))
    out.command("wrong Stripe key", box.run("run", *box.window_args,
                                            STRIPE_SECRET_KEY=WRONG_STRIPE_KEY))
    out.command("wrong Sanity token", box.run("run", *box.window_args,
                                              SANITY_API_TOKEN=WRONG_SANITY_TOKEN))
    out.files("report file", tmp)
    out.files("state dir", box.state_dir)
    for n, received in enumerate(recorder.messages):
        out.mail(f"e-mail {n}", received.message)
    out.codes["e-mails"] = len(recorder.messages)
    return out


def test_secrets_appear_in_no_output(outputs: Outputs, tally: Tally) -> None:
    # The scan itself finds a secret where there is one.
    assert Outputs([("probe", f"x{SANITY_TOKEN}y".encode())]).leaks(SECRETS) == [
        "SANITY_API_TOKEN in probe"]
    assert outputs.codes["faulty run"] == 1 and outputs.codes["second run"] == 1
    assert outputs.codes["e-mails"] >= 2  # alerts and the weekly report did go out
    assert outputs.codes["wrong Stripe key"] == 2 and outputs.codes["wrong Sanity token"] == 2
    assert outputs.codes["weekly, wrong SMTP password"] == 2
    names = {where.split(" ")[0] for where, _ in outputs.items}
    assert {"report", "state", "e-mail"} <= names
    leaks = outputs.leaks(SECRETS)
    tally.checked(leaks)
    assert leaks == []


def test_expected_failures_are_one_line_without_traceback(outputs: Outputs) -> None:
    for label in ("wrong Stripe key", "wrong Sanity token", "weekly, wrong SMTP password"):
        stderr = dict(outputs.stderrs)[label]
        assert "Traceback" not in stderr
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("reconcile: "), last
    assert "STRIPE_SECRET_KEY" in dict(outputs.stderrs)["wrong Stripe key"]
    assert "SANITY_API_TOKEN" in dict(outputs.stderrs)["wrong Sanity token"]


def test_emails_are_masked_in_logs(outputs: Outputs, box: ChaosBox) -> None:
    assert box.world is not None
    emails = {s["customer_details"]["email"] for data in box.world.stripe["data"].values()
              for s in data["checkout_sessions"]
              if isinstance(s.get("customer_details"), dict) and s["customer_details"].get("email")}
    logs = "\n".join(text for _, text in outputs.stderrs)
    assert len(emails) > 50 and "***@" in logs  # e-mails are logged, masked
    assert sorted(e for e in emails if e in logs) == []


def test_ids_carry_no_personal_data(outputs: Outputs, box: ChaosBox) -> None:
    """Document ids and transaction ids (kept by Sanity for ever) hold no e-mail or name."""
    assert box.world is not None
    personal: set[str] = set()
    for data in box.world.stripe["data"].values():
        for session in data["checkout_sessions"]:
            details = session.get("customer_details") or {}
            for value in (details.get("email"), details.get("name")):
                if isinstance(value, str):
                    personal.add(value.lower())
                    personal.update(p.lower() for p in re.split(r"[\s@.]+", value) if len(p) >= 4)
    personal -= {"example", "customer"}
    new_ids = set(box.docs()) - {json.loads(line)["_id"]
                                 for line in box.sanity_ndjson.splitlines() if line.strip()}
    transactions = {e.get("transactionId") for e in box.sanity.log() if e["kind"] == "mutate"}
    assert new_ids and all(i.startswith(("subscription-cs_", "user-user_")) for i in new_ids)
    runs = [r["run_id"] for r in box.ledger_rows("runs")]
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", r) for r in runs)
    ids = new_ids | {t for t in transactions if t} | set(runs)
    assert sorted((i, p) for i in ids for p in personal if p in i.lower()) == []


# ----- transport rules


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://127.0.0.1:8080", True),
    ("http://127.5.6.7:8080", True),
    ("http://localhost:3333", True),
    ("http://[::1]:3333", True),
    ("https://api.stripe.com", True),
    ("http://api.stripe.com", False),
    ("http://10.0.0.5:3333", False),
    ("http://127.0.0.1.nip.io", False),
    ("http://localhost.example.com", False),
    ("http://2130706433", False),  # 127.0.0.1 as one number: refused, not guessed
    ("http://[::ffff:10.0.0.1]:80", False),
    ("https://user:pw@api.stripe.com", False),
    ("ftp://127.0.0.1", False),
])
@pytest.mark.parametrize("variable", ["STRIPE_API_BASE", "SANITY_API_BASE"])
def test_plain_http_only_to_loopback(url: str, allowed: bool, variable: str) -> None:
    env = {variable: url}
    if allowed:
        load_settings(env)
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert variable in str(caught.value) and "\n" not in str(caught.value)
    assert "pw" not in str(caught.value).replace("plain", "")


def test_plain_http_to_a_remote_host_stops_the_cli(tmp_path: Path) -> None:
    env = {"STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_API_BASE": "http://api.stripe.example",
           "SANITY_PROJECT_ID": "sandbox", "SANITY_API_TOKEN": SANITY_TOKEN,
           "RECONCILER_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "jobs", "run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("reconcile: STRIPE_API_BASE")
    assert len(done.stderr.strip().splitlines()) == 1 and STRIPE_KEY not in done.stderr


def test_starttls_is_required_for_a_remote_smtp_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real plain-text server (no STARTTLS offered), taken for a remote host: nothing is
    sent unless SMTP_STARTTLS=false says so."""
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_USERNAME": SMTP_USER,
           "SMTP_PASSWORD": SMTP_PASSWORD, "REPORT_FROM": "reconciler@example.com",
           "REPORT_TO": "ops@example.com"}
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "x"
    message.set_content("x")
    with scripted_server([], tls=None, users={SMTP_USER: SMTP_PASSWORD}) as (port, rec, users):
        smtp = load_settings({**env, "SMTP_PORT": str(port)}).smtp
        assert smtp.starttls is True  # the default
        send_once(smtp, message, timeout=5)  # loopback: plain text is fine
        assert len(rec.messages) == 1
        monkeypatch.setattr(mailer_module, "is_loopback", lambda host: False)
        with pytest.raises(MailError, match="offers no STARTTLS") as caught:
            send_once(smtp, message, timeout=5)
        assert SMTP_PASSWORD not in str(caught.value)
        assert len(rec.messages) == 1 and users.failures == 0  # not even a login was tried
        off = load_settings({**env, "SMTP_PORT": str(port), "SMTP_STARTTLS": "false"}).smtp
        assert off.plaintext
        send_once(off, message, timeout=5)
        assert len(rec.messages) == 2


# ----- key mode against data mode (domain §4 #18)


def test_a_live_key_meeting_test_data_is_refused(box: ChaosBox) -> None:
    """Found by this suite: only `doctor` compared the modes; a run wrote test purchases
    with a live key."""
    box.reset()
    before = box.docs()
    done = box.run("run", *box.window_args, STRIPE_SECRET_KEY="sk_live_sandbox")
    assert box.docs() == before, "wrote test-mode purchases with a live key"
    assert done.returncode == 2 and "mode" in done.stderr.strip().splitlines()[-1]


def test_a_test_key_meeting_live_data_is_refused(tmp_path: Path, sanity: SanityStandIn) -> None:
    """Found by this suite: a cs_live_ session (livemode true) was written with a test key."""
    now = int(time.time()) // 60 * 60
    live = corpus.session("Live", now, id="cs_live_chaosLive0001", livemode=True)
    data = corpus.mini_world(now, [corpus.Case("live", live, ("failed", None))])
    path = tmp_path / "stripe.json"
    path.write_text(json.dumps(data))
    sanity.load_documents(corpus.sanity_docs())
    with StripeStandIn(path, now=lambda: float(now)) as stripe:
        box = Sandbox(ROOT, {"window": {"since": now - 86_400, "until": now - 600}}, stripe,
                      sanity, tmp_path / "state")
        before = box.docs()
        code, _, stderr = box.run_report()
        assert box.docs() == before, "wrote a live purchase with a test key"
        assert code == 2 and "mode" in stderr.strip().splitlines()[-1], stderr


# ----- the least a key needs


@pytest.mark.parametrize("key", ["rk_test_sandbox", "rk_test_ChaosMinimal7c3e1a"])
def test_a_read_only_restricted_key_is_enough(box: ChaosBox, tally: Tally, key: str) -> None:
    assert box.world is not None
    box.reset()
    before = box.docs()
    code, report, stderr = box.run_report(STRIPE_SECRET_KEY=key)
    assert code == 1, stderr
    assert not report["failed"] and not any(a["error"] for a in report["accounts"])
    after = box.docs()
    problems = write_invariants(box.world, box.truth, before, after)
    problems += settled_invariants(box.world, box.truth, before, after)
    tally.checked(problems)
    assert problems == []


@pytest.mark.parametrize("key", ["rk_test_ChaosNoRefunds5d2b", "rk_test_ChaosNoSessions9e4f",
                                 "rk_test_ChaosNoProducts3b8d", "rk_test_ChaosNothing1a2b3c"])
def test_less_than_that_fails_clearly_and_writes_nothing(box: ChaosBox, key: str) -> None:
    box.reset()
    before = box.docs()
    done = box.run("run", *box.window_args, STRIPE_SECRET_KEY=key)
    assert box.docs() == before
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and key not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reconcile: ") and "STRIPE_SECRET_KEY" in last, last
    runs = box.ledger_rows("runs")
    assert [r["status"] for r in runs] == ["failed"] and runs[0]["error"]


def test_a_key_without_one_schools_account_repairs_the_others(box: ChaosBox) -> None:
    assert box.world is not None
    box.reset()
    before = box.docs()
    code, report, stderr = box.run_report(STRIPE_SECRET_KEY="sk_test_sandbox_partial")
    assert code == 1, stderr
    broken = [a for a in report["accounts"] if a["error"]]
    assert len(broken) == 1 and "\n" not in broken[0]["error"]
    assert "sk_test_sandbox_partial" not in stderr + json.dumps(report)
    # Every other account was repaired as the truth says; nothing was written for that one.
    unreadable = broken[0]["account"]
    truth = {**box.truth, "sessions": {
        sid: e for sid, e in box.truth["sessions"].items() if e["account"] != unreadable}}
    after = box.docs()
    assert write_invariants(box.world, truth, before, after) == []
    assert settled_invariants(box.world, truth, before, after) == []
    assert [r["status"] for r in box.ledger_rows("runs")] == ["partial"]


def test_settings_never_show_a_secret() -> None:
    settings = load_settings({"STRIPE_SECRET_KEY": STRIPE_KEY, "SANITY_API_TOKEN": SANITY_TOKEN,
                              "SMTP_PASSWORD": SMTP_PASSWORD, "SMTP_USERNAME": SMTP_USER})
    shown = repr(settings) + str(settings) + repr(replace(settings.smtp))
    assert not [name for name, secret in SECRETS.items() if secret in shown]
