"""The Sanity adapter against the stand-in over HTTP: the reconciler's queries, transactions,
error translation (table-driven) and retries with an injected sleep."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.adapters.sanity_store import MutationRefused, SanityStore
from jobs.core.errors import (
    ConfigError,
    CredentialsRejected,
    ReconcilerError,
    ServiceUnavailable,
    WriteRejected,
)
from sandbox.sanity_server import SanityStandIn

VERSION = "2025-02-19"


def ref(target: str) -> dict[str, str]:
    return {"_type": "reference", "_ref": target}


WORLD: list[dict[str, Any]] = [
    {"_id": "tenant-a", "_type": "tenant", "schoolName": "Dance City", "slug": {"current": "dc"},
     "status": "active", "stripeConnect": {"accountId": "acct_1"}, "ownerId": "user_owner"},
    {"_id": "drafts.tenant-a", "_type": "tenant", "schoolName": "Dance City (draft)"},
    {"_id": "versions.r1.tenant-b", "_type": "tenant", "schoolName": "In a release"},
    {"_id": "pass-10", "_type": "pass", "name": "10 Clips", "type": "multi", "price": 900,
     "validityType": "days", "validityDays": 90, "classesLimit": 10, "isActive": True,
     "tenant": ref("tenant-a"), "description": "not needed"},
    {"_id": "drafts.pass-10", "_type": "pass", "name": "10 Clips (draft)"},
    {"_id": "user-canon", "_type": "user", "clerkId": "user_1", "email": "x@example.com"},
    {"_id": "user_2", "_type": "user", "name": "legacy user, _id = clerk id"},
    {"_id": "drafts.user-canon", "_type": "user", "clerkId": "user_1"},
    # subscriptions the lookup must find
    {"_id": "sub-by-sid", "_type": "subscription", "stripeSessionId": "cs_1"},
    {"_id": "subscription-cs_2", "_type": "subscription"},
    {"_id": "drafts.subscription-cs_3", "_type": "subscription"},
    {"_id": "sub-pi", "_type": "subscription", "stripePaymentId": "pi_1"},
    {"_id": "sub-pii", "_type": "subscription", "stripePaymentIntentId": "pi_2"},
    {"_id": "sub-payid", "_type": "subscription", "paymentId": "pi_3"},
    # ... and the ones it must not
    {"_id": "sub-blank-pi", "_type": "subscription", "stripePaymentId": ""},
    {"_id": "sub-other", "_type": "subscription", "stripeSessionId": "cs_other"},
    {"_id": "not-a-sub", "_type": "booking", "stripeSessionId": "cs_1"},
    # manual subscriptions (no Stripe session id, no payment intent) of the buyers' refs
    {"_id": "manual-clerk-ref", "_type": "subscription", "user": ref("user_1"), "passId": "pass-10",
     "stripePaymentId": "manual_recovery_1"},
    {"_id": "manual-pass-ref", "_type": "subscription", "user": ref("user-canon"),
     "pass": ref("pass-10")},
    {"_id": "manual-by-name", "_type": "subscription", "user": ref("user_2"),
     "stripeSessionId": "", "passName": "10 Clips"},
    {"_id": "drafts.manual-draft", "_type": "subscription", "user": ref("user-canon"),
     "passId": "pass-10", "stripeSessionId": "manual_recovery_session_1",
     "stripePaymentId": "manual_recovery_1"},
    {"_id": "manual-stranger", "_type": "subscription", "user": ref("someone-else"),
     "passId": "pass-10"},
    {"_id": "manual-legacy-ref", "_type": "subscription", "user": ref("user_2"),
     "passId": "pass-other"},
    {"_id": "paid-of-person", "_type": "subscription", "user": ref("user-canon"),
     "passId": "pass-10", "stripeSessionId": "cs_live_old"},
    {"_id": "paid-by-intent", "_type": "subscription", "user": ref("user-canon"),
     "passId": "pass-10", "stripePaymentIntentId": "pi_9"},
    {"_id": "manual-other-pass", "_type": "subscription", "user": ref("user-canon"),
     "passId": "pass-other"},
    # upgrade sources
    {"_id": "old-sub", "_type": "subscription", "stripeSessionId": "cs_old2", "isActive": True},
    {"_id": "drafts.old-sub", "_type": "subscription", "isActive": True},
]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_store(server: SanityStandIn, sleeps: Sleeps, token: str | None = None,
               **options: Any) -> SanityStore:
    return SanityStore(server.url, server.dataset, token or server.write_token, VERSION,
                       sleep=sleeps, **options)


@pytest.fixture
def store(sanity: SanityStandIn, sleeps: Sleeps) -> SanityStore:
    sanity.load_documents(WORLD)
    sanity.reset_log()
    return make_store(sanity, sleeps)


def ids(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["_id"] for d in docs)


# -- reads -----------------------------------------------------------------------------


def test_load_catalog_returns_published_tenants_and_passes(store: SanityStore,
                                                           sanity: SanityStandIn) -> None:
    tenants, passes = store.load_catalog()
    assert tenants == [{"_id": "tenant-a", "schoolName": "Dance City", "slug": {"current": "dc"},
                        "status": "active", "stripeConnect": {"accountId": "acct_1"}}]
    assert passes == [{"_id": "pass-10", "name": "10 Clips", "type": "multi", "price": 900,
                       "validityType": "days", "validityDays": 90, "expiryDate": None,
                       "classesLimit": 10, "isActive": True, "tenant": ref("tenant-a")}]
    assert [(e["kind"], e["method"]) for e in sanity.log()] == [("query", "POST")]


def test_lookup_page_finds_everything_in_one_query(store: SanityStore,
                                                   sanity: SanityStandIn) -> None:
    found = store.lookup_page(
        session_ids=["cs_1", "cs_2", "cs_3", "cs_1"],
        payment_intents=["pi_1", "pi_2", "pi_3", ""],
        user_ids=["user_1", "user_2"],
        upgrade_ids=["old-sub", "missing-sub"],
    )
    assert ids(found["subs"]) == ["drafts.subscription-cs_3", "sub-by-sid", "sub-payid", "sub-pi",
                                  "sub-pii", "subscription-cs_2"]
    assert ids(found["users"]) == ["user-canon", "user_2"]
    assert ids(found["upgrades"]) == ["old-sub"]
    assert found["users"][0]["email"] == "x@example.com"  # whole documents
    # Three `*[…]`, every one answered from plain field lookups: no sub-query in a filter.
    (entry,) = sanity.log()
    assert (entry["kind"], entry["perspective"], entry["index"]) == ("query", "raw", "3/3")


def test_recheck_finds_purchases_and_the_buyers_manual_subscriptions(
        store: SanityStore, sanity: SanityStandIn) -> None:
    found = store.recheck(["cs_1", "cs_2", "cs_3"], ["pi_1", "pi_2", "pi_3"],
                          ["user_1", "user-canon", "user_2"])
    assert ids(found["subs"]) == ["drafts.subscription-cs_3", "sub-by-sid", "sub-payid",
                                  "sub-pi", "sub-pii", "subscription-cs_2"]
    # Drafts too; not a real Stripe session id or payment intent; only these persons'.
    # (which pass they are for is the planner's business).
    assert ids(found["manual"]) == ["drafts.manual-draft", "manual-by-name", "manual-clerk-ref",
                                    "manual-legacy-ref", "manual-other-pass", "manual-pass-ref"]
    assert store.recheck(["cs_none"], [], []) == {"subs": [], "manual": []}
    (first, _) = sanity.log()
    assert (first["kind"], first["perspective"], first["index"]) == ("query", "raw", "2/2")


def test_lookup_page_with_nothing_to_find(store: SanityStore) -> None:
    assert store.lookup_page(["cs_none"], [], [], []) == {
        "subs": [], "users": [], "upgrades": []}


def test_queries_see_drafts_whatever_the_api_version(sanity: SanityStandIn,
                                                     sleeps: Sleeps) -> None:
    sanity.load_documents(WORLD)
    for version in ("2025-02-19", "v2021-10-21", "2026-06-01"):
        store = SanityStore(sanity.url, "production", sanity.write_token, version, sleep=sleeps)
        assert "drafts.tenant-a" in store.query('*[_type == "tenant"]._id', {})


def test_get_documents_in_chunks(store: SanityStore, sanity: SanityStandIn) -> None:
    sanity.load_documents([{"_id": f"d-{n}", "_type": "t"} for n in range(250)])
    sanity.reset_log()
    docs = store.get_documents([f"d-{n}" for n in range(250)] + ["absent", "d-0"])
    assert len(docs) == 250
    assert [e["kind"] for e in sanity.log()] == ["doc", "doc", "doc"]


# -- writes ----------------------------------------------------------------------------


def test_commit_is_one_transaction_with_its_id(store: SanityStore, sanity: SanityStandIn) -> None:
    results = store.commit([
        {"createIfNotExists": {"_id": "subscription-cs_9", "_type": "subscription",
                               "reconcileRunId": "run-1"}},
        {"patch": {"id": "old-sub", "set": {"isActive": False}}},
    ], "run-1-platform-0")
    assert results == [{"id": "subscription-cs_9", "operation": "create"},
                       {"id": "old-sub", "operation": "update"}]
    (entry,) = sanity.log()
    assert (entry["mutations"], entry["transactionId"]) == (2, "run-1-platform-0")
    (doc,) = store.documents_of_run("run-1")
    assert doc["_id"] == "subscription-cs_9" and doc["_rev"] == "run-1-platform-0"
    (old,) = store.get_documents(["old-sub"])
    assert old["isActive"] is False


def test_dry_run_validates_and_writes_nothing(store: SanityStore, sanity: SanityStandIn) -> None:
    before = sanity.dump()
    create = {"create": {"_id": "new", "_type": "subscription"}}
    results = store.commit([create], "tx", dry_run=True)
    assert results == [{"id": "new", "operation": "create"}]
    assert sanity.dump() == before
    with pytest.raises(WriteRejected, match="already exists"):
        store.commit([{"create": {"_id": "old-sub", "_type": "subscription"}}], "tx", dry_run=True)


def test_failed_transaction_leaves_nothing(store: SanityStore, sanity: SanityStandIn) -> None:
    before = sanity.dump()
    with pytest.raises(MutationRefused) as refused:
        store.commit([{"create": {"_id": "fresh", "_type": "subscription"}},
                      {"patch": {"id": "no-such-doc", "set": {"a": 1}}}], "tx-fail")
    assert refused.value.status == 409 and isinstance(refused.value, WriteRejected)
    assert sanity.dump() == before


def test_retried_commit_after_lost_answer_is_applied_once(store: SanityStore,
                                                          sanity: SanityStandIn,
                                                          sleeps: Sleeps) -> None:
    sanity.inject_fault("mutate", drop_after=True)  # commits, then the answer is lost
    doc = {"_id": "subscription-cs_7", "_type": "subscription"}
    store.commit([{"createIfNotExists": doc}], "tx-lost")
    assert [d["_rev"] for d in store.get_documents(["subscription-cs_7"])] == ["tx-lost"]
    mutates = [e for e in sanity.log() if e["kind"] == "mutate"]
    assert [e["transactionId"] for e in mutates] == ["tx-lost", "tx-lost"]
    assert len(sleeps) == 1


def test_retried_create_meeting_its_own_commit_succeeds(store: SanityStore,
                                                        sanity: SanityStandIn) -> None:
    sanity.inject_fault("mutate", drop_after=True)
    results = store.commit([{"create": {"_id": "made-once", "_type": "t"}}], "tx-create")
    assert results == [{"id": "made-once", "operation": "unknown"}]
    assert [d["_id"] for d in sanity.dump()].count("made-once") == 1


def test_retried_create_meeting_someone_elses_document_is_refused(store: SanityStore,
                                                                  sanity: SanityStandIn) -> None:
    sanity.inject_fault("mutate", status=503)
    with pytest.raises(WriteRejected, match="already exists"):
        store.commit([{"create": {"_id": "old-sub", "_type": "subscription"}}], "tx-x")


def test_probe_write(sanity: SanityStandIn, sleeps: Sleeps) -> None:
    make_store(sanity, sleeps).probe_write()
    assert sanity.dump() == []
    with pytest.raises(CredentialsRejected, match='permission "create"'):
        make_store(sanity, sleeps, token=sanity.read_token).probe_write()


def test_cdn_base_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="CDN"):
        SanityStore("https://abc.apicdn.sanity.io", "production", "t", VERSION)


# -- error translation (table-driven) --------------------------------------------------

SECRET = "sk-sandbox-secret-token-value"

# (case, fault for the stand-in or None, operation, expected error or None, fragment, sleeps)
CASES: list[tuple[str, dict[str, Any] | None, str, type[Exception] | None, str, int]] = [
    ("401 on query", None, "query-badtoken", CredentialsRejected,
     "Sanity rejected SANITY_API_TOKEN (401 Session not found)", 0),
    ("401 on commit", None, "commit-badtoken", CredentialsRejected, "SANITY_API_TOKEN (401", 0),
    ("403 read token", None, "commit-readtoken", CredentialsRejected, 'permission "create"', 0),
    ("403 injected", {"kind": "query", "status": 403,
                      "body": {"statusCode": 403, "error": "Forbidden", "message": "no"}},
     "query", CredentialsRejected, "403 no", 0),
    ("409 conflict", None, "commit-conflict", WriteRejected, "already exists", 0),
    ("400 on query", None, "query-parse", ReconcilerError, "queryParseError", 0),
    ("404 on query", {"kind": "query", "status": 404}, "query", ReconcilerError, "404", 0),
    ("422 on commit", {"kind": "mutate", "status": 422}, "commit", WriteRejected, "422", 0),
    ("400 on commit", None, "commit-badid", WriteRejected, "Malformed document ID", 0),
    ("429 then ok", {"kind": "query", "status": 429, "headers": {"Retry-After": "7"}},
     "query", None, "", 1),
    ("500 then ok", {"kind": "query", "status": 500}, "query", None, "", 1),
    ("503 on commit then ok", {"kind": "mutate", "status": 503}, "commit", None, "", 1),
    ("dropped then ok", {"kind": "query", "drop": True}, "query", None, "", 1),
    ("dropped commit then ok", {"kind": "mutate", "drop": True}, "commit", None, "", 1),
    ("malformed then ok", {"kind": "query", "malformed": True}, "query", None, "", 1),
    ("malformed commit then ok", {"kind": "mutate", "malformed": True}, "commit", None, "", 1),
    ("doc 502 then ok", {"kind": "doc", "status": 502}, "doc", None, "", 1),
    ("timeout then ok", {"kind": "query", "delay_ms": 600}, "query", None, "", 1),
]


def run_operation(op: str, sanity: SanityStandIn, sleeps: Sleeps) -> Any:
    token = {"badtoken": SECRET, "readtoken": sanity.read_token}.get(op.partition("-")[2])
    store = make_store(sanity, sleeps, token=token or sanity.write_token, timeout=0.3)
    if op.startswith("query"):
        return store.query("*[_type == $t" if op == "query-parse" else "count(*[_type == $t])",
                           {"t": "tenant"})
    if op == "doc":
        return store.get_documents(["tenant-a"])
    doc_id = {"commit-conflict": "tenant-a", "commit-badid": "-bad id"}.get(op, "fresh-doc")
    return store.commit([{"create": {"_id": doc_id, "_type": "t"}}], "tx-case")


@pytest.mark.parametrize(("case", "fault", "op", "error", "fragment", "waits"), CASES,
                         ids=[c[0] for c in CASES])
def test_error_translation(sanity: SanityStandIn, sleeps: Sleeps, case: str,
                           fault: dict[str, Any] | None, op: str, error: type[Exception] | None,
                           fragment: str, waits: int) -> None:
    sanity.load_documents(WORLD)
    if fault:
        sanity.inject_fault(**fault)
    if error is None:
        assert run_operation(op, sanity, sleeps) is not None
    else:
        with pytest.raises(error) as raised:
            run_operation(op, sanity, sleeps)
        assert fragment in str(raised.value)
        assert SECRET not in str(raised.value) and sanity.write_token not in str(raised.value)
        if error is ReconcilerError:
            assert not isinstance(raised.value, WriteRejected | CredentialsRejected)
    assert len(sleeps) == waits
    if case == "429 then ok":
        assert sleeps == [7.0]  # Retry-After honoured


def test_retry_after_as_http_date(sanity: SanityStandIn, sleeps: Sleeps) -> None:
    when = "Thu, 01 Jan 2026 00:00:12 GMT"
    sanity.inject_fault("query", status=429, headers={"Retry-After": when})
    store = make_store(sanity, sleeps, clock=lambda: 1767225600.0)  # 2026-01-01T00:00:00Z
    assert store.query("1", {}) == 1
    assert sleeps == [12.0]


def test_persistent_failure_becomes_service_unavailable(sanity: SanityStandIn,
                                                        sleeps: Sleeps) -> None:
    for _ in range(3):
        sanity.inject_fault("query", status=503)
    store = make_store(sanity, sleeps, attempts=3)
    with pytest.raises(ServiceUnavailable, match="after 3 attempts"):
        store.query("1", {})
    assert len(sleeps) == 2
    assert [e["status"] for e in sanity.log()] == [503, 503, 503]
