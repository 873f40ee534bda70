"""`python -m bench live`: options, the table, the targets and the exit code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.live import PHASES, LiveConfig, LiveResult, run_live
from bench.live_metrics import table
from jobs.config.values import duration
from jobs.core.errors import ConfigError

# The targets on the default settings: payment to pass with the webhook down, and
# what a school costs in Stripe requests when nothing happens.
TARGET_P95_S, TARGET_MAX_S, TARGET_IDLE_PER_MIN = 120.0, 180.0, 2.0


def _seconds(text: str) -> float:
    try:
        return duration(text, "duration").total_seconds()
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _delay(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    return float(lo), float(hi or lo)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench live", description=__doc__)
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--rate", type=float, default=4.0, help="purchases a minute (all schools)")
    parser.add_argument("--phase", type=_seconds, default=600.0,
                        help="how long purchases arrive in each phase (10m)")
    parser.add_argument("--idle", type=_seconds, default=120.0, help="the idle phase (2m)")
    parser.add_argument("--drain", type=_seconds, default=300.0,
                        help="after a phase, wait at most this long for the last passes (5m)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="comma-separated, of down,slow,idle")
    parser.add_argument("--webhook-delay", type=_delay, default=(5.0, 30.0),
                        help="seconds after payment the slow webhook writes (5-30)")
    parser.add_argument("--history", type=int, default=30,
                        help="seeded sessions per school over the last 3 days")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="RECONCILER_X=VALUE",
                        help="a setting for the daemon (default: the job's defaults)")
    parser.add_argument("--out", type=Path, default=Path("out/live"))
    args = parser.parse_args(argv)
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    if not phases or any(p not in PHASES for p in phases):
        parser.error(f"--phases: each of {', '.join(PHASES)}")
    settings = dict(item.split("=", 1) for item in args.set if "=" in item)
    config = LiveConfig(schools=args.schools, rate=args.rate, phase_s=args.phase,
                        idle_s=args.idle, drain_s=args.drain, webhook_delay=args.webhook_delay,
                        history=args.history, seed=args.seed, phases=phases,
                        settings=settings, out=args.out.resolve())
    result = run_live(config)
    data = result.to_json()
    (config.out / "live.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, separators=(",", ":")), flush=True)
    print()
    print(table(result.phases))
    print()
    verdicts = checks(result)
    for line, ok in verdicts:
        print(f"{'ok  ' if ok else 'MISS'} {line}")
    return 0 if all(ok for _, ok in verdicts) else 1


def checks(result: LiveResult) -> list[tuple[str, bool]]:
    """Every purchase exactly one right pass, none by the job while the webhook works; the
    latency and idle-cost targets (meant for the default settings)."""
    out: list[tuple[str, bool]] = []
    for phase in result.phases:
        if phase.purchases:
            out.append((f"{phase.phase}: every purchase has exactly one right pass "
                        f"({phase.missing} missing, {phase.duplicates} duplicated, "
                        f"{phase.wrong} wrong)",
                        phase.missing == phase.duplicates == phase.wrong == 0))
        if phase.phase == "down" and phase.purchases:
            out.append((f"down: p95 {phase.p95_s} s <= {TARGET_P95_S:g} s, max {phase.max_s} s "
                        f"<= {TARGET_MAX_S:g} s",
                        (phase.p95_s or 0) <= TARGET_P95_S and (phase.max_s or 0) <= TARGET_MAX_S))
        if phase.phase == "slow" and phase.purchases:
            out.append((f"slow: the job wrote {phase.by_job} (0 expected)", phase.by_job == 0))
        if phase.phase == "idle":
            out.append((f"idle: {phase.requests_per_account_min} Stripe requests per account "
                        f"per minute <= {TARGET_IDLE_PER_MIN:g}",
                        phase.requests_per_account_min <= TARGET_IDLE_PER_MIN))
    weekly = result.weekly
    out.append((f"weekly report: payment to repair p95 {weekly.get('p95_s')} s, target "
                f"{weekly.get('target_s')} s met: {weekly.get('target_met')}",
                weekly.get("target_met") is not False))
    out.append((f"webhook errors: {len(result.webhook_errors)}", not result.webhook_errors))
    return out


if __name__ == "__main__":
    sys.exit(main())
