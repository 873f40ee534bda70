"""Chaos: late webhook deliveries landing between the job's look-up and its commit, at scale.

On a 10,000-session world the whole window is planned before anything is written, so a
page's look-up and its transaction lie far apart. The legacy webhook (the app today:
check-then-create with an automatic id) delivers, right after the job looked up each page,
most of that page's missing purchases: Stripe's retries and an operator's resends. The
re-check just before each transaction must see every one of them: no purchase ends with
two subscriptions, and those purchases are reported present, not created.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from sandbox.sanity_server import SanityStandIn
from tests.chaos.boxes import ChaosBox, InProcess, open_box
from tests.chaos.invariants import Records, session_index
from tests.chaos.tally import Tally
from tests.chaos.webhooks import RacingStore, webhook_document

SEED = 31
SESSIONS = 10_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory,
        sanity_server: SanityStandIn) -> Iterator[ChaosBox]:
    sanity_server.set_query_mode("index")
    box = open_box(tmp_path_factory.mktemp("late"), sanity_server, seed=SEED,
                   sessions=SESSIONS, calibrate=False)
    yield box
    box.stripe.stop()


def doubles(box: ChaosBox, docs: dict[str, dict[str, Any]],
            sids: Sequence[str]) -> list[str]:
    assert box.world is not None
    index, records = session_index(box.world), Records(docs)
    return [sid for sid in sids if len(records.of(sid, index[sid][1])) > 1]


@pytest.mark.slow
def test_late_deliveries_between_look_up_and_commit_make_no_double(
        big: ChaosBox, tally: Tally) -> None:
    big.reset()
    rng = random.Random(SEED)
    missing = {sid: e for sid, e in big.truth["sessions"].items()
               if e["outcome"] == "created" and not e.get("deactivates")}
    # A 10k world's look-ups take longer than the fault suite's short timeouts allow.
    patient = {"stripe_timeout": 30.0, "sanity_timeout": 30.0}
    writer = InProcess(big, **patient).sanity_store()
    late: list[str] = []

    def deliver_late(session_ids: Sequence[str]) -> None:
        # Most of this page's missing purchases arrive now, after the page's look-up,
        # as one burst of the app's webhook (each its own random-id document).
        due = [sid for sid in session_ids if sid in missing and rng.random() < 0.7]
        if due:
            writer.commit([{"create": webhook_document(missing[sid]["expected"],
                                                       deterministic=False)} for sid in due],
                          f"webhook-{secrets.token_hex(6)}")
            late.extend(due)

    started = time.monotonic()
    first = InProcess(big, wrap_sanity=lambda s: RacingStore(s, after_lookup=deliver_late),
                      **patient).run()
    seconds = time.monotonic() - started
    assert first.report is not None, first.error
    report = first.report
    assert len(late) > 300, len(late)  # the scenario really raced
    everyone = list(session_index(big.world).keys()) if big.world else []
    planted = {sid for sid, e in big.truth["sessions"].items()
               if "duplicate_subscriptions" in e["anomalies"]}
    doubled = [sid for sid in doubles(big, first.docs_after, everyone) if sid not in planted]
    assert doubled == []
    created = {c["session_id"] for c in report["created"]}
    assert not created & set(late)  # the webhook's, reported present, not created
    to_create = {sid for sid, e in big.truth["sessions"].items() if e["outcome"] == "created"}
    assert created == to_create - set(late)
    # A second run finds everything in place and writes nothing.
    second = InProcess(big, **patient).run()
    assert second.report is not None
    assert second.report["counts"]["created"] == 0
    assert [s for s in doubles(big, second.docs_after, everyone) if s not in planted] == []
    tally.scenario(["webhook:late-10k"])
    tally.ran(2)
    tally.checked([])
    tally.note(f"late webhook deliveries on {SESSIONS:,} sessions: {len(late)} landed between "
               f"look-up and commit, {len(doubled)} doubles; run {seconds:.1f} s, "
               f"{report['counts']['created']} created, "
               f"{report['counts']['already_present']} already present")
