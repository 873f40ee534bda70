"""`reconcile diagnose`: one person or one purchase, end to end, in plain words.

Finds the Checkout Sessions (`--email`: Stripe's `customer_details[email]` filter on every
account; `--session`: that id on the platform and every connected account; `--user`: the last
90 days of every account filtered on `metadata.userId`, since Stripe has no such filter), plans
them with the engine's own rules (`Reconciler.plan_sessions`), and shows each purchase's chain:
session, what it is, pass, student, existing subscriptions, verdict. `--fix` writes the plan for
exactly those purchases: deterministic ids, createIfNotExists, one transaction, the safety cap,
`--dry-run`; recorded in the ledger as a run of kind `diagnose`.

E-mails are shown on stdout (the operator asked for that person); logs mask them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from jobs import rules
from jobs.audit_rules import explain as explain_anomaly
from jobs.classify import needs_line_items, parse_line_items, parse_session, text
from jobs.errors import ConfigError, CredentialsRejected, ReconcilerError
from jobs.model import PLATFORM, Catalog, Decision, PlanContext, Session
from jobs.planner import matching_subscriptions, transaction_mutations
from jobs.ports import SessionPage
from jobs.reasons import PENDING, explain_failure, explain_reason
from jobs.reconcile import Reconciler, accounts_to_read, catalog_from
from jobs.runreport import RunReport
from jobs.settings import Settings

log = structlog.get_logger("jobs.diagnose")

JSON = dict[str, Any]
USER_DAYS = 90
SHOWN_METADATA = ("type", "passId", "userId", "tenantId", "upgradeFromSubscriptionId", "classId")

IGNORED_WORDS = {
    "not_complete": "the checkout was never completed (abandoned or expired): nothing was bought",
    "not_paid": "the checkout completed without a payment, so no pass is due",
    "class_dropin": "a class drop-in (metadata classId): it becomes a booking, not a pass",
    "platform_plan": "a school's own platform plan (mode subscription), not a student's pass",
    "not_a_pass": "nothing in the payment says it is a pass purchase",
    "refunded": "the payment was refunded in full, so no pass is due",
}

_PEOPLE = ('*[_type == "user" && (clerkId in $uids || _id in $uids'
           ' || (defined(email) && lower(email) in $emails))]')
FACTS_QUERY = f"""{{
  "users": {_PEOPLE}{{_id, clerkId, email, name, role, "tenant": tenant._ref, isActive}},
  "subs": *[_type == "subscription" && (stripeSessionId in $sids || _id in $detIds
    || stripePaymentId in $pis || stripePaymentIntentId in $pis || paymentId in $pis
    || user._ref in $uids || user._ref in {_PEOPLE}._id || user._ref in {_PEOPLE}.clerkId)]
}}"""


@dataclass(frozen=True)
class Query:
    """Exactly one of the three is set."""

    email: str | None = None
    session: str | None = None
    user: str | None = None

    def describe(self) -> JSON:
        return {k: v for k, v in (("email", self.email), ("session", self.session),
                                  ("user", self.user)) if v is not None}


class RememberingStripe:
    """The Stripe source with line items kept, so finding and planning fetch them once."""

    def __init__(self, stripe: Any) -> None:
        self._stripe = stripe
        self._items: dict[tuple[str, str], list[JSON]] = {}

    def known_items(self, account: str, session_id: str) -> list[JSON]:
        """The line items fetched so far for this session ([] if never fetched)."""
        return self._items.get((account, session_id), [])

    def line_items(self, account: str, session_id: str) -> list[JSON]:
        key = (account, session_id)
        if key not in self._items:
            self._items[key] = self._stripe.line_items(account, session_id)
        return self._items[key]

    def session_pages(self, account: str, since: int, until: int,
                      starting_after: str | None = None) -> Iterator[SessionPage]:
        return iter(self._stripe.session_pages(account, since, until, starting_after))

    def refunds(self, account: str, since: int) -> list[JSON]:
        return list(self._stripe.refunds(account, since))

    def session(self, account: str, session_id: str) -> JSON | None:
        found: JSON | None = self._stripe.session(account, session_id)
        return found

    def sessions_by_email(self, account: str, email: str) -> list[JSON]:
        return list(self._stripe.sessions_by_email(account, email))


@dataclass
class Found:
    """The raw sessions found per account, the accounts that could not be searched, notes."""

    sessions: dict[str, list[JSON]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def user_of(raw: Mapping[str, Any], items: Sequence[JSON]) -> str | None:
    """The Clerk id a session names: its metadata, else its line item's product metadata."""
    metadata = raw.get("metadata")
    found = text(metadata.get("userId")) if isinstance(metadata, Mapping) else None
    parsed = parse_line_items(items) if found is None else []
    if parsed:
        found = text(parsed[0].product_metadata.get("userId"))
    return found


def find_sessions(stripe: RememberingStripe, accounts: Sequence[str], query: Query,
                  now: datetime) -> Found:
    """Search every account; one account failing is named and the others go on."""
    found = Found()
    now_s = int(now.timestamp())
    if query.user is not None:
        found.notes.append(
            f"Stripe cannot filter sessions by user: the complete sessions of the last "
            f"{USER_DAYS} days of {len(accounts)} account(s) were read and those whose "
            "metadata.userId (or line-item product userId) is this user kept. Older purchases "
            "and unfinished checkouts are not shown; --email finds those.")
    for account in accounts:
        try:
            if query.session is not None:
                raw = stripe.session(account, query.session)
                if raw is not None:
                    found.sessions[account] = [raw]
                    break
            elif query.email is not None:
                raws = stripe.sessions_by_email(account, query.email)
                if raws:
                    found.sessions[account] = raws
            else:
                mine = []
                for page in stripe.session_pages(account, now_s - USER_DAYS * 86400, now_s + 1):
                    mine += [r for r in page.sessions if _names_user(stripe, account, r,
                                                                     str(query.user), now_s)]
                if mine:
                    found.sessions[account] = mine
        except CredentialsRejected:
            raise
        except ReconcilerError as error:
            found.errors[account] = str(error)
            log.warning("diagnose_account_failed", account=account, error=str(error))
    return found


def _names_user(stripe: RememberingStripe, account: str, raw: JSON, user: str,
                now_s: int) -> bool:
    metadata = raw.get("metadata")
    if isinstance(metadata, Mapping) and text(metadata.get("userId")):
        return metadata.get("userId") == user
    parsed = parse_session(raw, account, now_s)
    if isinstance(parsed, str) or not needs_line_items(parsed):
        return False
    return user_of(raw, stripe.line_items(account, parsed.id)) == user


# ---- the diagnosis (plain data) ---------------------------------------------------------


@dataclass
class Diagnosis:
    query: Query
    accounts: list[str]
    found: Found
    catalog: Catalog
    users: list[JSON]
    subs: list[JSON]
    purchases: list[tuple[Session | None, JSON, Decision]]  # parsed, raw, decision
    clerk_ids: dict[str, str] = field(default_factory=dict)  # session id -> the userId it names
    line_items: dict[str, list[str]] = field(default_factory=dict)  # session id -> descriptions
    fix: JSON | None = None

    def decisions(self) -> list[Decision]:
        return [d for _, _, d in self.purchases]


def diagnose(query: Query, stripe: Any, sanity: Any, *, now: datetime,
             run_id: str) -> Diagnosis:
    """Find, look up and plan; writes nothing."""
    catalog = catalog_from(*sanity.load_catalog())
    accounts = accounts_to_read(catalog, None)
    remembering = RememberingStripe(stripe)
    found = find_sessions(remembering, accounts, query, now)
    now_s = int(now.timestamp())
    reconciler = Reconciler(remembering, sanity, clock=now.timestamp)
    ctx = PlanContext(now_ms=now_s * 1000, run_id=run_id, catalog=catalog)
    purchases: list[tuple[Session | None, JSON, Decision]] = []
    uids: set[str] = {query.user} if query.user else set()
    clerk_ids: dict[str, str] = {}
    descriptions: dict[str, list[str]] = {}
    for account, raws in found.sessions.items():
        decisions = reconciler.plan_sessions(raws, account, ctx)
        for raw, decision in zip(raws, decisions, strict=True):
            parsed = parse_session(raw, account, now_s)
            session = None if isinstance(parsed, str) else parsed
            items = remembering.known_items(account, decision.session_id)
            if items:
                descriptions[decision.session_id] = [
                    item.description or "" for item in parse_line_items(items)]
            uid = user_of(raw, items)
            if uid:
                uids.add(uid)
                clerk_ids[decision.session_id] = uid
            purchases.append((session, raw, decision))
    purchases.sort(key=lambda p: -(p[0].created if p[0] else 0))
    sids = [d.session_id for _, _, d in purchases if d.session_id]
    pis = [s.payment_intent for s, _, _ in purchases if s and s.payment_intent]
    result = sanity.query(FACTS_QUERY, {
        "uids": sorted(uids), "emails": [query.email.lower()] if query.email else [],
        "sids": sids, "pis": pis,
        "detIds": [f"{p}subscription-{s}" for s in sids for p in ("", "drafts.")]})
    users = [u for u in (result or {}).get("users") or [] if isinstance(u, dict)]
    subs = [s for s in (result or {}).get("subs") or [] if isinstance(s, dict)]
    return Diagnosis(query, accounts, found, catalog, users, subs, purchases, clerk_ids,
                     descriptions)


def apply_fix(diagnosis: Diagnosis, sanity: Any, ledger: Any, *, run_id: str, dry_run: bool,
              max_creates: int, now: datetime,
              clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> JSON:
    """Write the planned creations of exactly these purchases in ONE transaction (or none),
    and record it as a `diagnose` run. Credentials refused propagate (exit 2)."""
    decisions = diagnosis.decisions()
    creations = [d for d in decisions if d.creation is not None]
    times = [s.created for s, _, _ in diagnosis.purchases if s is not None]
    first, last = min(times, default=int(now.timestamp())), max(times, default=0) + 1
    report = RunReport(run_id=run_id, started_at=rules.iso_ms(int(now.timestamp() * 1000)),
                       since=rules.iso_ms(first * 1000), until=rules.iso_ms(
                           max(first + 1, last) * 1000), dry_run=dry_run)
    accounts = list(dict.fromkeys(d.account for d in decisions))
    for account in accounts:
        report.account(account)
    ledger.start_run(run_id, "diagnose", datetime.fromtimestamp(first, UTC),
                     datetime.fromtimestamp(max(first + 1, last), UTC), dry_run, accounts)
    error: str | None = None
    if len(creations) > max_creates:
        error = (f"safety cap: {len(creations)} subscriptions to create, more than "
                 f"max_creates={max_creates}; nothing written (raise --max-creates)")
    elif creations:
        try:
            sanity.commit(transaction_mutations(creations), f"{run_id}-diagnose",
                          dry_run=dry_run)
        except CredentialsRejected as refused:
            ledger.finish_run(run_id, "failed", None, str(refused))
            raise
        except ReconcilerError as failure:
            error = f"write failed: {failure}"
    for decision in decisions:
        if decision.creation is not None and error is not None:
            report.add_write_failure(decision, error)
        else:
            report.add(decision)
    report.error = error
    report.cap_exceeded = error is not None and error.startswith("safety cap")
    report.finished_at = rules.iso_ms(int(clock().timestamp() * 1000))
    data = report.to_json()
    ledger.record_report(data)
    ledger.finish_run(run_id, "partial" if error else "ok", data, error)
    log.info("diagnose_fix", run_id=run_id, dry_run=dry_run, planned=len(creations),
             written=0 if error or dry_run else len(creations), error=error)
    return {"run_id": run_id, "dry_run": dry_run, "error": error,
            "created": [] if error else [d.subscription_ids[0] for d in creations],
            "sessions": [d.session_id for d in creations]}


# ---- views ------------------------------------------------------------------------------


def _sub_view(doc: Mapping[str, Any]) -> JSON:
    def ref(name: str) -> Any:
        value = doc.get(name)
        return value.get("_ref") if isinstance(value, Mapping) else None

    return {"_id": doc.get("_id"), "draft": str(doc.get("_id", "")).startswith("drafts."),
            "type": doc.get("type"), "passId": doc.get("passId") or ref("pass"),
            "passName": doc.get("passName"), "user": ref("user"), "tenant": ref("tenant"),
            "isActive": doc.get("isActive"), "startDate": doc.get("startDate"),
            "endDate": doc.get("endDate"), "remainingClips": doc.get("remainingClips"),
            "stripeSessionId": doc.get("stripeSessionId")}


def verdict(decision: Decision, fixed: JSON | None) -> tuple[str, str, str]:
    """(headline, meaning, fix) in plain words for one purchase."""
    o = decision.outcome
    if o == "created":
        sub = decision.subscription_ids[0] if decision.subscription_ids else "?"
        if fixed is not None and not fixed["error"] and not fixed["dry_run"]:
            return ("FIXED", f"created {sub}", "nothing more to do")
        return ("MISSING", f"no subscription records this purchase; the job would create {sub}",
                "run diagnose again with --fix (or wait for the next run)")
    if o == "already_present":
        return ("OK", "the purchase has its subscription: "
                + ", ".join(decision.subscription_ids), "nothing to do")
    if o == "needs_manual":
        e = explain_reason(decision.reason)
        return (f"NEEDS A PERSON ({decision.reason}): {e.title}",
                f"{e.meaning} ({decision.detail})", e.fix)
    if o == "pending":
        return ("PENDING", PENDING.meaning, PENDING.fix)
    if o == "ignored":
        return (f"NO PASS DUE ({decision.reason})",
                IGNORED_WORDS.get(decision.reason or "", decision.reason or ""), "nothing to do")
    e = explain_failure(decision.detail)
    return (f"FAILED: {e.title}", f"{e.meaning} ({decision.detail})", e.fix)


def purchase_view(d: Diagnosis, session: Session | None, raw: Mapping[str, Any],
                  decision: Decision) -> JSON:
    tenant = d.catalog.tenant_of_account(decision.account) if decision.account != PLATFORM else (
        d.catalog.tenants.get(decision.tenant or ""))
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), Mapping) else {}
    pass_ = d.catalog.passes.get(decision.pass_id or "")
    uid = d.clerk_ids.get(decision.session_id)
    existing = matching_subscriptions(session, d.subs) if session else []
    head, meaning, fix = verdict(decision, d.fix)
    return {
        "session_id": decision.session_id, "account": decision.account,
        "school": tenant.name if tenant else None, "tenant": tenant.id if tenant else None,
        "created": decision.paid_at, "status": raw.get("status"),
        "payment_status": raw.get("payment_status"), "mode": raw.get("mode"),
        "amount": decision.amount, "currency": decision.currency, "email": decision.email,
        "payment_intent": session.payment_intent if session else None,
        "metadata": {k: metadata[k] for k in SHOWN_METADATA if k in metadata},
        "line_items": d.line_items.get(decision.session_id),
        "outcome": decision.outcome, "reason": decision.reason, "detail": decision.detail,
        "verdict": head, "meaning": meaning, "fix": fix,
        "pass": None if pass_ is None else {
            "id": pass_.id, "name": pass_.name, "type": pass_.type,
            "subscription_type": rules.mapped_type(pass_.type),
            "classes_limit": pass_.classes_limit, "validity_type": pass_.validity_type,
            "validity_days": pass_.validity_days, "expiry_date": pass_.expiry_date,
            "is_active": pass_.is_active, "tenant": pass_.tenant_id,
            "school": school.name if (school := d.catalog.tenants.get(pass_.tenant_id or ""))
            else None},
        "student": {"user_id": uid, "documents": [
            u for u in d.users if uid and uid in (u.get("clerkId"), u.get("_id"))]},
        "existing": [_sub_view(s) for s in existing],
        "would_create": decision.subscription_ids[0] if decision.creation else None,
        "new_user": decision.creation.user["_id"] if decision.creation and
        decision.creation.user else None,
        "anomalies": [{"kind": a.kind, "title": explain_anomaly(a.kind).title,
                       "detail": a.detail, "subscription_ids": list(a.subscription_ids)}
                      for a in decision.anomalies],
    }


def to_json(d: Diagnosis) -> JSON:
    return {
        "query": d.query.describe(),
        "searched": [{"account": a, "error": d.found.errors.get(a)} for a in d.accounts],
        "notes": d.found.notes,
        "users": d.users,
        "subscriptions": [_sub_view(s) for s in d.subs],
        "purchases": [purchase_view(d, s, r, dec) for s, r, dec in d.purchases],
        "fix": d.fix,
        "exit_code": exit_code(d),
    }


def exit_code(d: Diagnosis) -> int:
    """1 when something needs a person: an unreadable account, a purchase not found, a purchase
    missing (and not fixed), needing manual action, failed, or showing an anomaly."""
    if d.found.errors or (d.query.session is not None and not d.purchases):
        return 1
    if d.fix is not None and d.fix.get("error"):
        return 1
    fixed = d.fix is not None and not d.fix["dry_run"]
    for decision in d.decisions():
        if decision.outcome in ("needs_manual", "failed") or decision.anomalies:
            return 1
        if decision.outcome == "created" and not fixed:
            return 1
    return 0


def render_text(view: JSON) -> str:
    q = view["query"]
    lines = [f"reconcile diagnose {' '.join(f'--{k} {v}' for k, v in q.items())}", ""]
    lines += [f"note: {n}" for n in view["notes"]]
    for s in view["searched"]:
        if s["error"]:
            lines.append(f"! account {s['account']} could not be searched: {s['error']}")
    if view["users"]:
        lines.append("User documents:")
        for u in view["users"]:
            lines.append(f"  {u.get('_id')}  clerkId={u.get('clerkId')}  email={u.get('email')}"
                         f"  name={u.get('name')}  tenant={u.get('tenant')}")
    else:
        lines.append("User documents: none found")
    lines.append(f"Subscriptions of this person / these purchases: {len(view['subscriptions'])}")
    for s in view["subscriptions"]:
        lines.append(f"  {s['_id']}  {s['type']}  pass={s['passName'] or s['passId']}  "
                     f"active={s['isActive']}  {s['startDate']} -> {s['endDate']}"
                     + ("  (draft)" if s["draft"] else ""))
    lines.append("")
    if not view["purchases"]:
        lines.append("No checkout sessions found.")
    for p in view["purchases"]:
        lines += _purchase_lines(p)
    if view["fix"] is not None:
        f = view["fix"]
        mode = "dry run, nothing written" if f["dry_run"] else "written"
        lines.append(f"Fix (run {f['run_id']}, {mode}): " + (
            f["error"] or (", ".join(f["created"]) or "nothing to create")))
    return "\n".join(lines) + "\n"


def _purchase_lines(p: JSON) -> list[str]:
    school = f" ({p['school']})" if p["school"] else ""
    out = [f"Purchase {p['session_id']}",
           f"  Stripe:     {p['account']}{school}, {p['created']}, {p['amount']} "
           f"{(p['currency'] or '').upper()}, status {p['status']}/{p['payment_status']}, "
           f"mode {p['mode']}, buyer {p['email']}, payment {p['payment_intent']}",
           f"  Metadata:   {json.dumps(p['metadata'], ensure_ascii=False)}"]
    if p["line_items"] is not None:
        out.append(f"  Line items: {json.dumps(p['line_items'], ensure_ascii=False)} "
                   "(read because the metadata lacks a key)")
    pass_ = p["pass"]
    if pass_:
        out.append(f"  Pass:       {pass_['name']} ({pass_['id']}), type {pass_['type']} -> "
                   f"{pass_['subscription_type']}, classes {pass_['classes_limit']}, validity "
                   f"{pass_['validity_type'] or 'days'} {pass_['validity_days'] or ''}"
                   f"{pass_['expiry_date'] or ''}, school {pass_['school'] or '?'} "
                   f"({pass_['tenant']})")
    else:
        out.append("  Pass:       none identified")
    docs = ", ".join(str(u.get("_id")) for u in p["student"]["documents"]) or "no user document"
    out.append(f"  Student:    {p['student']['user_id'] or 'no userId'} -> {docs}")
    existing = ", ".join(f"{s['_id']} ({s['type']}, active={s['isActive']})"
                         for s in p["existing"]) or "none"
    out.append(f"  Existing:   {existing}")
    out.append(f"  Verdict:    {p['verdict']}: {p['meaning']}")
    out.append(f"  What to do: {p['fix']}")
    for a in p["anomalies"]:
        out.append(f"  Anomaly:    {a['kind']}: {a['title']} ({a['detail']})")
    return [*out, ""]


# ---- the command ------------------------------------------------------------------------


def cmd_diagnose(args: argparse.Namespace, settings: Settings) -> int:
    from jobs.bootstrap import build_services
    from jobs.ledger import Ledger
    from jobs.lock import RunLock
    from jobs.service import new_run_id

    query = Query(email=args.email, session=args.session, user=args.user)
    if query.session is not None and not query.session.startswith("cs_"):
        raise ConfigError("--session: not a Checkout Session id (cs_...)")
    if query.email is not None and "@" not in query.email:
        raise ConfigError("--email: not an e-mail address")
    if args.dry_run and not args.fix:
        raise ConfigError("--dry-run goes with --fix (diagnose alone writes nothing)")
    if args.max_creates is not None and args.max_creates < 0:
        raise ConfigError("--max-creates must be 0 or more")
    settings.require("stripe", "sanity")
    now = datetime.now(UTC)
    run_id = new_run_id(now)
    services = build_services(settings)
    result = diagnose(query, services.stripe, services.sanity, now=now, run_id=run_id)
    if args.fix:
        lock = RunLock(settings.run.state_dir)
        if not lock.acquire(blocking=False, kind="diagnose"):
            result.fix = {"run_id": run_id, "dry_run": args.dry_run, "created": [],
                          "sessions": [], "error": "not fixed: another run holds the lock "
                          f"({lock.holder()}); try again when it has finished"}
        else:
            try:
                with Ledger.open(settings.run.state_dir) as ledger:
                    result.fix = apply_fix(
                        result, services.sanity, ledger, run_id=run_id, dry_run=args.dry_run,
                        max_creates=args.max_creates if args.max_creates is not None
                        else settings.run.max_creates, now=now)
            finally:
                lock.release()
    view = to_json(result)
    if args.json:
        sys.stdout.write(json.dumps(view, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(render_text(view))
    return int(view["exit_code"])

