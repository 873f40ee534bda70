"""Fast, exact JSON for objects built as `CONSTANT.copy()` + variable fields.

Most of a Stripe object never varies, and the stdlib encoder spends most of its time on those
parts. A `Template` encodes the constant part once and splices it in front of each object's own
fields. An object whose constant fields were changed or removed is encoded in full, so the
output is always exactly what `json.dumps` of the object would give (keys in dict order).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]
dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_MISSING = object()


class Template:
    """Encodes objects that start with `constant`'s keys; `nested` names trailing keys whose
    value (an object, or a list of objects) has its own template."""

    def __init__(self, constant: Obj, nested: dict[str, Template] | None = None) -> None:
        self._constant = constant
        self._keys = list(constant)
        self._nested = nested or {}
        self._nested_keys = list(self._nested)
        self._prefix: str | None = None

    def encode(self, obj: Obj) -> str:
        """`dumps(obj)`, faster when `obj` fits the template."""
        for key, value in self._constant.items():
            if obj.get(key, _MISSING) is not value:
                return dumps(obj)
        keys = list(obj)
        count, tail = len(self._keys), len(self._nested_keys)
        if keys[:count] != self._keys or (tail and keys[-tail:] != self._nested_keys):
            return dumps(obj)
        if self._prefix is None:
            self._prefix = dumps(self._constant)[:-1]
        parts = [self._prefix[1:]] if count else []
        own = keys[count:len(keys) - tail]
        if own:
            parts.append(dumps({key: obj[key] for key in own})[1:-1])
        for key, template in self._nested.items():
            value = obj[key]
            if isinstance(value, list):
                inner = "[" + ",".join(template.encode(item) for item in value) + "]"
            else:
                inner = template.encode(value)
            parts.append(dumps(key) + ":" + inner)
        return "{" + ",".join(parts) + "}"

    def encode_all(self, objects: Iterable[Obj]) -> str:
        """The objects as the inside of a JSON array (no brackets)."""
        return ",".join(self.encode(obj) for obj in objects)
