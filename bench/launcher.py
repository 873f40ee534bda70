"""A small process that starts and measures the benchmark's runs.

Why: a child's peak RSS (`ru_maxrss`) includes the memory of the process that forked it
(Linux records the forking process's high-water mark when the child execs). The benchmark
holds whole worlds in memory (the in-process Stripe stand-in), so children forked from it
would all report its size. This launcher is started first, while the benchmark is still
small, and forks every measured run itself.

Protocol: one JSON request per stdin line {"argv", "env", "cwd", "stdout", "stderr",
"timeout_s"}; one JSON answer per stdout line {"exit_code", "wall_s", "cpu_s",
"peak_rss_mb"}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any


def run_one(request: dict[str, Any]) -> dict[str, Any]:
    with open(request["stdout"], "w") as out, open(request["stderr"], "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(request["argv"], cwd=request["cwd"], env=request["env"],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = started + float(request.get("timeout_s", 1800))
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return {"exit_code": proc.returncode, "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024}  # KiB on Linux


def main() -> int:
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_one(json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
