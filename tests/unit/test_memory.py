"""The process memory settings (glibc's mallopt) and where they do not apply."""

from __future__ import annotations

import platform

import pytest

from jobs.run import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_malloc_is_tuned_on_glibc() -> None:
    assert memory.tune_malloc() is True
    assert memory.tune_malloc() is True  # again: harmless


def test_without_a_c_library_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert memory.tune_malloc() is False
