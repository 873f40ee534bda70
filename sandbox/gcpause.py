"""Pause Python's cyclic garbage collector while building millions of small containers."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """A world or a stand-in's data is millions of acyclic dicts and none is garbage: the
    collector's full passes over them would take about as long as building them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
