"""Prometheus metrics: one registry per process, built by the composition root (never the global).

Counters are this process's (runs by kind and status, purchases by outcome and reason,
subscriptions created, Stripe and Sanity responses and their 429s); the ledger's state (last
success, purchases needing a person, pending payments, watermark lag per account) is read into
a snapshot after each run and served from it, so a scrape never touches the ledger.

The daemon serves `/metrics` on a loopback address; `reconcile run` (cron) writes the
node_exporter textfile-collector file, atomically, carrying the counters of the previous file
forward so they keep counting across runs as Prometheus expects of a counter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
    write_to_textfile,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from jobs.core.records import PendingSession, RunRecord, SessionOutcome, Watermark
from jobs.core.runreport import RunReport

log = structlog.get_logger("jobs.metrics")

SERVICES = ("stripe", "sanity")


class MetricsLedger(Protocol):
    """What the snapshot reads from the ledger."""

    def last_success(self) -> RunRecord | None: ...
    def consecutive_failures(self) -> int: ...
    def open_manual(self) -> list[SessionOutcome]: ...
    def pending_rows(self) -> list[PendingSession]: ...
    def watermarks(self) -> list[Watermark]: ...


class Outcome(Protocol):
    """What is read of a `jobs.run.service.RunOutcome`."""

    report: RunReport | None
    skipped: bool
    status: str


@dataclass(frozen=True)
class LedgerSnapshot:
    last_success: float | None = None  # unix seconds
    failed_in_a_row: int = 0
    needs_manual_open: int = 0
    pending: int = 0
    watermarks: tuple[tuple[str, float], ...] = ()  # (account, unix seconds), quick passes


def purchase_outcomes(report: RunReport) -> Iterator[tuple[str, str, int]]:
    """(outcome, reason, count) of one run report: every purchase it read, once."""
    yield "created", "", len(report.created)
    yield "already_present", "", report.counts.get("already_present", 0)
    for key, decisions in (("needs_manual", report.needs_manual), ("pending", report.pending)):
        by_reason: dict[str, int] = {}
        for d in decisions:
            reason = d.reason or "unknown"
            by_reason[reason] = by_reason.get(reason, 0) + 1
        yield from ((key, reason, n) for reason, n in sorted(by_reason.items()))
    failed: dict[str, int] = {}
    for d in report.failed:
        error = d.detail.lower()
        reason = ("malformed_session" if error.startswith("malformed session")
                  else "not_written" if error.startswith("not written") else "write_failed")
        failed[reason] = failed.get(reason, 0) + 1
    yield from (("failed", reason, n) for reason, n in sorted(failed.items()))
    for kind, n in sorted(report.ignored.items()):
        yield "ignored", kind, n


class _LedgerCollector(Collector):
    """Serves the latest ledger snapshot; the lag is worked out at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        snap, now = self._metrics.snapshot, self._metrics.clock()
        yield GaugeMetricFamily("reconciler_last_success_timestamp_seconds",
                                "When the last real run that ended ok finished (0: never)",
                                value=snap.last_success or 0.0)
        yield GaugeMetricFamily("reconciler_failed_runs_in_a_row",
                                "Latest real runs in a row that failed or were interrupted",
                                value=snap.failed_in_a_row)
        yield GaugeMetricFamily("reconciler_needs_manual_open",
                                "Purchases whose latest outcome is needs_manual",
                                value=snap.needs_manual_open)
        yield GaugeMetricFamily("reconciler_pending_payments",
                                "Delayed payments still pending", value=snap.pending)
        lag = GaugeMetricFamily("reconciler_watermark_lag_seconds",
                                "How far behind now each account is reconciled (quick passes)",
                                labels=["account"])
        mark = GaugeMetricFamily("reconciler_watermark_timestamp_seconds",
                                 "Each account is reconciled up to this time (quick passes)",
                                 labels=["account"])
        for account, until in snap.watermarks:
            lag.add_metric([account], max(0.0, now - until))
            mark.add_metric([account], until)
        yield lag
        yield mark


class Metrics:
    """The process's metrics and their registry."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # No `*_created` timestamp series: they say when this process started counting, which
        # the textfile (carried across cron runs) would get wrong, and a `..._created_created`
        # next to `subscriptions_created` reads as nonsense.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("reconciler_runs", "Runs by kind and how they ended",
                            ["kind", "status"], registry=r)
        self.purchases = Counter("reconciler_purchases",
                                 "Pass purchases read, by outcome and reason",
                                 ["outcome", "reason"], registry=r)
        self.created = Counter("reconciler_subscriptions_created",
                               "Subscriptions the job created in Sanity", registry=r)
        self.requests = Counter("reconciler_http_requests",
                                "HTTP responses from Stripe and Sanity", ["service"], registry=r)
        self.rate_limited = Counter("reconciler_http_rate_limited",
                                    "429 (rate limited) responses from Stripe and Sanity",
                                    ["service"], registry=r)
        self.duration = Gauge("reconciler_run_duration_seconds",
                              "How long the latest run of each kind took", ["kind"], registry=r)
        for service in SERVICES:  # present from the start, so rate() sees the first request
            self.requests.labels(service)
            self.rate_limited.labels(service)
        self.snapshot = LedgerSnapshot()
        r.register(_LedgerCollector(self))

    # ---- what feeds them ---------------------------------------------------------------

    def response_hook(self, service: str) -> Callable[..., None]:
        """A `requests` response hook counting `service`'s responses and 429s."""
        requests, limited = self.requests.labels(service), self.rate_limited.labels(service)

        def hook(response: Any, *_args: Any, **_kwargs: Any) -> None:
            requests.inc()
            if getattr(response, "status_code", None) == 429:
                limited.inc()

        return hook

    def observe_run(self, kind: str, outcome: Outcome | None, seconds: float) -> None:
        """One run's counters; `outcome` None is a run that raised (it failed)."""
        if outcome is None:
            self.runs.labels(kind, "failed").inc()
            self.duration.labels(kind).set(seconds)
            return
        report = outcome.report
        dry = report is not None and report.dry_run
        self.runs.labels(kind, "dry_run" if dry else outcome.status).inc()
        if outcome.skipped or dry:
            return
        self.duration.labels(kind).set(seconds)
        if report is None:
            return
        for what, reason, count in purchase_outcomes(report):
            if count:
                self.purchases.labels(what, reason).inc(count)
        self.created.inc(len(report.created))

    def refresh(self, ledger: MetricsLedger) -> None:
        """Read the ledger's state into the snapshot the scrapes serve."""
        success = ledger.last_success()
        ended = success.finished_at if success is not None else None
        self.snapshot = LedgerSnapshot(
            last_success=ended.timestamp() if ended is not None else None,
            failed_in_a_row=ledger.consecutive_failures(),
            needs_manual_open=len(ledger.open_manual()),
            pending=len(ledger.pending_rows()),
            watermarks=tuple((w.account, w.until.timestamp()) for w in ledger.watermarks()
                             if w.kind == "quick"))

    def timed(self, kind: str, run: Callable[[], Any], ledger: MetricsLedger) -> Any:
        """Run `run()` (returning a RunOutcome), count it, refresh the snapshot; never fails
        the run for a metrics problem."""
        started = time.monotonic()
        outcome = None
        try:
            outcome = run()
            return outcome
        finally:
            try:
                self.observe_run(kind, outcome, time.monotonic() - started)
                self.refresh(ledger)
            except Exception as error:  # metrics must never change a run's result
                log.warning("metrics_not_updated", error=type(error).__name__)

    # ---- where they go -----------------------------------------------------------------

    def carry_over(self, path: Path) -> None:
        """Add the counters of the previous textfile to ours (cron: one process per run)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as error:
            log.warning("metrics_textfile_unreadable", path=str(path), error=error.strerror)
            return
        counters = {"reconciler_runs": self.runs, "reconciler_purchases": self.purchases,
                    "reconciler_subscriptions_created": self.created,
                    "reconciler_http_requests": self.requests,
                    "reconciler_http_rate_limited": self.rate_limited}
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError:
            log.warning("metrics_textfile_unparsable", path=str(path))
            return
        for family in families:
            if family.name == "reconciler_run_duration_seconds":
                for sample in family.samples:  # the other kinds' latest; this run's is set later
                    self.duration.labels(**sample.labels).set(sample.value)
                continue
            counter = counters.get(family.name)
            if counter is None or family.type != "counter":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value > 0:
                    target = counter.labels(**sample.labels) if sample.labels else counter
                    target.inc(sample.value)

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve `/metrics` on `host:port` (loopback, checked by the setting) in a thread;
        returns the function that stops it."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics_serving", address=f"{host}:{server.server_port}")

        def stop() -> None:
            server.shutdown()
            server.server_close()

        return stop

    def write_textfile(self, path: Path) -> bool:
        """Write the node_exporter textfile (a temp file renamed over it); False if it failed."""
        try:
            write_to_textfile(str(path), self.registry)
        except OSError as error:
            log.warning("metrics_textfile_not_written", path=str(path), error=error.strerror)
            return False
        return True


def measure_cron_run(metrics: Metrics | None, textfile: Path | None, kind: str,
                     run: Callable[[], Any], ledger: MetricsLedger) -> Any:
    """`reconcile run`: count the run and write the textfile after it (also when it raised)."""
    if metrics is None:
        return run()
    if textfile is not None:
        metrics.carry_over(textfile)
    try:
        return metrics.timed(kind, run, ledger)
    finally:
        if textfile is not None:
            metrics.write_textfile(textfile)
