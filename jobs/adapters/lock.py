"""One run at a time: an exclusive `flock` on `state_dir/run.lock`.

The kernel drops a flock when its holder dies (even on SIGKILL), so a lock left by a dead process
is simply taken over by the next acquirer; there is no stale-pid guessing. The holder writes its
pid, kind and start time into the file so `reconcile status` can say who runs.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK_FILE = "run.lock"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (for `Ledger.reap_stale_runs`)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunLockBusy(Exception):
    """The run lock is held by another process; `holder` says who (may be None if unknown)."""

    def __init__(self, holder: dict[str, Any] | None) -> None:
        who = f"pid {holder.get('pid')} ({holder.get('kind')})" if holder else "another process"
        super().__init__(f"another run is in progress: {who}")
        self.holder = holder


class RunLock:
    """The state directory's run lock; `with RunLock(d):` raises RunLockBusy if it is held."""

    def __init__(self, state_dir: Path, *, kind: str = "run",
                 clock: Callable[[], datetime] = _utc_now, pid: int | None = None) -> None:
        self.path = state_dir / LOCK_FILE
        self.kind = kind
        self._clock = clock
        self._pid = os.getpid() if pid is None else pid
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, blocking: bool = False, kind: str | None = None) -> bool:
        """Take the lock (waiting for it if `blocking`); False if another process holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Opened without truncation: the current holder's description must survive our attempt.
        # Python opens it close-on-exec, so child processes never inherit the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": self._pid, "kind": kind or self.kind,
                "started_at": self._clock().isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (a no-op if not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale description left behind
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def alive(self) -> bool:
        """Whether the lock is still held: a flock lasts as long as this process holds it."""
        return self.held

    def holder(self) -> dict[str, Any] | None:
        """{"pid", "kind", "started_at"} of the current holder (this process included), or None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            info = _describe(os.pread(fd, 4096, 0))
            # Probe with flock only when the description names a live process: a probe briefly
            # holds a shared lock, and doing that on a free lock could make a starting run skip.
            if info is None or not process_alive(info["pid"]):
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return info
            fcntl.flock(fd, fcntl.LOCK_UN)  # a dead holder's pid was reused: nobody holds it
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        if not self.acquire():
            raise RunLockBusy(self.holder())
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _describe(raw: bytes) -> dict[str, Any] | None:
    """The holder's description from the lock file, or None if there is none (lock free)."""
    try:
        info = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return {"pid": info["pid"], "kind": info.get("kind"), "started_at": info.get("started_at")}
