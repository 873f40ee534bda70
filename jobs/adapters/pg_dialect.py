"""The ledger's SQL, written for SQLite and portable by rule, as PostgreSQL takes it.

Every ledger statement and migration is written once (`?` or `:name` placeholders, SQLite's
column types). On PostgreSQL, and only there, it passes through `to_native` (statements) or
`to_postgres_ddl` (migrations) on its way, and rows come back as `Row`, which reads like
`sqlite3.Row`. What is translated, each marked DIALECT:

- placeholders become the server's own `$1, $2, …`;
- a bare column of the existing row in `ON CONFLICT … DO UPDATE` (`attempts = attempts + 1`)
  is qualified by its table, which PostgreSQL needs (SQLite takes both);
- `INSERT OR IGNORE INTO` becomes `INSERT INTO … ON CONFLICT DO NOTHING`;
- column types: REAL (4 bytes in PostgreSQL: epoch seconds would lose minutes) becomes DOUBLE
  PRECISION, INTEGER becomes BIGINT, BLOB becomes BYTEA, and `INTEGER PRIMARY KEY` (SQLite's
  row id, filled in when left out) an identity column.

Not translated (write them portably): SQLite-only functions (`json_each`, `strftime`, scalar
`MAX(a, b)`), `INSERT OR REPLACE`, and subqueries inside an upsert's `DO UPDATE`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

Params = Mapping[str, Any] | Sequence[Any]

# DIALECT: `?` and `:name` -> `$n` (quoted text is left alone). The connections use psycopg's
# RawCursor, which sends them as they are: psycopg's own `%s` parsing costs about 5 µs a
# parameter, and a ledger statement of 250 rows has over 5,000.
_PLACEHOLDERS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|(?<![:\w]):([A-Za-z_]\w*)")
_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_UPSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)(?:\s+AS\s+(\w+))?\b.*?\bON\s+CONFLICT\b.*?"
                     r"\bDO\s+UPDATE\s+SET\b", re.IGNORECASE | re.DOTALL)
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<![:\w]):[A-Za-z_]\w*|[A-Za-z_]\w*"
                    r"|\$\d+|\S")
_KEYWORDS = frozenset({
    "AND", "OR", "NOT", "NULL", "IS", "IN", "CASE", "WHEN", "THEN", "ELSE", "END", "TRUE",
    "FALSE", "LIKE", "GLOB", "BETWEEN", "AS", "CAST", "TEXT", "INTEGER", "BIGINT", "REAL",
    "DOUBLE", "PRECISION", "NUMERIC", "BOOLEAN", "DISTINCT", "FROM", "ESCAPE", "COLLATE", "WHERE",
    "RETURNING", "EXCLUDED",
})


@lru_cache(maxsize=64)
def to_native(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """The statement as PostgreSQL takes it, and the names of its `:name` placeholders in
    `$n` order (None for `?` placeholders)."""
    if _IGNORE.match(sql):
        sql = _IGNORE.sub("INSERT INTO", sql, count=1).rstrip().rstrip(";")
        sql += " ON CONFLICT DO NOTHING"
    sql = qualify_upsert(sql)
    names: list[str] = []
    count = 0

    def sub(match: re.Match[str]) -> str:
        nonlocal count
        token = match.group(0)
        if token == "?":
            count += 1
            return f"${count}"
        if match.group(1):
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"
        return token

    text = _PLACEHOLDERS.sub(sub, sql)
    if names and count:
        raise ValueError("a statement mixes ? and :name placeholders")
    return text, (tuple(names) if names else None)


def native_params(sql: str, params: Params) -> tuple[str, Sequence[Any] | None]:
    """`to_native`'s text and the parameters in `$n` order."""
    text, names = to_native(sql)
    if names is not None:
        if not isinstance(params, Mapping):
            raise TypeError("a statement with :name placeholders takes a mapping")
        return text, [params[n] for n in names]
    if isinstance(params, Mapping):
        raise TypeError("a statement with ? placeholders takes a sequence")
    return text, list(params) or None


def qualify_upsert(sql: str) -> str:
    """DIALECT: in `ON CONFLICT … DO UPDATE SET a = b + 1 WHERE c > 0`, the bare `b` and `c`
    become `table.b` and `table.c` (the set targets stay bare)."""
    head = _UPSERT.match(sql)
    if head is None or re.search(r"\bSELECT\b", sql[head.end():], re.IGNORECASE):
        return sql
    table = head.group(2) or head.group(1)
    tail = sql[head.end():]
    tokens = list(_TOKEN.finditer(tail))
    out: list[str] = []
    last, depth, target, in_where = 0, 0, True, False
    for i, match in enumerate(tokens):
        token = match.group(0)
        after = tokens[i + 1].group(0) if i + 1 < len(tokens) else ""
        before = tokens[i - 1].group(0) if i else ""
        text = token
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif token == "," and depth == 0 and not in_where:
            target = True
        elif re.fullmatch(r"[A-Za-z_]\w*", token):
            word = token.upper()
            if word == "WHERE" and depth == 0:
                in_where = True
            elif word in _KEYWORDS or before in (".", ":") or after in (".", "("):
                pass
            elif target and depth == 0 and not in_where:
                target = False  # the column being set
            else:
                text = f"{table}.{token}"
        out.append(tail[last:match.start()] + text)
        last = match.end()
    return sql[:head.end()] + "".join(out) + tail[last:]


# DIALECT: column types of migrations.
_TYPES = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(?:\s+AUTOINCREMENT)?\b|\b(REAL|INTEGER|BLOB)\b",
                    re.IGNORECASE)
_AS_POSTGRES = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "BLOB": "BYTEA"}


def to_postgres_ddl(statement: str) -> str:
    def sub(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        return _AS_POSTGRES[match.group(1).upper()]

    return _TYPES.sub(sub, statement)


class Row(tuple):  # type: ignore[type-arg]
    """A row as `sqlite3.Row` reads: by position or column name, `keys()`, `dict(row)`."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    """psycopg's row factory for `Row`."""
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)
