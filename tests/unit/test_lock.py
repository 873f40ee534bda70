"""The run lock: one holder across processes, a dead holder's lock taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.adapters.lock import LOCK_FILE, RunLock, RunLockBusy, process_alive

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]

# A child that takes the lock (or not), says which, then waits on stdin: no sleeping anywhere.
CHILD = """
import sys
from pathlib import Path
from jobs.adapters.lock import RunLock
lock = RunLock(Path(sys.argv[1]), kind=sys.argv[2])
print("held" if lock.acquire() else "busy", flush=True)
sys.stdin.read()
"""


def spawn(state_dir: Path, kind: str = "daemon") -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state_dir), kind],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()


def test_acquire_writes_holder_and_release_frees(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "state", kind="quick", clock=lambda: T0)
    assert lock.holder() is None
    assert lock.acquire() is True and lock.held
    assert lock.acquire() is True  # re-entrant for the same object
    assert lock.holder() == {"pid": os.getpid(), "kind": "quick", "started_at": T0.isoformat()}
    assert RunLock(tmp_path / "state").acquire() is False  # another open file, same process
    lock.release()
    assert not lock.held and lock.holder() is None
    assert (tmp_path / "state" / LOCK_FILE).read_bytes() == b""
    assert RunLock(tmp_path / "state").acquire(blocking=True) is True


def test_context_manager_raises_busy_with_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path, kind="deep") as outer:
        with pytest.raises(RunLockBusy) as info, RunLock(tmp_path):
            pass
        assert info.value.holder is not None and info.value.holder["kind"] == "deep"
        assert "another run is in progress" in str(info.value)
        assert outer.held
    assert RunLock(tmp_path).holder() is None


def test_other_process_is_refused_while_held_and_takes_over_after_sigkill(
        tmp_path: Path, children: list[subprocess.Popen[str]]) -> None:
    holder, said = spawn(tmp_path, "daemon")
    children.append(holder)
    assert said == "held"
    mine = RunLock(tmp_path, kind="run")
    assert mine.acquire() is False
    assert mine.holder() is not None and mine.holder()["pid"] == holder.pid  # type: ignore[index]
    second, said = spawn(tmp_path, "run")
    children.append(second)
    assert said == "busy"

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert not process_alive(holder.pid)
    assert mine.holder() is None  # the dead holder's description is not believed
    assert mine.acquire() is True
    assert mine.holder()["kind"] == "run"  # type: ignore[index]
    third, said = spawn(tmp_path, "run")
    children.append(third)
    assert said == "busy"  # and now we keep others out in turn
    mine.release()


def test_holder_ignores_a_description_whose_pid_is_alive_but_not_locking(tmp_path: Path) -> None:
    # A SIGKILLed holder's pid reused by an unrelated process: the flock probe says free.
    (tmp_path / LOCK_FILE).write_text(f'{{"pid": {os.getpid()}, "kind": "run"}}')
    assert RunLock(tmp_path).holder() is None
    (tmp_path / LOCK_FILE).write_text("garbage")
    assert RunLock(tmp_path).holder() is None


def test_process_alive() -> None:
    assert process_alive(os.getpid()) is True
