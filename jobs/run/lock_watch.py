"""A held run lock, watched: a shared lock (PostgreSQL) goes with its connection, and a run
that lost it must stop, since another host may start one. Works through `RunLockLike`."""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobs.core.ports import RunLockLike

LOCK_CHECK_EVERY = 1.0  # seconds between checks that a run still holds its lock


def watch_lock(lock: RunLockLike, on_lost: Callable[[], None],
               every: float = LOCK_CHECK_EVERY) -> Callable[[], None]:
    """Check the held lock every `every` seconds in a thread; call `on_lost` once if it is
    gone. Returns the function that ends the watch."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every):
            if not lock.alive():
                on_lost()
                return

    threading.Thread(target=loop, name="run-lock-watch", daemon=True).start()
    return done.set
