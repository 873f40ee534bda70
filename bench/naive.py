"""The naive baseline: the reconciler written the way the original one-off scripts work.

Sequential; the SDK's auto-paging iterator with its StripeObjects; one Sanity query per
session that has anything to look up, and one more before writing a missing one (the job's
re-check: what records it now, and the buyer's manual subscriptions); one request per
missing document (the student, the
subscription, and the old subscription's deactivation of an upgrade, each on its own, as
the scripts' `client.create(...)` / `client.patch(...).commit()` calls did). It decides
exactly as the job does (the same pure classify/plan functions), so the two runs are
comparable: only the I/O pattern differs. It lives only here, in the benchmark.

    python -m bench.naive --since UNIX --until UNIX [--max-per-account N]

reads the same environment as `python -m jobs run` and prints one JSON object: counts and
the seconds spent in the fixed part (catalog, refunds) and in the per-session part, so a
sampled run (`--max-per-account`) can be extrapolated linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import stripe

from jobs.adapters.sanity_store import SanityStore
from jobs.adapters.stripe_source import refunded_by_intent
from jobs.config.settings import load_settings
from jobs.core.catalog import catalog_from
from jobs.core.classify import classify_raw, needs_line_items, parse_line_items, parse_session
from jobs.core.matching import lookup_keys
from jobs.core.model import PLATFORM, PageFacts, PlanContext
from jobs.core.planner import plan_page
from jobs.core.recheck import recheck
from jobs.run.reconcile import accounts_to_read


def _options(account: str) -> dict[str, Any]:
    return {} if account == PLATFORM else {"stripe_account": account}


def run(since: int, until: int, max_per_account: int | None) -> dict[str, Any]:
    settings = load_settings(os.environ).require("stripe", "sanity")
    key = settings.stripe.secret_key
    token = settings.sanity.token
    assert key is not None and token is not None
    client = stripe.StripeClient(key.reveal(), base_addresses={"api": settings.stripe.api_base})
    sanity = SanityStore(settings.sanity.base_url, settings.sanity.dataset, token.reveal(),
                         settings.sanity.api_version)
    started = time.perf_counter()
    catalog = catalog_from(*sanity.load_catalog())
    ctx = PlanContext(now_ms=int(time.time() * 1000), run_id=f"naive-{int(time.time())}",
                      catalog=catalog)
    counts = {"sessions": 0, "queries": 1, "creates": 0, "line_items": 0, "refund_lists": 0}
    outcomes: dict[str, int] = {}
    fixed_s = time.perf_counter() - started
    per_session_s = 0.0
    for account in accounts_to_read(catalog, None):
        mark = time.perf_counter()
        refunds = refunded_by_intent(
            r.to_dict() for r in client.v1.refunds.list(
                params={"created": {"gte": since}, "limit": 100},
                options=_options(account)).auto_paging_iter())  # type: ignore[arg-type]
        counts["refund_lists"] += 1
        fixed_s += time.perf_counter() - mark
        mark = time.perf_counter()
        listing = client.v1.checkout.sessions.list(
            params={"created": {"gte": since, "lt": until}, "status": "complete", "limit": 100},
            options=_options(account))  # type: ignore[arg-type]
        done = 0
        for obj in listing.auto_paging_iter():
            if max_per_account is not None and done >= max_per_account:
                break
            done += 1
            raw = obj.to_dict()
            parsed = parse_session(raw, account, ctx.now_ms // 1000)
            items = {}
            if not isinstance(parsed, str) and needs_line_items(parsed):
                listed = client.v1.checkout.sessions.line_items.list(
                    parsed.id, params={"expand": ["data.price.product"]},
                    options=_options(account))  # type: ignore[arg-type]
                items[parsed.id] = parse_line_items([i.to_dict() for i in listed.data])
                counts["line_items"] += 1
            item = classify_raw(raw, account, ctx.now_ms // 1000, catalog, items, refunds)
            keys = lookup_keys([item])
            facts = PageFacts()
            if keys.session_ids:  # one query for this one session
                facts = PageFacts.from_result(sanity.lookup_page(
                    list(keys.session_ids), list(keys.payment_intents), list(keys.user_ids),
                    list(keys.upgrade_ids)))
                counts["queries"] += 1
            (decision,) = plan_page([item], facts, ctx).decisions
            if decision.creation is not None:  # the job's re-check, for this one session
                found = sanity.recheck([decision.session_id],
                                       [keys.payment_intents[0]] if keys.payment_intents else [],
                                       list(decision.creation.person_refs))
                decision = recheck(decision, found["subs"], found["manual"])
                counts["queries"] += 1
            outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
            if decision.creation is not None:  # one request per missing document
                for n, mutation in enumerate(decision.creation.mutations()):
                    sanity.commit([mutation], f"{ctx.run_id}-{decision.session_id}-{n}")
                    counts["creates"] += 1
        counts["sessions"] += done
        per_session_s += time.perf_counter() - mark
    return {"counts": counts, "outcomes": outcomes, "fixed_s": round(fixed_s, 4),
            "per_session_s": round(per_session_s, 4),
            "total_s": round(time.perf_counter() - started, 4)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", type=int, required=True, help="unix seconds")
    parser.add_argument("--until", type=int, required=True, help="unix seconds")
    parser.add_argument("--max-per-account", type=int, default=None,
                        help="stop each account after N sessions (a sample)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.since, args.until, args.max_per_account)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
