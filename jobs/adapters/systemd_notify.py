"""systemd's notify protocol for `reconcile daemon` under `Type=notify` and `WatchdogSec=`.

A few lines on the datagram socket systemd names in `NOTIFY_SOCKET` (sd_notify(3)): `READY=1`
once the scheduler runs, `WATCHDOG=1` every half `WatchdogSec` from a scheduler job (so a
scheduler that stops dispatching stops feeding it, and systemd restarts the service), and
`STOPPING=1` when a stop is asked. Without `NOTIFY_SOCKET` (cron, a terminal) all of it is a
no-op. A message that cannot be sent is logged and forgotten: it must never stop a pass.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

import structlog
from apscheduler.events import EVENT_SCHEDULER_STARTED, SchedulerEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = structlog.get_logger("jobs.systemd_notify")

WATCHDOG_JOB = "watchdog"


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when there is no socket or it failed."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    elif not address.startswith("/"):
        return False  # unset, or a transport this job does not speak (vsock)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as error:
        log.warning("systemd_notify_failed", state=state.split("=")[0], error=error.strerror)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between `WATCHDOG=1` messages: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
    advises; None when the watchdog is off or meant for another process."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


def attach(scheduler: BaseScheduler, stopping: threading.Event,
           environ: Mapping[str, str] | None = None) -> bool:
    """Wire the notify messages to a built, not yet started scheduler; False outside systemd.
    `stopping` is the daemon's cancel event: set when a stop is asked."""
    env = dict(os.environ if environ is None else environ)
    if not env.get("NOTIFY_SOCKET"):
        return False

    def ready(_event: SchedulerEvent) -> None:
        notify("READY=1\nSTATUS=scheduling passes", env)

    scheduler.add_listener(ready, EVENT_SCHEDULER_STARTED)
    interval = watchdog_interval(env)
    if interval is not None:
        # Its own worker: a long pass or the weekly report must not starve the watchdog.
        scheduler.add_executor(ThreadPoolExecutor(max_workers=1), WATCHDOG_JOB)
        scheduler.add_job(notify, IntervalTrigger(seconds=interval), args=["WATCHDOG=1", env],
                          id=WATCHDOG_JOB, name="systemd watchdog", executor=WATCHDOG_JOB,
                          coalesce=True, max_instances=1,
                          misfire_grace_time=max(1, int(interval)))

    def on_stop() -> None:
        stopping.wait()
        notify("STOPPING=1", env)

    threading.Thread(target=on_stop, name="systemd-stopping", daemon=True).start()
    log.info("systemd_notify", watchdog_every_s=interval)
    return True
