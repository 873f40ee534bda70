"""One JSON line per case, then the summary table with the targets beside the figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.bounds import SESSION_LIST, Bound, naive_figures
from bench.cases import Case
from bench.runs import RunResult
from bench.setup import BenchWorld, Limits

SANITY_CONSTANT = 5  # catalog query plus a little slack in "Sanity <= 2 x pages + c"
TARGET_EFFICIENCY = 0.85
TARGET_SPEEDUP = 40.0
TARGET_REQUEST_RATIO = 25.0
TARGET_RSS_GROWTH = 1.5
TARGET_STRIPE_PER_PAGE = 1.2  # every Stripe request of a run, per page it must list


def engine_json(run: RunResult) -> dict[str, Any]:
    return {
        "exit_code": run.exit_code, "status": run.extra.get("status"),
        "wall_s": round(run.wall_s, 3), "cpu_s": round(run.cpu_s, 3),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "stripe_requests": run.stripe_requests,
        "stripe_list_requests": run.stripe_by_endpoint.get(SESSION_LIST, 0),
        "stripe_by_endpoint": run.stripe_by_endpoint, "stripe_429": run.stripe_429,
        "retries_logged": run.extra.get("retries"),
        "segments": run.extra.get("segments"),
        "sanity_queries": run.sanity_queries, "sanity_transactions": run.sanity_transactions,
        "documents_created": run.documents_created, "created": run.created,
        "standin_cpu_s": {"stripe": round(run.stripe_cpu_s, 3),
                          "sanity": round(run.sanity_cpu_s, 3),
                          "sanity_query_ms": run.sanity_query_ms},
    }


def case_json(case: Case, bench: BenchWorld, limits: Limits, bound: Bound, engine: RunResult,
              naive: RunResult | None) -> dict[str, Any]:
    segments = int(engine.extra.get("segments") or 0)
    lists = engine.stripe_by_endpoint.get(SESSION_LIST, 0)
    line: dict[str, Any] = {
        "case": case.name, "sessions_generated": case.sessions,
        "sessions_listed": bench.sessions, "connected_accounts": case.schools,
        "accounts_read": len(bench.complete), "pages": bench.pages,
        "keyless_sessions": bench.line_items,
        "product_requests_needed": bench.product_requests,
        "expected_created": bench.expected_created,
        "limits": {"stripe_latency_s": limits.stripe_latency_s,
                   "sanity_latency_s": limits.sanity_latency_s,
                   "stripe_endpoint_rate": limits.endpoint_rate,
                   "stripe_global_rate": limits.global_rate},
        "bound": bound.to_json(),
        "engine": engine_json(engine),
        "efficiency": round(bound.lower_s / engine.wall_s, 3),
        # Every Stripe request (lists, products, refunds, the rest) per page a reader must
        # list at least: what the run takes from the budget the app's checkout shares.
        "stripe_per_page": round(engine.stripe_requests / max(1, bench.pages), 3),
    }
    checks: dict[str, bool] = {
        "list_requests<=pages+segments": lists <= bench.pages + segments,
        "sanity<=2*pages+c": engine.sanity_requests <= 2 * bench.pages + SANITY_CONSTANT,
        "no_429_failure": engine.exit_code in (0, 1) and engine.extra.get("status") != "failed",
    }
    # Not a performance target: the job's decisions against the world's own ground truth.
    line["created_vs_truth"] = {"created": engine.created, "truth": bench.expected_created}
    if case.sessions >= 100_000:
        checks["efficiency>=0.85"] = line["efficiency"] >= TARGET_EFFICIENCY
        checks["stripe<=1.2*pages"] = line["stripe_per_page"] <= TARGET_STRIPE_PER_PAGE
    if naive is not None:
        figures = naive_figures(naive, bench)
        line["naive"] = {**engine_json(naive), "extrapolated": figures,
                         "outcomes": naive.extra["own"]["outcomes"]}
        line["speedup"] = round(figures["wall_s"] / engine.wall_s, 1)
        line["request_ratio"] = round(figures["requests"] / max(1, engine.requests), 1)
        # What no reader can beat: the wall-time bound, and the fewest requests the rules
        # allow (every page, the products of keyless sessions, a refund list per account;
        # the catalog, one lookup per page and at least one transaction).
        fewest = (bench.pages + bench.product_requests + len(bench.complete) + 1
                  + bench.pages + 1)
        at_bound = figures["wall_s"] / bound.lower_s if bound.lower_s > 0 else None
        line["ceilings"] = {"speedup_at_bound": None if at_bound is None else round(at_bound, 1),
                            "fewest_requests": fewest,
                            "request_ratio_at_fewest": round(figures["requests"] / fewest, 1)}
        if not figures["sampled"]:
            checks["naive_created=engine_created"] = naive.created == engine.created
        if 10_000 <= case.sessions < 100_000:
            checks["speedup>=40"] = line["speedup"] >= TARGET_SPEEDUP
            checks["requests_ratio>=25"] = line["request_ratio"] >= TARGET_REQUEST_RATIO
    line["targets"] = checks
    return line


def rss_check(lines: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Peak RSS of the largest case against the smallest (both in this run)."""
    if len(lines) < 2:
        return None
    small = min(lines, key=lambda ln: ln["sessions_generated"])
    large = max(lines, key=lambda ln: ln["sessions_generated"])
    if small is large:
        return None
    ratio = large["engine"]["peak_rss_mb"] / small["engine"]["peak_rss_mb"]
    return {"check": "rss", "small": small["case"], "large": large["case"],
            "ratio": round(ratio, 3), "target": TARGET_RSS_GROWTH,
            "ok": ratio <= TARGET_RSS_GROWTH}


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table(lines: Sequence[dict[str, Any]], rss: dict[str, Any] | None, cores: int) -> str:
    head = ("case", "sessions", "accts", "pages", "keyless", "segs", "wall s", "bound s", "eff",
            "Stripe req", "req/page", "list req", "Sanity q+tx", "429", "docs", "RSS MB", "CPU s",
            "stand-in CPU s", "naive s", "naive req", "speedup", "req ratio")
    rows: list[tuple[str, ...]] = []
    for ln in lines:
        e = ln["engine"]
        n = ln.get("naive", {}).get("extrapolated") if ln.get("naive") else None
        naive_wall = None if n is None else f"{n['wall_s']:.1f}{'*' if n['sampled'] else ''}"
        naive_req = None if n is None else f"{n['requests']}{'*' if n['sampled'] else ''}"
        rows.append((
            ln["case"], f"{ln['sessions_listed']:,}", str(ln["accounts_read"]),
            str(ln["pages"]), str(ln["keyless_sessions"]), _fmt(e["segments"]),
            f"{e['wall_s']:.2f}", f"{ln['bound']['lower_s']:.2f}", f"{ln['efficiency']:.2f}",
            str(e["stripe_requests"]), f"{ln['stripe_per_page']:.2f}",
            str(e["stripe_list_requests"]),
            f"{e['sanity_queries']}+{e['sanity_transactions']}", str(e["stripe_429"]),
            str(e["documents_created"]), f"{e['peak_rss_mb']:.0f}", f"{e['cpu_s']:.1f}",
            f"{e['standin_cpu_s']['stripe']:.1f}/{e['standin_cpu_s']['sanity']:.1f}",
            _fmt(naive_wall), _fmt(naive_req), _fmt(ln.get("speedup"), ".1f"),
            _fmt(ln.get("request_ratio"), ".1f")))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    out = [f"Summary ({cores} cores; Stripe 50 ms + 25/s per endpoint + 100/s in all, "
           "Sanity 20 ms; keyless = sessions whose own metadata lacks a pass key; bound = the "
           "slowest endpoint's requests at its limit + latency floor; eff = bound / wall; stand-in "
           "CPU = Stripe/Sanity; * = naive sampled, extrapolated linearly)",
           "The Stripe stand-in runs inside the benchmark, loaded from the generated world "
           "(no JSON file to parse); the reconciler and the naive baseline are separate "
           "processes talking HTTP to both stand-ins."]
    out.append("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append("")
    out.append("Targets:")
    for ln in lines:
        marks = ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in ln["targets"].items())
        out.append(f"  {ln['case']}: {marks}")
        if ln.get("naive"):
            n = ln["naive"]["extrapolated"]
            how = (f"sampled {n['sampled_sessions']:,} of {n['total_sessions']:,} sessions, "
                   f"x{n['factor']}" if n["sampled"] else "ran in full")
            out.append(f"      naive {how}: speedup {ln['speedup']}x (target >= 40x at 10k), "
                       f"requests {ln['request_ratio']}x fewer (target >= 25x)")
            cap = ln["ceilings"]
            out.append(f"      ceilings for any reader: speedup {cap['speedup_at_bound']}x at the "
                       f"bound; {cap['fewest_requests']} requests at fewest, ratio "
                       f"{cap['request_ratio_at_fewest']}x")
        out.append(f"      efficiency {ln['efficiency']} = bound {ln['bound']['lower_s']} s "
                   f"({ln['bound']['binding']} bind) / wall {ln['engine']['wall_s']} s "
                   f"(target >= 0.85 at 100k); "
                   f"Stripe list requests {ln['engine']['stripe_list_requests']} <= pages "
                   f"{ln['pages']} + segments {ln['engine']['segments']}; Sanity "
                   f"{ln['engine']['sanity_queries'] + ln['engine']['sanity_transactions']} <= "
                   f"2 x {ln['pages']} + {SANITY_CONSTANT}")
        truth = ln["created_vs_truth"]
        if truth["created"] != truth["truth"]:
            out.append(f"      note: created {truth['created']}, the world's truth says "
                       f"{truth['truth']} (a decision difference, not a performance figure)")
    if rss is not None:
        out.append(f"  peak RSS {rss['large']} / {rss['small']} = {rss['ratio']} "
                   f"(target <= {rss['target']}): {'ok' if rss['ok'] else 'MISSED'}")
    return "\n".join(out)
