"""systemd: the unit files pass `systemd-analyze verify`, the daemon speaks the notify protocol
on a real AF_UNIX datagram socket, and the failure unit's command reaches every channel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.adapters.systemd_notify import notify, watchdog_interval
from sandbox.sanity_server import SanityStandIn
from tests.integration.test_daemon_process import (
    Sandbox,
    sanity_node,  # noqa: F401 - the module's Sanity stand-in fixture
    stop,
)
from tests.support.ping_server import PingServer

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
INSTALLED_BIN = "/opt/pass-reconciler/.venv/bin/"


def unit_files() -> list[Path]:
    return sorted(p for p in CONFIG.iterdir() if p.suffix in (".service", ".timer"))


def test_the_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd); the unit "
                    "files were not verified")
    # The units name the install path; verify checks that ExecStart= exists, so point it at
    # this checkout's virtualenv, which has the same `reconcile` and `python`.
    here = str(Path(sys.executable).parent) + "/"
    assert (Path(here) / "reconcile").exists()
    for unit in unit_files():
        text = unit.read_text(encoding="utf-8")
        (tmp_path / unit.name).write_text(text.replace(INSTALLED_BIN, here), encoding="utf-8")
    done = subprocess.run([tool, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True, timeout=120, check=False)
    # verify exits 0 on an unknown key or a value it ignores, but says so: no output at all.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_units_fit_together() -> None:
    names = {p.name for p in unit_files()}
    daemon = (CONFIG / "pass-reconciler.service").read_text()
    assert re.search(r"^Type=notify$", daemon, re.M) and re.search(r"^WatchdogSec=", daemon, re.M)
    for unit in unit_files():
        text = unit.read_text()
        for target in re.findall(r"^OnFailure=(\S+)$", text, re.M):
            assert target.replace("%n", "") in names, (unit.name, target)
        if unit.suffix == ".timer":  # each timer starts the service of its own name
            assert unit.with_suffix(".service").name in names
            assert "Persistent=true" in text
        if "Type=oneshot" in text and "ExecStart=" + INSTALLED_BIN + "reconcile" in text:
            assert "SuccessExitStatus=1" in text  # "needs a person" is not a unit failure
    assert {"pass-reconciler-run.timer", "pass-reconciler-deep.timer",
            "pass-reconciler-weekly.timer"} <= names


# ---- the notify protocol on a real socket ---------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_notify_writes_one_datagram_to_the_named_socket(
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert notify("READY=1", {"NOTIFY_SOCKET": path}) is True
    assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": path}) is True
    assert [sock.recv(4096), sock.recv(4096)] == [b"READY=1", b"WATCHDOG=1"]


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"pass-reconciler-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_outside_systemd_or_to_a_gone_socket_is_a_quiet_no(tmp_path: Path) -> None:
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


def test_the_watchdog_is_fed_at_half_its_timeout_and_only_by_its_own_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_the_daemon_says_ready_feeds_the_watchdog_and_says_stopping(
        tmp_path: Path, sanity_node: SanityStandIn,  # noqa: F811
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    box = Sandbox(tmp_path, sanity_node)
    box.env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")  # fed every 0.2 s
    proc = box.start("daemon")
    received: list[bytes] = []
    try:
        while b"READY=1" not in b"".join(received) or received.count(b"WATCHDOG=1") < 3:
            received.append(sock.recv(4096))
        code, _, err, _ = stop(proc)
        sock.settimeout(0.2)
        while True:
            try:
                received.append(sock.recv(4096))
            except TimeoutError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        box.close()
    assert code == 0, err[-2000:]
    assert received[0].startswith(b"READY=1\n")
    assert received.count(b"STOPPING=1") == 1
    assert set(received[1:]) <= {b"WATCHDOG=1", b"STOPPING=1"}
    events = [json.loads(line).get("event") for line in err.splitlines() if line.startswith("{")]
    assert "systemd_notify" in events and "systemd_notify_failed" not in events


# ---- the failure unit's command ---------------------------------------------------------


def unit_failed(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.commands.unit_failed",
                           "pass-reconciler.service"],
                          cwd=ROOT, env={"PATH": os.environ.get("PATH", ""), **env},
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_failure_unit_pings_fail_and_posts_to_the_chat(tmp_path: Path) -> None:
    receiver = PingServer()
    token = "f41l-t0ken-d0-n0t-l0g"
    try:
        done = unit_failed({"HEARTBEAT_URL": f"{receiver.url}/ping/{token}",
                            "CHAT_WEBHOOK_URL": f"{receiver.url}/hooks/{token}",
                            "RECONCILER_STATE_DIR": str(tmp_path)})
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    assert receiver.paths == [f"/ping/{token}/fail"]
    assert [path for path, _ in receiver.posts] == [f"/hooks/{token}"]
    assert "systemd unit pass-reconciler.service failed" in receiver.posts[0][1]["text"]
    assert token not in done.stdout + done.stderr


def test_the_failure_unit_exits_1_when_a_channel_is_down(tmp_path: Path) -> None:
    down = PingServer()
    down.close()
    began = time.monotonic()
    done = unit_failed({"CHAT_WEBHOOK_URL": f"{down.url}/hooks/x",
                        "RECONCILER_STATE_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "reconcile: the failure of pass-reconciler.service could not be sent by chat")
    assert time.monotonic() - began < 60
