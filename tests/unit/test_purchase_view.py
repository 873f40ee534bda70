"""`reconcile diagnose`'s view of what Sanity holds (pure)."""

from __future__ import annotations

from jobs.core.diagnosis import Diagnosis, Found, Query
from jobs.core.model import Catalog
from jobs.core.purchase_view import to_json


def test_subscriptions_are_shown_as_the_rules_read_their_references() -> None:
    doc = {"_id": "drafts.s1", "_type": "subscription", "pass": {"_ref": "p1"},
           "user": {"_ref": ""}, "tenant": {"_ref": 7}}
    diagnosis = Diagnosis(Query(user="u1"), [], Found(), Catalog({}, {}), [], [doc], [])
    [shown] = to_json(diagnosis)["subscriptions"]
    # An empty or non-string `_ref` points nowhere: the rules read it as no reference.
    assert (shown["draft"], shown["passId"], shown["user"], shown["tenant"]) == (
        True, "p1", None, None)
