"""Chaos: generated worlds and fault schedules on Stripe, Sanity and SMTP; kills, races and
concurrent runs. After every run: no doubles, nothing written that must not be, no half-applied
transaction, a ledger that agrees with Sanity and honest statuses; after the runs settle,
exactly the world's ground truth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from sandbox.sanity_server import SanityStandIn
from tests.chaos.boxes import ChaosBox, open_box
from tests.chaos.faults import Fault, schedules
from tests.chaos.scenario import run_scenario
from tests.chaos.tally import Tally

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
