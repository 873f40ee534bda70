"""Stripe stand-in: serves a sandbox `stripe.json` the way Stripe's API answers, on 127.0.0.1.

In process::

    with StripeStandIn(data) as standin:
        client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": standin.url})
        standin.controls.set_latency(0.05)

Out of process: ``python -m sandbox.stripe.server --data stripe.json [--port N] [--now TS]``
prints one line ``LISTENING http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT;
``RemoteControls(url)`` drives the same controls over HTTP under ``/_sandbox/…``.

This module is the entry point (the command, and the names others import); the parts are
the data (`stripe_data`), the API (`stripe_api`: `stripe_auth`, `stripe_params`, the handlers
in `stripe_sessions` and `stripe_objects`, the bodies of `stripe_errors`), the knobs
(`stripe_controls`, `stripe_remote`) and the HTTP shell (`stripe_http`).
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from sandbox.stripe.api import ROUTES, Route, StripeApi, find_route
from sandbox.stripe.controls import Controls, Fault
from sandbox.stripe.data import StripeData, public, sort_created
from sandbox.stripe.errors import ApiError
from sandbox.stripe.http import StripeStandIn
from sandbox.stripe.remote import RemoteControls

__all__ = [
    "ROUTES",
    "ApiError",
    "Controls",
    "Fault",
    "RemoteControls",
    "Route",
    "StripeApi",
    "StripeData",
    "StripeStandIn",
    "find_route",
    "main",
    "public",
    "sort_created",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.stripe.server",
                                     description="Serve a sandbox stripe.json like Stripe's API.")
    parser.add_argument("--data", required=True, type=Path, help="the sandbox stripe.json")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    parser.add_argument("--now", type=float, default=None,
                        help="fix the server's clock (unix seconds) for event retention")
    args = parser.parse_args(argv)
    fixed_now = args.now
    standin = StripeStandIn(args.data, now=None if fixed_now is None else lambda: fixed_now,
                            port=args.port)
    gc.freeze()  # our own process: keep the loaded data out of every later collection
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with standin:
        print(f"LISTENING {standin.url}", flush=True)
        while not stopping.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
