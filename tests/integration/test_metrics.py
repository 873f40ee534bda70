"""Prometheus metrics from real processes: `/metrics` scraped from the daemon, the textfile
written by `reconcile run`, both parsed by the official parser and checked against what the
stand-ins saw (every request, every 429) and what the ledger holds.
"""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs.adapters.ledger import Ledger
from sandbox.sanity_server import SanityStandIn
from tests.integration.test_daemon_process import (
    PER_SCHOOL,
    SCHOOLS,
    Sandbox,
    sanity_node,  # noqa: F401 - the module's Sanity stand-in fixture
    stop,
    wait_for,
)

PURCHASES = SCHOOLS * PER_SCHOOL
ACCOUNTS = {"platform", *(f"acct_school{s}" for s in range(SCHOOLS))}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels), through prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sandbox(tmp_path: Path, sanity_node: SanityStandIn) -> Iterator[Sandbox]:  # noqa: F811
    box = Sandbox(tmp_path, sanity_node)
    yield box
    box.close()


def stand_in_counts(box: Sandbox) -> dict[str, tuple[int, int]]:
    """(requests, 429s) each stand-in answered."""
    stripe = box.stripe.controls.log()
    sanity = box.sanity.log()
    return {"stripe": (len(stripe), sum(e["status"] == 429 for e in stripe)),
            "sanity": (len(sanity), sum(e.get("status") == 429 for e in sanity))}


def test_the_daemon_serves_metrics_during_its_passes(sandbox: Sandbox) -> None:
    port = free_port()
    sandbox.env["RECONCILER_METRICS_LISTEN"] = f"127.0.0.1:{port}"
    # Two 429s from Stripe and one from Sanity, each waited out and counted.
    sandbox.stripe.controls.inject_fault("GET /v1/checkout/sessions", times=2, status=429,
                                         headers={"Retry-After": "0"})
    sandbox.sanity.inject_fault("query", status=429, headers={"Retry-After": "0"})
    sandbox.sanity.set_latency(150)  # a pass long enough to be scraped while it runs
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> Samples | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return parse(answer.read().decode())
        except OSError:
            return None

    proc = sandbox.start("daemon")
    try:
        # The start-up pass has begun once Sanity saw its first query; at 0.15 s a request it
        # then runs for a second or more: scrape it there.
        wait_for(lambda: sum(e["kind"] == "query" for e in sandbox.sanity.log()) >= 2,
                 timeout=20, what="the start-up pass to begin", proc=proc)
        during = scrape()
        assert during is not None
        with Ledger.open(sandbox.state) as ledger:
            still_running = [r.status for r in ledger.recent_runs()] == ["running"]
        if still_running:  # (on a very slow machine the pass may have ended already)
            assert value(during, "reconciler_last_success_timestamp_seconds") == 0
            assert not any(name == "reconciler_runs_total" for name, _ in during)
            # The first query's 429 was answered before its retry went out.
            assert value(during, "reconciler_http_rate_limited_total", service="sanity") == 1
        sandbox.sanity.set_latency(0)

        def both_passes_done() -> bool:
            with Ledger.open(sandbox.state) as ledger:
                runs = ledger.recent_runs()
            return len(runs) == 2 and all(r.status != "running" for r in runs)

        wait_for(both_passes_done, timeout=60, what="the quick and the deep pass", proc=proc)
        wait_for(lambda: (scrape() or {}).get(("reconciler_runs_total", (("kind", "deep"),
                                                                         ("status", "ok"))))
                 == 1, timeout=10, what="the deep pass in the metrics", proc=proc)
        after = scrape()
        seen = stand_in_counts(sandbox)
        code, _, err, _ = stop(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, err[-2000:]
    assert after is not None
    assert value(after, "reconciler_runs_total", kind="quick", status="ok") == 1
    assert value(after, "reconciler_runs_total", kind="deep", status="ok") == 1
    assert value(after, "reconciler_subscriptions_created_total") == PURCHASES
    assert value(after, "reconciler_purchases_total", outcome="created", reason="") == PURCHASES
    assert value(after, "reconciler_purchases_total", outcome="already_present",
                 reason="") == PURCHASES  # the deep pass found them all
    for service, (requests, limited) in seen.items():
        assert value(after, "reconciler_http_requests_total", service=service) == requests
        assert value(after, "reconciler_http_rate_limited_total", service=service) == limited
    assert seen["stripe"][1] == 2 and seen["sanity"][1] == 1
    assert value(after, "reconciler_needs_manual_open") == 0
    assert value(after, "reconciler_pending_payments") == 0
    assert value(after, "reconciler_failed_runs_in_a_row") == 0
    assert time.time() - value(after, "reconciler_last_success_timestamp_seconds") < 60
    lags = {labels[0][1]: v for (name, labels), v in after.items()
            if name == "reconciler_watermark_lag_seconds"}
    assert set(lags) == ACCOUNTS and all(0 <= lag < 120 for lag in lags.values())
    assert value(after, "reconciler_run_duration_seconds", kind="quick") > 0


def test_cron_runs_write_the_textfile_and_keep_counting(sandbox: Sandbox,
                                                        tmp_path: Path) -> None:
    textfile = tmp_path / "collector" / "pass_reconciler.prom"
    textfile.parent.mkdir()
    sandbox.env["RECONCILER_METRICS_TEXTFILE"] = str(textfile)
    sandbox.stripe.controls.inject_fault("GET /v1/checkout/sessions", status=429,
                                         headers={"Retry-After": "0"})
    first = sandbox.start("run")
    assert first.wait(timeout=120) == 0, first.communicate()[1][-2000:]
    first.communicate()
    once = parse(textfile.read_text())
    seen_once = stand_in_counts(sandbox)
    assert value(once, "reconciler_runs_total", kind="run", status="ok") == 1
    assert value(once, "reconciler_subscriptions_created_total") == PURCHASES
    assert value(once, "reconciler_http_requests_total", service="stripe") == seen_once["stripe"][0]
    assert value(once, "reconciler_http_rate_limited_total", service="stripe") == 1
    assert {labels[0][1] for (name, labels) in once
            if name == "reconciler_watermark_lag_seconds"} == ACCOUNTS

    second = sandbox.start("run", "--deep")  # the deep window: the same purchases again
    assert second.wait(timeout=120) == 0
    second.communicate()
    twice = parse(textfile.read_text())
    seen_twice = stand_in_counts(sandbox)  # the stand-ins' logs hold both runs
    # Counters carry on across the two processes; nothing was created the second time.
    assert value(twice, "reconciler_runs_total", kind="run", status="ok") == 1
    assert value(twice, "reconciler_runs_total", kind="deep", status="ok") == 1
    assert value(twice, "reconciler_subscriptions_created_total") == PURCHASES
    assert value(twice, "reconciler_purchases_total", outcome="already_present",
                 reason="") == PURCHASES
    for service, (requests, limited) in seen_twice.items():
        assert value(twice, "reconciler_http_requests_total", service=service) == requests
        assert value(twice, "reconciler_http_rate_limited_total", service=service) == limited
    assert [p.name for p in textfile.parent.iterdir()] == [textfile.name]  # no temp file left
    assert not any(name.endswith("_created") for name, _ in twice)  # no creation timestamps
    assert {labels for (name, labels) in twice if name == "reconciler_run_duration_seconds"} == {
        (("kind", "run"),), (("kind", "deep"),)}


def test_a_metrics_port_in_use_stops_the_daemon_with_exit_2_and_one_line(
        sandbox: Sandbox) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sandbox.env["RECONCILER_METRICS_LISTEN"] = str(port)
        proc = sandbox.start("daemon")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1] == (
        f"reconcile: RECONCILER_METRICS_LISTEN: cannot listen on 127.0.0.1:{port} "
        "(Address already in use)")
