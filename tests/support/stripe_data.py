"""Builders of Stripe-shaped test objects and sandbox `stripe.json` documents.

Generic on purpose (any test may use them): every builder returns a plain dict shaped like the
object Stripe renders, with the fields a caller cares about as keyword arguments and anything
else overridable through `**overrides`. Private keys (leading `_`) are the sandbox's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

JSON = dict[str, Any]
TEST_KEY = "sk_test_sandbox"
PLATFORM_ID = "acct_1PlatformSandbox00"


def object_id(prefix: str, n: int, tag: str = "") -> str:
    """Deterministic Stripe-like id: `object_id("cs_test", 7, "a")` = `cs_test_a0000000007`."""
    return f"{prefix}_{tag}{n:010d}"


def line_item(item_id: str, *, description: str, product: str, amount: int = 5000,
              price_id: str | None = None, currency: str = "usd", quantity: int = 1,
              **overrides: Any) -> JSON:
    """A Checkout line item (`object: item`); `price.product` is a product id, as Stripe sends."""
    item: JSON = {
        "adjustable_quantity": None, "amount_discount": 0, "amount_subtotal": amount * quantity,
        "amount_tax": 0, "amount_total": amount * quantity, "currency": currency,
        "description": description, "id": item_id, "metadata": None, "object": "item",
        "price": {
            "active": True, "billing_scheme": "per_unit", "created": 1721948530,
            "currency": currency, "custom_unit_amount": None,
            "id": price_id or f"price_{item_id.removeprefix('li_')}", "livemode": False,
            "lookup_key": None, "metadata": {}, "nickname": None, "object": "price",
            "product": product, "recurring": None, "tax_behavior": "unspecified",
            "tiers_mode": None, "transform_quantity": None, "type": "one_time",
            "unit_amount": amount, "unit_amount_decimal": str(amount)},
        "quantity": quantity,
    }
    item.update(overrides)
    return item


def session(session_id: str, *, created: int, status: str = "complete",
            payment_status: str = "paid", mode: str = "payment",
            metadata: Mapping[str, Any] | None = None, email: str | None = "buyer@example.com",
            payment_intent: str | None = None, customer: str | None = None,
            amount_total: int = 5000, currency: str = "usd",
            line_items: Sequence[JSON] | None = None, **overrides: Any) -> JSON:
    """A Checkout Session as Stripe renders it (full size, like the API's own example).

    `line_items` go to the private `_line_items` (served by `/line_items` and by expansion)."""
    suffix = session_id.split("_")[-1]
    obj: JSON = {
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None, "allow_promotion_codes": None,
        "amount_subtotal": amount_total, "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None, "cancel_url": "https://example.com/cancel",
        "client_reference_id": None, "client_secret": None,
        "collected_information": {"business_name": None, "individual_name": None,
                                  "shipping_details": None},
        "consent": None, "consent_collection": None, "created": created, "currency": currency,
        "currency_conversion": None, "custom_fields": [],
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                        "terms_of_service_acceptance": None},
        "customer": customer, "customer_account": None, "customer_creation": "if_required",
        "customer_details": None if email is None else {
            "address": {"city": None, "country": "NO", "line1": None, "line2": None,
                        "postal_code": None, "state": None},
            "business_name": None, "email": email, "individual_name": None, "name": "Test Buyer",
            "phone": None, "tax_exempt": "none", "tax_ids": []},
        "customer_email": None, "discounts": [], "expires_at": created + 86400,
        "id": session_id, "integration_identifier": None, "invoice": None,
        "invoice_creation": {"enabled": False, "invoice_data": {
            "account_tax_ids": None, "custom_fields": None, "description": None,
            "footer": None, "issuer": None, "metadata": {}, "rendering_options": None}},
        "livemode": False, "locale": None, "managed_payments": {"enabled": False},
        "metadata": dict(metadata or {}), "mode": mode, "object": "checkout.session",
        "origin_context": None,
        "payment_intent": payment_intent if payment_intent is not None else f"pi_{suffix}",
        "payment_link": None, "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "payment_status": payment_status,
        "permissions": None, "phone_number_collection": {"enabled": False},
        "recovered_from": None, "saved_payment_method_options": None, "setup_intent": None,
        "shipping_address_collection": None, "shipping_cost": None, "shipping_options": [],
        "status": status, "submit_type": None, "subscription": None,
        "success_url": "https://example.com/success",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted", "url": None, "wallet_options": None,
    }
    if line_items is not None:
        obj["_line_items"] = list(line_items)
    obj.update(overrides)
    return obj


def product(product_id: str, *, name: str, metadata: Mapping[str, Any] | None = None,
            **overrides: Any) -> JSON:
    obj: JSON = {
        "active": True, "created": 1721948530, "default_price": None, "description": None,
        "id": product_id, "images": [], "livemode": False, "marketing_features": [],
        "metadata": dict(metadata or {}), "name": name, "object": "product",
        "package_dimensions": None, "shippable": None, "statement_descriptor": None,
        "tax_code": None, "type": "service", "unit_label": None, "updated": 1721948530,
        "url": None}
    obj.update(overrides)
    return obj


def event(event_id: str, *, type: str, created: int, obj: Mapping[str, Any] | None = None,
          delivery_success: bool = True, pending_webhooks: int | None = None,
          **overrides: Any) -> JSON:
    """An event; `delivery_success` is the private `_delivery_success` the stand-in filters on."""
    out: JSON = {
        "api_version": "2026-10-28.endive", "created": created,
        "data": {"object": dict(obj or {})}, "id": event_id, "livemode": False,
        "object": "event",
        "pending_webhooks": pending_webhooks if pending_webhooks is not None
        else (0 if delivery_success else 1),
        "request": {"id": None, "idempotency_key": None}, "type": type,
        "_delivery_success": delivery_success}
    out.update(overrides)
    return out


def refund(refund_id: str, *, created: int, payment_intent: str, amount: int,
           status: str = "succeeded", charge: str | None = None, **overrides: Any) -> JSON:
    obj: JSON = {
        "amount": amount, "balance_transaction": None,
        "charge": charge or f"ch_{payment_intent.removeprefix('pi_')}", "created": created,
        "currency": "usd", "customer": None, "customer_account": None,
        "destination_details": {"card": {"type": "refund"}, "type": "card"}, "id": refund_id,
        "metadata": {}, "object": "refund", "payment_intent": payment_intent,
        "payment_method": None, "reason": "requested_by_customer", "receipt_number": None,
        "source_transfer_reversal": None, "status": status, "transfer_reversal": None}
    obj.update(overrides)
    return obj


def webhook_endpoint(endpoint_id: str, *, url: str, enabled_events: Sequence[str],
                     created: int = 1721948530, status: str = "enabled",
                     **overrides: Any) -> JSON:
    obj: JSON = {
        "api_version": None, "application": None, "created": created, "description": None,
        "enabled_events": list(enabled_events), "id": endpoint_id, "livemode": False,
        "metadata": {}, "object": "webhook_endpoint", "status": status, "url": url}
    obj.update(overrides)
    return obj


def account(account_id: str, *, name: str, email: str = "owner@example.com",
            created: int = 1700000000, **overrides: Any) -> JSON:
    obj: JSON = {
        "business_profile": {"name": name, "url": None, "support_email": None},
        "business_type": "company", "capabilities": {"card_payments": "active"},
        "charges_enabled": True, "controller": {"type": "application"}, "country": "NO",
        "created": created, "default_currency": "nok", "details_submitted": True,
        "email": email, "id": account_id, "metadata": {}, "object": "account",
        "payouts_enabled": True, "type": "standard"}
    obj.update(overrides)
    return obj


def account_data(*, sessions: Iterable[JSON] = (), products: Iterable[JSON] = (),
                 events: Iterable[JSON] = (), refunds: Iterable[JSON] = (),
                 webhook_endpoints: Iterable[JSON] = ()) -> JSON:
    """One account's entry under `data` in `stripe.json`."""
    return {"checkout_sessions": list(sessions), "products": list(products),
            "events": list(events), "refunds": list(refunds),
            "webhook_endpoints": list(webhook_endpoints)}


def stripe_file(*, data: Mapping[str, JSON] | None = None,
                accounts: Mapping[str, JSON] | None = None,
                keys: Mapping[str, JSON] | None = None,
                platform: JSON | None = None) -> JSON:
    """A whole sandbox `stripe.json` document; by default one all-powerful test key."""
    return {
        "keys": dict(keys or {TEST_KEY: {"mode": "test", "accounts": "*", "permissions": "*"}}),
        "platform": platform or account(PLATFORM_ID, name="Platform"),
        "accounts": dict(accounts or {}),
        "data": dict(data or {}),
    }


def many_sessions(count: int, *, newest: int, per_second: int, tag: str = "",
                  **fields: Any) -> list[JSON]:
    """`count` sessions, `per_second` of them sharing each `created` second, counting down
    from `newest`; ids are `object_id("cs_test", n, tag)`."""
    return [session(object_id("cs_test", n, tag), created=newest - n // per_second, **fields)
            for n in range(count)]
