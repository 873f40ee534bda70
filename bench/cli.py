"""`python -m bench`: generate each case's world, run the reconciler and the naive baseline
against the stand-ins, print one JSON line per case and the summary table."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.bounds import lower_bound
from bench.cases import Case, select
from bench.output import case_json, rss_check, table
from bench.process import Launcher
from bench.runs import EngineConfig, RunResult, run_engine, run_naive
from bench.setup import Limits, build_world, stand_ins


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["live"]:  # the live mode: the daemon while purchases arrive
        from bench.live_cli import main as live_main
        return live_main(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     epilog="`python -m bench live --help`: the live mode")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: small cases, small naive samples")
    parser.add_argument("--cases", help="comma-separated: 1k,10k,100k or SESSIONS/ACCOUNTS "
                        "such as 20k/1 (default: 1k,10k,100k)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--naive-per-account", type=int,
                        help="sample the naive baseline at N sessions per account")
    parser.add_argument("--rate-share", type=float, default=EngineConfig.rate_share,
                        help="RECONCILER_STRIPE_RATE_SHARE for the reconciler (default 1: "
                        "the stand-in's limits are known exactly)")
    parser.add_argument("--concurrency", type=int,
                        help="RECONCILER_STRIPE_CONCURRENCY (default: the job's default)")
    parser.add_argument("--out", help="also append the JSON lines to this file")
    args = parser.parse_args(args_in)

    cases = select(args.cases, args.quick)
    limits = Limits()
    config = EngineConfig(rate_share=args.rate_share, concurrency=args.concurrency)
    now = int(time.time()) // 60 * 60
    lines: list[dict[str, Any]] = []
    with Launcher() as launcher:  # first, while this process is still small
        for case in cases:
            lines.append(_run_case(launcher, case, args, limits, config, now))
    rss = rss_check(lines)
    if rss is not None:
        print(json.dumps(rss), flush=True)
    print()
    print(table(lines, rss, os.cpu_count() or 1))
    return 0


def _run_case(launcher: Launcher, case: Case, args: argparse.Namespace, limits: Limits,
              config: EngineConfig, now: int) -> dict[str, Any]:
    _log(f"{case.name}: generating {case.sessions:,} sessions over {case.schools} "
         "connected accounts")
    bench = build_world(args.seed, case.sessions, case.schools, now)
    _log(f"{case.name}: world ready in {bench.generate_s:.1f} s ({bench.sessions:,} "
         f"complete sessions listed, {bench.pages} pages); starting the stand-ins")
    with stand_ins(bench, limits) as stand:
        engine = run_engine(launcher, stand, bench, config)
        _log(f"{case.name}: reconciler {engine.wall_s:.2f} s, exit {engine.exit_code}")
        naive: RunResult | None = None
        if case.run_naive and not args.no_naive:
            per_account = args.naive_per_account or case.naive_per_account
            naive = run_naive(launcher, stand, bench, per_account)
            _log(f"{case.name}: naive {naive.wall_s:.2f} s "
                 f"({'sample' if per_account else 'full'})")
    line = case_json(case, bench, limits, lower_bound(bench, limits), engine, naive)
    text = json.dumps(line, separators=(",", ":"))
    print(text, flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return line
