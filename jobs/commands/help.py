"""The words of `reconcile --help`: what each command is for, examples, the exit codes.

Kept apart from `jobs.cli` (which parses and dispatches) so the help can grow without the parser
growing. `describe(parser)` runs once the parser is built: it gives every sub-command its
description, examples and the exit codes, and any option still without help the common wording
for it (`--json`, `--dry-run`, ...), so a new option cannot ship undocumented silently (a test
walks every option).
"""

from __future__ import annotations

import argparse

EXIT_CODES = """\
exit codes:
  0    all good (also: a run that found another run holding the lock)
  1    done, but something needs a person (see the summary or the report)
  2    could not run: bad or missing setting, credentials rejected, service unreachable
  130  interrupted by Ctrl-C (the transaction under way is finished, nothing more is written)

Durations take s, m, h and d and combine them: 90s, 10m, 1h30m, 2d12h, or plain seconds.
NO_COLOR=1 turns off colour in log lines and progress bars."""

COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "run": (
        "One reconciliation pass, then exit (the cron mode). Without a window option each "
        "account is read from its watermark minus the overlap up to now minus the grace. On a "
        "terminal a progress bar per account shows pages, sessions, rate and time left; off a "
        "terminal a `run_progress` log line every 10 s does.",
        ("reconcile run",
         "reconcile run --window 1h30m --dry-run",
         "reconcile run --deep",
         "reconcile run --since 2026-08-01 --until 2026-08-08 --account acct_1Abc --json"),
    ),
    "daemon": (
        "The long-running scheduler: a quick pass every few minutes, a deep pass every hour "
        "and the weekly report, until SIGTERM (exit 0) or Ctrl-C (exit 130).",
        ("reconcile daemon --env-file /etc/pass-reconciler/env",),
    ),
    "report": (
        "The weekly ops report, built from the run ledger: figures, the purchases that need "
        "you, what the job created, anomalies, run health. Printed as text unless --json, "
        "--out or --send says otherwise.",
        ("reconcile report --weekly",
         "reconcile report --weekly --json > week.json",
         "reconcile report --weekly --week-of 2026-08-03 --out ./report",
         "reconcile report --weekly --send"),
    ),
    "diagnose": (
        "One person or purchase, end to end: what Stripe holds, what Sanity holds, what the job "
        "would do. Writes nothing without --fix.",
        ("reconcile diagnose --email kari@example.com",
         "reconcile diagnose --session cs_live_a1B2c3 --fix --dry-run",
         "reconcile diagnose --user user_2abc --json"),
    ),
    "doctor": (
        "Preflight checks: the Stripe key and accounts, the Sanity token, the webhook endpoints "
        "and deliveries, the mail settings. Exit 1 when a check fails.",
        ("reconcile doctor", "reconcile doctor --json"),
    ),
    "status": (
        "The last runs, the watermark of every account, pending payments and reports kept "
        "unsent, from the ledger (no service is called).",
        ("reconcile status", "reconcile status --json"),
    ),
    "audit": (
        "Check every existing subscription against its payment: duplicates, wrong type or "
        "school, refunded but active, shapes the app cannot show. Changes nothing.",
        ("reconcile audit", "reconcile audit --since 30d --json"),
    ),
}

# Wording for options that several commands share, used where an option has no help of its own.
OPTION_HELP = {
    "--json": "print the result as JSON on stdout (log lines stay on stderr)",
    "--dry-run": "plan and report, write nothing",
    "--max-creates": "safety cap on subscriptions created (default from settings, 50)",
    "--log-level": "least important log lines shown (default: info)",
    "--weekly": "the weekly report (the only report there is)",
    "--email": "the buyer's e-mail address (searches every account)",
    "--session": "a Checkout Session id (cs_live_... or cs_test_...)",
    "--user": "the student's Clerk user id (reads the last 90 days of every account)",
}


def describe(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give `parser` and its sub-commands their descriptions, examples, exit codes and help."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("commands:\n" + "\n".join(
        f"  reconcile {name} --help" for name in COMMANDS) + "\n\n" + EXIT_CODES)
    _fill_options(parser)
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            text, examples = COMMANDS.get(name, ("", ()))
            sub.formatter_class = argparse.RawDescriptionHelpFormatter
            sub.description = sub.description or text
            lines = "\n".join(f"  {example}" for example in examples)
            sub.epilog = (f"examples:\n{lines}\n\n" if lines else "") + EXIT_CODES
            _fill_options(sub)
    return parser


def _fill_options(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.help is None and action.option_strings:
            action.help = OPTION_HELP.get(action.option_strings[-1])
