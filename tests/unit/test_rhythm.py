"""The quick pass's rhythm: quiet accounts every other pass, busy and new ones every pass."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from jobs.adapters.ledger import Ledger
from jobs.run.rhythm import accounts_to_rest, quiet_every
from tests.support.ledger import T0, Clock
from tests.unit.test_ledger import created_item, present_item, record, report, start

QUICK, DEEP = timedelta(seconds=30), timedelta(minutes=60)


def test_a_quiet_account_read_one_pass_ago_rests_and_is_read_the_pass_after():
    read = {"acct_quiet": T0 - QUICK, "acct_busy": T0 - QUICK}
    assert accounts_to_rest(read, {"acct_busy"}, T0, QUICK, DEEP) == {"acct_quiet"}
    # One interval later its last read is two intervals old: due again.
    assert accounts_to_rest(read, {"acct_busy"}, T0 + QUICK, QUICK, DEEP) == frozenset()
    # A pass a few seconds early still reads it (half an interval of slack).
    assert accounts_to_rest(read, set(), T0 + QUICK - timedelta(seconds=10), QUICK,
                            DEEP) == frozenset()


def test_an_account_never_read_is_never_left_out():
    assert accounts_to_rest({}, set(), T0, QUICK, DEEP) == frozenset()


def test_a_quiet_account_is_read_at_least_as_often_as_the_deep_pass():
    assert quiet_every(timedelta(minutes=45), DEEP) == DEEP
    read = {"acct_quiet": T0 - DEEP}
    assert accounts_to_rest(read, set(), T0, timedelta(minutes=45), DEEP) == frozenset()


def test_the_ledger_names_the_accounts_that_sold_lately(tmp_path: Path) -> None:
    clock = Clock(T0)
    with Ledger.open(tmp_path / "state", clock=clock) as ledger:
        start(ledger, "r1")
        record(ledger, report("r1", decisions=[created_item("cs_new", T0 - timedelta(hours=1))]),
               present=[present_item("cs_old", T0 - timedelta(days=2))])
        record(ledger, report("r1", decisions=[
            created_item("cs_b", T0 - timedelta(hours=30), account="acct_2")]))
        # acct_1 has a purchase paid an hour ago; acct_2's is 30 h old, acct_1's other 2 days.
        assert ledger.sold_since(T0 - timedelta(hours=24)) == {"acct_1"}
        assert ledger.sold_since(T0 - timedelta(days=3)) == {"acct_1", "acct_2"}
