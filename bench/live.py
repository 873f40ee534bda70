"""`python -m bench live` (`make live`): the daemon on the stand-ins while purchases arrive.

A seeded world of `schools` schools (a few days of history, every pass in place) is served
by the Stripe and Sanity stand-ins with the benchmark's latencies and rate limits. The real
`reconcile daemon` runs against them as its own process, on the job's default settings
unless told otherwise. Then paid purchases arrive at `rate` a minute (Poisson, at schools
picked at random), phase by phase:

- `down`: the app's webhook is down, so every pass must come from the job;
- `slow`: the webhook is up but slow: it writes 5-30 s after the payment, with a random id,
  after checking for an existing subscription (domain.md §2.3); the job must write nothing;
- `idle`: nothing happens; what the job costs in Stripe requests then.

After each phase the harness waits (at most `drain`) for every purchase to get its pass,
then reads the subscriptions back and measures payment to pass (Sanity's `_createdAt`),
duplicates, wrong writes and Stripe requests per account and minute. At the end the daemon
is stopped and the weekly report is built from its ledger, for its payment-to-repair target.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.live_feed import Purchase, SlowWebhook, new_purchase, pick_template, templates
from bench.live_metrics import SUBSCRIPTIONS_QUERY, PhaseResult, measure
from bench.setup import Limits, StandIns
from jobs.adapters.sanity_store import SanityStore
from sandbox.job_env import job_env
from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import StripeStandIn
from sandbox.world.generate import generate

ROOT = Path(__file__).resolve().parents[1]
STRIPE_KEY = "sk_test_sandbox"
PHASES = ("down", "slow", "idle")
WEBHOOK = {"down": "down", "slow": "up, late", "idle": "up"}


@dataclass(frozen=True)
class LiveConfig:
    schools: int = 10
    rate: float = 4.0  # purchases per minute, over all schools
    phase_s: float = 600.0  # how long purchases arrive, per phase
    idle_s: float = 120.0
    drain_s: float = 300.0  # after a phase, wait at most this long for the last passes
    webhook_delay: tuple[float, float] = (5.0, 30.0)
    history: int = 30  # seeded sessions per school, over the last 3 days
    seed: int = 1
    phases: tuple[str, ...] = PHASES
    settings: dict[str, str] = field(default_factory=dict)  # RECONCILER_* overrides
    out: Path = ROOT / "out" / "live"


@dataclass
class LiveResult:
    config: LiveConfig
    phases: list[PhaseResult]
    weekly: dict[str, Any]
    webhook_errors: list[str]
    daemon_exit: int | None

    def to_json(self) -> dict[str, Any]:
        config = {k: v for k, v in self.config.__dict__.items() if k != "out"}
        return {"config": config, "phases": [p.to_json() for p in self.phases],
                "weekly": self.weekly, "webhook_errors": self.webhook_errors[:10],
                "daemon_exit": self.daemon_exit}


def _log(message: str) -> None:
    print(f"[live] {message}", file=sys.stderr, flush=True)


def run_live(config: LiveConfig) -> LiveResult:
    config.out.mkdir(parents=True, exist_ok=True)
    for old in ("state", "weekly"):  # a run of its own: no ledger of an earlier run
        shutil.rmtree(config.out / old, ignore_errors=True)
    rng = random.Random(config.seed)
    world = generate(config.seed, sessions=config.history * config.schools,
                     schools=config.schools, now=int(time.time()), oddities=False,
                     missing_share=0.0)
    by_account = templates(world)
    schools = sorted(by_account)
    accounts = ["platform", *sorted(world.stripe["accounts"])]
    _log(f"{config.schools} schools, {len(schools)} with purchases to copy; "
         f"{config.rate:g} purchases a minute")
    ndjson = "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in world.sanity)
    stripe = StripeStandIn(world.stripe)
    sanity = SanityStandIn(None)
    stripe.start()
    sanity.start()
    daemon: subprocess.Popen[bytes] | None = None
    try:
        StandIns(stripe, sanity, Limits()).fresh(ndjson)
        client = SanityStore(sanity.url, sanity.dataset, sanity.write_token, "2025-02-19")
        env = job_env(stripe_url=stripe.url, stripe_key=STRIPE_KEY, sanity_url=sanity.url,
                      sanity_token=sanity.write_token, state_dir=config.out / "state",
                      **config.settings)
        daemon_log = config.out / "daemon.log"
        with open(daemon_log, "wb") as log_file:
            daemon = subprocess.Popen([sys.executable, "-m", "jobs", "daemon"], env=env,
                                      cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        _wait_for(lambda: _finished_runs(daemon_log) >= 2, 600, "the daemon's first passes")
        _log("daemon up: its start-up quick and deep passes are done")
        results = []
        webhook_errors: list[str] = []
        for phase in config.phases:
            result, errors = _phase(phase, config, rng, stripe, client, by_account, schools,
                                    accounts)
            results.append(result)
            webhook_errors += errors
            _log(f"{phase}: {json.dumps(result.to_json())}")
        daemon_exit = _stop(daemon)
        daemon = None
        weekly = _weekly(env, config.out / "weekly")
        return LiveResult(config, results, weekly, webhook_errors, daemon_exit)
    finally:
        if daemon is not None:
            _stop(daemon)
        sanity.stop()
        stripe.stop()


def _phase(phase: str, config: LiveConfig, rng: random.Random, stripe: StripeStandIn,
           client: SanityStore, by_account: dict[str, Any], schools: list[str],
           accounts: list[str]) -> tuple[PhaseResult, list[str]]:
    lo, hi = config.webhook_delay
    webhook = SlowWebhook(client, lambda: rng.uniform(lo, hi)).start() \
        if phase == "slow" else None
    seconds = config.idle_s if phase == "idle" else config.phase_s
    purchases: list[Purchase] = []
    stripe.controls.reset_log()
    started = time.time()
    next_at = started + (rng.expovariate(config.rate / 60) if phase != "idle" else seconds)
    while (now := time.time()) < started + seconds:
        if now < next_at:
            time.sleep(min(next_at, started + seconds) - now)
            continue
        purchase, session = new_purchase(pick_template(by_account, rng, schools), time.time(),
                                         rng)
        stripe.data.add_sessions(purchase.account, [session])
        purchases.append(purchase)
        if webhook is not None:
            webhook.deliver(purchase)
        next_at += rng.expovariate(config.rate / 60)
    elapsed = time.time() - started
    log = stripe.controls.log()
    _log(f"{phase}: {len(purchases)} purchases in {elapsed / 60:.1f} min; waiting for passes")

    def done() -> bool:
        if webhook is not None and webhook.outstanding():
            return False
        subs = _subscriptions(client, purchases)
        return {s.get("stripeSessionId") for s in subs} >= {p.session_id for p in purchases}

    _wait_for(done, config.drain_s, f"{phase}: every purchase's pass", fail=False)
    if webhook is not None:
        webhook.stop()
    result = measure(phase, WEBHOOK[phase], elapsed / 60, purchases,
                     _subscriptions(client, purchases), log, accounts, elapsed)
    return result, list(webhook.errors) if webhook is not None else []


def _subscriptions(client: SanityStore, purchases: list[Purchase]) -> list[dict[str, Any]]:
    if not purchases:
        return []
    result = client.query(SUBSCRIPTIONS_QUERY, {
        "sids": [p.session_id for p in purchases], "pis": [p.payment_intent for p in purchases]})
    return [r for r in result or [] if isinstance(r, dict)]


def _finished_runs(path: Path) -> int:
    try:
        return path.read_text(errors="replace").count('"event": "run_finished"')
    except FileNotFoundError:
        return 0


def _wait_for(ready: Callable[[], bool], timeout: float, what: str, *, fail: bool = True,
              every: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(every)
    if fail:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
    _log(f"gave up after {timeout:.0f} s waiting for {what}")
    return False


def _stop(daemon: subprocess.Popen[bytes]) -> int | None:
    daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(10)
        return None


def _weekly(env: dict[str, str], out: Path) -> dict[str, Any]:
    """This week's report from the daemon's ledger: its payment-to-repair figures."""
    tz = ZoneInfo(env.get("RECONCILER_TIMEZONE", "Europe/Oslo"))
    week_of = datetime.now(tz).date().isoformat()
    done = subprocess.run([sys.executable, "-m", "jobs", "report", "--weekly", "--week-of",
                           week_of, "--out", str(out)], env=env, cwd=ROOT,
                          capture_output=True, check=False, timeout=300)
    try:
        report = json.loads((out / "report.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"exit_code": done.returncode, "error": done.stderr.decode()[-500:]}
    repair = report.get("repair_time") or {}
    target = (report.get("targets") or {}).get("repair_seconds")
    return {"exit_code": done.returncode, "week": report.get("label"),
            "repaired": repair.get("count"), "median_s": repair.get("median"),
            "p95_s": repair.get("p95"), "max_s": repair.get("max"),
            "target_s": target, "target_met": repair.get("target_met")}
