"""`reconcile audit`: every existing subscription checked for anomalies; a report, no writes.

Sanity is read in pages (`_id > $last`, ordered by `_id`, 1000 a page, drafts included), so the
dataset can be any size; Stripe gives the refunds of the `--since` window (default 90 days) of
the platform and every school's account. The rules are pure (`jobs.core.anomalies`). Exit 1 when
anything is found or an account's refunds could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from jobs.config.settings import Settings
from jobs.config.timewindow import parse_duration, parse_instant
from jobs.core.anomalies import KINDS, Finding, audit, explain
from jobs.core.catalog import catalog_from
from jobs.core.errors import ConfigError, CredentialsRejected, ReconcilerError
from jobs.run.reconcile import accounts_to_read

log = structlog.get_logger("jobs.audit")

JSON = dict[str, Any]
PAGE = 1000
DEFAULT_SINCE = timedelta(days=90)


class AuditSanity(Protocol):
    """What the audit reads of Sanity: the catalog, then the subscriptions page by page."""

    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def subscription_page(self, after: str, size: int) -> list[dict[str, Any]]: ...


class AuditStripe(Protocol):
    """What the audit reads of Stripe: each account's refunds (per payment intent)."""

    def refunded(self, account: str, since: int) -> dict[str, int]: ...


def subscription_pages(sanity: AuditSanity, size: int = PAGE) -> Iterator[list[JSON]]:
    """Every subscription (drafts included), one page per query, resumed after the last id."""
    last = ""
    while True:
        page = sanity.subscription_page(last, size)
        if not page:
            return
        yield page
        last = str(page[-1]["_id"])
        if len(page) < size:
            return


def since_of(text: str | None, now: datetime) -> datetime:
    """`--since`: a duration back from now (`90d`) or an ISO 8601 time; default 90 days."""
    if text is None:
        return now - DEFAULT_SINCE
    if text.strip()[:1].isdigit() and "-" not in text:
        return now - parse_duration(text, name="--since")
    since = parse_instant(text, name="--since")
    if since >= now:
        raise ConfigError("--since: must lie in the past")
    return since


def run_audit(stripe: AuditStripe, sanity: AuditSanity, *, now: datetime, since: datetime,
              page_size: int = PAGE) -> JSON:
    """Read everything, apply the rules, return the report (JSON-ready)."""
    catalog = catalog_from(*sanity.load_catalog())
    refunded: dict[str, int] = {}
    accounts: list[JSON] = []
    for account in accounts_to_read(catalog, None):
        error = None
        try:
            for pi, amount in stripe.refunded(account, int(since.timestamp())).items():
                refunded[pi] = refunded.get(pi, 0) + amount
        except CredentialsRejected:
            raise
        except ReconcilerError as failure:
            error = str(failure)
            log.warning("audit_refunds_failed", account=account, error=error)
        accounts.append({"account": account, "error": error})
    subs: list[JSON] = []
    pages = 0
    for page in subscription_pages(sanity, page_size):
        subs += page
        pages += 1
    findings = audit(subs, catalog, refunded, int(now.timestamp() * 1000))
    counts = Counter(f.kind for f in findings)
    return {
        "checked_at": now.astimezone(UTC).isoformat(),
        "refunds_since": since.astimezone(UTC).isoformat(),
        "subscriptions": len(subs), "pages": pages, "accounts": accounts,
        "counts": {k: counts.get(k, 0) for k in KINDS},
        "findings": [asdict(f) for f in findings],
    }


def exit_code(report: Mapping[str, Any]) -> int:
    return 1 if report["findings"] or any(a["error"] for a in report["accounts"]) else 0


def render_text(report: Mapping[str, Any]) -> str:
    lines = [f"reconcile audit: {report['subscriptions']} subscriptions checked "
             f"({report['pages']} page(s)); refunds since {report['refunds_since']}", ""]
    lines += [f"! refunds of {a['account']} could not be read: {a['error']}"
              for a in report["accounts"] if a["error"]]
    findings: Sequence[JSON] = report["findings"]
    if not findings:
        lines.append("Nothing found.")
    for kind in KINDS:
        mine = [f for f in findings if f["kind"] == kind]
        if not mine:
            continue
        words = explain(kind)
        lines += [f"{kind}: {words.title} ({len(mine)})", f"  What it means: {words.meaning}",
                  f"  What to do: {words.fix}"]
        for f in mine:
            session = f" [session {f['session_id']}]" if f["session_id"] else ""
            lines.append(f"  - {', '.join(f['subscription_ids'])}{session}: {f['detail']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.run.compose import build_services

    settings.require("stripe", "sanity")
    now = datetime.now(UTC)
    since = since_of(getattr(args, "since", None), now)
    services = build_services(settings)
    report = run_audit(services.stripe, services.sanity, now=now, since=since)
    if args.json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return exit_code(report)


__all__ = ["Finding", "cmd_audit", "run_audit", "subscription_pages"]
