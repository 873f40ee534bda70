"""Stripe stand-in parameters: what a handler is given (`Call`), its query parsed and checked
the way Stripe checks it (`Params`, with Stripe's 400s), and one page of a list (`list_page`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sandbox.stripe.data import JSON, AccountData, Collection, StripeData, list_body
from sandbox.stripe.errors import bad_request, no_such, unknown_parameter

MAX_EXPAND_DEPTH = 4
LIST_PARAMS = ("limit", "starting_after", "ending_before", "expand")


@dataclass(frozen=True)
class Call:
    """One authorized API call as its handler sees it."""

    data: StripeData
    account: str  # the account acted on: "platform" or "acct_…"
    raw: JSON  # the parsed query (`parse_query`)
    now: Callable[[], float]  # the server's wall clock

    @property
    def acct(self) -> AccountData:
        """The objects of the account acted on."""
        return self.data.account(self.account)


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


def list_page(collection: Collection, kind: str, url: str, params: Params, *,
              equals: Mapping[str, Any], created: Mapping[str, int],
              predicate: Callable[[JSON], bool] | None = None,
              render: Callable[[int], bytes] | None = None) -> bytes:
    """One list answer: Stripe's limit and cursors (a cursor that is not there is a 400)."""
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
