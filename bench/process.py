"""Run one command as a child process and measure it: wall time, peak RSS, CPU seconds.

Runs are started by `bench.launcher`, a small process of its own, so the child's rusage
(from `os.wait4`) is the reconciler's alone: not ours, not inflated by our memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


@dataclass(frozen=True)
class Measured:
    exit_code: int
    wall_s: float
    cpu_s: float  # user + system of the child
    peak_rss_mb: float
    stdout: str
    stderr: str


class Launcher:
    """The measuring launcher process; start it before loading anything large."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.launcher"],
                                      cwd=Path(__file__).resolve().parents[1],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def measure(self, command: Sequence[str], env: Mapping[str, str], cwd: Path,
                timeout_s: float = 1800) -> Measured:
        """Run `command` to completion; its stdout/stderr go to files (no pipe can block)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {"argv": list(command), "env": dict(env), "cwd": str(cwd),
                       "stdout": str(out), "stderr": str(err), "timeout_s": timeout_s}
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            answer = json.loads(self._proc.stdout.readline())
            return Measured(exit_code=int(answer["exit_code"]), wall_s=float(answer["wall_s"]),
                            cpu_s=float(answer["cpu_s"]),
                            peak_rss_mb=float(answer["peak_rss_mb"]),
                            stdout=out.read_text(), stderr=err.read_text())

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
