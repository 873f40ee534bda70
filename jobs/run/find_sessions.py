"""`reconcile diagnose`, finding: the Checkout Sessions of one person or purchase on every
account, the people and subscriptions Sanity holds for them, and the engine's plan for each
(`diagnose`); nothing is written."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog

from jobs.core.catalog import catalog_from
from jobs.core.classify import needs_line_items, parse_line_items, parse_session, text
from jobs.core.diagnosis import JSON, Diagnosis, Found, Query
from jobs.core.errors import CredentialsRejected, ReconcilerError
from jobs.core.model import Decision, PlanContext, Session
from jobs.core.ports import SanityStore, SessionPage, StripeSource
from jobs.run.reconcile import Reconciler, accounts_to_read

# The command's logger: its lines read the same wherever the work is done.
log = structlog.get_logger("jobs.diagnose")

USER_DAYS = 90



class DiagnoseStripe(StripeSource, Protocol):
    """What `diagnose` reads of Stripe: the run's reads, and sessions by e-mail or page."""

    def session_pages(self, account: str, since: int, until: int,
                      starting_after: str | None = None) -> Iterator[SessionPage]: ...
    def sessions_by_email(self, account: str, email: str) -> list[JSON]: ...


class DiagnoseStore(SanityStore, Protocol):
    """What `diagnose` reads of Sanity: the run's reads, and one person's documents."""

    def people_and_purchases(self, user_ids: list[str], emails: list[str],
                             session_ids: list[str], payment_intents: list[str],
                             ) -> tuple[list[JSON], list[JSON]]: ...


class RememberingStripe:
    """The Stripe source with line items kept, so finding and planning fetch them once."""

    def __init__(self, stripe: DiagnoseStripe) -> None:
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

    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage:
        page: SessionPage = self._stripe.session_page(account, since, until, starting_after,
                                                      index=index)
        return page

    def refunded(self, account: str, since: int) -> dict[str, int]:
        return dict(self._stripe.refunded(account, since))

    def products(self, account: str, product_ids: Sequence[str]) -> dict[str, JSON]:
        return dict(self._stripe.products(account, product_ids))

    def session(self, account: str, session_id: str) -> JSON | None:
        found: JSON | None = self._stripe.session(account, session_id)
        if found is not None:
            # Without the listed line items, planning asks `line_items` for them, which
            # keeps them here for the report (`known_items`).
            found.pop("line_items", None)
        return found

    def sessions_by_email(self, account: str, email: str) -> list[JSON]:
        return list(self._stripe.sessions_by_email(account, email))


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


def diagnose(query: Query, stripe: DiagnoseStripe, sanity: DiagnoseStore, *, now: datetime,
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
    users, subs = sanity.people_and_purchases(
        sorted(uids), [query.email.lower()] if query.email else [], sids, pis)
    return Diagnosis(query, accounts, found, catalog, users, subs, purchases, clerk_ids,
                     descriptions)
