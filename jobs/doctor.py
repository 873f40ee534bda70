"""`reconcile doctor`: preflight of keys, accounts, Sanity rights, webhooks and mail.

Two halves. `gather` fetches (Stripe, Sanity, SMTP; every failure caught and kept as data);
the check functions are pure: facts in, `Check(name, status, detail)` out. `cmd_doctor` prints
them as a table or JSON. Exit 0 when no check fails (warnings are shown, not counted), 1 when
something needs fixing, 2 when the job could not run at all (missing setting, key or token
rejected, Sanity unreachable). `webhook_health` gives the weekly report the webhook part.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import ssl
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from jobs.errors import CredentialsRejected, ReconcilerError, ServiceUnavailable
from jobs.logs import Scrubber
from jobs.model import PLATFORM
from jobs.settings import Settings, SmtpSettings

Status = Literal["ok", "warn", "fail"]
JSON = dict[str, Any]

DELIVERY_DAYS = 3  # Stripe retries live webhooks for up to 3 days
WEBHOOK_LOG_DAYS = 7
COMPLETED = "checkout.session.completed"
SIGNATURE_FAILED = "signature_verification_failed"

LOGGED_SAMPLE = 500
LOGGED_QUERY = '*[_type == "webhookLog" && details.sessionId in $sids].details.sessionId'
WEBHOOK_LOG_QUERY = """*[_type == "webhookLog" && timestamp >= $since
  && (status == "error" || eventType == $signature)] | order(timestamp desc) {
  eventType, eventId, status, timestamp, "error": details.error, "sessionId": details.sessionId
}"""


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table. `blocking`: the job cannot run until it is fixed."""

    name: str
    status: Status
    detail: str
    blocking: bool = False


@dataclass(frozen=True)
class Probe:
    """What one fetch returned, or why it failed (`rejected`: credentials refused)."""

    value: Any = None
    error: str | None = None
    fatal: bool = False  # credentials refused or service unreachable

    @property
    def ok(self) -> bool:
        return self.error is None


def attempt(fn: Callable[[], Any]) -> Probe:
    """Run one fetch; an expected failure becomes data, so one problem never hides the rest."""
    try:
        return Probe(fn())
    except (CredentialsRejected, ServiceUnavailable) as error:
        return Probe(error=str(error), fatal=True)
    except ReconcilerError as error:
        return Probe(error=str(error))


# ---- pure checks ------------------------------------------------------------------------


def check_settings(missing: Mapping[str, Sequence[str]]) -> list[Check]:
    """Stripe and Sanity settings are required; mail is optional but must be whole if begun."""
    out = []
    for part in ("stripe", "sanity"):
        names = list(missing.get(part) or ())
        if names:
            out.append(Check(f"{part} settings", "fail", "not set: " + ", ".join(names),
                             blocking=True))
    smtp = list(missing.get("smtp") or ())
    if "SMTP_HOST" not in smtp and smtp:
        out.append(Check("smtp settings", "fail", "SMTP_HOST is set but not: " + ", ".join(smtp)))
    return out


def check_key_mode(key_mode: str, session_ids: Iterable[str]) -> Check:
    """The key's mode and the mode of the sessions it sees must agree (§4 #18)."""
    seen = [s for s in session_ids if isinstance(s, str)]
    other = "test" if key_mode == "live" else "live"
    wrong = [s for s in seen if s.startswith(f"cs_{other}_")]
    if wrong:
        return Check("stripe mode", "fail",
                     f"{key_mode}-mode key, but {len(wrong)} of {len(seen)} sessions seen are "
                     f"cs_{other}_ ({wrong[0]}): the key and the data are from different modes")
    seen_text = (f"{len(seen)} session id(s) seen, all cs_{key_mode}_" if seen
                 else "no sessions seen to compare")
    note = "; a test key sees only test purchases" if key_mode == "test" else ""
    return Check("stripe mode", "ok", f"{key_mode}-mode key; {seen_text}{note}")


def check_account(account: str, school: str | None, probe: Probe) -> Check:
    """Whether the key can list this account's sessions (§4 #17)."""
    label = account if school is None else f"{account} ({school})"
    name = f"stripe account {account}"
    if not probe.ok:
        return Check(name, "fail", f"{label}: cannot list sessions: {probe.error}",
                     blocking=probe.fatal and account == PLATFORM)
    latest = probe.value[0] if probe.value else None
    return Check(name, "ok", f"{label}: sessions can be listed"
                 + (f" (latest {latest})" if latest else " (none yet)"))


def check_sanity(read: Probe, write: Probe | None) -> list[Check]:
    """The token can read (queries) and create (a validated, never committed, write)."""
    if not read.ok:
        return [Check("sanity read", "fail", f"cannot query: {read.error}", blocking=True)]
    tenants, passes = read.value
    out = [Check("sanity read", "ok", f"can query ({len(tenants)} schools, {len(passes)} passes)")]
    if write is not None:
        if write.ok:
            out.append(Check("sanity write", "ok", "a dry-run createIfNotExists is accepted"))
        else:
            out.append(Check("sanity write", "fail", f"cannot create documents: {write.error}",
                             blocking=write.fatal))
    return out


def listens_for_completed(endpoint: Mapping[str, Any]) -> bool:
    events = endpoint.get("enabled_events") or []
    return "*" in events or COMPLETED in events


def is_connect(endpoint: Mapping[str, Any]) -> bool:
    """A Connect endpoint hears connected accounts' events (`connect=true` or an application)."""
    return endpoint.get("connect") is True or bool(endpoint.get("application"))


def _host_key(url: str) -> str:
    return url.replace("://www.", "://", 1)


def check_endpoints(endpoints: Sequence[Mapping[str, Any]]) -> list[Check]:
    """Webhook endpoint health (§4 #1, #3-#5): one check per problem, or one `ok`."""
    if not endpoints:
        return [Check("webhook endpoints", "fail",
                      "no webhook endpoint is registered: the app hears of no purchase "
                      "(the reconciler still repairs them)")]
    out: list[Check] = []
    by_url: dict[str, list[Mapping[str, Any]]] = {}
    for endpoint in endpoints:
        by_url.setdefault(str(endpoint.get("url")), []).append(endpoint)
    enabled = [e for e in endpoints if e.get("status") == "enabled"]
    for url, group in by_url.items():
        if len(group) > 1:
            live = sum(1 for e in group if e.get("status") == "enabled")
            ids = ", ".join(sorted(str(e.get("id")) for e in group))
            out.append(Check("webhook duplicate endpoints", "fail" if live > 1 else "warn",
                             f"{len(group)} endpoints for {url} ({ids}), {live} enabled: two "
                             "deliveries of one event race and can create duplicate passes"))
    hosts: dict[str, set[str]] = {}
    for url in by_url:
        hosts.setdefault(_host_key(url), set()).add(url)
    for variants in hosts.values():
        if len(variants) > 1:
            names = sorted(variants)
            out.append(Check("webhook www address", "warn",
                             "the same address with and without www. (" + ", ".join(names)
                             + "): one of them probably redirects, which Stripe counts as a "
                             "failed delivery"))
    for endpoint in endpoints:
        name, url = f"webhook endpoint {endpoint.get('id')}", endpoint.get("url")
        if endpoint.get("status") != "enabled":
            covered = any(e.get("url") == url and listens_for_completed(e) for e in enabled)
            out.append(Check(name, "warn" if covered else "fail",
                             f"{url} is {endpoint.get('status')}" + (
                                 " (another enabled endpoint serves this URL)" if covered else
                                 ": Stripe stops delivering after repeated failures")))
        elif not listens_for_completed(endpoint):
            out.append(Check(name, "warn", f"{url} does not listen for {COMPLETED}"))
    receivers = [e for e in enabled if listens_for_completed(e)]
    if not receivers:
        out.append(Check("webhook endpoints", "fail",
                         f"no enabled endpoint listens for {COMPLETED}"))
    if not out:
        out.append(Check("webhook endpoints", "ok",
                         f"{len(endpoints)} endpoint(s), {len(receivers)} listening for "
                         f"{COMPLETED}"))
    return out


def receives_connect(endpoints: Sequence[Mapping[str, Any]]) -> bool:
    return any(is_connect(e) and e.get("status") == "enabled" and listens_for_completed(e)
               for e in endpoints)


def check_connect(endpoints: Sequence[Mapping[str, Any]] | None, connected: Sequence[str],
                  purchases: Mapping[str, Sequence[str]], logged: set[str] | None,
                  days: int = DELIVERY_DAYS) -> Check | None:
    """Do the connected accounts' purchases reach the app's webhook (§4 #2)?

    Stripe's endpoint list does not say which endpoint is a Connect endpoint (`connect` is a
    create parameter only; `application` marks a Connect application's), so the evidence is the
    app's own webhookLog: whether the recent `checkout.session.completed` sessions of connected
    accounts (`purchases`: account -> session ids) appear in it (`logged`). None: no school
    sells on a connected account."""
    if not connected:
        return None
    name = "webhook connect endpoint"
    marked = endpoints is not None and receives_connect(endpoints)
    sessions = {sid for ids in purchases.values() for sid in ids}
    if logged is None or not sessions:
        if marked:
            return Check(name, "ok", f"an enabled Connect endpoint listens for {COMPLETED}")
        why = ("the app's webhookLog could not be read" if logged is None else
               f"no school sold anything on its connected account in the last {days} days")
        return Check(name, "warn", "cannot tell whether purchases on connected accounts reach "
                     "the webhook: Stripe does not show which endpoint is a Connect endpoint, "
                     f"and {why}")
    reached = sessions & logged
    if reached:
        return Check(name, "ok", f"{len(reached)} of {len(sessions)} purchase(s) on connected "
                     f"accounts in the last {days} days reached the app's webhook (webhookLog)")
    return Check(name, "fail", f"none of {len(sessions)} purchase(s) on {len(purchases)} "
                 f"connected account(s) in the last {days} days reached the app's webhook (no "
                 f"webhookLog entry): no Connect endpoint (connect=true) listens for {COMPLETED}, "
                 "or it delivers nowhere")


def check_deliveries(account: str, probe: Probe, days: int = DELIVERY_DAYS) -> Check:
    """Events Stripe could not deliver (`delivery_success=false`) in the last `days`."""
    name = f"webhook deliveries {account}"
    if not probe.ok:
        return Check(name, "fail", f"cannot list events: {probe.error}")
    events = probe.value or []
    if not events:
        return Check(name, "ok", f"no failed deliveries in the last {days} days")
    types = Counter(str(e.get("type")) for e in events)
    kinds = ", ".join(f"{t} x{n}" for t, n in types.most_common(3))
    return Check(name, "fail", f"{len(events)} event(s) not delivered in the last {days} days "
                 f"({kinds}); newest {events[0].get('id')}")


def check_webhook_log(probe: Probe, scrub: Callable[[str], str],
                      days: int = WEBHOOK_LOG_DAYS) -> list[Check]:
    """The app's own webhookLog: processing errors and signature failures (§4 #6, #7)."""
    if not probe.ok:
        return [Check("webhook log", "fail", f"cannot read webhookLog: {probe.error}")]
    rows = [r for r in probe.value or [] if isinstance(r, Mapping)]
    signature = [r for r in rows if r.get("eventType") == SIGNATURE_FAILED]
    errors = [r for r in rows if r.get("eventType") != SIGNATURE_FAILED]
    out = []
    if errors:
        sessions = [str(r["sessionId"]) for r in errors if r.get("sessionId")]
        text = scrub(" ".join(str(errors[0].get("error") or "no error text").split()))[:100]
        out.append(Check("webhook log errors", "fail",
                         f"{len(errors)} processing error(s) in the last {days} days, latest "
                         f"{errors[0].get('timestamp')}: {text}" + (
                             "; check with reconcile diagnose --session " + sessions[0]
                             if sessions else "")))
    else:
        out.append(Check("webhook log errors", "ok",
                         f"no processing errors in the last {days} days"))
    if signature:
        out.append(Check("webhook signature failures", "fail",
                         f"{len(signature)} signature verification failure(s) in the last "
                         f"{days} days, latest {signature[0].get('timestamp')}: check the "
                         "webhook secret (test vs live, _PROD vs _LOCAL)"))
    else:
        out.append(Check("webhook signature failures", "ok",
                         f"no signature failures in the last {days} days"))
    return out


@dataclass(frozen=True)
class SmtpProbe:
    """How far a connection got: `step` is the last step tried; `error` None when all worked."""

    steps: tuple[str, ...]
    error: str | None = None


def check_smtp(configured: bool, probe: SmtpProbe | None) -> Check:
    if not configured or probe is None:
        return Check("smtp", "warn", "not configured: reports and alerts are not e-mailed")
    done = " + ".join(probe.steps)
    if probe.error is None:
        return Check("smtp", "ok", f"{done} worked (no mail sent)")
    return Check("smtp", "fail", f"{probe.error} (after {done or 'nothing'})")


def exit_code(checks: Iterable[Check]) -> int:
    """2: the job cannot run; 1: something to fix; 0: nothing failed (warnings allowed)."""
    listed = list(checks)
    if any(c.blocking and c.status == "fail" for c in listed):
        return 2
    return 1 if any(c.status == "fail" for c in listed) else 0


# ---- fetching ---------------------------------------------------------------------------


def probe_smtp(smtp: SmtpSettings, *, timeout: float = 10.0,
               plain: Callable[..., smtplib.SMTP] = smtplib.SMTP,
               implicit: Callable[..., smtplib.SMTP] = smtplib.SMTP_SSL) -> SmtpProbe:
    """Connect, EHLO, STARTTLS when configured, AUTH when a username is set; no mail sent."""
    assert smtp.host is not None
    steps: list[str] = []
    client: smtplib.SMTP | None = None
    try:
        steps.append("connect")
        factory = implicit if smtp.ssl else plain
        client = factory(smtp.host, smtp.port, timeout=timeout)
        steps.append("EHLO")
        code, _ = client.ehlo()
        if code != 250:
            return SmtpProbe(tuple(steps), f"EHLO refused ({code})")
        if smtp.starttls:
            steps.append("STARTTLS")
            if not client.has_extn("starttls"):
                return SmtpProbe(tuple(steps), "the server does not offer STARTTLS")
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if smtp.username is not None and smtp.password is not None:
            steps.append("AUTH")
            client.login(smtp.username, smtp.password.reveal())
        return SmtpProbe(tuple(steps))
    except smtplib.SMTPAuthenticationError as error:
        return SmtpProbe(tuple(steps), f"login refused ({error.smtp_code})")
    except (OSError, smtplib.SMTPException) as error:
        return SmtpProbe(tuple(steps), f"{type(error).__name__}: {_first_line(error)}")
    finally:
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:120] if lines else "no detail"


def session_ids(probe: Probe) -> list[str]:
    return [s for s in probe.value or [] if isinstance(s, str)] if probe.ok else []


def list_one(stripe: Any, account: str, until: int) -> list[str]:
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


def gather_webhooks(stripe: Any, sanity: Any, accounts: Sequence[str],
                    now: datetime) -> WebhookFacts:
    """`accounts`: the connected accounts that can be read."""
    since = int((now - timedelta(days=DELIVERY_DAYS)).timestamp())
    facts = WebhookFacts(endpoints=attempt(stripe.webhook_endpoints))
    for account in [PLATFORM, *accounts]:
        facts.deliveries[account] = attempt(
            lambda a=account: stripe.events(a, since, delivery_success=False))
    for account in accounts:
        completed = attempt(lambda a=account: stripe.events(a, since, types=[COMPLETED]))
        if completed.ok:
            facts.purchases[account] = [sid for e in completed.value or []
                                        if isinstance(sid := _event_object_id(e), str)]
    if sanity is not None:
        log_since = (now - timedelta(days=WEBHOOK_LOG_DAYS)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        facts.log = attempt(lambda: sanity.query(
            WEBHOOK_LOG_QUERY, {"since": log_since, "signature": SIGNATURE_FAILED}))
        # A few hundred (newest first per account) are evidence enough and keep the query small.
        sids = list(dict.fromkeys(s for ids in facts.purchases.values() for s in ids))
        sids = sids[:LOGGED_SAMPLE]
        facts.logged = attempt(lambda: sanity.query(LOGGED_QUERY, {"sids": sids})) if sids \
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


def webhook_health(stripe: Any, sanity: Any, now: datetime) -> JSON:
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


def run_checks(settings: Settings, *, stripe: Any | None, probe_stripe: Any | None,
               sanity: Any | None, now: datetime,
               smtp_probe: Callable[[SmtpSettings], SmtpProbe] = probe_smtp) -> list[Check]:
    """Every check, in the table's order; `None` collaborators are the ones not configured."""
    missing = {"stripe": settings.missing("stripe"), "sanity": settings.missing("sanity"),
               "smtp": settings.missing("smtp")}
    checks = check_settings(missing)
    tenants: list[Mapping[str, Any]] = []
    if sanity is not None:
        read = attempt(sanity.load_catalog)
        write = attempt(sanity.probe_write) if read.ok else None
        checks += check_sanity(read, write)
        tenants = read.value[0] if read.ok else []
    schools = accounts_of(tenants)
    if stripe is not None and probe_stripe is not None:
        until = int(now.timestamp()) + 1
        listings = {a: attempt(lambda a=a: list_one(probe_stripe, a, until))
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
    from jobs.bootstrap import build_stripe
    from jobs.sanity_store import SanityStore
    from jobs.stripe_source import StripeSource, make_client

    now = datetime.now(UTC)
    stripe = probe_stripe = sanity = None
    if not settings.missing("stripe"):
        key = settings.stripe.secret_key
        assert key is not None
        stripe = build_stripe(settings, timeout=20.0)
        # Listing one session per account is the access test: a page of one, two attempts.
        probe_stripe = StripeSource(make_client(key.reveal(), settings.stripe.api_base, 20.0),
                                    page_size=1, attempts=2)
    if not settings.missing("sanity"):
        token = settings.sanity.token
        assert token is not None
        sanity = SanityStore(settings.sanity.base_url, settings.sanity.dataset, token.reveal(),
                             settings.sanity.api_version, timeout=20.0, attempts=2)
    checks = run_checks(settings, stripe=stripe, probe_stripe=probe_stripe, sanity=sanity,
                        now=now)
    code = exit_code(checks)
    if getattr(args, "json", False):
        mode = None if settings.missing("stripe") else settings.stripe.key_mode
        sys.stdout.write(json.dumps({"checked_at": now.isoformat(), "key_mode": mode,
                                     "exit_code": code,
                                     "checks": [asdict(c) for c in checks]}) + "\n")
    else:
        mode = "no key" if settings.missing("stripe") else f"{settings.stripe.key_mode} mode"
        sys.stdout.write(render_table(checks, f"reconcile doctor ({mode}, "
                                              f"{now.strftime('%Y-%m-%d %H:%M')} UTC)"))
    return code
