"""Starts and stops the Node Sanity stand-in (sandbox/sanity/server.js) from Python.

    with SanityStandIn(Path("sanity.ndjson")) as sanity:
        store = SanityStore(sanity.url, sanity.dataset, sanity.write_token, "2025-02-19")

Also `python -m sandbox.sanity_server --data sanity.ndjson [--port 0]` to run it by hand.
The control helpers talk to the stand-in's `/_sandbox/…` endpoints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

SERVER_DIR = Path(__file__).resolve().parent / "sanity"
SERVER_JS = SERVER_DIR / "server.js"
INSTALL_HINT = "run: npm ci --prefix sandbox/sanity"


class StandInError(RuntimeError):
    """The stand-in could not be started or a control request failed."""


class SanityStandIn:
    """One Node stand-in process bound to 127.0.0.1 (an ephemeral port unless `port` is given)."""

    def __init__(
        self,
        data: Path | None = None,
        *,
        project: str = "sandbox",
        dataset: str = "production",
        write_token: str = "sanity-write-sandbox",
        read_token: str = "sanity-read-sandbox",
        port: int = 0,
        query_mode: str = "index",
        node: str = "node",
        startup_timeout: float = 60.0,
    ) -> None:
        self.data = data
        self.project = project
        self.dataset = dataset
        self.write_token = write_token
        self.read_token = read_token
        self.query_mode = query_mode
        self._port = port
        self._node = node
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: deque[str] = deque(maxlen=50)
        self._http = requests.Session()
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> SanityStandIn:
        """Starts node and waits for `LISTENING <port>`; raises StandInError with its stderr."""
        if self._proc is not None:
            return self
        node = shutil.which(self._node)
        if node is None:
            raise StandInError("node not found on PATH (the Sanity stand-in needs Node 20)")
        if not (SERVER_DIR / "node_modules" / "groq-js").is_dir():
            raise StandInError(f"the Sanity stand-in's node_modules are missing; {INSTALL_HINT}")
        args = [node, str(SERVER_JS), "--port", str(self._port), "--project", self.project,
                "--dataset", self.dataset, "--write-token", self.write_token,
                "--read-token", self.read_token, "--stdin-lifeline"]
        if self.data is not None:
            args += ["--data", str(self.data)]
        args += ["--query-mode", self.query_mode]
        started = time.monotonic()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=SERVER_DIR,
        )
        ready = threading.Event()
        threading.Thread(target=self._read_stdout, args=(ready,), daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = started + self._startup_timeout
        while not ready.wait(0.02):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                detail = "\n".join(self._stderr) or "no output"
                raise StandInError(f"the Sanity stand-in did not start:\n{detail}")
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stops the process (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self._http.close()

    def __enter__(self) -> SanityStandIn:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        if self._proc is None or not self._port:
            raise StandInError("the Sanity stand-in is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL to use as SANITY_API_BASE (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def _read_stdout(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith("LISTENING ") and not ready.is_set():
                self._port = int(line.split()[1])
                ready.set()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    # -- controls ----------------------------------------------------------------------

    def set_latency(self, ms: float) -> None:
        """Delays every API request by `ms` milliseconds."""
        self._control("POST", "latency", json_body={"ms": ms})

    def inject_fault(
        self,
        kind: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        delay_ms: float = 0,
        drop: bool = False,
        malformed: bool = False,
        drop_after: bool = False,
    ) -> dict[str, int]:
        """Queues one fault for the next `kind` request (query|mutate|doc); returns pending counts.

        `status` answers instead of doing the request; `drop` closes the connection
        unanswered; `drop_after` does the request (a commit happens) and then closes it;
        `malformed` answers 200 with broken JSON; `delay_ms` alone just slows it.
        """
        spec: dict[str, Any] = {"kind": kind, "status": status, "headers": dict(headers or {}),
                                "delay_ms": delay_ms, "drop": drop, "malformed": malformed,
                                "drop_after": drop_after}
        if body is not None:
            spec["body"] = body
        return dict(self._control("POST", "faults", json_body=spec)["pending"])

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def log(self) -> list[dict[str, Any]]:
        """Requests seen: kind, method, path, status, ms, mutations, transactionId, index…"""
        return list(self._control("GET", "log")["entries"])

    def reset_log(self) -> None:
        self._control("POST", "log/reset")

    def reset(self) -> None:
        """Latency 0, no pending faults, empty log (documents stay)."""
        self._control("POST", "reset")

    def load_ndjson(self, text: str) -> int:
        """Replaces the dataset with an NDJSON export; returns the document count."""
        return int(self._control("POST", "load", data=text)["documents"])

    def load_documents(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Replaces the dataset with `docs`."""
        return self.load_ndjson("".join(json.dumps(d) + "\n" for d in docs))

    def dump(self) -> list[dict[str, Any]]:
        """Every document (drafts included), in dataset order."""
        response = self._request("GET", "dump")
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def stats(self) -> dict[str, Any]:
        """documents, cpuSeconds (process.cpuUsage), rssBytes, queryMode, indexedPaths…"""
        return dict(self._control("GET", "stats"))

    def set_index(self, enabled: bool) -> None:
        """Index mode on, or plain groq-js scans (answers must not change, only speed)."""
        self.set_query_mode("index" if enabled else "scan")

    def set_query_mode(self, mode: str) -> None:
        """`index` (fold + prune, the default), `fold` (constant subqueries once), `scan`."""
        self._control("POST", "index", json_body={"mode": mode})

    def _control(self, method: str, name: str, *, json_body: Any = None,
                 data: str | None = None) -> Any:
        return self._request(method, name, json_body=json_body, data=data).json()

    def _request(self, method: str, name: str, *, json_body: Any = None,
                 data: str | None = None) -> requests.Response:
        response = self._http.request(method, f"{self.url}/_sandbox/{name}", json=json_body,
                                      data=data.encode() if data is not None else None,
                                      timeout=120)
        if response.status_code != 200:
            raise StandInError(f"control {method} {name} failed: {response.status_code} "
                               f"{response.text[:500]}")
        return response


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.sanity_server",
                                     description="Run the local Sanity stand-in until Ctrl-C.")
    parser.add_argument("--data", type=Path, help="NDJSON export to load")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--dataset", default="production")
    parser.add_argument("--query-mode", choices=["index", "fold", "scan"], default="index",
                        help="scan: plain groq-js; fold: subqueries once; index: + pruning")
    args = parser.parse_args(argv)
    try:
        standin = SanityStandIn(args.data, dataset=args.dataset, port=args.port,
                                query_mode=args.query_mode).start()
    except StandInError as error:
        print(error, file=sys.stderr)
        return 2
    with standin:
        stats = standin.stats()
        print(f"Sanity stand-in at {standin.url} (dataset {standin.dataset}, "
              f"{stats['documents']} documents, started in {standin.startup_seconds:.2f}s)")
        print(f"  SANITY_API_BASE={standin.url} SANITY_DATASET={standin.dataset} "
              f"SANITY_API_TOKEN={standin.write_token}  (sandbox token)")
        try:
            while standin.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
