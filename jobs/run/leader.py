"""Daemon failover: one `reconcile daemon` leads, the others stand by (PostgreSQL ledger only).

The leader holds an advisory lock (PostgreSQL's) on a connection of its own. Standbys try
to take it every `POLL` seconds and never run a pass. When the leader's session ends (the
process is killed, its host or network goes), the server releases the lock and a standby
takes over within a poll plus the keepalives' few seconds; it then runs its start-up quick
pass, which covers the gap from the watermarks. A leader checks its connection before each
pass and every `POLL` seconds between them: once it cannot, it starts no more passes, stops
the one under way (as a stop signal would) and stands by again.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Protocol

import structlog

from jobs.core.errors import ServiceUnavailable
from jobs.core.ports import RunLockLike

log = structlog.get_logger("jobs.leader")

POLL = 2.0  # seconds between a standby's attempts, and between a leader's checks


class Daemon(Protocol):
    """What leading needs of `jobs.commands.daemon.Daemon`."""

    def run(self) -> int: ...
    def request_stop(self, reason: str = "requested") -> None: ...


class Leadership:
    """The leader lock of the daemons sharing one database; `notify` tells the service manager
    (systemd) that a standby is alive."""

    def __init__(self, lock: RunLockLike, notify: Callable[[str], object], *,
                 poll: float = POLL) -> None:
        self.lock = lock
        self._notify = notify
        self.poll = poll
        self.lost = threading.Event()  # set when this daemon stopped leading while it ran
        self._stop_daemon: Callable[[str], None] | None = None

    def wait(self, stop: threading.Event) -> bool:
        """Stand by until this daemon leads (True) or `stop` is set (False)."""
        said = False
        while not stop.is_set():
            # Under systemd (Type=notify, WatchdogSec=) a standby is healthy too: without
            # these a standing-by daemon would be killed as hung when the watchdog runs out.
            self._notify("READY=1\nSTATUS=standing by\nWATCHDOG=1")
            try:
                if self.lock.acquire():
                    log.info("leader_elected", detail="this daemon runs the passes")
                    self.lost.clear()
                    return True
                if not said:
                    log.info("standing_by", leader=self.lock.holder(),
                             detail=f"another daemon leads; trying every {self.poll:g}s")
                    said = True
            except ServiceUnavailable as error:
                log.warning("standby_check_failed", error=str(error))
            stop.wait(self.poll)
        return False

    def check(self) -> bool:
        """Whether this daemon still leads (its lock's connection answers)."""
        return self.lock.alive()

    def watch(self, on_lost: Callable[[], None], done: threading.Event) -> threading.Thread:
        """Check every poll until `done`; call `on_lost` once if the lock is lost."""

        def loop() -> None:
            while not done.wait(self.poll):
                if not self.check():
                    on_lost()
                    return

        thread = threading.Thread(target=loop, name="leader-watch", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        self.lock.release()

    def step_down(self) -> None:
        """Leading is over: no pass starts any more, the one under way stops (as on SIGTERM)."""
        self.lost.set()
        if self._stop_daemon is not None:
            self._stop_daemon("leadership lost")

    def may_start_pass(self, kind: str) -> bool:
        """Checked before each pass: False (and a step down) once this daemon no longer leads."""
        if self.check():
            return True
        log.warning("pass_not_started", kind=kind, reason="this daemon no longer leads")
        self.step_down()
        return False

    def run(self, daemon: Daemon) -> int:
        """`daemon.run()` while leading: watched, and stopped if the leadership goes."""
        self._stop_daemon = daemon.request_stop
        done = threading.Event()
        self.watch(self.step_down, done)
        try:
            return daemon.run()
        finally:
            done.set()
            self._stop_daemon = None


def lead_or_stand_by(leadership: Leadership, serve: Callable[[Leadership], int]) -> int:
    """Stand by, lead with `serve(leadership)` (it returns when its daemon stops), and stand by
    again if it stopped because the leadership was lost; return when stopped by a signal."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()  # only an event: see jobs.commands.daemon.Daemon.request_stop

    stepped_down = False
    while True:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)  # the daemon installs its own while it leads
        if stepped_down:
            stop.wait(2 * leadership.poll)  # a standby that is still connected goes first
        if not leadership.wait(stop):
            log.info("daemon_stopped", detail="stopped while standing by")
            return 0
        try:
            code = serve(leadership)
        finally:
            leadership.release()
        if not leadership.lost.is_set():
            return code
        log.warning("leadership_lost", detail="no more passes from this daemon; standing by")
        stepped_down = True
