"""Immediate alerts: which ones a run (or the lack of runs) calls for, and sending each once.

`evaluate` is pure: a run report (or None), what the ledger says about recent runs, the
thresholds and the time in; a list of `Alert`s out, each with a stable de-duplication key.
`deliver` sends, in one e-mail, the alerts the ledger has not recorded as sent, and records
every attempt (an unsent alert is tried again next time; a sent key is never sent twice).

Keys: `needs_manual:<session>`, `write_failed:<session>`, `missing_spike:<hour>`, `cap_hit:<day>`
(UTC, of the run's window end: a webhook outage or a backlog over the cap persists across the
5-minute passes, and one alert an hour / a day says it without flooding the inbox),
`failed_runs:<first failed run of the streak>` (`failed_runs:long:<last success>` once a streak
outlasts the runs read, as one reminder), `no_success:<last successful run | never>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from jobs.config.settings import AlertSettings
from jobs.core.model import Decision
from jobs.core.reasons import CAP_HIT, explain_failure, explain_reason
from jobs.core.records import RunRecord, to_epoch
from jobs.core.runreport import RunReport
from jobs.reports.render import duration, money, render_alerts
from jobs.reports.weekly import Links

log = structlog.get_logger("jobs.alerts")

# Most urgent first: the e-mail lists alerts in this order.
KINDS = ("missing_spike", "cap_hit", "failed_runs", "no_success", "write_failed", "needs_manual")
RUNS_READ = 200  # how many recent runs the failure streak is judged over


@dataclass(frozen=True)
class Alert:
    """One thing a person should know now. `key` is stable: the same fact gives the same key."""

    key: str
    kind: str
    title: str
    meaning: str
    fix: str
    facts: tuple[tuple[str, str], ...] = ()  # (label, value) lines shown in the e-mail
    link: str | None = None  # the payment in the Stripe dashboard, when there is one


class AlertLedger(Protocol):
    """What `evaluate` reads from the ledger."""

    def recent_runs(self, limit: int = 10) -> list[RunRecord]: ...
    def last_success(self) -> RunRecord | None: ...


class AlertRecords(Protocol):
    """What `deliver` reads and writes in the ledger."""

    def alert_sent(self, key: str) -> bool: ...
    def record_alert(self, key: str, kind: str, sent: bool, detail: str | None = None) -> None: ...


# ---- evaluate (pure) ---------------------------------------------------------------------


def _when(value: Any, tz: ZoneInfo) -> str:
    try:
        epoch = to_epoch(value)
    except ValueError:
        return str(value)
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).astimezone(tz).strftime("%a %d %b %Y %H:%M %Z")


def _link(links: Links | None, d: Decision) -> str | None:
    if links is None or not d.session_id:
        return None
    return links.payment(d.account, d.session_id)


def _window(report: RunReport, tz: ZoneInfo) -> str:
    return f"{_when(report.since, tz)} – {_when(report.until, tz)}"


def _missing_count(report: RunReport) -> int:
    """Subscriptions a run found missing: created (or would create) plus planned but unwritten."""
    unwritten = sum(1 for f in report.failed
                    if not f.detail.lower().startswith("malformed session"))
    return len(report.created) + unwritten


def report_alerts(report: RunReport, thresholds: AlertSettings, tz: ZoneInfo,
                  links: Links | None) -> list[Alert]:
    """Alerts one real run report calls for (a dry run's reader sees its output already)."""
    if report.dry_run:
        return []
    run_id = report.run_id
    # The window's end (UTC), not the run: an hour's or a day's runs share one key.
    window_end = report.until or run_id
    out: list[Alert] = []
    missing = _missing_count(report)
    if missing >= thresholds.missing_spike:
        out.append(Alert(
            key=f"missing_spike:{window_end[:13]}", kind="missing_spike",
            title=f"The webhook looks broken now: {missing} paid passes had no subscription",
            meaning=(f"One run found {missing} paid pass purchases without their subscription "
                     f"(the alert threshold is {thresholds.missing_spike}). The app's webhook "
                     "normally creates them within seconds, so it is probably failing now."),
            fix=("Run `reconcile doctor` to check the webhook endpoints and undelivered events, "
                 "and look at the app's webhook log. The job keeps repairing purchases meanwhile."),
            facts=(("Run", run_id), ("Window", _window(report, tz))),
        ))
    if report.cap_exceeded:
        out.append(Alert(
            key=f"cap_hit:{window_end[:10]}", kind="cap_hit",
            title="The safety cap stopped a run",
            meaning=CAP_HIT.meaning + (f" Reported: {report.error}." if report.error else ""),
            fix=CAP_HIT.fix, facts=(("Run", run_id),),
        ))
    for failed in report.failed:
        error = failed.detail
        words = explain_failure(error)
        if error.lower().startswith("not written:"):
            continue  # cap hit or interrupted: the run-level alert (or the streak) says it
        session_id = failed.session_id or "?"
        out.append(Alert(
            key=f"write_failed:{session_id}", kind="write_failed", title=words.title,
            meaning=words.meaning, fix=words.fix,
            facts=(("Session", session_id), ("Account", failed.account or "—"),
                   ("Error", error or "—")),
            link=_link(links, failed),
        ))
    for manual in report.needs_manual:
        words = explain_reason(manual.reason)
        session_id = manual.session_id or "?"
        facts = [("Student", manual.email or "no e-mail"),
                 ("School", manual.tenant or "unknown"),
                 ("Pass", manual.pass_name or manual.pass_id or "unknown"),
                 ("Amount", money(manual.amount, manual.currency)),
                 ("Paid", _when(manual.paid_at, tz)),
                 ("Session", session_id)]
        if manual.detail:
            facts.append(("Detail", manual.detail))
        out.append(Alert(
            key=f"needs_manual:{session_id}", kind="needs_manual",
            title=f"A purchase needs you: {words.title.lower()}" if words.title else
            "A purchase needs you",
            meaning=words.meaning, fix=words.fix, facts=tuple(facts),
            link=_link(links, manual),
        ))
    return out


def failure_streak(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """The latest real finished runs in a row that failed or were interrupted, newest first."""
    streak: list[RunRecord] = []
    for run in runs:
        if run.dry_run or run.status == "running":
            continue
        if run.status not in ("failed", "interrupted"):
            break
        streak.append(run)
    return streak


def run_alerts(ledger: AlertLedger, thresholds: AlertSettings, now: datetime,
               tz: ZoneInfo) -> list[Alert]:
    """Alerts about the runs themselves: a failure streak, a long time without success."""
    out: list[Alert] = []
    runs = ledger.recent_runs(RUNS_READ)
    last_success = ledger.last_success()
    streak = failure_streak(runs)
    real = [r for r in runs if not r.dry_run and r.status != "running"]
    if thresholds.failed_runs > 0 and len(streak) >= thresholds.failed_runs:
        whole_window = len(streak) == len(real) and len(runs) >= RUNS_READ
        key = (f"failed_runs:long:{last_success.run_id if last_success else 'never'}"
               if whole_window else f"failed_runs:{streak[-1].run_id}")
        latest = streak[0]
        out.append(Alert(
            key=key, kind="failed_runs",
            title=f"The last {len(streak)}{'+' if whole_window else ''} runs failed",
            meaning=("Runs keep failing, so missing subscriptions are not being repaired. "
                     f"Latest error: {latest.error or latest.status}."),
            fix=("Read the error. `reconcile doctor` checks keys, tokens and that Stripe and "
                 "Sanity answer; `reconcile status` shows the runs."),
            facts=(("Latest failed run", latest.run_id),
                   ("Started", _when(latest.started_at, tz)),
                   ("Last success", _when(last_success.finished_at, tz)
                    if last_success and last_success.finished_at else "never")),
        ))
    limit = thresholds.no_success_for
    if limit > timedelta(0):
        since: datetime | None
        if last_success is not None:
            since, key = last_success.finished_at or last_success.started_at, last_success.run_id
        else:
            since, key = (real[-1].started_at if real else None), "never"
        if since is not None and now - since > limit:
            out.append(Alert(
                key=f"no_success:{key}", kind="no_success",
                title=f"No successful run for {duration((now - since).total_seconds())}",
                meaning=(f"The job has not finished a run without problems for longer than "
                         f"{duration(limit.total_seconds())}, so purchases may be left without "
                         "their pass."),
                fix=("Check that the daemon or cron is running (`reconcile status`), then run "
                     "`reconcile doctor`."),
                facts=(("Last success", _when(since, tz) if key != "never" else "never"),),
            ))
    return out


def evaluate(report: RunReport | None, ledger_view: AlertLedger,
             thresholds: AlertSettings, now: datetime, *, links: Links | None = None,
             tz: ZoneInfo | None = None) -> list[Alert]:
    """Every alert the situation calls for, most urgent first, one per key."""
    zone = tz or ZoneInfo("UTC")
    found = [*(report_alerts(report, thresholds, zone, links) if report is not None else ()),
             *run_alerts(ledger_view, thresholds, now, zone)]
    unique: dict[str, Alert] = {}
    for alert in found:
        unique.setdefault(alert.key, alert)
    return sorted(unique.values(), key=lambda a: KINDS.index(a.kind))


# ---- deliver -----------------------------------------------------------------------------


class AlertMailer(Protocol):
    """What `deliver` needs of `jobs.adapters.mailer.Mailer`."""

    def compose(self, subject: str, text: str, html: str) -> EmailMessage: ...
    def send(self, message: EmailMessage) -> Any: ...  # -> mailer.SendResult


@dataclass(frozen=True)
class Delivery:
    sent: tuple[Alert, ...] = ()
    failed: tuple[Alert, ...] = ()
    already_sent: int = 0
    error: str | None = None


def deliver(alerts: Sequence[Alert], mailer: AlertMailer, ledger: AlertRecords, *,
            tz: ZoneInfo | None = None, key_mode: str | None = None,
            render: Callable[..., Any] = render_alerts) -> Delivery:
    """Send the alerts not sent before in one e-mail and record each attempt in the ledger."""
    todo: dict[str, Alert] = {}
    already = 0
    for alert in alerts:
        if alert.key in todo:
            continue
        if ledger.alert_sent(alert.key):
            already += 1
            continue
        todo[alert.key] = alert
    if not todo:
        return Delivery(already_sent=already)
    batch = tuple(todo.values())
    rendered = render(batch, tz=(tz or ZoneInfo("UTC")).key, key_mode=key_mode)
    result = mailer.send(mailer.compose(rendered.subject, rendered.text, rendered.html))
    delivered = bool(result.sent)
    error = None if delivered else (result.error or "not sent")
    for alert in batch:
        ledger.record_alert(alert.key, alert.kind, delivered, error)
    log.info("alerts_delivered" if delivered else "alerts_not_sent", count=len(batch),
             kinds=sorted({a.kind for a in batch}), error=error)
    if delivered:
        return Delivery(sent=batch, already_sent=already)
    return Delivery(failed=batch, already_sent=already, error=error)
