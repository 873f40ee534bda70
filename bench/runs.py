"""One measured run of the reconciler (`python -m jobs run`) or of the naive baseline."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.process import Launcher, Measured
from bench.setup import BenchWorld, StandIns
from sandbox.job_env import job_env

ROOT = Path(__file__).resolve().parents[1]
# The stand-in's live-mode key: Stripe's live limits (100/s in all, 25/s per endpoint)
# are the ones the benchmark emulates, and the job budgets by the key's mode.
STRIPE_KEY = "sk_live_sandbox"


@dataclass(frozen=True)
class EngineConfig:
    # The stand-in's limits are known exactly, so the budget may be all of them; the 429
    # count shows whether the token buckets really keep under them.
    rate_share: float = 1.0
    concurrency: int | None = None  # None: the job's default
    database_url: str | None = None  # the ledger in PostgreSQL; None: SQLite in a temp dir


@dataclass
class RunResult:
    """What one run did and cost."""

    kind: str  # engine | naive
    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stripe_requests: int
    stripe_by_endpoint: dict[str, int]
    stripe_429: int
    sanity_queries: int
    sanity_transactions: int
    documents_created: int
    created: int  # purchases the run reports as created
    stripe_cpu_s: float
    sanity_cpu_s: float
    sanity_query_ms: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sanity_requests(self) -> int:
        return self.sanity_queries + self.sanity_transactions

    @property
    def requests(self) -> int:
        return self.stripe_requests + self.sanity_requests


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _env(stand: StandIns, state_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    return job_env(stripe_url=stand.stripe.url, stripe_key=STRIPE_KEY,
                   sanity_url=stand.sanity.url, sanity_token=stand.sanity.write_token,
                   state_dir=state_dir, **extra)


def _log_events(stderr: str) -> dict[str, dict[str, Any]]:
    """The last JSON log line of each event name."""
    events: dict[str, dict[str, Any]] = {}
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("event"), str):
            events[entry["event"]] = entry
    return events


def _measured_run(launcher: Launcher, kind: str, stand: StandIns, bench: BenchWorld,
                  command: list[str], extra_env: dict[str, str],
                  ) -> tuple[Measured, dict[str, Any], dict[str, Any]]:
    stand.fresh(bench.sanity_ndjson)
    before = stand.snapshot()
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as state:
        done = launcher.measure(command, _env(stand, Path(state), extra_env), ROOT)
    after = stand.snapshot()
    counts = stand.counts()
    deltas = {k: after[k] - before[k] for k in before}
    return done, counts, deltas


def run_engine(launcher: Launcher, stand: StandIns, bench: BenchWorld,
               config: EngineConfig) -> RunResult:
    extra = {"RECONCILER_STRIPE_RATE_SHARE": str(config.rate_share)}
    if config.concurrency is not None:
        extra["RECONCILER_STRIPE_CONCURRENCY"] = str(config.concurrency)
    if config.database_url is not None:
        extra["RECONCILER_DATABASE_URL"] = config.database_url
    command = [sys.executable, "-m", "jobs", "run", "--since", _iso(bench.since),
               "--until", _iso(bench.until), "--max-creates", "10000000"]
    done, counts, deltas = _measured_run(launcher, "engine", stand, bench, command, extra)
    events = _log_events(done.stderr)
    finished = events.get("run_finished", {})
    if "run_finished" not in events:
        tail = "\n".join(done.stderr.splitlines()[-5:])
        raise RuntimeError(f"the reconciler did not finish (exit {done.exit_code}):\n{tail}")
    return RunResult(
        kind="engine", exit_code=done.exit_code, wall_s=done.wall_s, cpu_s=done.cpu_s,
        peak_rss_mb=done.peak_rss_mb, documents_created=int(deltas["sanity_documents"]),
        created=int(finished.get("created", 0)), stripe_cpu_s=deltas["stripe_cpu_s"],
        sanity_cpu_s=deltas["sanity_cpu_s"], extra={
            "status": finished.get("status"),
            "segments": events.get("read_finished", {}).get("segments"),
            "pages": events.get("read_finished", {}).get("pages"),
            "retries": sum(1 for line in done.stderr.splitlines() if '"retrying"' in line)},
        **counts)


def run_naive(launcher: Launcher, stand: StandIns, bench: BenchWorld,
              max_per_account: int | None) -> RunResult:
    command = [sys.executable, "-m", "bench.naive", "--since", str(bench.since),
               "--until", str(bench.until)]
    if max_per_account is not None:
        command += ["--max-per-account", str(max_per_account)]
    done, counts, deltas = _measured_run(launcher, "naive", stand, bench, command, {})
    if done.exit_code != 0:
        tail = "\n".join(done.stderr.splitlines()[-5:])
        raise RuntimeError(f"the naive baseline failed (exit {done.exit_code}):\n{tail}")
    own = json.loads(done.stdout.strip().splitlines()[-1])
    return RunResult(
        kind="naive", exit_code=done.exit_code, wall_s=done.wall_s, cpu_s=done.cpu_s,
        peak_rss_mb=done.peak_rss_mb, documents_created=int(deltas["sanity_documents"]),
        created=int(own["outcomes"].get("created", 0)), stripe_cpu_s=deltas["stripe_cpu_s"],
        sanity_cpu_s=deltas["sanity_cpu_s"], extra={"own": own}, **counts)
