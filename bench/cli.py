"""`python -m bench`: generate each case's world, run the reconciler and the naive baseline
against the stand-ins, print one JSON line per case and the summary table."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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
    parser.add_argument("--ledger", choices=("sqlite", "postgresql", "both"), default="sqlite",
                        help="where the reconciler keeps its ledger: the SQLite file "
                        "(default), PostgreSQL (the bench starts its own server), or both, "
                        "one run each, side by side")
    parser.add_argument("--out", help="also append the JSON lines to this file")
    args = parser.parse_args(args_in)

    cases = select(args.cases, args.quick)
    limits = Limits()
    config = EngineConfig(rate_share=args.rate_share, concurrency=args.concurrency)
    now = int(time.time()) // 60 * 60
    lines: list[dict[str, Any]] = []
    with Launcher() as launcher, _databases(args.ledger) as new_database:
        # The launcher first, while this process is still small.
        for case in cases:
            lines.append(_run_case(launcher, case, args, limits, config, now, new_database))
    rss = rss_check(lines)
    if rss is not None:
        print(json.dumps(rss), flush=True)
    print()
    print(table(lines, rss, os.cpu_count() or 1))
    return 0


@contextlib.contextmanager
def _databases(ledger: str) -> Iterator[Callable[[], str] | None]:
    """For a PostgreSQL ledger: a local server for the whole bench, a fresh database a run."""
    if ledger == "sqlite":
        yield None
        return
    from sandbox.pg_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("bench: --ledger postgresql needs PostgreSQL's initdb and pg_ctl")
    # Durable settings, as a real server's (the ledger's own sessions commit asynchronously).
    server = PostgresServer(bindir, fast=False).start()
    names = itertools.count(1)
    try:
        yield lambda: server.create_database(f"bench{next(names)}")
    finally:
        server.close()


def _run_case(launcher: Launcher, case: Case, args: argparse.Namespace, limits: Limits,
              config: EngineConfig, now: int,
              new_database: Callable[[], str] | None = None) -> dict[str, Any]:
    _log(f"{case.name}: generating {case.sessions:,} sessions over {case.schools} "
         "connected accounts")
    bench = build_world(args.seed, case.sessions, case.schools, now)
    _log(f"{case.name}: world ready in {bench.generate_s:.1f} s ({bench.sessions:,} "
         f"complete sessions listed, {bench.pages} pages); starting the stand-ins")
    on_postgres = None
    if new_database is not None:
        # Stand-ins of its own: they cache what they serve, and the runs compared should
        # both meet them cold.
        with stand_ins(bench, limits) as stand:
            pg_config = dataclasses.replace(config, database_url=new_database())
            on_postgres = run_engine(launcher, stand, bench, pg_config)
        _log(f"{case.name}: reconciler, PostgreSQL ledger {on_postgres.wall_s:.2f} s, "
             f"exit {on_postgres.exit_code}")
    with stand_ins(bench, limits) as stand:
        engine = on_postgres if args.ledger == "postgresql" and on_postgres else run_engine(
            launcher, stand, bench, config)
        if engine is not on_postgres:
            _log(f"{case.name}: reconciler {engine.wall_s:.2f} s, exit {engine.exit_code}")
        naive: RunResult | None = None
        if case.run_naive and not args.no_naive:
            per_account = args.naive_per_account or case.naive_per_account
            naive = run_naive(launcher, stand, bench, per_account)
            _log(f"{case.name}: naive {naive.wall_s:.2f} s "
                 f"({'sample' if per_account else 'full'})")
    line = case_json(case, bench, limits, lower_bound(bench, limits), engine, naive)
    line["ledger"] = args.ledger
    if args.ledger == "both" and on_postgres is not None:
        line["engine_postgresql"] = {
            "wall_s": round(on_postgres.wall_s, 3), "cpu_s": round(on_postgres.cpu_s, 3),
            "peak_rss_mb": round(on_postgres.peak_rss_mb, 1), "exit_code": on_postgres.exit_code,
            "created": on_postgres.created, "documents_created": on_postgres.documents_created}
        line["postgresql_wall_vs_sqlite"] = round(on_postgres.wall_s / engine.wall_s, 4)
        _log(f"{case.name}: PostgreSQL ledger / SQLite ledger wall time = "
             f"{line['postgresql_wall_vs_sqlite']:.3f}")
    text = json.dumps(line, separators=(",", ":"))
    print(text, flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return line
