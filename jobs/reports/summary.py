"""Pure: the run report as a short summary for a person at a terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.core.reasons import explain_reason

MAX_ROWS = 20


def _money(amount: Any, currency: Any) -> str:
    if amount is None:
        return "-"
    return f"{amount:g} {str(currency or '').upper()}".strip()


def render_run_summary(report: Mapping[str, Any]) -> str:
    counts = report.get("counts", {})
    window = report.get("window", {})
    dry = bool(report.get("dry_run"))
    head = "DRY RUN - nothing written. " if dry else ""

    def row(label: str, key: str) -> str:
        return f"  {label:<20}{counts.get(key, 0):>7}"

    lines = [
        f"{head}Run {report.get('run_id')}  window {window.get('since')} .. {window.get('until')}",
        "",
        row("sessions scanned", "sessions_scanned"),
        row("pass purchases", "pass_purchases"),
        row("already present", "already_present"),
        row("would create" if dry else "repaired (created)", "created"),
        row("needs a person", "needs_manual"),
        row("pending payment", "pending"),
        row("failed", "failed"),
        row("ignored", "ignored") + "  "
        + ", ".join(f"{k} {v}" for k, v in (report.get("ignored") or {}).items()),
    ]
    errors = [a for a in report.get("accounts", []) if a.get("error")]
    if report.get("error"):
        lines += ["", f"! {report['error']}"]
    if errors:
        lines += ["", "Accounts that could not be read:"]
        lines += [f"  {a['account']}: {a['error']}" for a in errors]
    manual = report.get("needs_manual") or []
    if manual:
        lines += ["", "Needs a person (what to do for each: docs/runbook.md):"]
        for item in manual[:MAX_ROWS]:
            money = _money(item.get("amount"), item.get("currency"))
            words = explain_reason(item.get("reason"))
            # No e-mail here: cron appends this summary to a log file (the report has it).
            lines.append(f"  {item['session_id']}  {money}")
            lines.append(f"      {words.title} ({item.get('reason')}): {item.get('detail', '')}")
        if len(manual) > MAX_ROWS:
            lines.append(f"  ... and {len(manual) - MAX_ROWS} more (see the report file)")
    failed = report.get("failed") or []
    if failed:
        lines += ["", "Failed:"]
        lines += [f"  {f.get('session_id') or '?'}  {f.get('error')}" for f in failed[:MAX_ROWS]]
        if len(failed) > MAX_ROWS:
            lines.append(f"  ... and {len(failed) - MAX_ROWS} more")
    created = report.get("created") or []
    if created:
        lines += ["", "Would create:" if dry else "Repaired:"]
        for item in created[:MAX_ROWS]:
            name = item.get("pass_name") or item.get("pass_id")
            money = _money(item.get("amount"), item.get("currency"))
            lines.append(f"  {item['subscription_id']}  {name}  {money}")
        if len(created) > MAX_ROWS:
            lines.append(f"  ... and {len(created) - MAX_ROWS} more")
    anomalies = report.get("anomalies") or []
    if anomalies:
        kinds: dict[str, int] = {}
        for a in anomalies:
            kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
        lines += ["", "Anomalies (reported, not changed): "
                  + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))]
    return "\n".join(lines) + "\n"
