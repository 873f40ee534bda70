"""Command line: parse arguments, run one command, map errors to exit codes.

Exit codes for every command: 0 all good; 1 done, but something needs a person; 2 could not
run (bad configuration, rejected credentials, service unreachable). This is the only module
that decides an exit code from an exception.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from jobs import __version__
from jobs.adapters.logs import configure_logging
from jobs.commands.help import describe
from jobs.config.settings import Settings, load_settings
from jobs.config.timewindow import parse_window
from jobs.core.errors import ConfigError, ReconcilerError
from jobs.run.memory import tune_malloc

log = structlog.get_logger("jobs.cli")

Handler = Callable[[argparse.Namespace, Settings], int]


def _count(text: str) -> int:
    """A whole number, 0 or more (argparse reports a bad one as a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a value given before the command from being reset by the sub-parser.
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help="TOML settings file (or RECONCILER_CONFIG)")
    parser.add_argument("--env-file", type=Path, default=argparse.SUPPRESS,
                        help="read secrets and settings from this .env file")
    parser.add_argument("--log-format", choices=("auto", "json", "console"),
                        default=argparse.SUPPRESS, help="log lines on stderr (default: auto)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        default=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile",
        description="Make sure every paid class pass has its Sanity subscription.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="one reconciliation pass, then exit (cron mode)")
    _common(run)
    span = run.add_mutually_exclusive_group()
    span.add_argument("--window", help="how far back, e.g. 2h or 3d (until now - grace)")
    span.add_argument("--since", help="ISO 8601 start of the window")
    span.add_argument("--deep", action="store_true",
                      help="the deep pass: the deep window (default 3d) plus pending payments")
    run.add_argument("--until", help="ISO 8601 end of the window (with --since)")
    run.add_argument("--account", action="append", metavar="ACCT",
                     help="only this account (repeatable; 'platform' is the platform account)")
    run.add_argument("--dry-run", action="store_true", help="plan and report, write nothing")
    run.add_argument("--validate", action="store_true",
                     help="with --dry-run: have Sanity validate the planned transactions")
    run.add_argument("--json", action="store_true", help="the run report as JSON on stdout")
    run.add_argument("--report-file", type=Path, help="also write the run report JSON here")
    run.add_argument("--max-creates", type=_count, metavar="N",
                     help="safety cap for this run (default from settings, 50)")

    daemon = commands.add_parser("daemon", help="long-running scheduler: quick, deep, weekly")
    _common(daemon)

    report = commands.add_parser("report", help="the weekly ops report from the ledger")
    _common(report)
    report.add_argument("--weekly", action="store_true", required=True)
    report.add_argument("--week-of", help="any date in the week (default: last full week)")
    report.add_argument("--send", action="store_true", help="e-mail it")
    report.add_argument("--out", type=Path, metavar="DIR",
                        help="write report.html, report.txt, report.json here")
    report.add_argument("--json", action="store_true",
                        help="the report's JSON on stdout (other messages go to stderr)")

    diagnose = commands.add_parser("diagnose", help="one person or purchase, end to end")
    _common(diagnose)
    who = diagnose.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--session", metavar="CS_ID")
    who.add_argument("--user", metavar="CLERK_ID")
    diagnose.add_argument("--fix", action="store_true", help="apply the plan for these purchases")
    diagnose.add_argument("--dry-run", action="store_true")
    diagnose.add_argument("--max-creates", type=_count, metavar="N")
    diagnose.add_argument("--json", action="store_true")

    doctor = commands.add_parser("doctor", help="preflight: keys, accounts, webhooks, mail")
    _common(doctor)
    doctor.add_argument("--json", action="store_true")

    status = commands.add_parser("status", help="last runs, watermarks, pending sessions")
    _common(status)
    status.add_argument("--json", action="store_true")
    status.add_argument("--check", action="store_true",
                        help="one line and an exit code for a probe: 0 healthy, 1 no recent "
                             "success, failing runs or a stuck account, 2 ledger unreadable")

    audit = commands.add_parser("audit", help="check every existing subscription for anomalies")
    _common(audit)
    audit.add_argument("--json", action="store_true")
    audit.add_argument("--since", metavar="WHEN",
                       help="refunds from this far back: a duration (90d) or ISO 8601 time "
                            "(default 90d)")
    return describe(parser)


def _settings(args: argparse.Namespace) -> Settings:
    config = getattr(args, "config", None)
    env_file = getattr(args, "env_file", None)
    return load_settings(os.environ, config_path=config, env_file=env_file)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)


def _stop_on_signals(event: threading.Event) -> list[int]:
    """SIGTERM and SIGINT set `event`; the list returned collects the signals received."""
    received: list[int] = []

    # Only set the event: writing a log line from a signal handler can collide with a write
    # already under way on the same stream.
    def handler(signum: int, _frame: Any) -> None:
        received.append(signum)
        event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return received


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.adapters.logs import no_color
    from jobs.adapters.metrics import measure_cron_run
    from jobs.reports.summary import render_run_summary
    from jobs.run.compose import (
        build_metrics,
        build_services,
        notifier,
        open_ledger,
        run_lock,
        student_mail,
    )
    from jobs.run.progress import progress_for
    from jobs.run.service import RunOptions, RunOutcome, execute_run

    if args.until and not args.since:
        raise ConfigError("--until needs --since")
    if args.validate and not args.dry_run:
        raise ConfigError("--validate goes with --dry-run")
    settings.require("stripe", "sanity")
    now = datetime.now(UTC)
    window = None
    if args.window or args.since:
        window = parse_window(now=now, window=args.window, since=args.since, until=args.until,
                              grace=settings.run.grace)
    metrics = build_metrics(settings)
    services = build_services(settings, metrics)
    cancel = threading.Event()
    signals = _stop_on_signals(cancel)
    heartbeat = services.heartbeat
    kind = "deep" if args.deep else "run"
    with open_ledger(settings) as ledger:
        def run() -> RunOutcome:
            return execute_run(
                settings, services.stripe, services.sanity, ledger,
                run_lock(settings),
                RunOptions(kind=kind, window=window,
                           accounts=tuple(args.account or ()) or None, dry_run=args.dry_run,
                           validate=args.validate, max_creates=args.max_creates),
                cancel=cancel, notify=notifier(settings),
                on_start=None if args.dry_run else heartbeat.start,
                students=student_mail(settings, ledger, services.sanity, dry_run=args.dry_run),
                progress=progress_for(sys.stderr, json_logs=_json_logs(args, settings),
                                      color=not no_color()))

        try:
            outcome: RunOutcome = measure_cron_run(metrics, settings.metrics.textfile, kind,
                                                   run, ledger)
        except ReconcilerError:
            heartbeat.fail()  # cron has no daemon to notice: the monitor hears it now
            raise
    if not outcome.skipped and not args.dry_run:
        (heartbeat.success if outcome.status == "ok" else heartbeat.fail)()
    if outcome.status == "failed" and outcome.report is not None:
        errors = [a.error for a in outcome.report.accounts.values() if a.error]
        print(f"reconcile: no Stripe account could be read: {errors[0] if errors else '?'}",
              file=sys.stderr)
    printed = outcome.to_json()
    if printed is not None:
        if args.report_file:
            _write_json(args.report_file, printed)
        if args.json:
            sys.stdout.write(json.dumps(printed, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(render_run_summary(printed))
    if outcome.status == "interrupted" and signal.SIGINT in signals:
        print("reconcile: interrupted; the transaction under way was finished, nothing more "
              "was written", file=sys.stderr)
        return INTERRUPTED
    return outcome.exit_code


def _json_logs(args: argparse.Namespace, settings: Settings) -> bool | None:
    fmt = getattr(args, "log_format", None) or settings.log.format
    return None if fmt == "auto" else fmt == "json"


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.commands.status import render_status_text, status_view
    from jobs.run.compose import open_ledger, run_lock

    if args.check:
        return _status_check(settings)
    with open_ledger(settings) as ledger:
        view = status_view(ledger, run_lock(settings), datetime.now(UTC))
        if settings.database.postgresql:
            from jobs.run.compose import leader_of

            view["leader"] = leader_of(settings)
    if args.json:
        sys.stdout.write(json.dumps(view, default=str, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_status_text(view))
    return 0


def _status_check(settings: Settings) -> int:
    import sqlite3

    from jobs.commands.health import check_health
    from jobs.run.compose import open_ledger

    try:
        with open_ledger(settings) as ledger:
            health = check_health(ledger, settings.alerts, settings.run.grace, datetime.now(UTC))
    except sqlite3.Error as error:  # a damaged file: could not check, not "unhealthy"
        raise ConfigError(f"the ledger in {settings.run.state_dir} cannot be read: "
                          f"{error}") from error
    sys.stdout.write(health.line + "\n")
    return health.exit_code


def _lazy(module: str, name: str) -> Handler:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        import importlib

        fn: Handler = getattr(importlib.import_module(module), name)
        return fn(args, settings)

    return handler


COMMANDS: dict[str, Handler] = {
    "run": cmd_run,
    "status": cmd_status,
    "daemon": _lazy("jobs.commands.daemon", "cmd_daemon"),
    "report": _lazy("jobs.commands.report", "cmd_report"),
    "diagnose": _lazy("jobs.commands.diagnose", "cmd_diagnose"),
    "doctor": _lazy("jobs.commands.doctor", "cmd_doctor"),
    "audit": _lazy("jobs.commands.audit", "cmd_audit"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()  # before any thread starts: arenas are made per thread
    def as_json(fmt: str | None) -> bool | None:
        return None if fmt in (None, "auto") else fmt == "json"

    try:
        configure_logging(json=as_json(getattr(args, "log_format", None)),
                          level=getattr(args, "log_level", "info"))
        settings = _settings(args)
        configure_logging(json=as_json(getattr(args, "log_format", None) or settings.log.format),
                          level=getattr(args, "log_level", None) or settings.log.level,
                          secrets=settings.secret_values())
        return COMMANDS[args.command](args, settings)
    except ReconcilerError as error:
        # An expected failure: one line naming the cause, no traceback.
        print(f"reconcile: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("reconcile: interrupted", file=sys.stderr)
        return INTERRUPTED
