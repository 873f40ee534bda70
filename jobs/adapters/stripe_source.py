"""Stripe adapter: reads Checkout Sessions, line items, refunds, events, endpoints and accounts.

Every request goes through `StripeClient.raw_request` and returns the parsed JSON (plain
dicts): building the SDK's StripeObjects costs about 1.3 ms per session, far more than the
rate limit needs to deliver it. Pages are driven by hand from the `starting_after` cursor and
one page fetch is the unit of retry, so a failure never silently truncates a window and a
retry resumes exactly where it stopped. The SDK plumbing and the error translation are in
`jobs.adapters.stripe_client`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import stripe
import structlog

from jobs.adapters.ratelimit import Budget
from jobs.adapters.retry import RateLimited, call_with_retry
from jobs.adapters.stripe_client import (
    JSON,
    get_json,
    page_cursor,
    translate,
)
from jobs.core.errors import (
    ReconcilerError,
    RetriableError,
)
from jobs.core.model import PLATFORM
from jobs.core.ports import SessionPage

log = structlog.get_logger("jobs.stripe_source")

MAX_PAGE = 100
MAX_EVENT_TYPES = 20  # Stripe's cap on `types[]`
# Sessions are listed with their line items: a session whose own metadata lacks the pass
# keys then needs only its product's metadata, and a page's products come in one request
# (`GET /v1/products?ids[]=…`) instead of one line-items request per session.
SESSION_EXPAND = ("data.line_items",)
# The operations as Stripe's rate limiter counts them (one budget per endpoint).
SESSIONS_OP = "GET /v1/checkout/sessions"
SESSION_OP = "GET /v1/checkout/sessions/{session}"
LINE_ITEMS_OP = "GET /v1/checkout/sessions/{session}/line_items"
PRODUCTS_OP = "GET /v1/products"
REFUNDS_OP = "GET /v1/refunds"
EVENTS_OP = "GET /v1/events"
WEBHOOK_ENDPOINTS_OP = "GET /v1/webhook_endpoints"
ACCOUNT_OP = "GET /v1/account"



class ProductCache:
    """Products by (account, id) read within the last `ttl` seconds, at most `size` of them
    (the oldest go first); thread-safe. A product's metadata is written when the app creates
    the Checkout Session and not changed after, so an hour-old copy is as good as a new one."""

    def __init__(self, size: int = 20_000, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._size, self._ttl, self._clock = size, ttl, clock
        self._items: dict[tuple[str, str], tuple[float, JSON]] = {}
        self._lock = threading.Lock()

    def get(self, account: str, ids: Sequence[str]) -> dict[str, JSON]:
        oldest = self._clock() - self._ttl
        out: dict[str, JSON] = {}
        with self._lock:
            for product_id in ids:
                hit = self._items.get((account, product_id))
                if hit is not None and hit[0] >= oldest:
                    out[product_id] = hit[1]
        return out

    def put(self, account: str, products: Mapping[str, JSON]) -> None:
        now = self._clock()
        with self._lock:
            for product_id, product in products.items():
                self._items.pop((account, product_id), None)
                self._items[(account, product_id)] = (now, product)
            while len(self._items) > self._size:
                del self._items[next(iter(self._items))]


class StripeSource:
    """Reads one platform and its connected accounts; `account` is "platform" or "acct_…"."""

    def __init__(self, client: stripe.StripeClient, *, bucket: Budget | None = None,
                 sleep: Callable[[float], None] = time.sleep, page_size: int = MAX_PAGE,
                 attempts: int = 6, rate_limit_attempts: int = 1) -> None:
        """`bucket`: the shared rate budget every request takes a token from first.
        `attempts`: calls per request for retriable failures. `rate_limit_attempts`: how
        many 429s in a row one call waits out (Retry-After, else backoff) before it counts
        as a failed attempt; the job sets it high, so a 429 never fails a run."""
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError("page_size must be within 1..100")
        self._client = client
        self._bucket = bucket
        self._sleep = sleep
        self._page_size = page_size
        self._attempts = attempts
        self._rate_limit_attempts = max(1, rate_limit_attempts)
        self._products = ProductCache()

    # ----- requests

    def _get(self, account: str, path: str, params: Mapping[str, Any], *, what: str,
             op: str, missing_ok: bool = False) -> JSON | None:
        """One GET of operation `op`, retried as a unit; None for a 404 when `missing_ok`."""

        def once() -> JSON | None:
            if self._bucket is not None:
                self._bucket.acquire(op)
            try:
                body = get_json(self._client, path, params, account)
            except stripe.StripeError as error:
                if missing_ok and error.http_status == 404:
                    return None
                translated = translate(error, account=account, what=what)
                if error.http_status == 429 and isinstance(translated, RetriableError):
                    raise RateLimited(translated) from error
                raise translated from error
            if not isinstance(body, dict):
                raise RetriableError(f"Stripe answered {what} with a body that is not an object")
            return dict(body)

        return call_with_retry(once, what=what, attempts=self._attempts, sleep=self._sleep,
                               rate_limit_attempts=self._rate_limit_attempts)

    def _page(self, account: str, path: str, params: Mapping[str, Any], *,
              what: str, op: str) -> tuple[list[JSON], bool]:
        body = self._get(account, path, params, what=what, op=op)
        data = body.get("data") if body else None
        has_more = body.get("has_more") if body else None
        if not isinstance(data, list) or not isinstance(has_more, bool):
            # Not retried: the same cursor would get the same answer.
            raise ReconcilerError(f"Stripe answered {what} with something that is not a list")
        return data, has_more

    def _pages(self, account: str, path: str, params: Mapping[str, Any], *, what: str,
               op: str, starting_after: str | None = None) -> Iterator[tuple[list[JSON], bool]]:
        cursor, index = starting_after, 0
        while True:
            query = {**params, "limit": self._page_size}
            if cursor is not None:
                query["starting_after"] = cursor
            data, has_more = self._page(account, path, query, what=f"{what} page {index}",
                                        op=op)
            yield data, has_more
            if not has_more or not data:
                return
            cursor, index = page_cursor(data, what), index + 1

    def _all(self, account: str, path: str, params: Mapping[str, Any], *,
             what: str, op: str) -> list[JSON]:
        return [item for data, _ in self._pages(account, path, params, what=what, op=op)
                for item in data]

    # ----- what the reconciler reads

    def session_pages(self, account: str, since: int, until: int,
                      starting_after: str | None = None) -> Iterator[SessionPage]:
        """Complete sessions created in [since, until), newest first, one page at a time.

        To resume after a failure, call again with `starting_after` = the last page's
        `last_id`: no session is lost or repeated."""
        params = {"status": "complete", "created": {"gte": since, "lt": until},
                  "expand": list(SESSION_EXPAND)}
        what = f"checkout sessions of {account}"
        pages = self._pages(account, "/v1/checkout/sessions", params, what=what,
                            op=SESSIONS_OP, starting_after=starting_after)
        cursor = starting_after
        for index, (data, has_more) in enumerate(pages):
            cursor = page_cursor(data, what) if data else cursor
            yield SessionPage(account, index, data, cursor, has_more)

    def session_page(self, account: str, since: int, until: int,
                     starting_after: str | None = None, *, index: int = 0) -> SessionPage:
        """ONE page of complete sessions created in [since, until), newest first, after the
        session `starting_after` (which must itself lie in the window): the unit of a
        segmented read (`jobs.run.segments`), where each time segment is its own cursor chain."""
        params: dict[str, Any] = {"status": "complete", "created": {"gte": since, "lt": until},
                                  "expand": list(SESSION_EXPAND), "limit": self._page_size}
        if starting_after is not None:
            params["starting_after"] = starting_after
        what = f"checkout sessions of {account}"
        data, has_more = self._page(account, "/v1/checkout/sessions", params,
                                    what=f"{what} page {index}", op=SESSIONS_OP)
        cursor = page_cursor(data, what) if data else starting_after
        return SessionPage(account, index, data, cursor, has_more and bool(data))

    def line_items(self, account: str, session_id: str) -> list[JSON]:
        """A session's line items with `price.product` expanded to the product object."""
        path = f"/v1/checkout/sessions/{quote(session_id, safe='')}/line_items"
        return self._all(account, path, {"expand": ["data.price.product"]},
                         what=f"line items of {session_id} ({account})", op=LINE_ITEMS_OP)

    def products(self, account: str, product_ids: Sequence[str]) -> dict[str, JSON]:
        """Products by id (at most 100 per request, Stripe's cap); ids not found (deleted)
        are left out. Products read lately come from memory (`ProductCache`): a quick pass
        every few seconds re-reads the same sessions of its overlap, and their products do
        not change."""
        wanted = list(dict.fromkeys(product_ids))
        out = self._products.get(account, wanted)
        wanted = [i for i in wanted if i not in out]
        for n in range(0, len(wanted), MAX_PAGE):
            chunk = wanted[n:n + MAX_PAGE]
            data, _ = self._page(account, "/v1/products", {"ids": chunk, "limit": MAX_PAGE},
                                 what=f"products of {account}", op=PRODUCTS_OP)
            found = {p["id"]: p for p in data
                     if isinstance(p, dict) and isinstance(p.get("id"), str)}
            self._products.put(account, found)
            out.update(found)
        return out

    def refunds(self, account: str, since: int) -> list[JSON]:
        """Refunds created at or after `since` (all pages), as Stripe lists them."""
        return self._all(account, "/v1/refunds", {"created": {"gte": since}},
                         what=f"refunds of {account}", op=REFUNDS_OP)

    def refunded(self, account: str, since: int) -> dict[str, int]:
        """Refunded minor units per payment intent, of the refunds created at or after
        `since` (all pages)."""
        return refunded_by_intent(self.refunds(account, since))

    def session(self, account: str, session_id: str) -> JSON | None:
        """One session (with its line items, as listed), or None when the account has no
        such session."""
        path = f"/v1/checkout/sessions/{quote(session_id, safe='')}"
        return self._get(account, path, {"expand": ["line_items"]},
                         what=f"session {session_id} ({account})",
                         op=SESSION_OP, missing_ok=True)

    def sessions_by_email(self, account: str, email: str) -> list[JSON]:
        """All sessions (any status) whose buyer e-mail is `email`."""
        # `what` names no e-mail: it ends up in logs and error messages.
        return self._all(account, "/v1/checkout/sessions", {"customer_details": {"email": email}},
                         what=f"sessions by e-mail of {account}", op=SESSIONS_OP)

    def events(self, account: str, since: int, types: Sequence[str] | None = None,
               delivery_success: bool | None = None) -> list[JSON]:
        """Events created at or after `since` (Stripe keeps 30 days), newest first.

        More than 20 types are asked for in groups of 20 (Stripe's cap) and merged."""
        base: dict[str, Any] = {"created": {"gte": since}}
        if delivery_success is not None:
            base["delivery_success"] = delivery_success
        wanted = list(dict.fromkeys(types or []))
        groups: list[dict[str, Any]] = [base] if not wanted else [
            {**base, "types": wanted[i:i + MAX_EVENT_TYPES]}
            for i in range(0, len(wanted), MAX_EVENT_TYPES)]
        merged: dict[str, JSON] = {}
        for params in groups:
            for item in self._all(account, "/v1/events", params, what=f"events of {account}",
                                  op=EVENTS_OP):
                merged[str(item.get("id"))] = item
        return sorted(merged.values(), key=lambda e: (e.get("created", 0), str(e.get("id"))),
                      reverse=True)

    def webhook_endpoints(self) -> list[JSON]:
        """The platform's webhook endpoints."""
        return self._all(PLATFORM, "/v1/webhook_endpoints", {}, what="webhook endpoints",
                         op=WEBHOOK_ENDPOINTS_OP)

    def own_account(self) -> JSON:
        """The key owner's account (`GET /v1/account`)."""
        body = self._get(PLATFORM, "/v1/account", {}, what="own account", op=ACCOUNT_OP)
        assert body is not None  # only missing_ok returns None
        return body


def refunded_by_intent(refunds: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Refunded minor units per payment intent (failed and canceled refunds do not count)."""
    out: dict[str, int] = {}
    for refund in refunds:
        pi = refund.get("payment_intent")
        amount = refund.get("amount")
        if (isinstance(pi, str) and isinstance(amount, int)
                and refund.get("status") in ("succeeded", "pending", None)):
            out[pi] = out.get(pi, 0) + amount
    return out
