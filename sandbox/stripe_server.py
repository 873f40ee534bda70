"""Stripe stand-in: serves a sandbox `stripe.json` the way Stripe's API answers, on 127.0.0.1.

In process::

    with StripeStandIn(data) as standin:
        client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": standin.url})
        standin.controls.set_latency(0.05)

Out of process: ``python -m sandbox.stripe_server --data stripe.json [--port N] [--now TS]``
prints one line ``LISTENING http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT;
``RemoteControls(url)`` drives the same controls over HTTP under ``/_sandbox/…``.

The file is one module on purpose (the stand-in is one deployable thing); its sections are
the data (`Collection`, `StripeData`), the API (`StripeApi`), the knobs (`Controls`) and the
HTTP shell (`StripeStandIn`).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import fnmatch
import gc
import json
import math
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

JSON = dict[str, Any]
PLATFORM = "platform"
MAX_EXPAND_DEPTH = 4
EVENT_RETENTION_S = 30 * 86400
MAX_TYPES = 20
EMBEDDED_LIST_LIMIT = 10
DOC_URL = "https://stripe.com/docs/error-codes/"
API_VERSION = "2026-10-28.endive"
MALFORMED_BODY = b'{"object": "list", "data": [{"id": "cs_'


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def public(obj: Mapping[str, Any]) -> JSON:
    """The object as served: top-level private keys (leading `_`) removed.

    Only the top level: nested keys belong to Stripe's shape or to user metadata.
    """
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def mask_key(key: str) -> str:
    """Stripe's way of naming a key in a message: prefix, stars, last four."""
    prefix = key[: key.index("_", key.index("_") + 1) + 1] if key.count("_") >= 2 else ""
    rest = len(key) - len(prefix)
    if rest < 8:  # too short to show a tail without showing most of the key
        return f"{prefix}{'*' * max(rest, 3)}"
    return f"{prefix}{'*' * (rest - 4)}{key[-4:]}"


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """One Stripe error answer: status, `{"error": {...}}` body, extra headers."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        doc = DOC_URL + self.code.replace("_", "-") if self.code else None
        return _dumps({"error": {"type": self.type, "code": self.code, "message": self.message,
                                 "param": self.param, "doc_url": doc}})


def bad_request(message: str, param: str | None = None,
                code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def unknown_parameter(name: str) -> ApiError:
    return ApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown",
                    param=name)


def no_such(kind: str, object_id: str, param: str, status: int = 404) -> ApiError:
    return ApiError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def default_error(status: int) -> ApiError:
    """The body Stripe sends for a bare status (used by injected faults without a body)."""
    if status == 429:
        return rate_limit_error()
    if status >= 500:
        return ApiError(status, "An unknown error occurred on Stripe's side.", type_="api_error")
    return ApiError(status, f"Injected error {status}.")


def rate_limit_error() -> ApiError:
    return ApiError(429, "Request rate limit exceeded. You can learn more about rate limits "
                    "here https://stripe.com/docs/rate-limits.", code="rate_limit")


# --------------------------------------------------------------------------- query parameters

_KEY = re.compile(r"^([A-Za-z0-9_]+)(?:\[([A-Za-z0-9_]*)\])?$")


def parse_query(query: str) -> JSON:
    """Form-encoded query -> dict. `a[b]=1` -> {"a": {"b": "1"}}; `a[]=x`, `a[0]=x` -> lists."""
    out: JSON = {}
    indexed: dict[str, dict[int, str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            raise bad_request(f"Invalid parameter: {key}", key)
        name, sub = match.group(1), match.group(2)
        current = out.get(name)
        if sub is None:
            if name in out:
                raise bad_request(f"Invalid parameter: {name} given twice", name)
            out[name] = value
        elif sub == "" or sub.isdigit():
            if current is not None and not isinstance(current, list):
                raise bad_request(f"Invalid array: {name}", name)
            out.setdefault(name, [])
            if sub == "":
                out[name].append(value)
            else:
                indexed.setdefault(name, {})[int(sub)] = value
        else:
            if current is not None and not isinstance(current, dict):
                raise bad_request(f"Invalid hash: {name}", name)
            out.setdefault(name, {})[sub] = value
    for name, by_index in indexed.items():
        out[name].extend(by_index[i] for i in sorted(by_index))
    return out


class Params:
    """Validated access to one request's parameters, with Stripe's 400s for bad ones."""

    CREATED_OPS = ("gt", "gte", "lt", "lte")

    def __init__(self, raw: JSON, allowed: Sequence[str]) -> None:
        for name in raw:
            if name not in allowed:
                raise unknown_parameter(name)
        self.raw = raw

    def string(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad_request(f"Invalid string: {name}", name)
        return value

    def hash_value(self, name: str, sub: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise bad_request(f"Invalid hash: {name}", name)
        for key in value:
            if key != sub:
                raise unknown_parameter(f"{name}[{key}]")
        return value.get(sub)

    def integer(self, name: str, value: str) -> int:
        if not re.fullmatch(r"-?\d+", value):
            raise bad_request(f"Invalid integer: {value}", name)
        return int(value)

    def limit(self) -> int:
        raw = self.string("limit")
        if raw is None:
            return 10
        value = self.integer("limit", raw)
        if value < 1:
            raise bad_request("This value must be greater than or equal to 1.", "limit")
        if value > 100:
            raise bad_request(f"This value must be less than or equal to 100 (it currently is "
                              f"'{value}').", "limit")
        return value

    def cursors(self) -> tuple[str | None, str | None]:
        after, before = self.string("starting_after"), self.string("ending_before")
        if after is not None and before is not None:
            raise bad_request("You may only specify one of these parameters: ending_before, "
                              "starting_after.", "ending_before")
        return after or None, before or None

    def created(self) -> dict[str, int]:
        value = self.raw.get("created")
        if value is None:
            return {}
        if isinstance(value, str):
            exact = self.integer("created", value)
            return {"gte": exact, "lte": exact}
        if not isinstance(value, dict):
            raise bad_request("Invalid created", "created")
        out: dict[str, int] = {}
        for op, raw in value.items():
            if op not in self.CREATED_OPS:
                raise unknown_parameter(f"created[{op}]")
            out[op] = self.integer(f"created[{op}]", raw)
        return out

    def strings(self, name: str, maximum: int) -> list[str]:
        value = self.raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise bad_request(f"Invalid array: {name}", name)
        if len(value) > maximum:
            raise bad_request(f"Invalid array: {name} can have at most {maximum} elements.", name)
        return list(value)

    def expand(self, allowed: Sequence[str]) -> set[str]:
        wanted = self.strings("expand", 100)
        for path in wanted:
            if len(path.split(".")) > MAX_EXPAND_DEPTH:
                raise bad_request("You cannot expand more than 4 levels of a property. "
                                  f"Property: {path}", "expand")
            if path not in allowed:
                raise bad_request(f"This property cannot be expanded ({path}).", "expand")
        return set(wanted)

    def boolean(self, name: str) -> bool | None:
        value = self.string(name)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise bad_request(f"Invalid boolean: {value}", name)
        return value == "true"


# --------------------------------------------------------------------------- data

Getter = Callable[[JSON], Any]


def ref(value: Any) -> Any:
    """An id field that may be given expanded: its id."""
    return value.get("id") if isinstance(value, dict) else value


def sort_created(obj: Mapping[str, Any]) -> int:
    """Where an object sits in time. A private `_created` places an object whose own
    `created` is deliberately malformed (to exercise the reconciler's parsing)."""
    value = obj.get("_created", obj.get("created"))
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Collection:
    """Objects of one kind in one account, newest first (created desc, then id desc).

    Pre-sorted once; `created` filters bisect; cursors resolve through an id->position map;
    equality filters on selective fields use indexes built on first use; each object's JSON
    bytes are cached on first serve.
    """

    def __init__(self, objects: Sequence[JSON], indexable: Mapping[str, Getter] | None = None,
                 render: Callable[[JSON], JSON] = public) -> None:
        keyed = sorted(((sort_created(o), str(o.get("id", "")), o) for o in objects),
                       key=lambda t: (t[0], t[1]), reverse=True)
        self.objects: list[JSON] = [t[2] for t in keyed]
        self._neg_created = [-t[0] for t in keyed]
        self.position = {t[1]: i for i, t in enumerate(keyed)}
        self._indexable = dict(indexable or {})
        self._indexes: dict[str, dict[Any, list[int]]] = {}
        self._lock = threading.Lock()
        self._render = render
        self._json: list[bytes | None] = [None] * len(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, object_id: str) -> JSON | None:
        i = self.position.get(object_id)
        return None if i is None else self.objects[i]

    def json(self, i: int) -> bytes:
        cached = self._json[i]
        if cached is None:
            cached = self._json[i] = _dumps(self._render(self.objects[i]))
        return cached

    def window(self, created: Mapping[str, int]) -> tuple[int, int]:
        """Positions [lo, hi) whose created satisfies the bounds (the list is created-desc)."""
        neg, lo, hi = self._neg_created, 0, len(self._neg_created)
        if "gte" in created:
            hi = min(hi, bisect.bisect_right(neg, -created["gte"]))
        if "gt" in created:
            hi = min(hi, bisect.bisect_left(neg, -created["gt"]))
        if "lte" in created:
            lo = max(lo, bisect.bisect_left(neg, -created["lte"]))
        if "lt" in created:
            lo = max(lo, bisect.bisect_right(neg, -created["lt"]))
        return lo, hi

    def _index(self, name: str) -> dict[Any, list[int]]:
        with self._lock:
            index = self._indexes.get(name)
            if index is None:
                getter, index = self._indexable[name], {}
                for i, obj in enumerate(self.objects):
                    index.setdefault(getter(obj), []).append(i)
                self._indexes[name] = index
            return index

    def select(self, lo: int, hi: int, *, limit: int, equals: Mapping[str, Any],
               predicate: Callable[[JSON], bool] | None = None, after: int | None = None,
               before: int | None = None) -> tuple[list[int], bool]:
        """Up to `limit` matching positions in list order, and whether more match beyond them.

        `after`/`before` are cursor positions (starting_after / ending_before)."""
        if after is not None:
            lo = max(lo, after + 1)
        if before is not None:
            hi = min(hi, before)
        if lo >= hi:
            return [], False
        indexed = [name for name in equals if name in self._indexable]
        candidates: Sequence[int] = range(lo, hi)
        if indexed:
            shortest = min((self._index(n).get(equals[n], []) for n in indexed), key=len)
            candidates = shortest[bisect.bisect_left(shortest, lo):bisect.bisect_left(shortest, hi)]
        checks = [(self._indexable[n], v) for n, v in equals.items()]
        objects, found = self.objects, []
        ordered = reversed(candidates) if before is not None else iter(candidates)
        for i in ordered:
            obj = objects[i]
            if all(getter(obj) == value for getter, value in checks) and (
                    predicate is None or predicate(obj)):
                found.append(i)
                if len(found) > limit:
                    break
        has_more = len(found) > limit
        found = found[:limit]
        if before is not None:
            found.reverse()
        return found, has_more


def list_body(url: str, items: Sequence[bytes], has_more: bool) -> bytes:
    return b"".join((b'{"object":"list","data":[', b",".join(items), b'],"has_more":',
                     b"true" if has_more else b"false", b',"url":', _dumps(url), b"}"))


def _session_email(obj: JSON) -> Any:
    details = obj.get("customer_details")
    return details.get("email") if isinstance(details, dict) else None


SESSION_FIELDS: dict[str, Getter] = {
    "status": lambda o: o.get("status"),
    "customer_details[email]": _session_email,
    "payment_intent": lambda o: ref(o.get("payment_intent")),
    "customer": lambda o: ref(o.get("customer")),
    "payment_link": lambda o: ref(o.get("payment_link")),
    "subscription": lambda o: ref(o.get("subscription")),
}
REFUND_FIELDS: dict[str, Getter] = {
    "payment_intent": lambda o: ref(o.get("payment_intent")),
    "charge": lambda o: ref(o.get("charge")),
}


def _public_event(obj: JSON) -> JSON:
    """An event with private keys removed at its top level and from `data.object`."""
    out = public(obj)
    data = out.get("data")
    if isinstance(data, dict) and isinstance(data.get("object"), dict):
        out["data"] = {**data, "object": public(data["object"])}
    return out


@dataclass
class AccountData:
    """One account's objects."""

    sessions: Collection
    events: Collection
    refunds: Collection
    webhook_endpoints: Collection
    products: dict[str, JSON]
    line_items: dict[str, list[JSON]]
    expanded: dict[int, bytes] = field(default_factory=dict)  # session JSON with line items

    @classmethod
    def build(cls, raw: Mapping[str, Any]) -> AccountData:
        sessions = raw.get("checkout_sessions", [])
        return cls(
            sessions=Collection(sessions, SESSION_FIELDS),
            events=Collection(raw.get("events", []), render=_public_event),
            refunds=Collection(raw.get("refunds", []), REFUND_FIELDS),
            webhook_endpoints=Collection(raw.get("webhook_endpoints", [])),
            products={p["id"]: p for p in raw.get("products", [])},
            line_items={s["id"]: s["_line_items"] for s in sessions
                        if isinstance(s.get("_line_items"), list) and isinstance(s.get("id"), str)},
        )


class StripeData:
    """The whole sandbox file, indexed for serving."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.keys: dict[str, JSON] = dict(raw.get("keys", {}))
        self.platform: JSON = dict(raw.get("platform") or {"id": "acct_platform",
                                                           "object": "account"})
        self.accounts: dict[str, JSON] = dict(raw.get("accounts", {}))
        self.connected = Collection(list(self.accounts.values()))
        self.by_account = {name: AccountData.build(data)
                           for name, data in raw.get("data", {}).items()}
        self._empty = AccountData.build({})

    def account(self, name: str) -> AccountData:
        return self.by_account.get(name, self._empty)


def load_data(data: Mapping[str, Any] | Path | str) -> JSON:
    if isinstance(data, Mapping):
        return dict(data)
    with open(data, encoding="utf-8") as handle:
        loaded: JSON = json.load(handle)
    return loaded


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Millions of small dicts are built at start-up and none is garbage: the cyclic
    collector's passes over them would double the start-up time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- the API


class Headers(Protocol):
    """What the API reads of request headers (a dict, or http.server's case-blind message)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class Route:
    op: str
    pattern: re.Pattern[str]
    permission: str
    handler: str


def _route(method: str, template: str, permission: str, handler: str) -> Route:
    regex = re.sub(r"\{[a-z_]+\}", r"([^/]+)", template)
    return Route(f"{method} {template}", re.compile(f"^{regex}$"), permission, handler)


ROUTES = (
    _route("GET", "/v1/checkout/sessions", "checkout_sessions_read", "list_sessions"),
    _route("GET", "/v1/checkout/sessions/{session}", "checkout_sessions_read", "get_session"),
    _route("GET", "/v1/checkout/sessions/{session}/line_items", "checkout_sessions_read",
           "list_line_items"),
    _route("GET", "/v1/events", "events_read", "list_events"),
    _route("GET", "/v1/webhook_endpoints", "webhook_endpoints_read", "list_webhook_endpoints"),
    _route("GET", "/v1/accounts", "connected_accounts_read", "list_accounts"),
    # Any valid key may read its own account: restricted keys need no named permission here.
    _route("GET", "/v1/account", "", "get_account"),
    _route("GET", "/v1/refunds", "refunds_read", "list_refunds"),
)
LIST_PARAMS = ("limit", "starting_after", "ending_before", "expand")


def find_route(method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
    for route in ROUTES:
        if route.op.startswith(method + " "):
            match = route.pattern.match(path)
            if match:
                return route, tuple(unquote(g) for g in match.groups())
    return None


class StripeApi:
    """Answers one Stripe request (no HTTP here): auth, Connect scoping, the endpoints."""

    def __init__(self, data: StripeData, now: Callable[[], float]) -> None:
        self.data = data
        self.now = now

    def handle(self, method: str, path: str, query: str,
               headers: Headers) -> tuple[int, bytes]:
        try:
            found = find_route(method, path)
            if found is None:
                raise ApiError(404, f"Unrecognized request URL ({method}: {path}). Please see "
                               "https://stripe.com/docs or we can help at "
                               "https://support.stripe.com/.")
            route, args = found
            account = self.authorize(headers, route.permission)
            handler: Callable[..., bytes] = getattr(self, route.handler)
            return 200, handler(self.data.account(account), account, parse_query(query), *args)
        except ApiError as error:
            return error.status, error.body()
        except Exception as error:  # a stand-in bug: answer like Stripe's 500, and say what broke
            return 500, ApiError(500, f"Stand-in failure: {type(error).__name__}: {error}",
                                 type_="api_error").body()

    def authorize(self, headers: Headers, permission: str) -> str:
        """The account the request acts on ("platform" or "acct_…"), or Stripe's 401/403."""
        auth = headers.get("Authorization") or ""
        scheme, _, key = auth.partition(" ")
        if not auth:
            raise ApiError(401, "You did not provide an API key. You need to provide your API "
                           "key in the Authorization header, using Bearer auth (e.g. "
                           "'Authorization: Bearer YOUR_SECRET_KEY').")
        grant = self.data.keys.get(key.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            raise ApiError(401, f"Invalid API Key provided: {mask_key(key.strip() or auth)}",
                           code="api_key_invalid")
        header = (headers.get("Stripe-Account") or "").strip()
        account = PLATFORM if not header or header == self.data.platform.get("id") else header
        if account != PLATFORM:
            allowed = grant.get("accounts", "*")
            if account not in self.data.accounts or (allowed != "*" and account not in allowed):
                raise ApiError(403, f"The provided key '{mask_key(key)}' does not have access to "
                               f"account '{account}' (or that account does not exist). "
                               "Application access may have been revoked.",
                               type_="permission_error", code="account_invalid")
        permissions = grant.get("permissions", "*")
        if permission and permissions != "*" and permission not in permissions:
            on = self.data.platform.get("id") if account == PLATFORM else account
            raise ApiError(403, f"The provided key '{mask_key(key)}' does not have the required "
                           f"permissions for this endpoint on account '{on}'. Having the "
                           f"'{permission}' permission would allow this request to continue.",
                           type_="permission_error", code="secret_key_required")
        return account

    def _page(self, collection: Collection, kind: str, url: str, params: Params, *,
              equals: Mapping[str, Any], created: Mapping[str, int],
              predicate: Callable[[JSON], bool] | None = None,
              render: Callable[[int], bytes] | None = None) -> bytes:
        limit = params.limit()
        after, before = params.cursors()
        positions = {}
        for name, cursor in (("starting_after", after), ("ending_before", before)):
            if cursor is not None:
                if cursor not in collection.position:
                    raise no_such(kind, cursor, name, status=400)
                positions[name] = collection.position[cursor]
        lo, hi = collection.window(created)
        found, has_more = collection.select(
            lo, hi, limit=limit, equals=equals, predicate=predicate,
            after=positions.get("starting_after"), before=positions.get("ending_before"))
        return list_body(url, [(render or collection.json)(i) for i in found], has_more)

    # ----- checkout sessions

    def list_sessions(self, acct: AccountData, account: str, raw: JSON) -> bytes:
        params = Params(raw, (*LIST_PARAMS, "created", "status", "customer_details",
                              "payment_intent", "customer", "payment_link", "subscription"))
        expand = params.expand(("data.line_items",))
        equals: dict[str, Any] = {}
        status = params.string("status")
        if status is not None:
            if status not in ("open", "complete", "expired"):
                raise bad_request(f"Invalid status: must be one of open, complete, or expired "
                                  f"(got '{status}')", "status")
            equals["status"] = status
        email = params.hash_value("customer_details", "email")
        if email is not None:
            equals["customer_details[email]"] = email
        for name in ("payment_intent", "customer", "payment_link", "subscription"):
            value = params.string(name)
            if value is not None:
                equals[name] = value
        render = partial(self._expanded_session, acct) if "data.line_items" in expand else None
        return self._page(acct.sessions, "checkout.session", "/v1/checkout/sessions", params,
                          equals=equals, created=params.created(), render=render)

    def _expanded_session(self, acct: AccountData, i: int) -> bytes:
        cached = acct.expanded.get(i)
        if cached is None:
            cached = acct.expanded[i] = self._session_json(acct, acct.sessions.objects[i],
                                                           expand_line_items=True)
        return cached

    def _session_json(self, acct: AccountData, session: JSON, *, expand_line_items: bool) -> bytes:
        body = public(session)
        if expand_line_items:
            items = acct.line_items.get(session.get("id", ""), [])
            body["line_items"] = {
                "object": "list", "data": [public(i) for i in items[:EMBEDDED_LIST_LIMIT]],
                "has_more": len(items) > EMBEDDED_LIST_LIMIT,
                "url": f"/v1/checkout/sessions/{session.get('id')}/line_items"}
        return _dumps(body)

    def get_session(self, acct: AccountData, account: str, raw: JSON, session_id: str) -> bytes:
        params = Params(raw, ("expand",))
        expand = params.expand(("line_items",))
        session = acct.sessions.get(session_id)
        if session is None:
            raise no_such("checkout.session", session_id, "session")
        if "line_items" in expand:
            return self._expanded_session(acct, acct.sessions.position[session_id])
        return acct.sessions.json(acct.sessions.position[session_id])

    def list_line_items(self, acct: AccountData, account: str, raw: JSON,
                        session_id: str) -> bytes:
        params = Params(raw, LIST_PARAMS)
        expand = params.expand(("data.price", "data.price.product"))
        if acct.sessions.get(session_id) is None:
            raise no_such("checkout.session", session_id, "session")
        items = acct.line_items.get(session_id, [])
        limit = params.limit()
        after, before = params.cursors()
        ids = [str(i.get("id")) for i in items]
        start, stop = 0, len(items)
        for name, cursor in (("starting_after", after), ("ending_before", before)):
            if cursor is not None and cursor not in ids:
                raise no_such("item", cursor, name, status=400)
        if after is not None:
            start = ids.index(after) + 1
            chosen, has_more = items[start:start + limit], start + limit < stop
        elif before is not None:
            stop = ids.index(before)
            chosen, has_more = items[max(0, stop - limit):stop], stop - limit > 0
        else:
            chosen, has_more = items[:limit], limit < stop
        rendered = []
        for item in chosen:
            body = public(item)
            price = body.get("price")
            if "data.price.product" in expand and isinstance(price, dict):
                product = acct.products.get(str(ref(price.get("product"))))
                if product is not None:
                    body["price"] = {**price, "product": public(product)}
            rendered.append(_dumps(body))
        return list_body(f"/v1/checkout/sessions/{session_id}/line_items", rendered, has_more)

    # ----- events, refunds, endpoints, accounts

    def list_events(self, acct: AccountData, account: str, raw: JSON) -> bytes:
        params = Params(raw, (*LIST_PARAMS, "created", "type", "types", "delivery_success"))
        params.expand(())
        one = params.string("type")
        many = params.strings("types", MAX_TYPES)
        if one is not None and many:
            raise bad_request("You may only specify one of these parameters: type, types.", "types")
        patterns = [one] if one is not None else many
        delivered = params.boolean("delivery_success")

        def predicate(event: JSON) -> bool:
            if patterns and not any(fnmatch.fnmatchcase(str(event.get("type")), p)
                                    for p in patterns):
                return False
            return delivered is None or bool(event.get("_delivery_success", True)) == delivered

        created = dict(params.created())
        kept_since = math.ceil(self.now() - EVENT_RETENTION_S)
        created["gte"] = max(created.get("gte", kept_since), kept_since)
        return self._page(acct.events, "event", "/v1/events", params, equals={},
                          created=created, predicate=predicate)

    def list_refunds(self, acct: AccountData, account: str, raw: JSON) -> bytes:
        params = Params(raw, (*LIST_PARAMS, "created", "payment_intent", "charge"))
        params.expand(())
        equals = {name: value for name in ("payment_intent", "charge")
                  if (value := params.string(name)) is not None}
        return self._page(acct.refunds, "refund", "/v1/refunds", params, equals=equals,
                          created=params.created())

    def list_webhook_endpoints(self, acct: AccountData, account: str, raw: JSON) -> bytes:
        params = Params(raw, LIST_PARAMS)
        params.expand(())
        return self._page(acct.webhook_endpoints, "webhook_endpoint", "/v1/webhook_endpoints",
                          params, equals={}, created={})

    def list_accounts(self, acct: AccountData, account: str, raw: JSON) -> bytes:
        if account != PLATFORM:
            raise ApiError(403, "Only a platform can list its connected accounts.",
                           type_="permission_error")
        params = Params(raw, (*LIST_PARAMS, "created"))
        params.expand(())
        return self._page(self.data.connected, "account", "/v1/accounts", params, equals={},
                          created=params.created())

    def get_account(self, acct: AccountData, account: str, raw: JSON) -> bytes:
        Params(raw, ("expand",)).expand(())
        return _dumps(public(self.data.platform if account == PLATFORM
                             else self.data.accounts[account]))


# --------------------------------------------------------------------------- controls


@dataclass(frozen=True)
class Fault:
    """One injected answer. `status` (+ `headers`, `body`: dict -> JSON, str -> raw text,
    None -> Stripe's error body for that status); `delay` seconds first; `drop` closes the
    connection without an answer; `malformed` sends a truncated JSON body. A fault with only
    a delay slows the request, which is then answered normally. `account` restricts it."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    account: str | None = None


class _Bucket:
    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.capacity = rate, max(1.0, rate)
        self.tokens, self.stamp = self.capacity, now

    def wait(self, now: float) -> float:
        """Refill; 0 when a token is there (not taken yet), else seconds until there is one."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class Controls:
    """The stand-in's knobs and records; thread-safe. The same operations are served over
    HTTP under `/_sandbox/…` (see `RemoteControls`)."""

    LOG_LIMIT = 200_000

    def __init__(self, now: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base_now = now or time.time
        self._fixed_now: float | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self.latency = 0.0
        self._limits: dict[str, _Bucket] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._log: deque[JSON] = deque(maxlen=self.LOG_LIMIT)
        self._counts: dict[str, int] = {}
        self._limited = 0

    def now(self) -> float:
        """The server's wall clock (events retention); fixed by `set_now`."""
        return self._fixed_now if self._fixed_now is not None else self._base_now()

    def set_now(self, now: float | None) -> None:
        self._fixed_now = now

    def set_latency(self, seconds: float) -> None:
        """Every API request sleeps this long first (in its own thread)."""
        self.latency = max(0.0, float(seconds))

    def set_rate_limit(self, rate: float | None, endpoint: str | None = None) -> None:
        """Requests/second for one operation ("GET /v1/checkout/sessions"), or for all when
        `endpoint` is None; `rate=None` removes the limit."""
        key = endpoint or "*"
        with self._lock:
            if rate is None:
                self._limits.pop(key, None)
            else:
                self._limits[key] = _Bucket(float(rate), self._clock())

    def inject_fault(self, endpoint: str, *, times: int = 1, **fields: Any) -> None:
        """Queue `times` copies of a `Fault(**fields)` for an operation ("*" = any)."""
        fault = Fault(**fields)
        with self._lock:
            self._faults.setdefault(endpoint, deque()).extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> dict[str, int]:
        with self._lock:
            return {op: len(q) for op, q in self._faults.items() if q}

    def take_fault(self, op: str, account: str) -> Fault | None:
        with self._lock:
            for key in (op, "*"):
                queue = self._faults.get(key)
                for fault in queue or ():
                    if fault.account is None or fault.account == account:
                        queue.remove(fault)  # type: ignore[union-attr]
                        return fault
        return None

    def rate_check(self, op: str) -> tuple[str, float] | None:
        """None, or (Stripe-Rate-Limited-Reason, seconds to wait). Takes a token on success."""
        with self._lock:
            now = self._clock()
            endpoint, overall = self._limits.get(op), self._limits.get("*")
            for bucket, reason in ((endpoint, "endpoint-rate"), (overall, "global-rate")):
                if bucket is not None:
                    wait = bucket.wait(now)
                    if wait > 0:
                        self._limited += 1
                        return reason, wait
            for bucket in (endpoint, overall):
                if bucket is not None:
                    bucket.tokens -= 1
        return None

    def record(self, entry: JSON) -> None:
        with self._lock:
            self._log.append(entry)
            key = entry.get("endpoint") or "unknown"
            self._counts[key] = self._counts.get(key, 0) + 1

    def log(self) -> list[JSON]:
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        """Forget the request log and the counters of `stats()`."""
        with self._lock:
            self._log.clear()
            self._counts.clear()
            self._limited = 0

    def stats(self) -> JSON:
        with self._lock:
            return {"requests": dict(self._counts), "total": sum(self._counts.values()),
                    "rate_limited": self._limited, "cpu_seconds": time.process_time()}

    def reset(self) -> None:
        """Back to a plain stand-in: no latency, limits, faults, fixed clock or log."""
        with self._lock:
            self.latency = 0.0
            self._limits.clear()
            self._faults.clear()
            self._fixed_now = None
        self.reset_log()


class RemoteControls:
    """The `Controls` of a stand-in in another process, over `/_sandbox/…` (JSON in/out)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}/_sandbox/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            return json.loads(answer.read() or b"null")

    def set_latency(self, seconds: float) -> None:
        self._call("POST", "latency", {"seconds": seconds})

    def set_rate_limit(self, rate: float | None, endpoint: str | None = None) -> None:
        self._call("POST", "rate_limit", {"rate": rate, "endpoint": endpoint})

    def inject_fault(self, endpoint: str, *, times: int = 1, **fields: Any) -> None:
        self._call("POST", "faults", {"endpoint": endpoint, "times": times, **fields})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def pending_faults(self) -> dict[str, int]:
        result: dict[str, int] = self._call("GET", "faults")
        return result

    def log(self) -> list[JSON]:
        result: list[JSON] = self._call("GET", "log")["requests"]
        return result

    def reset_log(self) -> None:
        self._call("DELETE", "log")

    def stats(self) -> JSON:
        result: JSON = self._call("GET", "stats")
        return result

    def set_now(self, now: float | None) -> None:
        self._call("POST", "now", {"now": now})

    def reset(self) -> None:
        self._call("POST", "reset", {})


def control(controls: Controls, method: str, path: str, payload: Any) -> Any:
    """Serve one `/_sandbox/<path>` call; raises KeyError for an unknown one."""
    body = payload if isinstance(payload, dict) else {}
    if (method, path) == ("GET", "log"):
        return {"requests": controls.log()}
    if (method, path) == ("DELETE", "log"):
        controls.reset_log()
    elif (method, path) == ("GET", "stats"):
        return controls.stats()
    elif (method, path) == ("POST", "latency"):
        controls.set_latency(float(body.get("seconds", 0)))
    elif (method, path) == ("POST", "rate_limit"):
        controls.set_rate_limit(body.get("rate"), body.get("endpoint"))
    elif (method, path) == ("POST", "faults"):
        fields = {k: v for k, v in body.items() if k not in ("endpoint", "times")}
        controls.inject_fault(str(body["endpoint"]), times=int(body.get("times", 1)), **fields)
    elif (method, path) == ("GET", "faults"):
        return controls.pending_faults()
    elif (method, path) == ("DELETE", "faults"):
        controls.clear_faults()
    elif (method, path) == ("POST", "now"):
        controls.set_now(body.get("now"))
    elif (method, path) == ("POST", "reset"):
        controls.reset()
    else:
        raise KeyError(path)
    return {"ok": True}


# --------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    api: StripeApi
    controls: Controls


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # One write per answer and no Nagle: keep-alive clients would otherwise wait for
        # delayed ACKs (tens of ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is in `Controls`."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or API_VERSION)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
        try:
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _dispatch(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        if split.path.startswith("/_sandbox/"):
            self._control(split.path.removeprefix("/_sandbox/"), payload)
            return
        controls = self.server.controls
        account = (self.headers.get("Stripe-Account") or "").strip() or PLATFORM
        found = find_route(self.command, split.path)
        op = found[0].op if found else None
        answer = self._answer(controls, op, account, split.path, split.query)
        # Recorded before the answer leaves: a client that has its answer finds it logged.
        controls.record({"method": self.command, "path": split.path, "query": split.query,
                         "account": account, "endpoint": op,
                         "status": 0 if answer is None else answer[0],
                         "duration": round(time.perf_counter() - started, 6)})
        if answer is None:  # a dropped connection: no answer at all
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._send(*answer)

    def _answer(self, controls: Controls, op: str | None, account: str, path: str,
                query: str) -> tuple[int, bytes, Mapping[str, str]] | None:
        """Latency, then an injected fault, then the rate limit, then the API.
        None means: drop the connection."""
        if controls.latency:
            time.sleep(controls.latency)
        fault = controls.take_fault(op, account) if op else None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                return None
            if fault.malformed or fault.status is not None:
                status = fault.status or 200
                if fault.malformed:
                    body = MALFORMED_BODY
                elif fault.body is None:
                    body = default_error(status).body()
                elif isinstance(fault.body, str):
                    body = fault.body.encode()
                else:
                    body = _dumps(fault.body)
                return status, body, fault.headers
        limited = controls.rate_check(op) if op else None
        if limited is not None:
            reason, wait = limited
            return 429, rate_limit_error().body(), {
                "Retry-After": str(max(1, math.ceil(wait))),
                "Stripe-Rate-Limited-Reason": reason}
        status, body = self.server.api.handle(self.command, path, query, self.headers)
        return status, body, {}

    def _control(self, path: str, payload: bytes) -> None:
        try:
            result = control(self.server.controls, self.command, path,
                             json.loads(payload) if payload else None)
            self._send(200, _dumps(result))
        except KeyError as error:
            self._send(404, ApiError(404, f"No such control: {error}").body())
        except (TypeError, ValueError) as error:
            self._send(400, ApiError(400, f"Bad control request: {error}").body())


class StripeStandIn:
    """The stand-in server: `start()`/`stop()` or a context manager; `.url`, `.controls`."""

    def __init__(self, data: Mapping[str, Any] | Path | str,
                 now: Callable[[], float] | None = None, *, port: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`now`: wall clock for event retention; `clock`: monotonic clock of the rate limits."""
        self.controls = Controls(now=now, clock=clock)
        with _collector_paused():
            self.data = StripeData(load_data(data))
        self.api = StripeApi(self.data, self.controls.now)
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("stand-in not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StripeStandIn:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.api, server.controls = self.api, self.controls
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="stripe-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.stripe_server",
                                     description="Serve a sandbox stripe.json like Stripe's API.")
    parser.add_argument("--data", required=True, type=Path, help="the sandbox stripe.json")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    parser.add_argument("--now", type=float, default=None,
                        help="fix the server's clock (unix seconds) for event retention")
    args = parser.parse_args(argv)
    fixed_now = args.now
    standin = StripeStandIn(args.data, now=None if fixed_now is None else lambda: fixed_now,
                            port=args.port)
    gc.freeze()  # our own process: keep the loaded data out of every later collection
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with standin:
        print(f"LISTENING {standin.url}", flush=True)
        while not stopping.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
