"""The benchmark's code path on a 200-session world (no latency, no limits): a smoke test of
the harness, not a measurement. The benchmark itself is `python -m bench`."""

from __future__ import annotations

import json
import time

from bench.bounds import lower_bound
from bench.cases import Case, select
from bench.output import case_json, rss_check, table
from bench.process import Launcher
from bench.runs import EngineConfig, run_engine, run_naive
from bench.setup import Limits, build_world, stand_ins

LINE_ITEMS = "GET /v1/checkout/sessions/{session}/line_items"
PRODUCTS = "GET /v1/products"


def test_the_bench_runs_both_programs_on_one_world_and_reports_them() -> None:
    limits = Limits(stripe_latency_s=0, sanity_latency_s=0, endpoint_rate=1000,
                    global_rate=1000)
    case = Case("smoke", 200, 1, naive_per_account=None)
    bench = build_world(3, case.sessions, case.schools, int(time.time()) // 60 * 60)
    with Launcher() as launcher, stand_ins(bench, limits) as stand:
        engine = run_engine(launcher, stand, bench, EngineConfig())
        naive = run_naive(launcher, stand, bench, None)
    line = case_json(case, bench, limits, lower_bound(bench, limits), engine, naive)
    assert engine.exit_code in (0, 1) and engine.peak_rss_mb > 10 and engine.cpu_s > 0
    assert engine.created > 0 and naive.created == engine.created
    assert engine.documents_created == naive.documents_created  # each on a fresh copy
    assert line["targets"]["naive_created=engine_created"]
    assert line["naive"]["extrapolated"]["sampled"] is False
    assert line["engine"]["stripe_list_requests"] >= bench.pages
    # Keyless sessions: the naive reader asks each one's line items, the job one products
    # request per page at most, and a session's own line items only for a product the
    # by-id listing does not return (the world plants a few).
    by_endpoint = engine.stripe_by_endpoint
    assert bench.line_items > 0
    assert naive.stripe_by_endpoint[LINE_ITEMS] == bench.line_items
    unlisted = sum(1 for data in bench.world.stripe["data"].values()
                   for p in data["products"] if p.get("_unlisted"))
    assert unlisted > 0 and by_endpoint.get(LINE_ITEMS, 0) == unlisted
    assert 0 < by_endpoint[PRODUCTS] <= bench.pages
    # Sanity: a lookup per page and a transaction per page with creations, the catalog and a
    # re-check per write unit; the keyless sessions' last group rides with the account's
    # oldest page, so it costs no lookup or transaction of its own.
    lists = line["engine"]["stripe_list_requests"]
    assert engine.sanity_transactions <= lists
    assert engine.sanity_queries <= lists + 1 + engine.sanity_transactions
    assert line["targets"]["sanity<=2*pages+c"]
    json.dumps(line)
    rendered = table([line], rss_check([line]), cores=2)
    assert "smoke" in rendered and "Targets:" in rendered


def test_cases_are_chosen_by_name_or_shape() -> None:
    assert [c.name for c in select(None, quick=False)] == ["1k", "10k", "100k"]
    assert [c.sessions for c in select(None, quick=True)] == [1_000, 10_000]
    (custom,) = select("20k/1", quick=False)
    assert (custom.sessions, custom.schools, custom.naive_per_account) == (20_000, 1, 1000)
