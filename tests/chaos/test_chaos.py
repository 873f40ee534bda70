"""Chaos: generated worlds and fault schedules on Stripe, Sanity and SMTP; kills, races and
concurrent runs. After every run: no doubles, nothing written that must not be, no half-applied
transaction, a ledger that agrees with Sanity and honest statuses; after the runs settle,
exactly the world's ground truth."""

from __future__ import annotations

import copy
import io
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.adapters.ledger import Ledger
from jobs.adapters.logs import configure_logging
from jobs.adapters.mailer import Sender, resend_kept, send_weekly, smtp_sender
from jobs.config.settings import SmtpSettings
from jobs.config.values import Secret
from jobs.reports.weekly_ledger import build_weekly
from jobs.reports.weekly_rows import WeeklyReport
from sandbox.sanity_server import SanityStandIn
from tests.chaos.boxes import ChaosBox, InProcess, RunResult, open_box
from tests.chaos.faults import Fault, random_schedule, schedules
from tests.chaos.invariants import (
    ledger_invariants,
    recording,
    session_index,
    settled_invariants,
    write_invariants,
)
from tests.chaos.scenario import run_scenario
from tests.chaos.smtp_chaos import raw_server, scripted_server
from tests.chaos.tally import Tally
from tests.chaos.webhooks import RacingStore, future_webhook, legacy_webhook
from tests.integration.smtp_server import Tls, self_signed
from tests.unit import report_world

# aiosmtpd warns about AUTH without STARTTLS; the SMTP servers here speak implicit TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SEED = 23
SESSIONS = 300


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory,
        sanity_server: SanityStandIn) -> Iterator[ChaosBox]:
    sanity_server.set_query_mode("index")
    chaos = open_box(tmp_path_factory.mktemp("chaos"), sanity_server, seed=SEED,
                     sessions=SESSIONS)
    yield chaos
    chaos.stripe.stop()


@pytest.fixture(autouse=True)
def _note_truth_gaps(box: ChaosBox, tally: Tally) -> None:
    for gap in box.truth_gaps:
        tally.note(f"world truth vs clean run: {gap}")


def accounts(box: ChaosBox) -> list[str]:
    assert box.world is not None
    return [a for a in box.world.stripe["data"] if a != "platform"] + ["platform"]


def test_random_fault_schedules(box: ChaosBox, tally: Tally, soaking: bool) -> None:
    @settings(max_examples=200 if soaking else 8, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(schedule=schedules(accounts(box)))
    def scenario(schedule: list[Fault]) -> None:
        result = run_scenario(box, schedule, tally, page_size=40)
        assert result.problems == [], [str(f) for f in schedule]

    scenario()


LIST = "GET /v1/checkout/sessions"
ITEMS = "GET /v1/checkout/sessions/{session}/line_items"
REFUNDS = "GET /v1/refunds"


def stripe(target: str, kind: str, times: int = 1, account: str | None = None) -> Fault:
    return Fault("stripe", target, kind, times, account)


def sanity(target: str, kind: str, times: int = 1) -> Fault:
    return Fault("sanity", target, kind, times)


# Named schedules: every kind of fault on every service at least once, whatever hypothesis
# draws. The expected status of the faulty run follows from the retry policy (6 attempts).
NAMED: dict[str, tuple[list[Fault], str]] = {
    "stripe 429 without Retry-After": ([stripe(LIST, "429", 3)], "ok"),
    "stripe 429 with Retry-After": ([stripe(LIST, "429_retry_after", 2)], "ok"),
    "stripe 5xx": ([stripe(LIST, "500", 2), stripe(LIST, "503"), stripe(ITEMS, "500"),
                    stripe(REFUNDS, "503")], "ok"),
    "stripe timeouts": ([stripe(LIST, "timeout"), stripe(ITEMS, "timeout")], "ok"),
    "stripe dropped and slow": ([stripe(LIST, "drop", 2), stripe(REFUNDS, "slow", 2)], "ok"),
    "stripe malformed JSON and 409": ([stripe(LIST, "malformed", 2), stripe(ITEMS, "409")],
                                      "ok"),
    # Faults of one kind are consumed by the next requests of that kind in order: at most
    # five in a row, or the 6 attempts of one request are used up.
    "sanity query 429 and 5xx": ([sanity("query", k) for k in
                                  ("429", "429_retry_after", "500", "503")], "ok"),
    "sanity query dropped, malformed, timeout, slow": (
        [sanity("query", k) for k in ("drop", "malformed", "timeout", "slow")], "ok"),
    "sanity write 429 and 5xx": ([sanity("mutate", k) for k in ("429", "500", "503")], "ok"),
    "sanity write dropped, malformed, timeout": (
        [sanity("mutate", k) for k in ("drop", "malformed", "timeout")], "ok"),
    "sanity commit then dropped": ([sanity("mutate", "drop_after", 2)], "ok"),
    # What real Sanity answers a replayed transaction id: the job must find its own commit.
    "sanity commit dropped, replay 409": ([sanity("mutate", "drop_after"),
                                          sanity("mutate", "409")], "ok"),
    "sanity refuses a transaction (409)": ([sanity("mutate", "409")], "ok"),
    # Requests run in parallel, so a fault queue is shared between them: to use up the
    # attempts for sure, every request of the kind fails.
    "stripe retries exhausted": ([stripe(LIST, "503", 100, account="*first*")], "partial"),
    "sanity writes exhausted": ([sanity("mutate", "500", 100)], "partial"),
    "sanity catalog unreachable": ([sanity("query", "500", 7)], "raised ServiceUnavailable"),
}


@pytest.mark.parametrize("name", list(NAMED))
def test_named_fault_schedule(box: ChaosBox, tally: Tally, name: str) -> None:
    schedule, status = NAMED[name]
    first_account = accounts(box)[0]
    schedule = [Fault(f.service, f.target, f.kind, f.times, first_account)
                if f.account == "*first*" else f for f in schedule]
    result = run_scenario(box, schedule, tally, page_size=40)
    assert result.problems == []
    first = result.runs[0]
    got = first.outcome.status if first.outcome else f"raised {type(first.error).__name__}"
    assert got == status, (first.report or {}).get("failed") or first.error
    if "Retry-After" in name and "without" not in name:
        assert 7.0 in result.waits  # the server's Retry-After, not our own backoff
    runs = {r["run_id"]: r for r in box.ledger_rows("runs")}
    assert len(runs) == 2 and {r["status"] for r in runs.values()} <= {"ok", status, "failed"}
    if first.error is not None:
        # Could not run: the ledger says so in one line, and the rerun repaired everything.
        failed = [r for r in runs.values() if r["status"] == "failed"]
        assert len(failed) == 1 and "\n" not in failed[0]["error"]


def test_an_account_given_up_is_named_and_repaired_next_time(box: ChaosBox,
                                                               tally: Tally) -> None:
    account = accounts(box)[0]
    result = run_scenario(box, [stripe(LIST, "500_no_retry", account=account)], tally)
    assert result.problems == []
    first = result.runs[0]
    assert first.exit_code == 1 and first.outcome is not None
    assert first.outcome.status == "partial"
    errors = {a["account"]: a["error"] for a in first.report["accounts"] if a["error"]}
    assert list(errors) == [account] and "\n" not in errors[account]


@pytest.mark.parametrize("after_s", [0.05, 0.3, 0.6])
def test_a_stop_signal_mid_run_writes_nothing_more_and_says_interrupted(
        box: ChaosBox, tally: Tally, after_s: float) -> None:
    # Slow Sanity down so the stop lands while reading, planning or writing.
    result = run_scenario(box, [], tally, page_size=40, cancel_after_s=after_s,
                          sanity_latency_ms=15)
    assert result.problems == []
    first = result.runs[0]
    assert first.outcome is not None
    assert first.outcome.status in ("interrupted", "ok", "partial")
    if first.outcome.status == "interrupted":
        assert first.exit_code == 0


# ----- the webhook writing while the job runs


def missing_purchases(box: ChaosBox) -> list[tuple[str, dict[str, Any]]]:
    """Purchases the job must create (not upgrades), in a stable order."""
    return sorted((sid, e) for sid, e in box.truth["sessions"].items()
                  if e["outcome"] == "created" and not e.get("deactivates"))


def without(box: ChaosBox, sids: set[str], docs: dict[str, dict[str, Any]]
            ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The truth and the documents with the raced purchases (and what records them) left out,
    so every other purchase can be held to the usual invariants."""
    assert box.world is not None
    truth = copy.deepcopy(box.truth)
    index = session_index(box.world)
    drop: set[str] = set()
    users: set[str] = set()
    for sid in sids:
        entry = truth["sessions"].pop(sid)
        drop.update(recording(docs, sid, index[sid][1]))
        if entry.get("expected_user"):
            users.add(entry["expected_user"]["_id"])
    # A new student is left out only if no other purchase of the truth creates them too.
    still = {e["expected_user"]["_id"] for e in truth["sessions"].values()
             if e["outcome"] == "created" and e.get("expected_user")}
    drop |= users - still
    return truth, {k: v for k, v in docs.items() if k not in drop}


def race_checks(box: ChaosBox, before: dict[str, dict[str, Any]], after: dict[str, Any],
                sids: set[str], *, settled: bool) -> list[str]:
    assert box.world is not None
    truth, rest = without(box, sids, after)
    problems = write_invariants(box.world, truth, before, rest)
    problems += ledger_invariants(box.ledger_rows("runs"), box.ledger_rows("sessions"), after,
                                  settled=settled)
    if settled:
        problems += settled_invariants(box.world, truth, before, rest)
    return problems


def pi_of(box: ChaosBox, sid: str) -> str | None:
    assert box.world is not None
    return session_index(box.world)[sid][1]


def race(box: ChaosBox, style: str, *, when: str = "after_lookup"
         ) -> tuple[str, dict[str, dict[str, Any]], RunResult, list[str]]:
    """One run during which the webhook writes the first missing purchase, right after the
    job looked up its page (or, `when="before_lookup"`, right after the catalog load)."""
    box.reset()
    before = box.docs()
    sid, entry = missing_purchases(box)[0]
    writer = InProcess(box).sanity_store()
    written: list[str] = []

    def fire() -> None:
        if written:
            return
        if style == "future":
            future_webhook(writer, entry["expected"])
            written.append(f"subscription-{sid}")
        else:
            written.append(legacy_webhook(writer, entry["expected"]))

    def after_lookup(session_ids: Sequence[str]) -> None:
        if sid in session_ids:
            fire()

    def wrap(store: Any) -> RacingStore:
        if when == "before_lookup":
            return RacingStore(store, after_catalog=fire)
        return RacingStore(store, after_lookup=after_lookup)

    result = InProcess(box, wrap_sanity=wrap).run()
    assert written, "the webhook never fired"
    return sid, before, result, written


def found_present(box: ChaosBox, run: RunResult, sid: str) -> bool:
    """The run recorded the session as already present (the report only counts those)."""
    assert run.report is not None
    rows = [r for r in box.ledger_rows("sessions") if r["session_id"] == sid]
    return bool(rows) and rows[0]["outcome"] == "already_present" and (
        rows[0]["last_run_id"] == run.report["run_id"])


def test_future_webhook_in_the_race_window_makes_no_double(box: ChaosBox, tally: Tally) -> None:
    sid, before, first, written = race(box, "future")
    docs = first.docs_after
    assert recording(docs, sid, pi_of(box, sid)) == written == [f"subscription-{sid}"]
    kept = docs[written[0]]
    assert kept.get("createdViaWebhook") is True and "reconcileRunId" not in kept
    second = InProcess(box).run()
    assert second.report is not None
    assert found_present(box, second, sid)
    assert not [a for a in second.report["anomalies"] if a["session_id"] == sid]
    problems = race_checks(box, before, second.docs_after, {sid}, settled=True)
    tally.scenario(["webhook:future-race"])
    tally.ran(2)
    tally.checked(problems)
    assert problems == []


def test_a_creation_the_webhook_won_is_not_claimed_by_the_job(box: ChaosBox) -> None:
    """Found by this suite: the job reported (and the ledger recorded) as `created` a
    purchase whose document the webhook wrote first; its createIfNotExists did nothing."""
    sid, _, first, _ = race(box, "future")
    assert first.report is not None
    assert sid not in {c["session_id"] for c in first.report["created"]}
    assert found_present(box, first, sid)
    row = [r for r in box.ledger_rows("sessions") if r["session_id"] == sid]
    assert row and row[0]["outcome"] == "already_present"


def test_legacy_webhook_in_the_race_window_is_seen_by_the_recheck(
        box: ChaosBox, tally: Tally) -> None:
    """The legacy webhook's check-then-create with an automatic id cannot see the job's
    deterministic id; a purchase whose webhook lands between the job's look-up and its
    write used to get two subscriptions. The re-check just before each transaction sees
    the webhook's document: one subscription, reported already present, not created."""
    sid, before, first, written = race(box, "legacy")
    assert first.report is not None
    assert recording(first.docs_after, sid, pi_of(box, sid)) == written
    assert sid not in {c["session_id"] for c in first.report["created"]}
    assert found_present(box, first, sid)
    second = InProcess(box).run()
    assert second.report is not None
    assert not [a for a in second.report["anomalies"] if a["session_id"] == sid]
    assert recording(second.docs_after, sid, pi_of(box, sid)) == written
    problems = race_checks(box, before, second.docs_after, {sid}, settled=True)
    tally.scenario(["webhook:legacy-race"])
    tally.ran(2)
    tally.checked(problems)
    assert problems == []


@pytest.mark.parametrize("style", ["future", "legacy"])
def test_a_webhook_that_lands_before_the_lookup_is_seen(box: ChaosBox, tally: Tally,
                                                        style: str) -> None:
    sid, before, first, written = race(box, style, when="before_lookup")
    assert first.report is not None
    assert recording(first.docs_after, sid, pi_of(box, sid)) == written
    assert found_present(box, first, sid)
    problems = race_checks(box, before, first.docs_after, {sid}, settled=False)
    tally.scenario([f"webhook:{style}-before-lookup"])
    tally.ran(1)
    tally.checked(problems)
    assert problems == []


@pytest.mark.parametrize(("style", "seed"), [("future", 1), ("future", 2), ("legacy", 3)])
def test_webhooks_firing_at_random_moments_during_a_run(box: ChaosBox, tally: Tally,
                                                         style: str, seed: int) -> None:
    """A thread plays the webhook for a third of the missing purchases at random moments
    while a slowed-down run goes on. Future webhook: never two. Legacy: two only where it
    lost the race, and exactly those are reported by the next run."""
    rng = random.Random(seed)
    box.reset()
    before = box.docs()
    targets = rng.sample(missing_purchases(box), k=max(3, len(missing_purchases(box)) // 3))
    writer = InProcess(box).sanity_store()
    box.sanity.set_latency(10)
    started = threading.Event()

    def webhook() -> None:
        started.wait(5)
        for _sid, entry in targets:
            time.sleep(rng.uniform(0, 0.08))
            if style == "future":
                future_webhook(writer, entry["expected"])
            else:
                legacy_webhook(writer, entry["expected"])

    def wrap(store: Any) -> RacingStore:
        return RacingStore(store, after_catalog=started.set)

    thread = threading.Thread(target=webhook)
    thread.start()
    try:
        first = InProcess(box, wrap_sanity=wrap).run()
    finally:
        thread.join(10)
        box.sanity.set_latency(0)
    second = InProcess(box).run()
    assert first.report is not None and second.report is not None
    sids = {sid for sid, _ in targets}
    doubled = set()
    for sid in sids:
        found = recording(second.docs_after, sid, pi_of(box, sid))
        if style == "future":
            assert found == [f"subscription-{sid}"], sid
        else:
            assert 1 <= len(found) <= 2, (sid, found)
            if len(found) == 2:
                doubled.add(sid)
    reported = {a["session_id"] for a in second.report["anomalies"]
                if a["kind"] == "duplicate_subscriptions"}
    planted = {sid for sid, e in box.truth["sessions"].items()
               if "duplicate_subscriptions" in e["anomalies"]}
    assert reported - planted == doubled
    if style == "legacy":
        tally.note(f"legacy webhook at random moments (seed {seed}): {len(doubled)} of "
                   f"{len(sids)} purchases doubled, all reported by the next run")
    problems = race_checks(box, before, second.docs_after, sids, settled=True)
    tally.scenario([f"webhook:{style}-random"])
    tally.ran(2)
    tally.checked(problems)
    assert problems == []


# ----- the real CLI: SIGKILL at random points, two runs at once, Stripe's own rate limit


def cli_checks(box: ChaosBox, before: dict[str, dict[str, Any]], *, settled: bool) -> list[str]:
    assert box.world is not None
    after = box.docs()
    problems = write_invariants(box.world, box.truth, before, after)
    problems += ledger_invariants(box.ledger_rows("runs"), box.ledger_rows("sessions"), after,
                                  settled=settled)
    if settled:
        problems += settled_invariants(box.world, box.truth, before, after)
    return problems


def start_cli(box: ChaosBox) -> subprocess.Popen[str]:
    return subprocess.Popen(box.command("run", *box.window_args), cwd=box.root, env=box.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.parametrize("point", ["reading:1", "reading:5", "writing"])
def test_sigkill_then_rerun(box: ChaosBox, tally: Tally, point: str) -> None:
    box.reset()
    before = box.docs()
    if point == "writing":
        # Every transaction takes 1.5 s: the kill lands with some committed, some in flight
        # (they commit after the job is dead) and some never sent.
        for _ in range(40):
            box.sanity.inject_fault("mutate", delay_ms=1500)
    else:
        box.stripe.controls.set_latency(0.1)
        box.sanity.set_latency(10)
    proc = start_cli(box)
    try:
        if point == "writing":
            wait_for(lambda: any(e["kind"] == "mutate" for e in box.sanity.log()))
        else:  # after the n-th Stripe request: a point of the reading, not of the clock
            wait_for(lambda: len(box.stripe.controls.log()) >= int(point.split(":")[1]))
        assert proc.poll() is None, "the run ended before the kill"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
    problems = [f"after kill: {p}" for p in cli_checks(box, before, settled=False)]
    box.stripe.controls.reset()
    box.sanity.reset()
    time.sleep(1.6 if point == "writing" else 0)  # let the dead job's last commits land
    code, report, stderr = box.run_report()
    assert code == 1, stderr  # the world has purchases that need a person
    problems += [f"after rerun: {p}" for p in cli_checks(box, before, settled=True)]
    statuses = [r["status"] for r in sorted(box.ledger_rows("runs"),
                                            key=lambda r: r["started_at"])]
    tally.scenario([f"kill:{point.split(':')[0]}"])
    tally.ran(2)
    tally.checked(problems)
    assert problems == []
    assert statuses == ["interrupted", "ok"], statuses
    assert not report["failed"]


def test_two_runs_at_once_one_skips(box: ChaosBox, tally: Tally) -> None:
    box.reset()
    before = box.docs()
    # Keep the first run busy while the second starts: slow reads, and transactions that
    # take 4 s each, so it holds the lock for seconds whatever the machine's speed.
    box.stripe.controls.set_latency(0.1)
    for _ in range(40):
        box.sanity.inject_fault("mutate", delay_ms=4000)
    first = start_cli(box)
    try:
        wait_for(lambda: bool(box.stripe.controls.log()))
        second = box.run("run", *box.window_args, "--json")
        assert first.poll() is None, "the first run ended before the second finished"
    finally:
        _, stderr = first.communicate(timeout=60)
        box.sanity.clear_faults()
        box.stripe.controls.set_latency(0)
    assert second.returncode == 0 and second.stdout.strip() == "", second.stderr
    assert "run_skipped" in second.stderr and "another run holds the lock" in second.stderr
    assert first.returncode == 1, stderr
    runs = box.ledger_rows("runs")
    assert [r["status"] for r in runs] == ["ok"]  # the skipped run leaves no row
    problems = cli_checks(box, before, settled=True)
    tally.scenario(["concurrent:two-runs"])
    tally.ran(2)
    tally.checked(problems)
    assert problems == []


def test_stripes_own_rate_limit_is_waited_out(box: ChaosBox, tally: Tally) -> None:
    """The stand-in limits every operation to 6 requests/s and answers 429 with Retry-After
    and Stripe-Rate-Limited-Reason beyond it; the job (its budget set to Stripe's whole limit,
    so it does go too fast) waits them out and ends as a clean run does."""
    box.reset()
    before = box.docs()
    box.stripe.controls.set_rate_limit(6)
    try:
        code, report, stderr = box.run_report(RECONCILER_STRIPE_RATE_SHARE="1")
        limited = box.stripe.controls.stats()["rate_limited"]
    finally:
        box.stripe.controls.set_rate_limit(None)
    assert code == 1, stderr
    assert limited > 0 and '"retrying"' in stderr
    assert not report["failed"] and not any(a["error"] for a in report["accounts"])
    problems = cli_checks(box, before, settled=True)
    tally.scenario(["stripe:rate-limited"])
    tally.ran(1)
    tally.checked(problems)
    assert problems == []


# ----- SMTP: the weekly report against servers that refuse, reject, drop or hang

SMTP_USER = "reports"
SMTP_PASSWORD = "smtp-Chaos-pw-7f3a9e"
TO = ("ops@example.com", "owner@example.com")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return self_signed(tmp_path_factory.mktemp("tls"))


def smtp_settings(port: int, *, ssl: bool = True) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, ssl=ssl, starttls=not ssl,
                        username=SMTP_USER, password=Secret(SMTP_PASSWORD),
                        report_from="reconciler@example.com", report_to=TO)


def weekly(state_dir: Path) -> tuple[Ledger, WeeklyReport]:
    ledger = report_world.build(state_dir)
    report = build_weekly(ledger, report_world.WEEK, report_world.REPORT_NOW,
                          tz=report_world.TZ, dashboard_base=report_world.DASHBOARD,
                          key_mode="test")
    return ledger, report


def no_password(*texts: str | bytes | None) -> list[str]:
    return [str(t)[:80] for t in texts if t and (
        SMTP_PASSWORD in (t if isinstance(t, str) else t.decode("utf-8", "replace")))]


def test_smtp_fault_scripts_never_lose_or_double_the_report(
        tls: Tls, tally: Tally, soaking: bool, tmp_path: Path) -> None:
    @settings(max_examples=60 if soaking else 8, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(script=st.lists(st.sampled_from(["defer", "refuse", "reject", "drop"]),
                           max_size=6))
    def scenario(script: list[str]) -> None:
        with tempfile.TemporaryDirectory(dir=tmp_path) as state, \
                scripted_server(script, tls=tls, users={SMTP_USER: SMTP_PASSWORD}) as (
                    port, recorder, _):
            ledger, report = weekly(Path(state))
            smtp = smtp_settings(port)

            def sender() -> Sender:
                return smtp_sender(smtp, ssl_context=tls.client_context(), attempts=3,
                                   sleep=lambda _s: None, timeout=5)

            log = io.StringIO()
            configure_logging(stream=log, json=True, secrets=[SMTP_PASSWORD])
            try:
                result = send_weekly(report, smtp, ledger, sender=sender())
                results = [result]
                for _ in range(len(script) + 1):  # every later attempt meets one fault less
                    if not ledger.unsent_reports():
                        break
                    results += resend_kept(ledger, sender())
            finally:
                structlog.reset_defaults()  # leave logging as other tests expect it
            problems: list[str] = []
            if result.complete != (result.kept is None):
                problems.append(f"complete={result.complete} but kept={result.kept}")
            if not result.complete and result.kept is None:
                problems.append("an undelivered report was not kept")
            if ledger.unsent_reports():
                problems.append(f"still unsent after the server recovered: {recorder.played}")
            delivered = [m.message["Message-ID"] for m in recorder.messages]
            if len(delivered) != 1 or delivered[0] != result.message_id:
                problems.append(f"delivered {delivered}, sent {result.message_id}")
            problems += no_password(log.getvalue(), *(r.error for r in results),
                                    *(k.error for k in ledger.unsent_reports()))
            if any(not r.complete and r.error and "\n" in r.error for r in results):
                problems.append("an error is more than one line")
            tally.scenario([f"smtp:{a}" for a in script] or ["smtp:ok"])
            tally.checked(problems)
            ledger.close()
            assert problems == [], script

    scenario()


@pytest.mark.parametrize("mode", ["close", "hang"])
def test_smtp_server_that_hangs_up_or_never_answers(tls: Tls, tally: Tally, tmp_path: Path,
                                                    mode: str) -> None:
    ledger, report = weekly(tmp_path / "state")
    with raw_server(mode) as port:
        smtp = smtp_settings(port, ssl=False)
        waits: list[float] = []
        result = send_weekly(report, smtp, ledger, sender=smtp_sender(
            smtp, ssl_context=tls.client_context(), attempts=3, sleep=waits.append,
            timeout=0.3))
    assert not result.sent and result.error_kind == "unreachable" and result.exit_code == 2
    assert len(waits) == 2  # retried, never slept for real
    assert result.kept is not None and result.kept.is_file()
    assert [k.path for k in ledger.unsent_reports()] == [result.kept]
    assert result.error is not None and "\n" not in result.error
    assert no_password(result.error, result.kept.read_bytes()) == []
    tally.scenario([f"smtp:{mode}"])
    tally.checked([])
    ledger.close()


def test_a_connection_cut_during_the_tls_handshake_is_retried(tls: Tls, tmp_path: Path) -> None:
    """A dropped connection is transient, also mid-handshake (found by this suite: it was
    taken for a TLS failure, not retried, exit 1)."""
    ledger, report = weekly(tmp_path / "state")
    with raw_server("eof") as port:
        smtp = smtp_settings(port, ssl=True)
        waits: list[float] = []
        result = send_weekly(report, smtp, ledger, sender=smtp_sender(
            smtp, ssl_context=tls.client_context(), attempts=3, sleep=waits.append,
            timeout=2))
    ledger.close()
    assert result.kept is not None  # never lost, today too
    assert len(waits) == 2 and result.error_kind == "unreachable" and result.exit_code == 2


# ----- soak: the same checks, for minutes, on a bigger world (only with --soak)


@pytest.mark.soak
def test_soak_random_faults_kills_and_races(tmp_path_factory: pytest.TempPathFactory,
                                            sanity_server: SanityStandIn, tally: Tally,
                                            soak_minutes: float) -> None:
    """Until the time is up: random fault schedules (random page sizes, sometimes a stop
    signal), and every fifth round a SIGKILL of the CLI at a random moment, every seventh
    a legacy or future webhook firing at random moments. Invariants after every run."""
    rng = random.Random(int(time.time()))
    deadline = time.monotonic() + soak_minutes * 60
    problems: list[str] = []
    rounds = 0
    seed = SEED
    big = open_box(tmp_path_factory.mktemp("soak"), sanity_server, seed=seed, sessions=2000)
    try:
        while time.monotonic() < deadline:
            rounds += 1
            schedule = random_schedule(rng, accounts(big))
            cancel = rng.uniform(0.05, 1.5) if rng.random() < 0.1 else None
            result = run_scenario(big, schedule, tally, page_size=rng.choice([10, 37, 100]),
                                  cancel_after_s=cancel, sanity_latency_ms=5 if cancel else 0)
            problems += [f"round {rounds} {[str(f) for f in schedule]}: {p}"
                         for p in result.problems]
            if rounds % 5 == 0:
                problems += [f"round {rounds} kill: {p}" for p in soak_kill(big, rng, tally)]
            if rounds % 7 == 0:
                problems += [f"round {rounds} race: {p}" for p in soak_race(big, rng, tally)]
    finally:
        big.stripe.stop()
    tally.note(f"soak: {rounds} rounds on a 2000-session world in {soak_minutes:g} min, "
               f"{len(problems)} problems")
    assert problems == []


def soak_kill(box: ChaosBox, rng: random.Random, tally: Tally) -> list[str]:
    box.reset()
    before = box.docs()
    box.stripe.controls.set_latency(rng.choice([0.0, 0.01, 0.03]))
    box.sanity.set_latency(rng.choice([0, 5, 20]))
    proc = start_cli(box)
    try:
        wait_for(lambda: bool(box.stripe.controls.log()))
        time.sleep(rng.uniform(0, 3))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
    problems = cli_checks(box, before, settled=False)
    box.stripe.controls.reset()
    box.sanity.reset()
    code, _, stderr = box.run_report()
    if code not in (0, 1):
        problems.append(f"rerun exit {code}: {stderr.strip().splitlines()[-1:]}")
    problems += cli_checks(box, before, settled=True)
    tally.scenario(["kill:random"])
    tally.ran(2)
    tally.checked(problems)
    return problems


def soak_race(box: ChaosBox, rng: random.Random, tally: Tally) -> list[str]:
    style = rng.choice(["future", "legacy"])
    box.reset()
    before = box.docs()
    missing = missing_purchases(box)
    targets = rng.sample(missing, k=max(1, len(missing) // 4))
    writer = InProcess(box).sanity_store()
    started = threading.Event()

    def webhook() -> None:
        started.wait(5)
        for _sid, entry in targets:
            time.sleep(rng.uniform(0, 0.05))
            (future_webhook if style == "future" else legacy_webhook)(writer, entry["expected"])

    thread = threading.Thread(target=webhook)
    thread.start()
    try:
        InProcess(box, wrap_sanity=lambda s: RacingStore(s, after_catalog=started.set)).run()
    finally:
        thread.join(30)
    second = InProcess(box).run()
    sids = {sid for sid, _ in targets}
    problems = []
    reported = {a["session_id"] for a in (second.report or {}).get("anomalies", [])
                if a["kind"] == "duplicate_subscriptions"}
    for sid in sids:
        found = recording(second.docs_after, sid, pi_of(box, sid))
        if (style == "future" and len(found) != 1) or not 1 <= len(found) <= 2 or (
                len(found) == 2 and sid not in reported):
            problems.append(f"{style} webhook race left {found} for {sid}")
    problems += race_checks(box, before, second.docs_after, sids, settled=True)
    tally.scenario([f"webhook:{style}-soak"])
    tally.ran(2)
    tally.checked(problems)
    return problems


@pytest.mark.soak
def test_soak_a_sanity_answer_slower_than_the_clis_timeout(box: ChaosBox, tally: Tally) -> None:
    """The CLI's own Sanity timeout (30 s, no setting shortens it): one query answered after
    31 s times out, is retried, and the run ends as a clean one."""
    box.reset()
    before = box.docs()
    box.sanity.inject_fault("query", delay_ms=31_000)
    started = time.monotonic()
    code, report, stderr = box.run_report(timeout=300)
    assert time.monotonic() - started > 30
    assert code == 1 and not report["failed"], stderr
    assert "timed out" in stderr
    problems = cli_checks(box, before, settled=True)
    tally.scenario(["sanity:cli-timeout"])
    tally.ran(1)
    tally.checked(problems)
    assert problems == []
