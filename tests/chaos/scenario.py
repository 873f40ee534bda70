"""One chaos scenario: faults queued, a run, the faults cleared, a clean run; every invariant
checked after each run."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.chaos.boxes import ChaosBox, InProcess, RunResult
from tests.chaos.faults import Fault, apply, clear
from tests.chaos.invariants import (
    ledger_invariants,
    report_honesty,
    settled_invariants,
    write_invariants,
)
from tests.chaos.tally import Tally


@dataclass
class ScenarioResult:
    problems: list[str] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # what the job asked to sleep, in order


def check_run(box: ChaosBox, before: dict, result: RunResult, *, settled: bool) -> list[str]:
    """Every invariant that must hold right after `result` (and, if settled, the end state)."""
    assert box.world is not None
    after = result.docs_after
    problems = write_invariants(box.world, box.truth, before, after)
    problems += report_honesty(box.world, box.truth, result.report, after)
    problems += ledger_invariants(box.ledger_rows("runs"), box.ledger_rows("sessions"), after,
                                  settled=settled)
    if settled:
        problems += settled_invariants(box.world, box.truth, before, after)
    return problems


def run_scenario(box: ChaosBox, schedule: Sequence[Fault], tally: Tally, *,
                 page_size: int = 100, cancel_after_s: float | None = None,
                 sanity_latency_ms: float = 0) -> ScenarioResult:
    """Faults (and optionally a slow Sanity and a SIGTERM-like cancel after
    `cancel_after_s`), then a clean run; all checks after each."""
    box.reset()
    before = box.docs()
    apply(box, schedule)
    box.sanity.set_latency(sanity_latency_ms)
    out = ScenarioResult()
    # Waits are recorded, not slept: no test sleeps for real.
    runner = InProcess(box, page_size=page_size, sleep=out.waits.append)
    cancel = threading.Event()
    timer = None
    if cancel_after_s is not None:
        timer = threading.Timer(cancel_after_s, cancel.set)
        timer.start()
    try:
        first = runner.run(cancel=cancel)
    finally:
        if timer is not None:
            timer.cancel()
    out.runs.append(first)
    problems = [f"faulty run: {p}" for p in check_run(box, before, first, settled=False)]
    if first.error is None and first.outcome is not None and first.outcome.status == "ok":
        # An 'ok' run claims the window is complete: nothing of the truth may be missing.
        problems += [f"faulty run 'ok': {p}"
                     for p in settled_invariants(box.world, box.truth, before,  # type: ignore[arg-type]
                                                 first.docs_after)]
    clear(box)
    box.sanity.set_latency(0)
    second = runner.run()
    out.runs.append(second)
    problems += [f"clean rerun: {p}" for p in check_run(box, before, second, settled=True)]
    if second.error is not None:
        problems.append(f"clean rerun raised {second.error!r}")
    elif second.report and second.report.get("failed"):
        problems.append(f"clean rerun failed sessions: {second.report['failed'][:3]}")
    status = first.outcome.status if first.outcome else f"raised {type(first.error).__name__}"
    tally.scenario([f.label for f in schedule] + (["cancel"] if cancel_after_s else []))
    tally.note_status(status)
    tally.ran(2)
    tally.checked(problems)
    out.problems = problems
    return out
