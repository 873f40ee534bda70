"""Stripe stand-in API, the other objects: events, refunds, webhook endpoints, accounts,
products."""

from __future__ import annotations

import fnmatch
import math

from sandbox.stripe.data import JSON, PLATFORM, dumps, list_body, public, sort_created
from sandbox.stripe.errors import ApiError, bad_request
from sandbox.stripe.params import LIST_PARAMS, Call, Params, list_page

EVENT_RETENTION_S = 30 * 86400
MAX_TYPES = 20
MAX_IDS = 100


def list_events(call: Call) -> bytes:
    """`GET /v1/events`: by type (wildcards), delivery, `created`; 30 days kept."""
    params = Params(call.raw, (*LIST_PARAMS, "created", "type", "types", "delivery_success"))
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
    kept_since = math.ceil(call.now() - EVENT_RETENTION_S)
    created["gte"] = max(created.get("gte", kept_since), kept_since)
    return list_page(call.acct.events, "event", "/v1/events", params, equals={},
                     created=created, predicate=predicate)


def list_refunds(call: Call) -> bytes:
    """`GET /v1/refunds`, by payment intent or charge."""
    params = Params(call.raw, (*LIST_PARAMS, "created", "payment_intent", "charge"))
    params.expand(())
    equals = {name: value for name in ("payment_intent", "charge")
              if (value := params.string(name)) is not None}
    return list_page(call.acct.refunds, "refund", "/v1/refunds", params, equals=equals,
                     created=params.created())


def list_products(call: Call) -> bytes:
    """`GET /v1/products`, by `ids` (newest first; Stripe allows no cursor with `ids`)."""
    params = Params(call.raw, (*LIST_PARAMS, "ids", "active"))
    params.expand(())
    ids = params.strings("ids", MAX_IDS)
    if ids and any(params.cursors()):
        raise bad_request("You cannot use `ids` with `starting_after` or `ending_before`.",
                          "ids")
    if not ids:  # the job only ever asks by id; a plain listing is not served
        raise bad_request("This stand-in lists products by `ids` only.", "ids")
    active = params.boolean("active")
    # `_unlisted`: a product only its line items show (the world plants the case).
    found = [p for i in dict.fromkeys(ids) if (p := call.acct.products.get(i)) is not None
             and not p.get("_unlisted")
             and (active is None or bool(p.get("active", True)) == active)]
    found.sort(key=lambda p: (sort_created(p), str(p.get("id"))), reverse=True)
    limit = params.limit()
    return list_body("/v1/products", [dumps(public(p)) for p in found[:limit]],
                     len(found) > limit)


def list_webhook_endpoints(call: Call) -> bytes:
    """`GET /v1/webhook_endpoints`."""
    params = Params(call.raw, LIST_PARAMS)
    params.expand(())
    return list_page(call.acct.webhook_endpoints, "webhook_endpoint", "/v1/webhook_endpoints",
                     params, equals={}, created={})


def list_accounts(call: Call) -> bytes:
    """`GET /v1/accounts`: the platform's connected accounts (the platform's key only)."""
    if call.account != PLATFORM:
        raise ApiError(403, "Only a platform can list its connected accounts.",
                       type_="permission_error")
    params = Params(call.raw, (*LIST_PARAMS, "created"))
    params.expand(())
    return list_page(call.data.connected, "account", "/v1/accounts", params, equals={},
                     created=params.created())


def get_account(call: Call) -> bytes:
    """`GET /v1/account`: the account the key acts on."""
    Params(call.raw, ("expand",)).expand(())
    return dumps(public(call.data.platform if call.account == PLATFORM
                        else call.data.accounts[call.account]))
