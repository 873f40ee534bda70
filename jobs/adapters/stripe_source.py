"""Stripe adapter: reads Checkout Sessions, line items, refunds, events, endpoints and accounts.

Every request goes through `StripeClient.raw_request` and returns the parsed JSON (plain
dicts): building the SDK's StripeObjects costs about 1.3 ms per session, far more than the
rate limit needs to deliver it. Pages are driven by hand from the `starting_after` cursor and
one page fetch is the unit of retry, so a failure never silently truncates a window and a
retry resumes exactly where it stopped. Stripe's errors become `jobs.core.errors` classes here.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import stripe
import structlog

from jobs.adapters.http_session import session_from_env
from jobs.adapters.ratelimit import Budget
from jobs.adapters.retry import call_with_retry
from jobs.core.errors import (
    AccountError,
    CredentialsRejected,
    ReconcilerError,
    RetriableError,
    ServiceUnavailable,
)
from jobs.core.ports import SessionPage

log = structlog.get_logger("jobs.stripe_source")

JSON = dict[str, Any]
PLATFORM = "platform"
MAX_PAGE = 100
DEFAULT_API_BASE = "https://api.stripe.com"
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


def _format_sdk_logs_lazily() -> None:
    """stripe-python formats a log line for every request and response, the whole response
    body included, before anything asks whether that line is shown: a 340 KB page of
    sessions cost about 3 ms of CPU, a tenth of a large run's. Its requestor's two log
    functions are wrapped so that they format only when the `stripe` logger (or `STRIPE_LOG`
    / `stripe.log`) would show the line; what is shown does not change."""
    try:
        from stripe import _api_requestor, _util
    except ImportError:  # another SDK layout: its logging stays as it is
        return

    # The module's names are read and set as data: they are the SDK's private plumbing.
    names = vars(_api_requestor)
    plumbing = ("log_debug", "log_info", "_console_log_level")
    if "log_debug" not in names or not all(n in vars(_util) for n in plumbing):
        return
    if getattr(names["log_debug"], "lazy", False):
        return
    console: Callable[[], str | None] = vars(_util)["_console_log_level"]

    def lazily(log: Callable[..., None], level: int, shown: tuple[str, ...]) -> Any:
        def wrapper(message: str, **params: Any) -> None:
            if _util.logger.isEnabledFor(level) or console() in shown:
                log(message, **params)

        wrapper.lazy = True  # type: ignore[attr-defined]
        return wrapper

    names["log_debug"] = lazily(vars(_util)["log_debug"], logging.DEBUG, ("debug",))
    names["log_info"] = lazily(vars(_util)["log_info"], logging.INFO, ("debug", "info"))


def make_client(api_key: str, api_base: str | None, timeout: float, *,
                on_response: Callable[..., Any] | None = None) -> stripe.StripeClient:
    """The SDK client for `StripeSource`; `api_base` points it at another API (the stand-in)."""
    _format_sdk_logs_lazily()
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base.rstrip("/")} if api_base else None,
        # No SDK retries, on purpose: we retry each request ourselves (call_with_retry) and
        # honour Retry-After, which the SDK ignores; the SDK also never retries a plain 429
        # and sleeps with the real clock. Two layers would multiply attempts (6 x N) and hide
        # waits from our tests and logs.
        max_network_retries=0,
        http_client=stripe.RequestsClient(
            timeout=timeout, session=session_from_env(api_base or DEFAULT_API_BASE,
                                                      on_response=on_response)),
    )


# Stripe's 403 for a restricted key without a right (not for an account it cannot reach).
_MISSING_PERMISSION = re.compile(r"Having the '([^']+)' permission would allow")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def translate(error: stripe.StripeError, *, account: str, what: str) -> ReconcilerError:
    """One Stripe SDK error -> our error class. Messages never carry the key (Stripe's own
    message quotes a masked key, so it is left out for 401/403)."""
    status = error.http_status
    headers = error.headers or {}
    should_retry = (headers.get("stripe-should-retry") or headers.get("Stripe-Should-Retry")
                    or "").lower()
    kind = error.code or type(error).__name__
    ref = f"request {error.request_id}" if error.request_id else "no request id"
    if isinstance(error, stripe.AuthenticationError) or status == 401:
        return CredentialsRejected(f"Stripe rejected STRIPE_SECRET_KEY ({status or 401} {kind}; "
                                   f"{ref})")
    if isinstance(error, stripe.PermissionError) or status == 403:
        missing = _MISSING_PERMISSION.search(str(error.user_message or ""))
        if missing:  # the key lacks a right: every account would fail alike
            return CredentialsRejected(f"STRIPE_SECRET_KEY lacks the permission "
                                       f"'{missing.group(1)}' needed to read {what} "
                                       f"(403 {kind}; {ref})")
        if account != PLATFORM:
            return AccountError(f"Stripe account {account} cannot be read with STRIPE_SECRET_KEY "
                                f"(403 {kind}; {ref}) while reading {what}")
        return CredentialsRejected(f"Stripe rejected STRIPE_SECRET_KEY for the platform account "
                                   f"(403 {kind}; {ref}) while reading {what}")
    if should_retry == "true":
        return RetriableError(f"Stripe asked to retry {what} ({status}; {ref})",
                              retry_after=_retry_after(headers))
    if isinstance(error, stripe.APIConnectionError) and not error.should_retry:
        return ServiceUnavailable(f"Stripe could not be reached for {what} "
                                  f"({type(error.__cause__).__name__})")
    if status is not None and 400 <= status < 500 and status not in (409, 429):
        return ReconcilerError(f"Stripe refused {what} ({status} {kind}: "
                               f"{error.user_message}; {ref})")
    if should_retry == "false":
        return ServiceUnavailable(f"Stripe failed {what} and asked not to retry ({status}; {ref})")
    if isinstance(error, stripe.APIConnectionError):
        # The SDK's message embeds the URL (and so query values such as an e-mail): name only
        # the transport error.
        return RetriableError(f"Stripe connection failed for {what} "
                              f"({type(error.__cause__).__name__})")
    return RetriableError(f"Stripe failed {what} ({status} {kind}; {ref})",
                          retry_after=_retry_after(headers))


def _get_json(client: stripe.StripeClient, path: str, params: Mapping[str, Any],
              account: str) -> Any:
    """One GET through the SDK's requestor, its answer parsed with plain `json.loads`.

    `StripeClient.raw_request` parses every answer with an OrderedDict hook, 2.5 times
    slower on a 340 KB page of sessions than plain parsing: at 100,000 sessions that was
    the largest part of the run's CPU. Errors still take the SDK's own path (its
    exception classes, with status, code and headers). The requestor is private: when it
    is missing or its signature changed (another SDK release), the public `raw_request`
    answers instead, slower but the same."""
    options: Any = {} if account == PLATFORM else {"stripe_account": account}
    requestor = getattr(client, "_requestor", None)
    request_raw = getattr(requestor, "request_raw", None)
    interpret = getattr(requestor, "_interpret_response", None)
    if callable(request_raw) and callable(interpret):
        try:
            body, code, headers = request_raw(
                "get", path, params=params, options=options, base_address="api",
                api_mode="V1", usage=["raw_request"])
        except TypeError as error:  # raised before anything is sent: the signature changed
            _private_path_gone(error)
        else:
            if not 200 <= code < 300:
                interpret(body, code, headers, "V1")  # raises the SDK's error
            return _parsed(body, path, code)
    else:
        _private_path_gone(None)
    extra: dict[str, Any] = {} if account == PLATFORM else {"stripe_account": account}
    response = client.raw_request("get", path, **dict(params), **extra)
    return _parsed(getattr(response, "body", None), path, getattr(response, "code", 200))


def _parsed(body: Any, path: str, code: int) -> Any:
    try:
        return json.loads(body)
    except (TypeError, ValueError) as error:
        raise RetriableError(f"Stripe answered {path} with a body that is not JSON "
                             f"({code})") from error


_warned: list[bool] = []


def _private_path_gone(error: TypeError | None) -> None:
    if not _warned:
        _warned.append(True)
        log.warning("stripe_private_requestor_unusable", fallback="raw_request",
                    sdk=getattr(stripe, "VERSION", "?"), error=str(error) if error else None)


class _RateLimited(Exception):
    """Stripe answered 429 (carries the translated error): waited out before a retry."""

    def __init__(self, error: RetriableError) -> None:
        super().__init__(str(error))
        self.error = error


def _cursor(data: list[JSON], what: str) -> str:
    """The `starting_after` for the page after `data`: its last object's id."""
    last = data[-1]
    cursor = last.get("id") if isinstance(last, dict) else None
    if not isinstance(cursor, str) or not cursor:
        raise ReconcilerError(f"Stripe answered {what} with a last object without an id")
    return cursor


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
                body = _get_json(self._client, path, params, account)
            except stripe.StripeError as error:
                if missing_ok and error.http_status == 404:
                    return None
                translated = translate(error, account=account, what=what)
                if error.http_status == 429 and isinstance(translated, RetriableError):
                    raise _RateLimited(translated) from error
                raise translated from error
            if not isinstance(body, dict):
                raise RetriableError(f"Stripe answered {what} with a body that is not an object")
            return dict(body)

        def waiting_out_429s() -> JSON | None:
            for attempt in range(1, self._rate_limit_attempts + 1):
                try:
                    return once()
                except _RateLimited as limited:
                    error = limited.error
                    if attempt == self._rate_limit_attempts:
                        raise error from limited.__cause__
                    # Retry-After says when; without it, a short backoff (capped at 5 s).
                    wait = error.retry_after if error.retry_after is not None else min(
                        5.0, 0.25 * 2 ** (attempt - 1))
                    log.warning("retrying", what=what, attempt=attempt, wait_s=wait,
                                error=str(error))
                    self._sleep(wait)
            raise AssertionError("unreachable")

        return call_with_retry(waiting_out_429s, what=what, attempts=self._attempts,
                               sleep=self._sleep)

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
            cursor, index = _cursor(data, what), index + 1

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
            cursor = _cursor(data, what) if data else cursor
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
        cursor = _cursor(data, what) if data else starting_after
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
        """Refunds created at or after `since` (all pages)."""
        return self._all(account, "/v1/refunds", {"created": {"gte": since}},
                         what=f"refunds of {account}", op=REFUNDS_OP)

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
