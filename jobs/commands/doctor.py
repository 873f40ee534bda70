"""`reconcile doctor`: preflight of keys, accounts, Sanity rights, webhooks and mail.

Two halves. Here, `gather_webhooks` and `run_checks` fetch (Stripe, Sanity, SMTP via
`jobs.commands.doctor_smtp`; every failure caught and kept as data); the checks in
`jobs.commands.doctor_checks`
are pure: facts in, `Check(name, status, detail)` out. `cmd_doctor` prints them as a table or
JSON. Exit 0 when no check fails (warnings are shown, not counted), 1 when something needs
fixing, 2 when the job could not run at all (missing setting, key or token rejected, Sanity
unreachable). `webhook_health` gives the weekly report the webhook part.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from jobs.adapters.logs import Scrubber
from jobs.commands.doctor_checks import (
    COMPLETED,
    DELIVERY_DAYS,
    SIGNATURE_FAILED,
    WEBHOOK_LOG_DAYS,
    Check,
    Probe,
    SmtpProbe,
    check_account,
    check_connect,
    check_dataset_mode,
    check_deliveries,
    check_endpoints,
    check_heartbeat,
    check_key_mode,
    check_sanity,
    check_settings,
    check_smtp,
    check_webhook_log,
    exit_code,
)
from jobs.commands.doctor_smtp import probe_smtp
from jobs.config.settings import Settings, SmtpSettings
from jobs.core.errors import CredentialsRejected, ReconcilerError, ServiceUnavailable
from jobs.core.model import PLATFORM
from jobs.core.ports import SessionPage

JSON = dict[str, Any]

LOGGED_SAMPLE = 500


# ---- fetching ---------------------------------------------------------------------------


def attempt(fn: Callable[[], Any]) -> Probe:
    """Run one fetch; an expected failure becomes data, so one problem never hides the rest."""
    try:
        return Probe(fn())
    except (CredentialsRejected, ServiceUnavailable) as error:
        return Probe(error=str(error), fatal=True)
    except ReconcilerError as error:
        return Probe(error=str(error))


def session_ids(probe: Probe) -> list[str]:
    return [s for s in probe.value or [] if isinstance(s, str)] if probe.ok else []


class WebhookStripe(Protocol):
    """What the webhook checks read of Stripe: the endpoints and recent events."""

    def webhook_endpoints(self) -> list[dict[str, Any]]: ...

    def events(self, account: str, since: int, types: Sequence[str] | None = None,
               delivery_success: bool | None = None) -> list[dict[str, Any]]: ...


class WebhookSanity(Protocol):
    """What the webhook checks read of Sanity: the schools, and the app's webhookLog."""

    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def webhook_log(self, since: str, signature: str) -> list[Any]: ...

    def logged_sessions(self, session_ids: list[str]) -> list[Any]: ...


class DoctorSanity(WebhookSanity, Protocol):
    """What `doctor` asks of Sanity: the webhook checks' reads, and whether it may write."""

    def probe_write(self) -> None: ...


class PageLister(Protocol):
    """A Stripe source that lists a window's sessions page by page."""

    def session_pages(self, account: str, since: int, until: int,
                      starting_after: str | None = None) -> Iterator[SessionPage]: ...


def list_one(stripe: PageLister, account: str, until: int) -> list[str]:
    """The newest complete session's id of `account` (one request: the pages are lazy)."""
    page = next(iter(stripe.session_pages(account, 1, until)), None)
    return [str(s.get("id")) for s in (page.sessions if page else [])]


def accounts_of(tenants: Iterable[Mapping[str, Any]]) -> list[tuple[str, str | None]]:
    """Every school's connected account (sorted), with the school's name."""
    out: dict[str, str | None] = {}
    for tenant in tenants:
        connect = tenant.get("stripeConnect")
        account = connect.get("accountId") if isinstance(connect, Mapping) else None
        if isinstance(account, str) and account and not str(tenant.get("_id")).startswith(
                "drafts."):
            name = tenant.get("schoolName")
            out[account] = name if isinstance(name, str) else None
    return sorted(out.items())


@dataclass
class WebhookFacts:
    endpoints: Probe
    deliveries: dict[str, Probe] = field(default_factory=dict)
    log: Probe | None = None
    purchases: dict[str, list[str]] = field(default_factory=dict)  # connected account -> sids
    logged: Probe | None = None  # the purchases' session ids that appear in webhookLog


def gather_webhooks(stripe: WebhookStripe, sanity: WebhookSanity | None, accounts: Sequence[str],
                    now: datetime) -> WebhookFacts:
    """`accounts`: the connected accounts that can be read."""
    since = int((now - timedelta(days=DELIVERY_DAYS)).timestamp())
    facts = WebhookFacts(endpoints=attempt(stripe.webhook_endpoints))
    for account in [PLATFORM, *accounts]:
        facts.deliveries[account] = attempt(
            partial(stripe.events, account, since, delivery_success=False))
    for account in accounts:
        completed = attempt(partial(stripe.events, account, since, types=[COMPLETED]))
        if completed.ok:
            facts.purchases[account] = [sid for e in completed.value or []
                                        if isinstance(sid := _event_object_id(e), str)]
    if sanity is not None:
        log_since = (now - timedelta(days=WEBHOOK_LOG_DAYS)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        facts.log = attempt(lambda: sanity.webhook_log(log_since, SIGNATURE_FAILED))
        # A few hundred (newest first per account) are evidence enough and keep the query small.
        sids = list(dict.fromkeys(s for ids in facts.purchases.values() for s in ids))
        sids = sids[:LOGGED_SAMPLE]
        facts.logged = attempt(lambda: sanity.logged_sessions(sids)) if sids \
            else Probe([])
    return facts


def _event_object_id(event: Mapping[str, Any]) -> Any:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    return obj.get("id") if isinstance(obj, Mapping) else None


def logged_ids(facts: WebhookFacts) -> set[str] | None:
    if facts.logged is None or not facts.logged.ok:
        return None
    return {s for s in facts.logged.value or [] if isinstance(s, str)}


def webhook_checks(facts: WebhookFacts, connected: Sequence[str],
                   scrub: Callable[[str], str]) -> list[Check]:
    endpoints = facts.endpoints.value or [] if facts.endpoints.ok else None
    if endpoints is not None:
        out = check_endpoints(endpoints)
    else:
        out = [Check("webhook endpoints", "fail", f"cannot list: {facts.endpoints.error}")]
    connect = check_connect(endpoints, connected, facts.purchases, logged_ids(facts))
    out += [connect] if connect is not None else []
    out += [check_deliveries(a, p) for a, p in facts.deliveries.items()]
    if facts.log is not None:
        out += check_webhook_log(facts.log, scrub)
    return out


def webhook_health(stripe: WebhookStripe, sanity: WebhookSanity, now: datetime) -> JSON:
    """Webhook figures for the weekly report: undelivered events (last 3 days, per account),
    endpoint problems, and the app's webhookLog errors / signature failures (last 7 days).
    Never raises for a read that fails: it is named in `errors`."""
    catalog = attempt(sanity.load_catalog)
    accounts = [a for a, _ in accounts_of(catalog.value[0])] if catalog.ok else []
    facts = gather_webhooks(stripe, sanity, accounts, now)
    errors = [] if catalog.ok else [f"cannot read the schools: {catalog.error}"]
    problems: list[str] = []
    endpoints = facts.endpoints.value or [] if facts.endpoints.ok else None
    connect = check_connect(endpoints, accounts, facts.purchases, logged_ids(facts))
    checks = [*(check_endpoints(endpoints) if endpoints is not None else []),
              *([connect] if connect is not None else [])]
    problems = [f"{c.name}: {c.detail}" for c in checks if c.status != "ok"]
    if endpoints is None:
        errors.append(f"cannot list webhook endpoints: {facts.endpoints.error}")
    undelivered = {a: len(p.value or []) for a, p in facts.deliveries.items() if p.ok}
    errors += [f"cannot list events of {a}: {p.error}" for a, p in facts.deliveries.items()
               if not p.ok]
    rows: list[Mapping[str, Any]] = []
    if facts.log is not None and facts.log.ok:
        rows = [r for r in facts.log.value or [] if isinstance(r, Mapping)]
    elif facts.log is not None:
        errors.append(f"cannot read webhookLog: {facts.log.error}")
    return {
        "checked_at": now.astimezone(UTC).isoformat(),
        "undelivered_events": sum(undelivered.values()),
        "undelivered_by_account": undelivered,
        "endpoint_problems": problems,
        "webhook_log_errors": sum(1 for r in rows if r.get("eventType") != SIGNATURE_FAILED),
        "signature_failures": sum(1 for r in rows if r.get("eventType") == SIGNATURE_FAILED),
        "errors": errors,
    }


def run_checks(settings: Settings, *, stripe: WebhookStripe | None,
               probe_stripe: PageLister | None, sanity: DoctorSanity | None, now: datetime,
               smtp_probe: Callable[[SmtpSettings], SmtpProbe] = probe_smtp) -> list[Check]:
    """Every check, in the table's order; `None` collaborators are the ones not configured."""
    missing = {"stripe": settings.missing("stripe"), "sanity": settings.missing("sanity"),
               "smtp": settings.missing("smtp")}
    checks = check_settings(missing)
    if not missing["stripe"]:
        mismatch = check_dataset_mode(settings.stripe.key_mode, settings.sanity.dataset)
        checks += [mismatch] if mismatch is not None else []
    checks.append(check_heartbeat(settings.alerts.heartbeat_url is not None))
    tenants: list[Mapping[str, Any]] = []
    if sanity is not None:
        read = attempt(sanity.load_catalog)
        write = attempt(sanity.probe_write) if read.ok else None
        checks += check_sanity(read, write)
        tenants = read.value[0] if read.ok else []
    schools = accounts_of(tenants)
    if stripe is not None and probe_stripe is not None:
        until = int(now.timestamp()) + 1
        listings = {a: attempt(partial(list_one, probe_stripe, a, until))
                    for a in [PLATFORM, *(a for a, _ in schools)]}
        if listings[PLATFORM].fatal:
            # The key itself is refused: every other Stripe check would say the same.
            checks.append(check_account(PLATFORM, None, listings[PLATFORM]))
        else:
            seen = [s for p in listings.values() for s in session_ids(p)]
            checks.append(check_key_mode(settings.stripe.key_mode, seen))
            names = dict(schools)
            checks += [check_account(a, names.get(a), p) for a, p in listings.items()]
            # An account the key cannot read is named once, above, not again for its events.
            readable = [a for a, _ in schools if listings[a].ok]
            facts = gather_webhooks(stripe, sanity, readable, now)
            if not listings[PLATFORM].ok:
                facts.deliveries.pop(PLATFORM, None)
            checks += webhook_checks(facts, [a for a, _ in schools],
                                     Scrubber(settings.secret_values()).text)
    if "SMTP_HOST" in missing["smtp"]:
        checks.append(check_smtp(False, None))
    elif not missing["smtp"]:  # half-configured mail was reported by check_settings
        checks.append(check_smtp(True, smtp_probe(settings.smtp)))
    scrub = Scrubber(settings.secret_values()).text  # no secret in any line, whatever happened
    return [Check(c.name, c.status, scrub(c.detail), c.blocking) for c in checks]


# ---- the command ------------------------------------------------------------------------


def render_table(checks: Sequence[Check], header: str) -> str:
    width = max([len(c.name) for c in checks] + [5])
    lines = [header, "", f"{'CHECK':<{width}}  STATUS  DETAIL"]
    for c in checks:
        mark = c.status.upper() if c.status != "ok" else "ok"
        lines.append(f"{c.name:<{width}}  {mark:<6}  {c.detail}")
    code = exit_code(checks)
    verdict = {0: "all fine", 1: "something to fix", 2: "cannot run until fixed"}[code]
    counts = Counter(c.status for c in checks)
    lines += ["", f"{verdict}: {counts['ok']} ok, {counts['warn']} warning(s), "
              f"{counts['fail']} failed"]
    return "\n".join(lines) + "\n"


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.run.compose import doctor_services

    now = datetime.now(UTC)
    services = doctor_services(settings)
    checks = run_checks(settings, stripe=services.stripe, probe_stripe=services.probe_stripe,
                        sanity=services.sanity, now=now)
    code = exit_code(checks)
    if getattr(args, "json", False):
        mode = None if settings.missing("stripe") else settings.stripe.key_mode
        sys.stdout.write(json.dumps({"checked_at": now.isoformat(), "key_mode": mode,
                                     "exit_code": code,
                                     "checks": [asdict(c) for c in checks]}) + "\n")
    else:
        shown = "no key" if settings.missing("stripe") else f"{settings.stripe.key_mode} mode"
        sys.stdout.write(render_table(checks, f"reconcile doctor ({shown}, "
                                              f"{now.strftime('%Y-%m-%d %H:%M')} UTC)"))
    return code
