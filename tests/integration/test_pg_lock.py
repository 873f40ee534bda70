"""Locks across hosts on a real PostgreSQL server: the run lock and the daemons' leader lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from jobs.adapters.ledger import Ledger
from jobs.adapters.lock import RunLockBusy
from jobs.adapters.pg_lock import AdvisoryLock
from jobs.commands.status import render_status_text, status_view
from jobs.run.compose import leadership


@pytest.fixture
def url(pg_url: str) -> str:
    Ledger.connect(pg_url).close()  # migrated, as every command does before it locks
    return pg_url


def test_one_holder_at_a_time_and_status_names_it(url: str) -> None:
    first = AdvisoryLock(url, clock=lambda: datetime(2024, 5, 6, 9, 0, tzinfo=UTC))
    second = AdvisoryLock(url)
    assert first.acquire(kind="quick") and first.held
    assert second.acquire() is False and not second.held
    holder = second.holder()
    assert holder == {"host": socket.gethostname(), "pid": os.getpid(), "kind": "quick",
                      "started_at": "2024-05-06T09:00:00+00:00"}
    with pytest.raises(RunLockBusy, match=f"pid {os.getpid()}"), second:
        pass
    with Ledger.connect(url) as ledger:
        text = render_status_text(status_view(ledger, second, datetime.now(UTC)))
    assert f"Lock: held by pid {os.getpid()} on {socket.gethostname()} (quick)" in text
    first.release()
    assert second.holder() is None
    assert second.acquire() and second.holder() is not None
    second.release()


def test_a_killed_holder_frees_the_lock_and_leaves_no_holder(url: str) -> None:
    code = ("import sys, time; from jobs.adapters.pg_lock import AdvisoryLock; "
            "lock = AdvisoryLock(sys.argv[1]); assert lock.acquire(); print('held', flush=True); "
            "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        lock = AdvisoryLock(url)
        assert not lock.acquire() and lock.holder() is not None
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        while not lock.acquire():  # the server notices the closed socket at once
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert lock.holder() is not None and lock.holder()["pid"] == os.getpid()  # type: ignore[index]
        lock.release()
    finally:
        child.kill()
        child.wait()


def test_a_leader_that_loses_its_connection_knows_and_a_standby_takes_over(url: str) -> None:
    leader, standby = leadership(url, poll=0.1), leadership(url, poll=0.1)
    stop = threading.Event()
    assert leader.wait(stop) and leader.check()
    took_over = threading.Event()
    waiter = threading.Thread(target=lambda: standby.wait(stop) and took_over.set())
    waiter.start()
    time.sleep(0.5)
    assert not took_over.is_set()  # a standby never leads while the leader lives
    lost = threading.Event()
    done = threading.Event()
    leader.watch(lost.set, done)
    with psycopg.connect(url, autocommit=True) as admin:  # the leader's session is cut
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE application_name LIKE 'pass-reconciler%' AND pid IN ("
                      " SELECT backend_pid FROM lock_holders WHERE name = 'leader')")
    assert took_over.wait(10) and lost.wait(10)
    assert not leader.check()
    assert standby.lock.holder() is not None
    done.set()
    stop.set()
    waiter.join(5)
    standby.release()


def test_status_names_the_leading_daemon_and_the_run_lock_holder(
        url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    for name in [n for n in os.environ if n.startswith(("RECONCILER_", "STRIPE_", "SANITY_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", url)
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "Leader daemon: none" in out and "Lock: free" in out
    leading, lock = leadership(url), AdvisoryLock(url)
    assert leading.wait(threading.Event()) and lock.acquire(kind="deep")
    try:
        assert main(["status"]) == 0
        out = capsys.readouterr().out
        me = f"pid {os.getpid()} on {socket.gethostname()}"
        assert f"Leader daemon: {me} since " in out and f"Lock: held by {me} (deep)" in out
        assert main(["status", "--json"]) == 0
        view = json.loads(capsys.readouterr().out)
        assert view["leader"]["pid"] == view["lock"]["pid"] == os.getpid()
    finally:
        lock.release()
        leading.release()
    assert not (tmp_path / "state").exists()  # nothing local with the ledger in PostgreSQL


def test_an_unreachable_database_is_one_line_exit_2_without_the_password(
        pg_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main
    from sandbox.pg_server import free_port

    for name in [n for n in os.environ if n.startswith(("RECONCILER_", "STRIPE_", "SANITY_"))]:
        monkeypatch.delenv(name)
    port = free_port()
    monkeypatch.setenv("RECONCILER_DATABASE_URL",
                       f"postgresql://job:Sup3r-Secret-pw@127.0.0.1:{port}/ledger")
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))
    from jobs.adapters.ledger_db import PostgresDb

    monkeypatch.setitem(PostgresDb.__init__.__kwdefaults__, "timeout", 2.0)  # not 15 s
    assert main(["status", "--log-format", "json"]) == 2
    captured = capsys.readouterr()
    assert "Sup3r-Secret-pw" not in captured.err + captured.out
    (line,) = [x for x in captured.err.splitlines() if x.startswith("reconcile:")]
    assert line.startswith(f"reconcile: ledger database 127.0.0.1:{port}/ledger: ")
    assert line.endswith("Connection refused")  # the cause, not just the pool's timeout
    assert "error connecting" not in captured.err  # the pool's own retries are not logged


def test_a_standby_under_systemd_says_ready_and_feeds_the_watchdog(
        url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Type=notify with WatchdogSec=: a daemon standing by for minutes must not be killed as hung.
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        leader, standby = leadership(url, poll=0.05), leadership(url, poll=0.05)
        stop = threading.Event()
        assert leader.wait(stop)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        waiter = threading.Thread(target=standby.wait, args=(stop,))
        waiter.start()
        try:
            heard = [sock.recv(256).decode() for _ in range(3)]
        finally:
            stop.set()
            waiter.join(5)
            leader.release()
    assert all("READY=1" in m and "WATCHDOG=1" in m and "STATUS=standing by" in m
               for m in heard), heard
