"""The quick pass's rhythm: which accounts a quick pass may leave for the next one.

A quick pass costs one session-list request per account when nothing happened, so at a
30 s interval every school costs two requests a minute, and 500 schools would take more of
Stripe's per-endpoint budget than the job allows itself. Most schools sell a few passes a
day: an account with no purchase paid in the last `QUIET_AFTER` is read every
`QUIET_PASSES`-th quick pass instead of every one. Nothing is lost by leaving one out: its
watermark stays, and the next pass that reads it starts from there. An account never read
yet, or with a sale lately, is read by every pass, and a quiet one never less often than the
deep pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

QUIET_AFTER = timedelta(hours=24)  # no purchase paid for this long: the account is quiet
QUIET_PASSES = 2  # a quiet account is read every this many quick passes


def quiet_every(quick_interval: timedelta, deep_interval: timedelta) -> timedelta:
    """How often a quiet account is read: every `QUIET_PASSES` quick passes, at least as
    often as the deep pass runs."""
    return min(quick_interval * QUIET_PASSES, deep_interval)


def accounts_to_rest(watermarks: Mapping[str, datetime], sold_lately: Iterable[str],
                     until: datetime, quick_interval: timedelta,
                     deep_interval: timedelta) -> frozenset[str]:
    """The accounts this quick pass (window ending `until`) leaves out: quiet ones (no sale
    lately) whose last read ended less than their period ago. Half an interval of slack, so
    a pass that starts a little early still reads an account that is due."""
    period = quiet_every(quick_interval, deep_interval)
    slack = quick_interval / 2
    busy = set(sold_lately)
    return frozenset(account for account, read_until in watermarks.items()
                     if account not in busy and until - read_until < period - slack)
