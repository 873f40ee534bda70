"""`reconcile run` on a generated world: Sanity ends exactly as the ground truth says."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.sanity_server import SanityStandIn
from tests.e2e.harness import Sandbox, report_problems, start_sandbox, state_problems

SESSION_LIST = "GET /v1/checkout/sessions"


@pytest.fixture
def world(tmp_path: Path, sanity: SanityStandIn) -> Iterator[Sandbox]:
    box = start_sandbox(tmp_path, sanity, seed=11, sessions=1200)
    yield box
    box.stripe.stop()


def test_one_run_repairs_exactly_what_the_truth_says(world: Sandbox) -> None:
    before = world.docs()
    code, report, stderr = world.run_report()
    after = world.docs()
    assert code == 1, stderr  # the world plants purchases that need a person
    assert state_problems(world.truth, before, after) == []
    assert report_problems(world.truth, report) == []
    assert report["counts"]["created"] > 50
    # Requests grow with pages, not sessions: one lookup per page, one transaction per page;
    # keyless sessions are planned in groups of up to 100 product ids per account
    # (`jobs.run.gather`), the last group with the account's oldest page, sharing its lookup
    # and transaction (here fewer than 100 per account: no group of its own); at most one
    # re-check per transaction, just before it (the catalog: one more query).
    log = world.sanity.log()
    pages = sum(a["pages"] for a in report["accounts"])
    transactions = sum(1 for r in log if r["kind"] == "mutate")
    assert transactions <= pages
    assert sum(1 for r in log if r["kind"] == "query") <= pages + 1 + transactions
    # The report names the anomalies of the app's real shapes.
    kinds = {a["kind"] for a in report["anomalies"]}
    assert kinds >= {"draft_only", "wrong_user", "upgrade_incomplete", "duplicate_users",
                     "currency_differs"}, kinds


def test_a_second_run_creates_nothing(world: Sandbox) -> None:
    world.run_report()
    before = world.docs()
    code, report, _ = world.run_report()
    assert report["counts"]["created"] == 0
    assert report["counts"]["already_present"] >= 50
    assert world.docs() == before
    assert code == 1  # the needs-manual purchases are still there


def test_a_dry_run_writes_nothing_and_lists_what_it_would_create(world: Sandbox) -> None:
    before = world.docs()
    code, report, _ = world.run_report("--dry-run")
    assert world.docs() == before
    assert report["dry_run"] is True
    assert report_problems(world.truth, report) == []
    assert not [r for r in world.sanity.log() if r["kind"] == "mutate"]
    assert code == 1


def test_the_safety_cap_writes_nothing(world: Sandbox) -> None:
    before = world.docs()
    code, report, _ = world.run_report("--max-creates", "3")
    assert code == 1 and report["cap_exceeded"] is True
    assert world.docs() == before


def test_faults_on_both_services_change_nothing_in_the_end(world: Sandbox) -> None:
    stripe = world.stripe.controls
    rng = random.Random(5)
    for _ in range(4):
        stripe.inject_fault(SESSION_LIST, status=429, headers={"Retry-After": "0"})
    stripe.inject_fault(SESSION_LIST, status=500)
    stripe.inject_fault(SESSION_LIST, drop=True)
    stripe.inject_fault("GET /v1/refunds", status=503)
    for kind in rng.sample(["query", "mutate"] * 3, 6):
        world.sanity.inject_fault(kind, status=rng.choice([429, 500, 503]),
                                  headers={"Retry-After": "0"})
    world.sanity.inject_fault("mutate", drop=True)
    world.sanity.inject_fault("query", malformed=True)
    before = world.docs()
    code, report, stderr = world.run_report()
    assert code == 1, stderr
    assert state_problems(world.truth, before, world.docs()) == []
    assert report_problems(world.truth, report) == []
    assert stripe.pending_faults() == [] or not any(stripe.pending_faults())
    assert '"retrying"' in stderr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_point_then_rerun_reaches_the_same_state(
    world: Sandbox, seed: int
) -> None:
    before = world.docs()
    # Slow both services down so that the kill can land while reading or while writing.
    world.stripe.controls.set_latency(0.05)
    world.sanity.set_latency(20)
    proc = subprocess.Popen(world.command("run", *world.window_args), cwd=world.root,
                            env=world.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # The kill lands at a point of the run's progress, not of the clock: while reading
    # (after a random number of Stripe requests) or while writing (after the first
    # transaction), so a faster run cannot finish first.
    writes = seed == 3
    requests = random.Random(seed).randint(1, 8)

    def reached() -> bool:
        if writes:
            return any(e.get("kind") == "mutate" for e in world.sanity.log())
        return len(world.stripe.controls.log()) >= requests

    deadline = time.monotonic() + 30
    while not reached() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    world.stripe.controls.set_latency(0)
    world.sanity.set_latency(0)
    code, report, stderr = world.run_report()
    assert code == 1, stderr
    assert state_problems(world.truth, before, world.docs()) == []
    assert report["counts"]["created"] + report["counts"]["already_present"] > 0
    runs = json.loads(world.run("status", "--json").stdout)["runs"]
    assert [r["status"] for r in runs][:2] in (["partial", "interrupted"], ["ok", "interrupted"])


@pytest.mark.parametrize(("env", "says"), [
    ({"STRIPE_SECRET_KEY": "sk_test_wrong"}, "Stripe rejected STRIPE_SECRET_KEY"),
    ({"SANITY_API_TOKEN": "sanity-read-sandbox"}, 'lacks permission "create"'),
    ({"STRIPE_API_BASE": "http://127.0.0.1:9"}, "no Stripe account could be read"),
    ({"SANITY_PROJECT_ID": ""}, "SANITY_PROJECT_ID is not set"),
], ids=["wrong-stripe-key", "read-only-sanity-token", "stripe-unreachable", "missing-setting"])
def test_cannot_run_is_exit_2_with_one_line_and_no_write(
    world: Sandbox, env: dict[str, str], says: str
) -> None:
    before = world.docs()
    done = world.run("run", *world.window_args, **env)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("reconcile:")]
    assert len(lines) == 1 and says in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert world.docs() == before


def test_ctrl_c_mid_read_exits_130_with_one_line_and_writes_nothing(world: Sandbox) -> None:
    before = world.docs()
    world.stripe.controls.set_latency(0.05)
    proc = subprocess.Popen(world.command("run", *world.window_args, "--json"), cwd=world.root,
                            env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while len(world.stripe.controls.log()) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never reached Stripe"
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before Ctrl-C"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    world.stripe.controls.set_latency(0)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if line.startswith("reconcile:")]
    assert len(said) == 1 and "interrupted" in said[0]
    report = json.loads(out)  # the report of what was done is still whole on stdout
    assert report["error"] == "interrupted before writing; nothing written"
    assert world.docs() == before  # stopped while reading: nothing was written
    runs = json.loads(world.run("status", "--json").stdout)["runs"]
    assert runs[0]["status"] == "interrupted"
