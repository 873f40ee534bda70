"""Parser for `.env` files (`--env-file`): KEY=VALUE lines, the subset every dotenv tool agrees on.

Accepted: blank lines, `#` comment lines, an optional `export ` prefix, whitespace around `=`,
unquoted values (a ` #` starts a trailing comment), 'single-quoted' values (literal) and
"double-quoted" values (\\n, \\t, \\r, \\", \\\\ escapes). No `${VAR}` interpolation, no multi-line
values: a value means exactly what the file says.

A malformed line is a `ConfigError` naming the file and line number, never the line itself:
the line may hold a secret.
"""

from __future__ import annotations

import re
from pathlib import Path

from jobs.core.errors import ConfigError

_KEY = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class _Malformed(Exception):
    """A line that is not KEY=VALUE; carries the problem, never the content."""


def read_env_file(path: Path) -> dict[str, str]:
    """Read `path` into a dict; later lines win over earlier ones for the same key."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"env file {path}: not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"env file {path}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"env file {path}: cannot be read ({error.strerror})") from None
    return parse_env_text(text, source=str(path))


def parse_env_text(text: str, *, source: str = "env file") -> dict[str, str]:
    """Parse the text of an env file; `source` names the file in error messages."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _KEY.fullmatch(stripped)
        if match is None:
            raise ConfigError(f"{source}: line {number}: malformed entry (expected KEY=VALUE)")
        key, rest = match.groups()
        try:
            values[key] = _value(rest)
        except _Malformed as problem:
            raise ConfigError(f"{source}: line {number} ({key}): {problem}") from None
    return values


def _value(rest: str) -> str:
    """The value part of a line: quoted, or unquoted up to a ` #` comment."""
    if rest[:1] == "'":
        end = rest.find("'", 1)
        if end < 0:
            raise _Malformed("unterminated single quote")
        _expect_only_comment(rest[end + 1 :])
        return rest[1:end]
    if rest[:1] == '"':
        return _double_quoted(rest)
    comment = re.search(r"[ \t]#", rest)
    return (rest[: comment.start()] if comment else rest).strip()


def _double_quoted(rest: str) -> str:
    chars: list[str] = []
    index = 1
    while index < len(rest):
        char = rest[index]
        if char == "\\" and index + 1 < len(rest):
            following = rest[index + 1]
            # An unknown escape stays as written, as in shells and python-dotenv.
            chars.append(_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        if char == '"':
            _expect_only_comment(rest[index + 1 :])
            return "".join(chars)
        chars.append(char)
        index += 1
    raise _Malformed("unterminated double quote")


def _expect_only_comment(tail: str) -> None:
    tail = tail.strip()
    if tail and not tail.startswith("#"):
        raise _Malformed("unexpected text after the closing quote")
