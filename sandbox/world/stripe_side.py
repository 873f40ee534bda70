"""Stripe objects in the shape Stripe renders them (fixtures.json), filled for this app.

Constant parts of a checkout session are shared dicts (cheap for 100,000 sessions); treat every
object the generator returns as read-only.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.world.ids import Ids

Obj = dict[str, Any]

API_VERSION = "2025-07-30.basil"
APP_URL = "https://dance-school.example.com"
WEBHOOK_URL = APP_URL + "/api/stripe/webhook"

# What a `mode: payment`, card-only, guest Checkout Session of this app holds in every field that
# does not vary between sessions (domain.md §2.1: no customer, no customer_email, no reference).
SESSION_CONSTANT: Obj = {
    "object": "checkout.session",
    "currency": "nok",
    "customer": None,
    "customer_email": None,
    "payment_method_types": ["card"],
    "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
    "adaptive_pricing": {"enabled": False},
    "after_expiration": None,
    "allow_promotion_codes": None,
    "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
    "billing_address_collection": None,
    "client_reference_id": None,
    "client_secret": None,
    "collected_information": None,
    "consent": None,
    "consent_collection": None,
    "currency_conversion": None,
    "custom_fields": [],
    "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                    "terms_of_service_acceptance": None},
    "customer_account": None,
    "customer_creation": "if_required",
    "discounts": [],
    "integration_identifier": None,
    "invoice": None,
    "invoice_creation": {"enabled": False, "invoice_data": {
        "account_tax_ids": None, "custom_fields": None, "description": None, "footer": None,
        "issuer": None, "metadata": {}, "rendering_options": None}},
    "livemode": False,
    "locale": None,
    "managed_payments": {"enabled": False},
    "origin_context": None,
    "payment_link": None,
    "payment_method_collection": "if_required",
    "payment_method_configuration_details": None,
    "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
    "permissions": None,
    "phone_number_collection": {"enabled": False},
    "recovered_from": None,
    "saved_payment_method_options": None,
    "setup_intent": None,
    "shipping_address_collection": None,
    "shipping_cost": None,
    "shipping_options": [],
    "submit_type": None,
    "subscription": None,
    "ui_mode": "hosted",
    "wallet_options": None,
}
_ADDRESS: Obj = {"city": None, "country": "NO", "line1": None, "line2": None,
                 "postal_code": None, "state": None}


def customer_details(name: str | None, email: str) -> Obj:
    """The buyer as Checkout collected them (the only place the e-mail lives, §2.1)."""
    return {"address": _ADDRESS, "business_name": None, "email": email, "individual_name": None,
            "name": name, "phone": None, "tax_exempt": "none", "tax_ids": []}


def session_object(
    *,
    session_id: str,
    created: int,
    status: str,
    payment_status: str,
    mode: str,
    amount: int,
    metadata: Obj,
    details: Obj | None,
    payment_intent: str | None,
    success_url: str,
    cancel_url: str,
    extra: Obj | None = None,
) -> Obj:
    """A checkout.session (without its private `_line_items`)."""
    session = SESSION_CONSTANT.copy()
    session.update(
        id=session_id,
        amount_subtotal=amount,
        amount_total=amount,
        cancel_url=cancel_url,
        created=created,
        customer_details=details,
        expires_at=created + 86_400,
        metadata=metadata,
        mode=mode,
        payment_intent=payment_intent,
        payment_status=payment_status,
        status=status,
        success_url=success_url,
        url=None if status != "open" else f"https://checkout.stripe.com/c/pay/{session_id}",
    )
    if extra:
        session.update(extra)
    return session


PRODUCT_CONSTANT: Obj = {
    "object": "product", "active": False, "default_price": None, "description": None,
    "images": [], "livemode": False, "marketing_features": [], "package_dimensions": None,
    "shippable": None, "statement_descriptor": None, "tax_code": None, "type": "service",
    "unit_label": None, "url": None,
}


def product_object(product_id: str, name: str, metadata: Obj, created: int) -> Obj:
    """The ad-hoc Product `price_data.product_data` creates (its metadata is §2.2's)."""
    product = PRODUCT_CONSTANT.copy()
    product.update(id=product_id, created=created, metadata=metadata, name=name, updated=created)
    return product


PRICE_CONSTANT: Obj = {
    "object": "price", "billing_scheme": "per_unit", "currency": "nok",
    "custom_unit_amount": None, "livemode": False, "lookup_key": None, "metadata": {},
    "nickname": None, "tax_behavior": "unspecified", "tiers_mode": None,
    "transform_quantity": None,
}
LINE_ITEM_CONSTANT: Obj = {
    "object": "item", "adjustable_quantity": None, "amount_discount": 0, "amount_tax": 0,
    "currency": "nok", "metadata": {}, "quantity": 1,
}


def line_item(ids: Ids, *, amount: int, description: str, product_id: str, created: int,
              recurring: Obj | None = None) -> Obj:
    """One line item with its price (`price.product` is the product id); `price` comes last."""
    price = PRICE_CONSTANT.copy()
    price.update(id=ids.stripe("price"), active=recurring is not None, created=created,
                 product=product_id, recurring=recurring,
                 type="recurring" if recurring else "one_time", unit_amount=amount,
                 unit_amount_decimal=str(amount))
    item = LINE_ITEM_CONSTANT.copy()
    item.update(id=ids.stripe("li"), amount_subtotal=amount, amount_total=amount,
                description=description, price=price)
    return item


EVENT_CONSTANT: Obj = {
    "object": "event", "api_version": API_VERSION, "livemode": False,
    "request": {"id": None, "idempotency_key": None}, "type": "checkout.session.completed",
}


def event_object(event_id: str, session: Obj, *, account: str | None, created: int,
                 delivered: bool) -> Obj:
    """`checkout.session.completed`; private `_delivery_success` says if the webhook got it.

    `data.object` is a snapshot of the session's identifying fields rather than a second full
    copy, which keeps stripe.json to about half the size.
    """
    snapshot = {key: session[key] for key in (
        "id", "object", "amount_total", "created", "currency", "livemode",
        "metadata", "mode", "payment_intent", "payment_status", "status")}
    event = EVENT_CONSTANT.copy()
    event.update(id=event_id, created=created, data={"object": snapshot},
                 pending_webhooks=0 if delivered else 1, _delivery_success=delivered)
    if account:
        event["account"] = account
    return event


def refund_object(ids: Ids, *, payment_intent: str, amount: int, created: int,
                  status: str) -> Obj:
    """A refund of (part of) a payment intent."""
    refund: Obj = {
        "id": ids.stripe("re"), "object": "refund", "amount": amount,
        "balance_transaction": ids.stripe("txn") if status != "failed" else None,
        "charge": ids.stripe("ch"), "created": created, "currency": "nok", "customer": None,
        "customer_account": None,
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": {}, "payment_intent": payment_intent, "payment_method": ids.stripe("pm"),
        "reason": "requested_by_customer", "receipt_number": None,
        "source_transfer_reversal": None, "status": status, "transfer_reversal": None,
    }
    if status == "failed":
        refund["failure_reason"] = "expired_or_canceled_card"
    return refund


_ACCOUNT_TEMPLATE: Obj = {
    "business_type": "company",
    "capabilities": {"card_payments": "active", "transfers": "active"},
    "controller": {"type": "account"},
    "country": "NO",
    "default_currency": "nok",
    "details_submitted": True,
    "external_accounts": {"data": [], "has_more": False, "object": "list", "url": ""},
    "future_requirements": {"alternatives": [], "current_deadline": None, "currently_due": [],
                            "disabled_reason": None, "errors": [], "eventually_due": [],
                            "past_due": [], "pending_verification": []},
    "metadata": {},
    "object": "account",
    "requirements": {"alternatives": [], "current_deadline": None, "currently_due": [],
                     "disabled_reason": None, "errors": [], "eventually_due": [],
                     "past_due": [], "pending_verification": []},
    "settings": {"dashboard": {"display_name": None, "timezone": "Europe/Oslo"},
                 "payments": {"statement_descriptor": None},
                 "payouts": {"debit_negative_balances": True,
                             "schedule": {"delay_days": 7, "interval": "daily"},
                             "statement_descriptor": None}},
    "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
    "type": "standard",
}


def account_object(account_id: str, *, name: str, email: str, created: int,
                   charges_enabled: bool = True) -> Obj:
    """A Stripe account (the platform's own or a school's connected Standard account)."""
    account = copy.deepcopy(_ACCOUNT_TEMPLATE)
    account.update(
        id=account_id, created=created, email=email, charges_enabled=charges_enabled,
        payouts_enabled=charges_enabled,
        business_profile={"mcc": "7911", "name": name, "product_description": "Dance classes",
                          "support_email": email, "support_phone": None, "support_url": None,
                          "url": None},
    )
    account["external_accounts"]["url"] = f"/v1/accounts/{account_id}/external_accounts"
    account["settings"]["dashboard"]["display_name"] = name
    return account


def webhook_endpoints(ids: Ids, now: int) -> list[Obj]:
    """The platform's endpoints (§4 #2, #3, #4): two for one URL (one disabled), a `www.` one
    that redirects, and none a Connect endpoint (private `_connect`: the API does not show it)."""

    def endpoint(url: str, status: str, created: int, events: list[str], note: str) -> Obj:
        return {"id": ids.stripe("we"), "object": "webhook_endpoint", "api_version": None,
                "application": None, "created": created, "description": note,
                "enabled_events": events, "livemode": False, "metadata": {}, "status": status,
                "url": url, "_connect": False}

    completed = ["checkout.session.completed"]
    return [
        endpoint(WEBHOOK_URL, "enabled", now - 300 * 86_400, completed, "pass webhook"),
        endpoint(WEBHOOK_URL, "disabled", now - 300 * 86_400 + 240, [
            *completed, "charge.succeeded"], "pass webhook (second setup run)"),
        endpoint(WEBHOOK_URL.replace("https://", "https://www."), "enabled",
                 now - 200 * 86_400, ["*"], "old www endpoint"),
    ]


def api_keys(accounts: list[str]) -> Obj:
    """Secret keys the Stripe stand-in accepts: full, restricted read-only, one missing an
    account (§4 #17), and a live key for the mode mismatch check (§4 #18)."""
    restricted = ["checkout_sessions_read", "events_read", "webhook_endpoints_read",
                  "refunds_read", "connected_accounts_read", "products_read"]
    return {
        "sk_test_sandbox": {"mode": "test", "accounts": "*", "permissions": "*"},
        "rk_test_sandbox": {"mode": "test", "accounts": "*", "permissions": restricted},
        "sk_test_sandbox_partial": {"mode": "test", "accounts": accounts[:-1],
                                    "permissions": "*"},
        "sk_live_sandbox": {"mode": "live", "accounts": "*", "permissions": "*"},
    }
