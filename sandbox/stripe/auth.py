"""Stripe stand-in authentication: the key, its accounts and permissions, Stripe's 401 and 403."""

from __future__ import annotations

from typing import Protocol

from sandbox.stripe.data import PLATFORM, StripeData
from sandbox.stripe.errors import ApiError


class Headers(Protocol):
    """What the API reads of request headers (a dict, or http.server's case-blind message)."""

    def get(self, name: str, /) -> str | None: ...


def mask_key(key: str) -> str:
    """Stripe's way of naming a key in a message: prefix, stars, last four."""
    prefix = key[: key.index("_", key.index("_") + 1) + 1] if key.count("_") >= 2 else ""
    rest = len(key) - len(prefix)
    if rest < 8:  # too short to show a tail without showing most of the key
        return f"{prefix}{'*' * max(rest, 3)}"
    return f"{prefix}{'*' * (rest - 4)}{key[-4:]}"


def authorize(data: StripeData, headers: Headers, permission: str) -> str:
    """The account the request acts on ("platform" or "acct_…"), or Stripe's 401/403."""
    auth = headers.get("Authorization") or ""
    scheme, _, key = auth.partition(" ")
    if not auth:
        raise ApiError(401, "You did not provide an API key. You need to provide your API "
                       "key in the Authorization header, using Bearer auth (e.g. "
                       "'Authorization: Bearer YOUR_SECRET_KEY').")
    grant = data.keys.get(key.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        raise ApiError(401, f"Invalid API Key provided: {mask_key(key.strip() or auth)}",
                       code="api_key_invalid")
    header = (headers.get("Stripe-Account") or "").strip()
    account = PLATFORM if not header or header == data.platform.get("id") else header
    if account != PLATFORM:
        allowed = grant.get("accounts", "*")
        if account not in data.accounts or (allowed != "*" and account not in allowed):
            raise ApiError(403, f"The provided key '{mask_key(key)}' does not have access to "
                           f"account '{account}' (or that account does not exist). "
                           "Application access may have been revoked.",
                           type_="permission_error", code="account_invalid")
    permissions = grant.get("permissions", "*")
    if permission and permissions != "*" and permission not in permissions:
        on = data.platform.get("id") if account == PLATFORM else account
        raise ApiError(403, f"The provided key '{mask_key(key)}' does not have the required "
                       f"permissions for this endpoint on account '{on}'. Having the "
                       f"'{permission}' permission would allow this request to continue.",
                       type_="permission_error", code="secret_key_required")
    return account
