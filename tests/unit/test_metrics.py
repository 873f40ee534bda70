"""The metrics' pure parts: purchases by outcome and reason, the snapshot, the carry-over."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobs.adapters.metrics import Metrics, purchase_outcomes
from jobs.core.model import Decision
from jobs.core.records import Watermark
from jobs.core.runreport import RunReport
from tests.support import reports


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def a_report(dry_run: bool = False) -> RunReport:
    paid = "2024-05-06T09:00:00Z"
    return reports.run_report("r1", since=paid, until=paid, dry_run=dry_run, decisions=[
        reports.created("a", paid), reports.created("b", paid),
        *(reports.present(f"p{n}", paid) for n in range(40)),
        reports.manual("m1", "user_unknown"), reports.manual("m2", "user_unknown"),
        reports.manual("m3", "pass_not_found"), reports.pending("w"),
        reports.failed("", "malformed session: no id"), reports.failed("f", "HTTP 500"),
        reports.failed("g", "not written: safety cap exceeded"),
        *(Decision(f"i{n}", "platform", "ignored", reason="not_a_pass") for n in range(7)),
        Decision("r", "platform", "ignored", reason="refunded")])


REPORT = a_report()


def test_every_purchase_of_a_report_is_counted_once_by_outcome_and_reason() -> None:
    found = {(o, r): n for o, r, n in purchase_outcomes(REPORT)}
    assert found == {
        ("created", ""): 2, ("already_present", ""): 40,
        ("needs_manual", "pass_not_found"): 1, ("needs_manual", "user_unknown"): 2,
        ("pending", "async_payment"): 1,
        ("failed", "malformed_session"): 1, ("failed", "not_written"): 1,
        ("failed", "write_failed"): 1,
        ("ignored", "not_a_pass"): 7, ("ignored", "refunded"): 1}


def outcome(status: str, report: RunReport | None, skipped: bool = False) -> Any:
    return SimpleNamespace(status=status, report=report, skipped=skipped)


def test_runs_are_counted_by_kind_and_status_and_dry_runs_count_no_purchases() -> None:
    m = Metrics()
    m.observe_run("quick", outcome("partial", REPORT), 3.5)
    m.observe_run("quick", outcome("ok", a_report(dry_run=True)), 1.0)
    m.observe_run("quick", outcome("skipped", None, skipped=True), 0.0)
    m.observe_run("deep", None, 2.0)  # raised
    got = samples(m)
    assert got[("reconciler_runs_total", (("kind", "quick"), ("status", "partial")))] == 1
    assert got[("reconciler_runs_total", (("kind", "quick"), ("status", "dry_run")))] == 1
    assert got[("reconciler_runs_total", (("kind", "quick"), ("status", "skipped")))] == 1
    assert got[("reconciler_runs_total", (("kind", "deep"), ("status", "failed")))] == 1
    assert got[("reconciler_subscriptions_created_total", ())] == 2  # not the dry run's
    assert got[("reconciler_purchases_total",
                (("outcome", "needs_manual"), ("reason", "user_unknown")))] == 2
    assert got[("reconciler_run_duration_seconds", (("kind", "quick"),))] == 3.5


class FakeLedger:
    def last_success(self) -> Any:
        return SimpleNamespace(finished_at=datetime.fromtimestamp(1_000, UTC))

    def consecutive_failures(self) -> int:
        return 2

    def open_manual(self) -> list[Any]:
        return [object()] * 3

    def pending_rows(self) -> list[Any]:
        return [object()]

    def watermarks(self) -> list[Watermark]:
        at = datetime.fromtimestamp(1_000, UTC)
        return [Watermark("acct_A", "quick", datetime.fromtimestamp(900, UTC), "r", at),
                Watermark("acct_A", "deep", datetime.fromtimestamp(500, UTC), "r", at)]


def test_the_ledger_snapshot_is_served_with_the_lag_worked_out_at_scrape_time() -> None:
    now = [1_000.0]
    m = Metrics(clock=lambda: now[0])
    m.refresh(FakeLedger())
    assert samples(m)[("reconciler_watermark_lag_seconds", (("account", "acct_A"),))] == 100
    now[0] = 1_060.0
    got = samples(m)
    assert got[("reconciler_watermark_lag_seconds", (("account", "acct_A"),))] == 160
    assert got[("reconciler_last_success_timestamp_seconds", ())] == 1_000
    assert got[("reconciler_needs_manual_open", ())] == 3
    assert got[("reconciler_pending_payments", ())] == 1
    assert got[("reconciler_failed_runs_in_a_row", ())] == 2


def test_a_cron_run_adds_the_previous_files_counters_to_its_own(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.prom"
    first = Metrics()
    first.observe_run("run", outcome("ok", REPORT), 1.0)
    first.response_hook("stripe")(SimpleNamespace(status_code=429))
    assert first.write_textfile(path)
    second = Metrics()
    second.carry_over(path)
    second.observe_run("run", outcome("ok", REPORT), 2.0)
    second.response_hook("stripe")(SimpleNamespace(status_code=200))
    got = samples(second)
    assert got[("reconciler_runs_total", (("kind", "run"), ("status", "ok")))] == 2
    assert got[("reconciler_subscriptions_created_total", ())] == 4
    assert got[("reconciler_http_requests_total", (("service", "stripe"),))] == 2
    assert got[("reconciler_http_rate_limited_total", (("service", "stripe"),))] == 1
    assert got[("reconciler_run_duration_seconds", (("kind", "run"),))] == 2.0


def test_an_unreadable_or_missing_textfile_starts_from_zero(tmp_path: Path) -> None:
    (tmp_path / "bad.prom").write_text("reconciler_runs_total{kind= 1\n")
    for name in ("bad.prom", "missing.prom"):
        m = Metrics()
        m.carry_over(tmp_path / name)
        assert ("reconciler_runs_total", (("kind", "run"), ("status", "ok"))) not in samples(m)
    assert Metrics().write_textfile(tmp_path / "no-such-dir" / "x.prom") is False
