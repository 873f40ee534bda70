"""`reconcile daemon` and `reconcile run` as real processes against the local stand-ins.

The Stripe stand-in runs in this process, the Sanity stand-in is the Node server, the heartbeat
monitor a tiny HTTP server; all on 127.0.0.1, ephemeral ports. Each test starts one or two
`python -m jobs` processes (about 2 s of start-up each: the Stripe SDK import).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.adapters.ledger import Ledger
from sandbox.sanity_server import SanityStandIn, StandInError
from sandbox.stripe.server import StripeStandIn
from tests.support import stripe_data as sd
from tests.support.ping_server import PingServer

ROOT = Path(__file__).resolve().parents[2]
SCHOOLS = 3
PER_SCHOOL = 3
PING_TOKEN = "5d0c1f3e-ping-token-7a9b"


def world(now: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Three schools, three paid clip-card purchases each, none in Sanity yet."""
    accounts: dict[str, Any] = {}
    data: dict[str, Any] = {"platform": sd.account_data()}
    docs: list[dict[str, Any]] = []
    for s in range(SCHOOLS):
        acct, tid, pid = f"acct_school{s}", f"tenant-{s}", f"pass-{s}"
        accounts[acct] = sd.account(acct, name=f"School {s}")
        docs.append({"_id": tid, "_type": "tenant", "schoolName": f"School {s}",
                     "stripeConnect": {"accountId": acct}})
        docs.append({"_id": pid, "_type": "pass", "name": "10 Clip Card", "type": "multi",
                     "price": 2000, "validityType": "days", "validityDays": 90,
                     "classesLimit": 10, "isActive": True,
                     "tenant": {"_type": "reference", "_ref": tid}})
        sessions = []
        for n in range(PER_SCHOOL):
            clerk = f"user_{s}_{n}"
            docs.append({"_id": f"u-{s}-{n}", "_type": "user", "clerkId": clerk})
            sessions.append(sd.session(
                sd.object_id("cs_test", n, f"s{s}"), created=now - 3600 - n, currency="nok",
                metadata={"type": "pass_purchase", "passId": pid, "userId": clerk,
                          "tenantId": tid}))
        data[acct] = sd.account_data(sessions=sessions)
    return sd.stripe_file(data=data, accounts=accounts), docs


@pytest.fixture(scope="module")
def sanity_node() -> Iterator[SanityStandIn]:
    try:
        server = SanityStandIn().start()
    except StandInError as error:
        pytest.skip(f"Sanity stand-in unavailable: {error}")
    yield server
    server.stop()


class Sandbox:
    """The stand-ins loaded with `world`, a state dir, and the environment a process needs."""

    def __init__(self, tmp: Path, sanity: SanityStandIn, ping_url: str | None = None) -> None:
        now = int(time.time())
        stripe_json, docs = world(now)
        self.stripe = StripeStandIn(stripe_json).start()
        self.sanity = sanity
        sanity.reset()
        sanity.load_documents(docs)
        self.state = tmp / "state"
        self.env = {
            "PATH": os.environ.get("PATH", ""), "HOME": str(tmp), "LANG": "C.UTF-8",
            "STRIPE_SECRET_KEY": sd.TEST_KEY, "STRIPE_API_BASE": self.stripe.url,
            "SANITY_PROJECT_ID": sanity.project, "SANITY_DATASET": sanity.dataset,
            "SANITY_API_TOKEN": sanity.write_token, "SANITY_API_BASE": sanity.url,
            "RECONCILER_STATE_DIR": str(self.state), "RECONCILER_GRACE": "0",
            # One transaction at a time, so "the transaction under way" is one.
            "RECONCILER_STRIPE_CONCURRENCY": "1",
            "RECONCILER_LOG_FORMAT": "json",
        }
        if ping_url is not None:
            self.env["HEARTBEAT_URL"] = ping_url

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "jobs", *args], cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def subscriptions(self) -> list[dict[str, Any]]:
        return [d for d in self.sanity.dump() if d.get("_type") == "subscription"]

    def close(self) -> None:
        self.stripe.stop()


@pytest.fixture
def sandbox(tmp_path: Path, sanity_node: SanityStandIn) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path, sanity_node)
    yield box
    box.close()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}) waiting for {what}:"
                                 f"\n{proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def log_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM,
         timeout: float = 30) -> tuple[int, str, str, float]:
    """Signal the process and collect it; returns (exit code, stdout, stderr, seconds)."""
    began = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"no exit within {timeout} s after {sig.name}:\n{err}") from None
    return proc.returncode, out, err, time.monotonic() - began


def sigterm_mid_write(sandbox: Sandbox) -> tuple[int, str, float]:
    """Start the daemon with every transaction taking 1.5 s to arrive, and send SIGTERM while
    the first is under way; returns (exit code, stderr, seconds to exit)."""
    for _ in range(SCHOOLS):
        sandbox.sanity.inject_fault("mutate", delay_ms=1500)
    proc = sandbox.start("daemon")
    try:
        # Reading is done when the catalog query and one lookup per school have been answered:
        # the first transaction is then on its way.
        wait_for(lambda: sum(e["kind"] == "query" for e in sandbox.sanity.log()) >= 1 + SCHOOLS,
                 timeout=20, what="the start-up pass to read", proc=proc)
        time.sleep(0.3)
        code, _, err, seconds = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return code, err, seconds


def test_sigterm_during_a_write_finishes_that_transaction_and_records_interrupted(
        sandbox: Sandbox):
    code, err, seconds = sigterm_mid_write(sandbox)
    assert code == 0
    assert seconds < 10  # the 1.5 s transaction, then out (the limit is 30 s)
    subs = sandbox.subscriptions()
    by_school = {s: sorted(d["stripeSessionId"] for d in subs
                           if d["stripeSessionId"].startswith(f"cs_test_s{s}"))
                 for s in range(SCHOOLS)}
    written = [s for s, ids in by_school.items() if ids]
    # The transactions under way (writes may run side by side) finish whole; none starts after
    # the signal: each school has all three subscriptions or none, and not every school.
    assert 1 <= len(written) < SCHOOLS, by_school
    assert all(len(by_school[s]) == PER_SCHOOL for s in written), by_school
    mutates = [e for e in sandbox.sanity.log() if e["kind"] == "mutate"]
    assert len(mutates) == len(written) and all(m["status"] == 200 for m in mutates)
    with Ledger.open(sandbox.state) as ledger:
        runs = ledger.recent_runs()
        assert [(r.kind, r.status) for r in runs] == [("quick", "interrupted")]
        assert runs[0].counts["created"] == PER_SCHOOL * len(written)
        assert runs[0].counts["failed"] == (SCHOOLS - len(written)) * PER_SCHOOL
        assert {d["reconcileRunId"] for d in subs} == {runs[0].run_id}
        assert ledger.watermarks() == []  # the next pass reads the whole window again
    events = [e.get("event") for e in log_lines(err)]
    assert "daemon_stopping" in events and events[-1] == "daemon_stopped"
    assert "cannot schedule new futures" not in err and "Traceback" not in err


def test_daemon_pings_the_heartbeat_and_stops_promptly_when_idle(
        tmp_path: Path, sanity_node: SanityStandIn):
    pings = PingServer()
    box = Sandbox(tmp_path, sanity_node, ping_url=f"{pings.url}/ping/{PING_TOKEN}")
    proc = box.start("daemon")
    try:
        # The start-up quick pass, then the overdue deep pass queued behind it.
        wait_for(lambda: len(pings.paths) >= 4, timeout=20, what="two passes' pings",
                 proc=proc)
        code, _, err, seconds = stop(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        pings.close()
        box.close()
    assert code == 130 and seconds < 3  # Ctrl-C: the shell's 130, after a clean stop
    # A start ping as each pass takes the lock (a hung pass is noticed), then its outcome.
    assert pings.paths == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}"] * 2
    assert len(box.subscriptions()) == SCHOOLS * PER_SCHOOL
    with Ledger.open(box.state) as ledger:
        runs = sorted(ledger.recent_runs(), key=lambda r: r.started_at)
        assert [(r.kind, r.status) for r in runs] == [("quick", "ok"), ("deep", "ok")]
        assert runs[1].counts["already_present"] == SCHOOLS * PER_SCHOOL
        assert {w.account for w in ledger.watermarks()} == {
            "platform", *(f"acct_school{s}" for s in range(SCHOOLS))}
    assert PING_TOKEN not in err  # the ping URL is a secret
    lines = log_lines(err)
    started = next(e for e in lines if e["event"] == "daemon_configured")
    assert started["heartbeat"] is True and started["quick_every"] == "0:00:30"


def test_two_runs_started_together_one_works_the_other_skips(sandbox: Sandbox):
    sandbox.sanity.set_latency(250)  # each Sanity request 0.25 s: the run holds the lock ~2 s
    procs = [sandbox.start("run", "--json") for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    worked = [r for r in results if r[1].strip()]
    skipped = [r for r in results if not r[1].strip()]
    assert len(worked) == 1 and len(skipped) == 1
    report = json.loads(worked[0][1])
    assert report["counts"]["created"] == SCHOOLS * PER_SCHOOL
    skip_lines = skipped[0][2].strip().splitlines()
    assert len(skip_lines) == 1  # one log line, nothing else
    line = json.loads(skip_lines[0])
    assert line["event"] == "run_skipped" and line["holder"]["kind"] == "run"
    assert len(sandbox.subscriptions()) == SCHOOLS * PER_SCHOOL
    with Ledger.open(sandbox.state) as ledger:
        assert [r.status for r in ledger.recent_runs()] == ["ok"]


def test_a_cron_run_pings_start_then_its_outcome_and_a_dry_run_pings_nothing(
        tmp_path: Path, sanity_node: SanityStandIn):
    pings = PingServer()
    box = Sandbox(tmp_path, sanity_node, ping_url=f"{pings.url}/ping/{PING_TOKEN}")
    try:
        dry = box.start("run", "--dry-run")
        assert dry.wait(timeout=120) == 0
        dry.communicate()
        assert pings.paths == []
        real = box.start("run")
        assert real.wait(timeout=120) == 0
        _, err = real.communicate()
    finally:
        pings.close()
        box.close()
    assert pings.paths == [f"/ping/{PING_TOKEN}/start", f"/ping/{PING_TOKEN}"]
    assert PING_TOKEN not in err
