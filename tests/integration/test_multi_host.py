"""More than one host on one PostgreSQL ledger, as real processes against the stand-ins.

Each "host" is a `python -m jobs` process with its own home and state directory; they share
only the database. Shown here: two cron runs at once (one works, one skips, and neither
leaves local state), daemon failover with purchases still arriving while the leader is
killed mid-pass, and a database restart during a pass.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.adapters.ledger import Ledger
from sandbox.pg_server import PostgresServer
from sandbox.sanity_server import SanityStandIn
from tests.integration.test_daemon_process import (
    PER_SCHOOL,
    ROOT,
    SCHOOLS,
    Sandbox,
    sanity_node,  # noqa: F401 - the module's Node stand-in fixture
)
from tests.support import stripe_data as sd

QUICK_INTERVAL = 3  # seconds: short, so the failover test is quick
NEW_USERS = 40


class Host:
    """One host's process: its own directories, the shared database; log lines as they come."""

    def __init__(self, box: Sandbox, root: Path, url: str, *args: str, **env: str) -> None:
        self.state = root / "state"
        environment = {**box.env, "HOME": str(root), "RECONCILER_STATE_DIR": str(self.state),
                       "RECONCILER_DATABASE_URL": url, **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "jobs", *args], cwd=ROOT,
                                     env=environment, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = {"event": "text", "text": raw.rstrip()}
            self.lines.append((time.monotonic(), line))

    def events(self, name: str, after: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in list(self.lines) if e.get("event") == name and t >= after]

    def wait_event(self, name: str, timeout: float, after: float = 0.0) -> float:
        """When `name` was logged (at or after `after`), waiting for it."""
        wait_until(lambda: bool(self.events(name, after)), timeout, f"{name}", self)
        return self.events(name, after)[0][0]

    def stop(self, sig: signal.Signals | None = signal.SIGTERM) -> int:
        """Send `sig` (None: none, just wait) and collect the exit code."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code

    def text(self) -> str:
        return "\n".join(json.dumps(e) for _, e in self.lines)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               host: Host | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if host is not None and host.proc.poll() is not None and not predicate():
            raise AssertionError(f"process ended ({host.proc.returncode}) before {what}:\n"
                                 f"{host.text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f":\n{host.text()[-3000:]}" if host else ""))
        time.sleep(0.02)


@pytest.fixture
def box(tmp_path: Path, sanity_node: SanityStandIn) -> Iterator[Sandbox]:  # noqa: F811
    sandbox = Sandbox(tmp_path, sanity_node)
    # Users for the purchases that arrive while the daemons run.
    sanity_node.load_documents([*sanity_node.dump(), *(
        {"_id": f"u-new-{k}", "_type": "user", "clerkId": f"user_new_{k}"}
        for k in range(NEW_USERS))])
    yield sandbox
    sandbox.close()


def paid_session_ids(box: Sandbox) -> set[str]:
    return {s["id"] for name, acct in box.stripe.data.by_account.items() if name != "platform"
            for s in acct.sessions.objects}


def subscriptions_per_session(box: Sandbox) -> Counter[str]:
    return Counter(d["stripeSessionId"] for d in box.subscriptions())


def test_two_cron_runs_on_two_hosts_one_works_one_skips_and_no_local_state(
        box: Sandbox, pg_url: str, tmp_path: Path) -> None:
    box.sanity.set_latency(250)  # the run holds the lock for about 2 s
    hosts = [Host(box, tmp_path / name, pg_url, "run", "--json") for name in ("host-a", "host-b")]
    codes = [h.stop(None) for h in hosts]
    outputs = [h.proc.stdout.read() if h.proc.stdout else "" for h in hosts]
    assert codes == [0, 0], [h.text()[-2000:] for h in hosts]
    worked = [i for i, out in enumerate(outputs) if out.strip()]
    assert len(worked) == 1
    report = json.loads(outputs[worked[0]])
    assert report["counts"]["created"] == SCHOOLS * PER_SCHOOL
    skipper = hosts[1 - worked[0]]
    (_, skipped), = skipper.events("run_skipped")
    assert skipped["holder"]["kind"] == "run" and skipped["holder"]["host"]
    assert skipped["holder"]["pid"] == hosts[worked[0]].proc.pid
    assert subscriptions_per_session(box) == Counter(paid_session_ids(box))  # one each
    with Ledger.connect(pg_url) as ledger:
        assert [r.status for r in ledger.recent_runs()] == ["ok"]
    # Stateless: neither host wrote anything to its disk.
    assert not any(h.state.exists() for h in hosts)


def feed_purchases(box: Sandbox, stop: threading.Event, fed: list[str],
                   every: float = 0.3) -> None:
    """Paid pass purchases whose webhook was lost keep arriving, one every `every` seconds."""
    k = 0
    while not stop.is_set() and k < NEW_USERS:
        school = k % SCHOOLS
        session_id = sd.object_id("cs_test", k, f"new{school}")
        box.stripe.add_sessions(f"acct_school{school}", [sd.session(
            session_id, created=int(time.time()), currency="nok",
            metadata={"type": "pass_purchase", "passId": f"pass-{school}",
                      "userId": f"user_new_{k}", "tenantId": f"tenant-{school}"})])
        fed.append(session_id)
        k += 1
        stop.wait(every)


def test_failover_the_standby_takes_over_a_killed_leader_and_nothing_is_doubled(
        box: Sandbox, pg_url: str, tmp_path: Path) -> None:
    box.sanity.set_latency(150)  # a pass takes a second or two: there is a "mid-pass"
    env = {"RECONCILER_QUICK_INTERVAL": f"{QUICK_INTERVAL}s"}
    leader = Host(box, tmp_path / "host-a", pg_url, "daemon", **env)
    standby: Host | None = None
    feeding, fed = threading.Event(), []
    feeder = threading.Thread(target=feed_purchases, args=(box, feeding, fed), daemon=True)
    try:
        leader.wait_event("leader_elected", 30)
        leader.wait_event("run_finished", 30)
        standby = Host(box, tmp_path / "host-b", pg_url, "daemon", **env)
        standby.wait_event("standing_by", 30)
        feeder.start()
        # Mid-pass: a pass that started after the purchases began to arrive, then a moment.
        started = leader.wait_event("run_started", 30, after=time.monotonic())
        time.sleep(0.4)
        assert not leader.events("run_finished", after=started), "the pass ended too soon"
        leader.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        elected = standby.wait_event("leader_elected", QUICK_INTERVAL + 30)
        first_pass = standby.wait_event("run_started", QUICK_INTERVAL + 30)
        takeover = first_pass - killed
        print(f"\nfailover: standby elected {elected - killed:.2f} s and its first pass started "
              f"{takeover:.2f} s after SIGKILL (quick interval {QUICK_INTERVAL} s)")
        assert takeover <= QUICK_INTERVAL + 10
        # A standby never runs a pass: none of its passes began before the leader died.
        assert all(t >= killed for t, _ in standby.events("run_started"))
        feeder.join(60)
        assert len(fed) == NEW_USERS
        everyone = paid_session_ids(box)
        wait_until(lambda: set(subscriptions_per_session(box)) >= everyone, 90,
                   "every purchase to get its subscription", standby)
        after_all = time.monotonic()
        standby.wait_event("run_finished", 60, after=after_all)  # one more pass: no doubles
    finally:
        feeding.set()
        leader.stop(signal.SIGKILL)
        if standby is not None:
            assert standby.stop() == 0
    per_session = subscriptions_per_session(box)
    assert set(per_session) == everyone and set(per_session.values()) == {1}, per_session
    assert len(everyone) == SCHOOLS * PER_SCHOOL + NEW_USERS
    with Ledger.connect(pg_url) as ledger:
        runs = ledger.recent_runs(1000)
    statuses = Counter(r.status for r in runs)
    assert statuses["interrupted"] == 1 and set(statuses) <= {"ok", "interrupted"}, statuses
    killed_run = next(r for r in runs if r.status == "interrupted")
    assert killed_run.pid == leader.proc.pid and "ended before the run finished" in (
        killed_run.error or "")


def test_a_database_restart_during_a_pass_fails_it_cleanly_and_the_next_one_repairs(
        box: Sandbox, pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    box.sanity.set_latency(150)
    for _ in range(SCHOOLS):
        box.sanity.inject_fault("mutate", delay_ms=1500)  # each transaction 1.5 s on its way
    host = Host(box, tmp_path / "host-a", pg_url, "run", "--json")
    # The first transaction has arrived; the next ones are on their way.
    wait_until(lambda: any(e["kind"] == "mutate" for e in box.sanity.log()), 30,
               "the first write", host)
    pg_server.restart()  # fast: the server cuts every connection, then comes back
    assert host.stop(None) == 2, host.text()[-3000:]
    (_, lost), = host.events("run_lock_lost")
    assert "lock was lost" in lost["detail"]
    first = subscriptions_per_session(box)
    assert len(first) < SCHOOLS * PER_SCHOOL  # it stopped: not everything was written
    again = Host(box, tmp_path / "host-b", pg_url, "run", "--json")
    assert again.stop(None) == 0, again.text()[-3000:]
    report = json.loads(again.proc.stdout.read() if again.proc.stdout else "{}")
    per_session = subscriptions_per_session(box)
    assert set(per_session) == paid_session_ids(box) and set(per_session.values()) == {1}
    assert report["counts"]["created"] == SCHOOLS * PER_SCHOOL - len(first)
    with Ledger.connect(pg_url) as ledger:
        runs = sorted(ledger.recent_runs(), key=lambda r: r.started_at)
        assert [r.status for r in runs] == ["failed", "ok"]
        assert "lock was lost" in (runs[0].error or "")
        assert runs[0].counts["created"] == len(first)  # what it did is recorded
        created = {s for s in per_session if (o := ledger.session(s)) and o.created_at}
        assert created == set(per_session)  # each creation is in the ledger, once


def test_a_leader_cut_off_from_the_database_stops_starting_passes(
        box: Sandbox, pg_url: str, tmp_path: Path) -> None:
    import psycopg

    env = {"RECONCILER_QUICK_INTERVAL": "1s"}
    leader = Host(box, tmp_path / "host-a", pg_url, "daemon", **env)
    standby: Host | None = None
    try:
        leader.wait_event("leader_elected", 30)
        leader.wait_event("run_finished", 30)
        standby = Host(box, tmp_path / "host-b", pg_url, "daemon", **env)
        standby.wait_event("standing_by", 30)
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the leader's session is cut
            admin.execute("SELECT pg_terminate_backend(backend_pid::int) FROM lock_holders"
                          " WHERE name = 'leader'")
        cut = time.monotonic()
        lost = leader.wait_event("leadership_lost", 15, after=cut)
        # Some daemon leads again: the standby, normally (a stepped-down leader waits before
        # it tries again); the old leader only if it got the lock back first.
        wait_until(lambda: bool(standby.events("leader_elected", after=cut)
                                or leader.events("leader_elected", after=lost)), 20,
                   "a daemon to lead again")
        again = [t for t, _ in leader.events("leader_elected", after=lost)]
        # From the moment it knew, the old leader started no pass (until it led again).
        assert [t for t, _ in leader.events("run_started", after=lost)
                if not again or t < again[0]] == []
        took_over = standby.events("leader_elected", after=cut)
        print(f"\nleader cut off: it knew after {lost - cut:.2f} s; " + (
            f"the standby led after {took_over[0][0] - cut:.2f} s" if took_over
            else "it led again first"))
        new_leader = standby if took_over else leader
        new_leader.wait_event("run_finished", 30, after=took_over[0][0] if took_over else again[0])
        if took_over:
            leader.wait_event("standing_by", 15, after=lost)
    finally:
        assert leader.stop() == 0
        if standby is not None:
            assert standby.stop() == 0
    assert set(subscriptions_per_session(box).values()) == {1}


def test_a_database_restart_during_a_daemon_pass_and_the_next_pass_repairs(
        box: Sandbox, pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    box.sanity.set_latency(150)
    for _ in range(SCHOOLS):
        box.sanity.inject_fault("mutate", delay_ms=1500)
    daemon = Host(box, tmp_path / "host-a", pg_url, "daemon", RECONCILER_QUICK_INTERVAL="2s")
    try:
        wait_until(lambda: any(e["kind"] == "mutate" for e in box.sanity.log()), 30,
                   "the first write", daemon)
        restarted = time.monotonic()
        pg_server.restart()
        daemon.wait_event("run_lock_lost", 15, after=restarted)
        # The restart cut the leader lock's session too: the daemon stepped down, led again
        # (no other daemon here), and a later pass ended ok and repaired the rest.
        daemon.wait_event("leadership_lost", 15, after=restarted)
        wait_until(lambda: any(e.get("status") == "ok" for _, e in
                               daemon.events("run_finished", after=restarted)), 60,
                   "a pass to end ok after the restart", daemon)
    finally:
        assert daemon.stop() == 0
    per_session = subscriptions_per_session(box)
    assert set(per_session) == paid_session_ids(box) and set(per_session.values()) == {1}
    with Ledger.connect(pg_url) as ledger:
        runs = sorted(ledger.recent_runs(100), key=lambda r: r.started_at)
    assert runs[0].status == "failed" and "lock was lost" in (runs[0].error or "")
    assert "ok" in {r.status for r in runs[1:]}
