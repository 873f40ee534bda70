"""A generated world in both stand-ins, runnable in process (fast, no real sleeps) or as the
real CLI in a subprocess (tests.e2e.harness.Sandbox).

In process, the real adapters are built with short timeouts and an injected no-op sleep, and
the run goes through `jobs.run.service.execute_run` with a real ledger and run lock, exactly as
`reconcile run` does, minus argument parsing and the process.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.adapters.ledger import Ledger
from jobs.adapters.lock import RunLock
from jobs.adapters.sanity_store import SanityStore
from jobs.adapters.stripe_client import make_client
from jobs.adapters.stripe_source import StripeSource
from jobs.config.settings import Settings, load_settings
from jobs.config.timewindow import TimeWindow
from jobs.core.errors import ReconcilerError
from jobs.run.service import RunOptions, RunOutcome, execute_run
from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import StripeStandIn
from sandbox.world.generate import World, generate, write_world
from tests.e2e.harness import ROOT, Sandbox, comparable

# Client timeouts in process: short, so that a stand-in delay longer than them is a timeout
# that costs a fraction of a second (the CLI's own are 80 s for Stripe and 30 s for Sanity).
STRIPE_TIMEOUT_S = 0.25
SANITY_TIMEOUT_S = 0.3


@dataclass
class ChaosBox(Sandbox):
    """The e2e Sandbox plus the generated world and what the stand-ins were loaded with."""

    world: World | None = None
    sanity_ndjson: str = ""
    truth_gaps: list[str] = field(default_factory=list)

    def reset(self) -> None:
        """Back to the world as generated: Sanity reloaded, no faults, empty state dir."""
        self.stripe.controls.reset()
        self.sanity.reset()
        self.sanity.load_ndjson(self.sanity_ndjson)
        if self.state_dir.exists():
            for path in sorted(self.state_dir.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()

    def settings(self, **overrides: str) -> Settings:
        return load_settings(self.env(**overrides))

    @property
    def window(self) -> TimeWindow:
        w = self.truth["window"]
        return TimeWindow(datetime.fromtimestamp(w["since"], UTC),
                          datetime.fromtimestamp(w["until"], UTC))

    def ledger_rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of one ledger table (read-only), [] if there is no ledger yet."""
        path = self.state_dir / "ledger.sqlite"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
        finally:
            conn.close()


def open_box(tmp: Path, sanity: SanityStandIn, *, seed: int, sessions: int,
             keys: Mapping[str, Any] | None = None, calibrate: bool = True,
             **world: Any) -> ChaosBox:
    """Generate a world (plus extra Stripe `keys`), load Sanity, start a Stripe stand-in;
    with `calibrate`, the truth is checked against one clean run (see `calibrate`)."""
    now = world.pop("now", int(time.time()) // 60 * 60)
    generated = generate(seed, sessions=sessions, now=now, **world)
    if keys:
        generated.stripe["keys"].update(keys)
    files = write_world(generated, tmp / "world")
    truth = json.loads(files["truth"].read_text())
    ndjson = files["sanity"].read_text()
    sanity.reset()
    sanity.load_ndjson(ndjson)
    stripe = StripeStandIn(files["stripe"], now=lambda: float(truth["now_unix"])).start()
    box = ChaosBox(ROOT, truth, stripe, sanity, tmp / "state", world=generated,
                   sanity_ndjson=ndjson)
    if calibrate:
        box.truth, box.truth_gaps = calibrated_truth(box)
        box.reset()
    return box


def calibrated_truth(box: ChaosBox) -> tuple[dict[str, Any], list[str]]:
    """The truth to hold faulty runs to: the world's, except where one clean run of the job
    decides a session otherwise (those differences are returned, to be reported: deciding
    who is right is the end-to-end suite's job; this suite asks whether faults change what
    a clean run does)."""
    box.reset()
    before = box.docs()
    result = InProcess(box).run()
    report = result.report or {}
    # Purchases found present are not in the report: the run records them in the ledger.
    decided: dict[str, tuple[str, str | None]] = {
        row["session_id"]: ("already_present", None) for row in box.ledger_rows("sessions")
        if row["outcome"] == "already_present" and row["last_run_id"] == report.get("run_id")}
    for key, outcome in (("created", "created"), ("needs_manual", "needs_manual"),
                         ("pending", "pending"), ("failed", "failed")):
        for item in report.get(key) or ():
            decided[item["session_id"]] = (outcome, item.get("reason"))
    truth = copy.deepcopy(box.truth)
    gaps: list[str] = []
    after = result.docs_after
    for sid, entry in truth["sessions"].items():
        if entry["reason"] == "not_complete":
            continue  # never listed: the job asks Stripe for complete sessions only
        outcome, reason = decided.get(sid, ("ignored", None))
        if outcome == entry["outcome"] and (reason is None or reason == entry["reason"]):
            continue
        gaps.append(f"{sid} ({entry.get('scenario')}): truth {entry['outcome']} "
                    f"{entry['reason']}, clean run {outcome} {reason}")
        entry.update(outcome=outcome, reason=reason, expected=None, expected_user=None,
                     deactivates=None, anomalies=[])
        if outcome == "created":
            doc = after[f"subscription-{sid}"]
            entry["expected"] = comparable(doc)
            user = str(doc["user"]["_ref"])
            if user not in before and user in after:
                entry["expected_user"] = comparable(after[user])
            if doc.get("isUpgrade"):
                entry["deactivates"] = doc.get("upgradedFromSubscriptionId")
    return truth, gaps


@dataclass
class RunResult:
    """One in-process run: its outcome, or the error that stopped it (exit 2)."""

    outcome: RunOutcome | None
    error: ReconcilerError | None = None
    docs_after: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def report(self) -> dict[str, Any] | None:
        """The run report as printed: these tests read it as ops do."""
        return self.outcome.to_json() if self.outcome else None

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code if self.outcome else 2


@dataclass
class InProcess:
    """Builds the real adapters against a box's stand-ins and runs `execute_run`."""

    box: ChaosBox
    page_size: int = 100
    workers: int = 4
    stripe_timeout: float = STRIPE_TIMEOUT_S
    sanity_timeout: float = SANITY_TIMEOUT_S
    sleep: Callable[[float], None] = lambda _s: None
    wrap_sanity: Callable[[SanityStore], Any] | None = None

    def stripe_source(self, key: str | None = None) -> StripeSource:
        settings = self.box.settings()
        secret = key or (settings.stripe.secret_key.reveal() if settings.stripe.secret_key
                         else "")
        client = make_client(secret, self.box.stripe.url, self.stripe_timeout)
        return StripeSource(client, sleep=self.sleep, page_size=self.page_size)

    def sanity_store(self) -> SanityStore:
        return SanityStore(self.box.sanity.url, self.box.sanity.dataset,
                           self.box.sanity.write_token, "2025-02-19",
                           timeout=self.sanity_timeout, sleep=self.sleep)

    def run(self, *, dry_run: bool = False, max_creates: int | None = None,
            cancel: threading.Event | None = None, lock: RunLock | None = None) -> RunResult:
        settings = self.box.settings()
        store: Any = self.sanity_store()
        if self.wrap_sanity is not None:
            store = self.wrap_sanity(store)
        options = RunOptions(kind="run", window=self.box.window, dry_run=dry_run,
                             max_creates=max_creates)
        with Ledger.open(settings.run.state_dir) as ledger:
            try:
                outcome = execute_run(settings, self.stripe_source(), store, ledger,
                                      lock or RunLock(settings.run.state_dir), options,
                                      cancel=cancel, workers=self.workers)
            except ReconcilerError as error:
                return RunResult(None, error, self.box.docs())
        return RunResult(outcome, None, self.box.docs())
