"""In-memory fakes of the ports, for orchestrator tests that need no server."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from jobs.adapters.stripe_source import refunded_by_intent
from jobs.core.errors import AccountError, ReconcilerError, WriteRejected
from jobs.core.ports import SessionPage
from jobs.core.recheck import is_manual


class FakeStripe:
    def __init__(self, sessions: dict[str, list[dict[str, Any]]], page_size: int = 3) -> None:
        self.sessions = sessions
        self.page_size = page_size
        self.line_item_data: dict[str, list[dict[str, Any]]] = {}
        self.product_data: dict[str, dict[str, Any]] = {}
        self.refund_data: dict[str, list[dict[str, Any]]] = {}
        self.failing_accounts: dict[str, ReconcilerError] = {}
        self.calls: list[tuple[str, str]] = []

    def _window(self, account: str, since: int, until: int) -> list[dict[str, Any]]:
        """Complete sessions created in [since, until), newest first, as Stripe lists them."""
        if account in self.failing_accounts:
            raise self.failing_accounts[account]
        return sorted((s for s in self.sessions.get(account, [])
                       if since <= s["created"] < until and s.get("status") == "complete"),
                      key=lambda s: (-s["created"], s["id"]))

    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage:
        """The port's call: one page of a time segment, after the cursor `starting_after`."""
        self.calls.append(("list", account))
        rows = self._window(account, since, until)
        start = 0
        if starting_after is not None:
            start = next(i for i, s in enumerate(rows) if s["id"] == starting_after) + 1
        chunk = rows[start:start + self.page_size]
        return SessionPage(account, index, copy.deepcopy(chunk),
                           chunk[-1]["id"] if chunk else starting_after,
                           start + self.page_size < len(rows))

    def session_pages(self, account: str, since: int, until: int,
                      starting_after: str | None = None) -> Iterator[SessionPage]:
        """A whole window in order (what `diagnose` reads a person's purchases with)."""
        index, cursor = 0, starting_after
        while True:
            page = self.session_page(account, since, until, cursor, index=index)
            yield page
            if not page.has_more:
                return
            index, cursor = index + 1, page.last_id

    def line_items(self, account: str, session_id: str) -> list[dict[str, Any]]:
        self.calls.append(("line_items", session_id))
        return copy.deepcopy(self.line_item_data.get(session_id, []))

    def products(self, account: str, product_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls.append(("products", ",".join(product_ids)))
        return {i: copy.deepcopy(self.product_data[i]) for i in product_ids
                if i in self.product_data}

    def refunded(self, account: str, since: int) -> dict[str, int]:
        self.calls.append(("refunds", account))
        return refunded_by_intent(copy.deepcopy(self.refund_data.get(account, [])))

    def session(self, account: str, session_id: str) -> dict[str, Any] | None:
        return next((copy.deepcopy(s) for s in self.sessions.get(account, [])
                     if s["id"] == session_id), None)


def _ref(doc: dict[str, Any], field: str) -> Any:
    value = doc.get(field)
    return value.get("_ref") if isinstance(value, dict) else None


class FakeSanity:
    """Documents by id; lookups filter like the GROQ of `jobs.adapters.sanity_store`."""

    def __init__(self, docs: Sequence[dict[str, Any]] = ()) -> None:
        self.docs: dict[str, dict[str, Any]] = {d["_id"]: copy.deepcopy(d) for d in docs}
        self.commits: list[tuple[str, list[dict[str, Any]], bool]] = []
        self.lookups = 0
        self.rechecks = 0
        self.refuse: set[str] = set()  # ids whose creation Sanity refuses

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs.values() if d.get("_type") == kind]

    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return copy.deepcopy(self.of_type("tenant")), copy.deepcopy(self.of_type("pass"))

    def _recording(self, session_ids: Sequence[str],
                   payment_intents: Sequence[str]) -> list[dict[str, Any]]:
        own = {f"subscription-{s}" for s in session_ids}
        own |= {f"drafts.{i}" for i in own}
        return [d for d in self.of_type("subscription")
                if d.get("stripeSessionId") in session_ids or d["_id"] in own
                or any(d.get(k) in payment_intents
                       for k in ("stripePaymentId", "stripePaymentIntentId", "paymentId"))]

    def recheck(self, session_ids: list[str], payment_intents: list[str],
                person_refs: list[str]) -> dict[str, Any]:
        self.rechecks += 1
        manual = [d for d in self.of_type("subscription")
                  if is_manual(d) and _ref(d, "user") in person_refs]
        return copy.deepcopy({"subs": self._recording(session_ids, payment_intents),
                              "manual": manual})

    def lookup_page(self, session_ids: list[str], payment_intents: list[str],
                    user_ids: list[str], upgrade_ids: list[str]) -> dict[str, Any]:
        self.lookups += 1
        subs = self._recording(session_ids, payment_intents)
        users = [d for d in self.of_type("user") if not d["_id"].startswith("drafts.")
                 and (d.get("clerkId") in user_ids or d["_id"] in user_ids)]
        upgrades = [d for d in self.of_type("subscription") if d["_id"] in upgrade_ids]
        return copy.deepcopy({"subs": subs, "users": users, "upgrades": upgrades})

    def get_documents(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.docs[i]) for i in ids if i in self.docs]

    def commit(self, mutations: Sequence[dict[str, Any]], transaction_id: str, *,
               dry_run: bool = False) -> list[dict[str, Any]]:
        staged = copy.deepcopy(self.docs)
        results: list[dict[str, Any]] = []  # like Sanity: one per document touched
        for m in mutations:
            if "createIfNotExists" in m:
                doc = m["createIfNotExists"]
                if doc["_id"] in self.refuse:
                    raise WriteRejected(f"refused {doc['_id']}")
                if doc["_id"] not in staged:
                    staged[doc["_id"]] = copy.deepcopy(doc)
                    results.append({"id": doc["_id"], "operation": "create"})
            elif "patch" in m:
                patch = m["patch"]
                if patch["id"] not in staged:
                    raise WriteRejected(f"patch of missing document {patch['id']}")
                staged[patch["id"]].update(copy.deepcopy(patch.get("set", {})))
                results.append({"id": patch["id"], "operation": "update"})
        self.commits.append((transaction_id, list(mutations), dry_run))
        if not dry_run:
            self.docs = staged
        return results


def account_error(account: str) -> AccountError:
    return AccountError(f"Stripe refused access to account {account} (403)")
