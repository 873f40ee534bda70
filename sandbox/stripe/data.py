"""Stripe stand-in data: the sandbox `stripe.json` loaded and indexed for serving.

`StripeData` holds the keys, the platform, the connected accounts and, per account, one
`Collection` per kind of object; `dumps`, `public` and `list_body` make the bytes served.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
PLATFORM = "platform"


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, as Stripe sends them."""
    return json.dumps(value, separators=(",", ":")).encode()


def public(obj: Mapping[str, Any]) -> JSON:
    """The object as served: top-level private keys (leading `_`) removed.

    Only the top level: nested keys belong to Stripe's shape or to user metadata.
    """
    return {k: v for k, v in obj.items() if not k.startswith("_")}


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
            cached = self._json[i] = dumps(self._render(self.objects[i]))
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
                     b"true" if has_more else b"false", b',"url":', dumps(url), b"}"))


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

    def with_sessions(self, sessions: Sequence[JSON]) -> AccountData:
        """A copy holding `sessions` too (each with its private `_line_items`); the caches
        start empty, since positions move."""
        added = [s for s in sessions if isinstance(s.get("id"), str)]
        return replace(
            self, sessions=Collection([*self.sessions.objects, *added], SESSION_FIELDS),
            line_items={**self.line_items, **{s["id"]: s["_line_items"] for s in added
                                             if isinstance(s.get("_line_items"), list)}},
            expanded={})


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
        self._adding = threading.Lock()

    def account(self, name: str) -> AccountData:
        return self.by_account.get(name, self._empty)

    def add_sessions(self, name: str, sessions: Sequence[JSON]) -> int:
        """Sessions created while the stand-in serves (purchases arriving in a live run).
        The account's data is swapped whole: a request under way keeps the data it began with."""
        with self._adding:
            self.by_account[name] = self.account(name).with_sessions(sessions)
            return len(self.by_account[name].sessions)


def load_data(data: Mapping[str, Any] | Path | str) -> JSON:
    if isinstance(data, Mapping):
        return dict(data)
    with open(data, encoding="utf-8") as handle:
        loaded: JSON = json.load(handle)
    return loaded
