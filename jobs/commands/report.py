"""`reconcile report --weekly`, and the daemon's weekly job: build, write, send."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import structlog

from jobs.adapters.ledger import Ledger
from jobs.adapters.mailer import send_weekly
from jobs.adapters.notice_ledger import NoticeBook
from jobs.config.settings import Settings
from jobs.core.errors import ConfigError
from jobs.reports.render import render_weekly, report_json, write_weekly
from jobs.reports.weekly_ledger import build_weekly
from jobs.reports.weekly_rows import WeeklyReport
from jobs.reports.weekly_students import student_emails
from jobs.reports.weeks import last_complete_week, monday_of, week_bounds

log = structlog.get_logger("jobs.weekly_cmd")


def _webhook_facts(settings: Settings, now: datetime) -> tuple[Any, dict[str, str] | None]:
    """Webhook health and school names, when Stripe and Sanity are configured; best effort:
    the report is about the ledger and must not fail because a service is slow today."""
    if settings.missing("stripe") or settings.missing("sanity"):
        return None, None
    try:
        from jobs.commands.doctor import webhook_health
        from jobs.run.compose import build_services

        services = build_services(settings)
        tenants, _ = services.sanity.load_catalog()
        names = {t["_id"]: t["schoolName"] for t in tenants
                 if isinstance(t.get("schoolName"), str)}
        return webhook_health(services.stripe, services.sanity, now), names
    except Exception as error:  # reported in the log; the report goes on without it
        log.warning("webhook_health_unavailable", error=str(error).splitlines()[0])
        return None, None


def build_from_settings(settings: Settings, ledger: Ledger, week_of: date | None,
                        now: datetime) -> WeeklyReport:
    tz = settings.schedule.timezone
    week_start = monday_of(week_of) if week_of else last_complete_week(now, tz)
    health, names = _webhook_facts(settings, now)
    key_mode = settings.stripe.key_mode if settings.stripe.secret_key else "test"
    report = build_weekly(ledger, week_start, now, tz=tz,
                          dashboard_base=settings.stripe.dashboard_url, key_mode=key_mode,
                          webhook_health=health, tenant_names=names)
    start, end = week_bounds(week_start, tz)
    told = student_emails(NoticeBook(ledger), start, end, names)
    if settings.notify.students or told.told or told.not_delivered:
        report = replace(report, students=told)
    return report


def send_weekly_from_settings(settings: Settings, ledger: Ledger) -> None:
    """The daemon's weekly job: last complete week, e-mailed (kept in the state dir if not)."""
    settings.require("smtp")
    report = build_from_settings(settings, ledger, None, datetime.now(UTC))
    result = send_weekly(report, settings.smtp, ledger)
    log.info("weekly_report", week=report.label, sent=result.sent, error=result.error)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    week_of = None
    if args.week_of:
        try:
            week_of = date.fromisoformat(args.week_of)
        except ValueError:
            raise ConfigError(f"--week-of: {args.week_of!r} is not a date (YYYY-MM-DD)") from None
    if args.send:
        settings.require("smtp")
    from jobs.run.compose import open_ledger

    as_json = getattr(args, "json", False)
    # With --json stdout carries the JSON alone; what else there is to say goes to stderr.
    say = sys.stderr if as_json else sys.stdout
    with open_ledger(settings) as ledger:
        report = build_from_settings(settings, ledger, week_of, datetime.now(UTC))
        code = 1 if report.needs_you else 0
        if as_json:
            sys.stdout.write(report_json(report))
        if args.out:
            for kind, path in write_weekly(report, args.out).items():
                print(f"{kind:<5} {path}", file=say)
        if args.send:
            result = send_weekly(report, settings.smtp, ledger)
            if not result.sent or result.refused:
                print(f"reconcile: the report was not sent to everyone: {result.error}; kept at "
                      f"{result.kept}", file=sys.stderr)
                return max(code, result.exit_code)
            print(f"sent {report.label} to {len(settings.smtp.report_to)} recipient(s)",
                  file=say)
        if not args.out and not args.send and not as_json:
            sys.stdout.write(render_weekly(report).text)
    return code
