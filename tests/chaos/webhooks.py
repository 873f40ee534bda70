"""The app's webhook, simulated, writing to Sanity while the job runs.

- The future webhook (what the README asks the app to adopt): `createIfNotExists` with the
  deterministic id `subscription-<session id>`, so it and the job can never make two.
- The legacy webhook (the app today, domain §2.3/§2.7): check-then-`create` with an automatic
  id and `stripeSessionId`. Landing between the job's look-up and its write, it is seen by
  the job's re-check just before the transaction; only the milliseconds between that
  re-check and the commit (and between its own check and create) remain open.

`RacingStore` wraps the job's Sanity adapter and calls a hook right after the job's lookup of
a page (or its catalog load), which is where the race window opens.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jobs.adapters.sanity_store import SanityStore

WEBHOOK_MARKERS = {"createdViaWebhook": True}


def webhook_document(expected: Mapping[str, Any], *, deterministic: bool) -> dict[str, Any]:
    """The subscription the webhook writes for a purchase (shape of domain §1.3)."""
    doc = {k: v for k, v in expected.items()
           if k not in ("createdViaRecovery", "recoveredAt", "reconcileRunId")}
    doc.update(WEBHOOK_MARKERS, webhookEventId=f"evt_{secrets.token_hex(12)}")
    if not deterministic:
        doc.pop("_id", None)
    return doc


def future_webhook(store: SanityStore, expected: Mapping[str, Any]) -> None:
    store.commit([{"createIfNotExists": webhook_document(expected, deterministic=True)}],
                 f"webhook-{secrets.token_hex(6)}")


HEAD_CHECK = ('*[_type == "subscription" && (stripeSessionId == $sid'
              ' || stripePaymentId == $pi)][0]._id')


def legacy_webhook(store: SanityStore, expected: Mapping[str, Any]) -> str:
    """The app's HEAD webhook (§2.3, §2.7): look for a subscription by session id or payment
    intent, and if there is none `create` one with an automatic id; returns the id found or
    made. Check and create are two requests: nothing stops another writer in between."""
    found = store.query(HEAD_CHECK, {"sid": expected.get("stripeSessionId"),
                                     "pi": expected.get("stripePaymentId") or "-"})
    if isinstance(found, str):
        return found
    results = store.commit([{"create": webhook_document(expected, deterministic=False)}],
                           f"webhook-{secrets.token_hex(6)}")
    return str(results[0]["id"])


class RacingStore:
    """The job's SanityStore, with `after_lookup(session_ids)` called after each page lookup
    and `after_catalog()` after the catalog load. Everything else passes through."""

    def __init__(self, inner: SanityStore, *,
                 after_lookup: Callable[[Sequence[str]], None] | None = None,
                 after_catalog: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._after_lookup = after_lookup
        self._after_catalog = after_catalog

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        result = self._inner.load_catalog()
        if self._after_catalog is not None:
            self._after_catalog()
        return result

    def lookup_page(self, session_ids: list[str], *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = self._inner.lookup_page(session_ids, *args, **kwargs)
        if self._after_lookup is not None:
            self._after_lookup(session_ids)
        return result
