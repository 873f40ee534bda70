"""Identifier, time and number helpers for the world generator.

Every identifier comes from one seeded ``random.Random`` so the same seed gives the same world.
"""

from __future__ import annotations

import functools
import random
import time

BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Maps every byte to a base62 character; the slight bias of `byte % 62` does not matter for ids
# and lets one C-level `translate` call turn random bytes into an id.
_BYTE_TO_BASE62 = bytes(BASE62[i % 62] for i in range(256))

DAY_MS = 86_400_000
DAY_S = 86_400


_POOL = 1 << 16


class Ids:
    """Mints the identifiers of every system (Stripe, Sanity, Clerk) from one seeded generator.

    Random characters are drawn 64 KiB at a time (one call instead of one per id)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._pool = ""
        self._at = 0

    def base62(self, length: int) -> str:
        """A random base62 string of `length` characters."""
        end = self._at + length
        if end > len(self._pool):
            self._pool = self._rng.randbytes(_POOL).translate(_BYTE_TO_BASE62).decode("ascii")
            self._at, end = 0, length
        text = self._pool[self._at:end]
        self._at = end
        return text

    def sanity(self) -> str:
        """An auto-style Sanity document id (22 base62 characters)."""
        return self.base62(22)

    def rev(self) -> str:
        """A Sanity document revision."""
        return self.base62(22)

    def clerk(self) -> str:
        """A Clerk user id (`user_` + 27 characters)."""
        return "user_" + self.base62(27)

    def session(self) -> str:
        """A test-mode Checkout Session id (`cs_test_` + 58 characters)."""
        return "cs_test_" + self.base62(58)

    def stripe(self, prefix: str, length: int = 24) -> str:
        """Any other Stripe id: `pi_`, `evt_`, `li_`, `price_`, `re_`, `ch_`, `we_`, `sub_` ..."""
        return prefix + "_" + self.base62(length)

    def account(self) -> str:
        """A Stripe account id (`acct_` + 16 characters)."""
        return "acct_1" + self.base62(15)


@functools.lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%dT", time.gmtime(day * DAY_S))


@functools.lru_cache(maxsize=1 << 16)
def _clock(seconds: int) -> str:
    day, rest = divmod(seconds, DAY_S)
    hours, rest = divmod(rest, 3600)
    return f"{_day(day)}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def iso_ms(ms: int) -> str:
    """Unix milliseconds -> `2026-08-19T18:20:00.000Z` (the app's date format)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_clock(seconds)}.{millis:03d}Z"


def iso_s(seconds: int) -> str:
    """Unix seconds -> `2026-08-19T18:20:00Z` (Sanity's `_createdAt` format)."""
    return _clock(seconds) + "Z"


def num(value: float) -> int | float:
    """A number as JavaScript would print it: integral values without a fraction."""
    as_int = int(value)
    return as_int if as_int == value else value


def money(value: float) -> str:
    """A price as the app writes it into Stripe metadata (`String(number)`)."""
    return str(num(round(value, 2)))


def ref(target_id: str) -> dict[str, str]:
    """A Sanity reference."""
    return {"_type": "reference", "_ref": target_id}
