"""The README's first command: a whole reconciliation on a local sandbox, no accounts needed.

Generates a world of three dance schools (some purchases lost their webhook), starts the
Stripe and Sanity stand-ins on 127.0.0.1, runs `reconcile run` twice (the second run shows
that nothing is created twice), then writes the weekly report. Everything lands in `out/demo/`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import StripeStandIn
from sandbox.world.generate import generate, write_world

ROOT = Path(__file__).resolve().parents[1]
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"{BOLD}==> {text}{RESET}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--sessions", type=int, default=900)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)  # each demo starts from a fresh world and an empty ledger
    out.mkdir(parents=True)

    now = int(time.time()) // 60 * 60
    step(f"Generating a world: 3 schools, {args.sessions} checkout sessions over 3 days")
    world = generate(args.seed, sessions=args.sessions, schools=3, now=now, days=3)
    files = write_world(world, out / "world")
    say(f"    {DIM}{files['stripe'].name}, {files['sanity'].name}, {files['truth'].name} in "
        f"{files['stripe'].parent}{RESET}")

    step("Starting the local Stripe and Sanity stand-ins (127.0.0.1 only)")
    stripe = StripeStandIn(files["stripe"], now=lambda: float(now)).start()
    try:
        with SanityStandIn(files["sanity"]) as sanity:
            say(f"    Stripe {stripe.url}   Sanity {sanity.url}")
            env = dict(os.environ)
            env.update({
                "STRIPE_SECRET_KEY": "rk_test_sandbox",  # the read-only restricted key suffices
                "STRIPE_API_BASE": stripe.url,
                "SANITY_PROJECT_ID": "sandbox",
                "SANITY_API_BASE": sanity.url,
                "SANITY_API_TOKEN": sanity.write_token,
                "RECONCILER_STATE_DIR": str(out / "state"),
                "RECONCILER_STRIPE_RATE_SHARE": "1",
                "RECONCILER_LOG_FORMAT": "console",
            })
            for key in ("SMTP_HOST", "REPORT_TO", "REPORT_FROM"):
                env.pop(key, None)
            reconcile = [sys.executable, "-m", "jobs"]

            step("reconcile run --window 3d   (first pass: repairs what the webhook lost)")
            first = subprocess.run([*reconcile, "run", "--window", "3d", "--max-creates", "500",
                                    "--report-file", str(out / "run-report.json")],
                                   env=env, cwd=ROOT, check=False)
            say(f"    exit code {first.returncode}  (0 all good, 1 something needs a person, "
                "2 could not run)")

            step("reconcile run --window 3d   (second pass: nothing is ever created twice)")
            second = subprocess.run([*reconcile, "run", "--window", "3d", "--json"],
                                    env={**env, "RECONCILER_LOG_LEVEL": "warning"}, cwd=ROOT,
                                    capture_output=True, text=True, check=False)
            if second.stdout.strip():
                import json

                counts = json.loads(second.stdout)["counts"]
                say(f"    created {counts['created']}, already present "
                    f"{counts['already_present']}, needs a person {counts['needs_manual']}")

            step("reconcile report --weekly   (the ops e-mail, written to files)")
            today = datetime.now(UTC).date().isoformat()
            subprocess.run([*reconcile, "report", "--weekly", "--week-of", today,
                            "--out", str(out / "weekly")],
                           env={**env, "RECONCILER_LOG_LEVEL": "warning"}, cwd=ROOT, check=False)
    finally:
        stripe.stop()

    step("Done. Open these:")
    say(f"    run report (JSON)     {out / 'run-report.json'}")
    say(f"    weekly report (HTML)  file://{out / 'weekly' / 'report.html'}")
    say(f"    weekly report (text)  {out / 'weekly' / 'report.txt'}")
    say(f"    every purchase (CSV)  {out / 'weekly' / 'report.csv'}")
    say(f"    ground truth          {files['truth']}")
    say(f"    ledger / status       RECONCILER_STATE_DIR={out / 'state'} "
        f"{sys.executable} -m jobs status")
    return 0 if first.returncode in (0, 1) else first.returncode


if __name__ == "__main__":
    raise SystemExit(main())
