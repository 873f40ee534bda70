"""Stripe stand-in API, Checkout Sessions: list, retrieve, and a session's line items."""

from __future__ import annotations

from functools import partial
from typing import Any

from sandbox.stripe.data import JSON, AccountData, dumps, list_body, public, ref
from sandbox.stripe.errors import bad_request, no_such
from sandbox.stripe.params import LIST_PARAMS, Call, Params, list_page

EMBEDDED_LIST_LIMIT = 10


def list_sessions(call: Call) -> bytes:
    """`GET /v1/checkout/sessions`: the filters Stripe offers, `expand[]=data.line_items`."""
    acct = call.acct
    params = Params(call.raw, (*LIST_PARAMS, "created", "status", "customer_details",
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
    render = partial(_expanded_session, acct) if "data.line_items" in expand else None
    return list_page(acct.sessions, "checkout.session", "/v1/checkout/sessions", params,
                     equals=equals, created=params.created(), render=render)


def _expanded_session(acct: AccountData, i: int) -> bytes:
    """Session `i` with its line items (cached: a session is served expanded often)."""
    cached = acct.expanded.get(i)
    if cached is None:
        cached = acct.expanded[i] = _session_json(acct, acct.sessions.objects[i],
                                                  expand_line_items=True)
    return cached


def _session_json(acct: AccountData, session: JSON, *, expand_line_items: bool) -> bytes:
    body = public(session)
    if expand_line_items:
        items = acct.line_items.get(session.get("id", ""), [])
        body["line_items"] = {
            "object": "list", "data": [public(i) for i in items[:EMBEDDED_LIST_LIMIT]],
            "has_more": len(items) > EMBEDDED_LIST_LIMIT,
            "url": f"/v1/checkout/sessions/{session.get('id')}/line_items"}
    return dumps(body)


def get_session(call: Call, session_id: str) -> bytes:
    """`GET /v1/checkout/sessions/{session}`, `expand[]=line_items`."""
    acct = call.acct
    params = Params(call.raw, ("expand",))
    expand = params.expand(("line_items",))
    session = acct.sessions.get(session_id)
    if session is None:
        raise no_such("checkout.session", session_id, "session")
    if "line_items" in expand:
        return _expanded_session(acct, acct.sessions.position[session_id])
    return acct.sessions.json(acct.sessions.position[session_id])


def list_line_items(call: Call, session_id: str) -> bytes:
    """`GET /v1/checkout/sessions/{session}/line_items`, `expand[]=data.price.product`."""
    acct = call.acct
    params = Params(call.raw, LIST_PARAMS)
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
        rendered.append(dumps(body))
    return list_body(f"/v1/checkout/sessions/{session_id}/line_items", rendered, has_more)
