"""The doctor's checks, all pure: facts in (settings missing, `Probe`s of what was fetched,
webhook endpoints, webhookLog rows), `Check(name, status, detail)` out; and the exit code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jobs.core.model import PLATFORM

Status = Literal["ok", "warn", "fail"]

DELIVERY_DAYS = 3  # Stripe retries live webhooks for up to 3 days
WEBHOOK_LOG_DAYS = 7
COMPLETED = "checkout.session.completed"
SIGNATURE_FAILED = "signature_verification_failed"


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
        name, address = f"webhook endpoint {endpoint.get('id')}", endpoint.get("url")
        if endpoint.get("status") != "enabled":
            covered = any(e.get("url") == address and listens_for_completed(e) for e in enabled)
            out.append(Check(name, "warn" if covered else "fail",
                             f"{address} is {endpoint.get('status')}" + (
                                 " (another enabled endpoint serves this URL)" if covered else
                                 ": Stripe stops delivering after repeated failures")))
        elif not listens_for_completed(endpoint):
            out.append(Check(name, "warn", f"{address} does not listen for {COMPLETED}"))
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


def check_dataset_mode(key_mode: str, dataset: str) -> Check | None:
    """A test key writing into the `production` dataset would give real students passes
    for test purchases (§4 #18); the reverse is no concern of this check."""
    if key_mode == "test" and dataset == "production":
        return Check("sanity dataset", "warn",
                     "test-mode key with the Sanity dataset `production`: test purchases would "
                     "become real students' passes (use a test dataset, or the live key)")
    return None


def check_heartbeat(configured: bool) -> Check:
    """Alerts come from the job itself: only an outside heartbeat notices it has stopped."""
    if configured:
        return Check("heartbeat", "ok", "a heartbeat URL is pinged after each pass")
    return Check("heartbeat", "warn", "no heartbeat URL set: nothing would notice the job "
                 "itself stopping (set HEARTBEAT_URL)")
