"""End-to-end harness: a generated world in both stand-ins, the real CLI in a subprocess.

`Sandbox.run(...)` runs `python -m jobs run …` exactly as cron would, with the environment
pointing at the stand-ins, and `check_against_truth` compares Sanity and the report with the
world's ground truth, field by field.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.job_env import job_env
from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import StripeStandIn
from sandbox.world.generate import generate, write_world

ROOT = Path(__file__).resolve().parents[2]
STRIPE_KEY = "sk_test_sandbox"
# Markers the job adds that the world's truth cannot know in advance.
RUN_FIELDS = ("recoveredAt", "reconcileRunId", "createdViaRecovery", "_rev", "_createdAt",
              "_updatedAt")


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Sandbox:
    root: Path
    truth: dict[str, Any]
    stripe: StripeStandIn
    sanity: SanityStandIn
    state_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def window_args(self) -> list[str]:
        w = self.truth["window"]
        return ["--since", iso(w["since"]), "--until", iso(w["until"])]

    def env(self, **overrides: str) -> dict[str, str]:
        return job_env(stripe_url=self.stripe.url, stripe_key=STRIPE_KEY,
                       sanity_url=self.sanity.url, sanity_token=self.sanity.write_token,
                       state_dir=self.state_dir, **{
                           "RECONCILER_MAX_CREATES": "100000",
                           "RECONCILER_STRIPE_RATE_SHARE": "1",
                           **self.extra_env, **overrides})

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "jobs", *args]

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.root, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def run_report(self, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
        """`reconcile run` over the world's window with --json: (exit code, report, stderr)."""
        done = self.run("run", *self.window_args, "--json", *args, **env)
        report = json.loads(done.stdout) if done.stdout.strip() else {}
        return done.returncode, report, done.stderr

    def docs(self) -> dict[str, dict[str, Any]]:
        return {d["_id"]: d for d in self.sanity.dump()}


def start_sandbox(tmp: Path, sanity: SanityStandIn, *, seed: int = 11, sessions: int = 1200,
                  **world: Any) -> Sandbox:
    now = world.pop("now", int(time.time()) // 60 * 60)
    files = write_world(generate(seed, sessions=sessions, now=now, **world), tmp / "world")
    truth = json.loads(files["truth"].read_text())
    sanity.load_ndjson(files["sanity"].read_text())
    stripe = StripeStandIn(files["stripe"], now=lambda: float(truth["now_unix"])).start()
    return Sandbox(ROOT, truth, stripe, sanity, tmp / "state")


def comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in RUN_FIELDS}


def expected_changes(truth: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Documents the job must create (by id), and ids it must deactivate."""
    creates: dict[str, dict[str, Any]] = {}
    deactivated: set[str] = set()
    for entry in truth["sessions"].values():
        if entry["outcome"] != "created":
            continue
        creates[entry["expected"]["_id"]] = entry["expected"]
        if entry.get("expected_user"):
            creates[entry["expected_user"]["_id"]] = entry["expected_user"]
        if entry.get("deactivates"):
            deactivated.add(entry["deactivates"])
    return creates, deactivated


def state_problems(truth: Mapping[str, Any], before: Mapping[str, dict[str, Any]],
                   after: Mapping[str, dict[str, Any]]) -> list[str]:
    """Every way Sanity differs from what the truth says it must be after a correct run."""
    creates, deactivated = expected_changes(truth)
    problems: list[str] = []
    new_ids = set(after) - set(before)
    for extra in sorted(new_ids - set(creates)):
        problems.append(f"unexpected new document {extra}")
    for doc_id, expected in creates.items():
        got = after.get(doc_id)
        if got is None:
            if doc_id in before:
                continue  # a student who already existed
            problems.append(f"missing {doc_id}")
            continue
        if doc_id in before:
            continue
        for key, value in comparable(expected).items():
            if got.get(key) != value:
                problems.append(f"{doc_id}.{key}: {got.get(key)!r} != expected {value!r}")
        for key in set(comparable(got)) - set(expected):
            if expected.get("_type") == "subscription":
                problems.append(f"{doc_id}: unexpected field {key}={got[key]!r}")
    for doc_id in deactivated:
        if after.get(doc_id, {}).get("isActive") is not False:
            problems.append(f"{doc_id} was not deactivated")
    for doc_id, doc in before.items():
        if doc_id in deactivated:
            continue
        if comparable(after.get(doc_id, {})) != comparable(doc):
            problems.append(f"{doc_id} changed or vanished")
    return problems


def report_problems(truth: Mapping[str, Any], report: Mapping[str, Any]) -> list[str]:
    """The report's lists against the truth (sessions never listed with status=complete
    are left out: the job asks Stripe for complete sessions only)."""
    sessions = {sid: e for sid, e in truth["sessions"].items() if e["reason"] != "not_complete"}
    problems: list[str] = []

    def ids(kind: str) -> set[str]:
        return {s for s, e in sessions.items() if e["outcome"] == kind}

    listed_created = {c["session_id"] for c in report.get("created", [])}
    if listed_created != ids("created"):
        problems.append(f"created: {sorted(listed_created ^ ids('created'))[:5]}")
    manual = {m["session_id"]: m["reason"] for m in report.get("needs_manual", [])}
    want_manual = {s: e["reason"] for s, e in sessions.items() if e["outcome"] == "needs_manual"}
    if manual != want_manual:
        diff = {s: (manual.get(s), want_manual.get(s))
                for s in set(manual) | set(want_manual) if manual.get(s) != want_manual.get(s)}
        problems.append(f"needs_manual: {diff}")
    pending = {p["session_id"] for p in report.get("pending", [])}
    if pending != ids("pending"):
        problems.append(f"pending: {sorted(pending ^ ids('pending'))[:5]}")
    ignored = Counter(e["reason"] for e in sessions.values() if e["outcome"] == "ignored")
    if dict(ignored) != report.get("ignored"):
        problems.append(f"ignored: {report.get('ignored')} != {dict(ignored)}")
    counts = report.get("counts", {})
    if counts.get("already_present") != len(ids("already_present")):
        problems.append(f"already_present: {counts.get('already_present')} != "
                        f"{len(ids('already_present'))}")
    if report.get("failed"):
        problems.append(f"failed: {report['failed'][:3]}")
    got_anomalies = Counter((a["kind"], a["session_id"]) for a in report.get("anomalies", []))
    want_anomalies = Counter((k, s) for s, e in sessions.items() for k in e.get("anomalies", []))
    if set(got_anomalies) != set(want_anomalies):
        problems.append(f"anomalies: {sorted(set(got_anomalies) ^ set(want_anomalies))[:6]}")
    return problems
