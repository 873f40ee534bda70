"""Stripe stand-in API: one request answered, no HTTP here (route, key, parameters, handler).

The handlers live by object: `stripe_sessions` (Checkout Sessions and their line items) and
`stripe_objects` (events, refunds, webhook endpoints, accounts, products).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from sandbox.stripe import objects as objects
from sandbox.stripe import sessions as sessions
from sandbox.stripe.auth import Headers, authorize
from sandbox.stripe.data import StripeData
from sandbox.stripe.errors import ApiError
from sandbox.stripe.params import Call, parse_query

Handler = Callable[..., bytes]  # (call, *path arguments) -> the answer's body


@dataclass(frozen=True)
class Route:
    op: str
    pattern: re.Pattern[str]
    permission: str
    handler: Handler


def _route(method: str, template: str, permission: str, handler: Handler) -> Route:
    regex = re.sub(r"\{[a-z_]+\}", r"([^/]+)", template)
    return Route(f"{method} {template}", re.compile(f"^{regex}$"), permission, handler)


ROUTES = (
    _route("GET", "/v1/checkout/sessions", "checkout_sessions_read", sessions.list_sessions),
    _route("GET", "/v1/checkout/sessions/{session}", "checkout_sessions_read",
           sessions.get_session),
    _route("GET", "/v1/checkout/sessions/{session}/line_items", "checkout_sessions_read",
           sessions.list_line_items),
    _route("GET", "/v1/events", "events_read", objects.list_events),
    _route("GET", "/v1/webhook_endpoints", "webhook_endpoints_read",
           objects.list_webhook_endpoints),
    _route("GET", "/v1/accounts", "connected_accounts_read", objects.list_accounts),
    # Any valid key may read its own account: restricted keys need no named permission here.
    _route("GET", "/v1/account", "", objects.get_account),
    _route("GET", "/v1/refunds", "refunds_read", objects.list_refunds),
    _route("GET", "/v1/products", "products_read", objects.list_products),
)


def find_route(method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
    """The route of a request and its path arguments, or None (Stripe's 404)."""
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
            account = authorize(self.data, headers, route.permission)
            return 200, route.handler(Call(self.data, account, parse_query(query), self.now),
                                      *args)
        except ApiError as error:
            return error.status, error.body()
        except Exception as error:  # a stand-in bug: answer like Stripe's 500, and say what broke
            return 500, ApiError(500, f"Stand-in failure: {type(error).__name__}: {error}",
                                 type_="api_error").body()
