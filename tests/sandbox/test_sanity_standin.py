"""The Sanity stand-in over HTTP with plain `requests`: GROQ, perspectives, transactions, auth,
faults, controls and the NDJSON round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from sandbox.sanity_server import SanityStandIn, StandInError

NEW = "v2025-02-19"  # defaults to the published perspective
OLD = "v2021-10-21"  # defaults to raw
WRITE = {"Authorization": "Bearer sanity-write-sandbox"}
READ = {"Authorization": "Bearer sanity-read-sandbox"}

DOCS = [
    {"_id": "tenant-a", "_type": "tenant", "schoolName": "A"},
    {"_id": "drafts.tenant-a", "_type": "tenant", "schoolName": "A (edited)"},
    {"_id": "tenant-b", "_type": "tenant", "schoolName": "B"},
    {"_id": "user-1", "_type": "user", "clerkId": "user_1"},
]


def query_get(s: SanityStandIn, groq: str, version: str = NEW, headers: dict[str, str] = WRITE,
              **params: Any) -> requests.Response:
    args = {"query": groq, **{f"${k}": json.dumps(v) for k, v in params.items()}}
    return requests.get(f"{s.url}/{version}/data/query/production", params=args,
                        headers=headers, timeout=10)


def query_post(s: SanityStandIn, groq: str, params: dict[str, Any] | None = None,
               version: str = NEW, perspective: str | None = None) -> requests.Response:
    qs = {"perspective": perspective} if perspective else {}
    return requests.post(f"{s.url}/{version}/data/query/production", params=qs,
                         json={"query": groq, "params": params or {}}, headers=WRITE, timeout=10)


def mutate(s: SanityStandIn, mutations: list[dict[str, Any]], tx: str | None = None,
           headers: dict[str, str] = WRITE, dry_run: bool = False) -> requests.Response:
    body: dict[str, Any] = {"mutations": mutations}
    if tx:
        body["transactionId"] = tx
    return requests.post(
        f"{s.url}/{NEW}/data/mutate/production",
        params={"returnIds": "true", "visibility": "sync", "dryRun": str(dry_run).lower()},
        json=body, headers=headers, timeout=10)


def ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [d["_id"] for d in response.json()["result"]]


# -- GROQ ------------------------------------------------------------------------------


def test_get_query_with_params_answers_in_sanity_shape(sanity: SanityStandIn) -> None:
    sanity.load_documents(DOCS)
    response = query_get(sanity, "*[_type == $t && schoolName in $names]{_id, schoolName}",
                         t="tenant", names=["A", "B"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"query", "result", "ms"}
    assert body["result"] == [{"_id": "tenant-a", "schoolName": "A"},
                              {"_id": "tenant-b", "schoolName": "B"}]


def test_post_query_with_params_and_subquery(sanity: SanityStandIn) -> None:
    sanity.load_documents([*DOCS, {"_id": "s1", "_type": "subscription",
                                    "user": {"_type": "reference", "_ref": "user-1"}}])
    groq = '*[_type == "subscription" && user._ref in *[_type == "user" && clerkId in $c]._id]'
    assert ids(query_post(sanity, groq, {"c": ["user_1"]})) == ["s1"]
    assert ids(query_post(sanity, groq, {"c": ["nobody"]})) == []


def test_now_works_in_groq(sanity: SanityStandIn) -> None:
    response = query_post(sanity, "now()")
    assert response.status_code == 200
    assert response.json()["result"].endswith("Z")


def test_parse_error_is_a_400_query_parse_error(sanity: SanityStandIn) -> None:
    response = query_post(sanity, "*[_type == ")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "queryParseError"
    assert error["query"] == "*[_type == "
    assert isinstance(error["start"], int) and isinstance(error["description"], str)


def test_missing_param_is_a_parse_error(sanity: SanityStandIn) -> None:
    response = query_post(sanity, "*[_type == $t]")
    assert response.status_code == 400
    assert response.json()["error"]["description"] == "param $t referenced, but not provided"


def test_long_get_url_is_refused_with_414(sanity: SanityStandIn) -> None:
    response = query_get(sanity, "*[_id in $ids]", ids=[f"id-{n:06d}" for n in range(1200)])
    assert response.status_code == 414
    short = query_get(sanity, "*[_id in $ids]", ids=["x"])
    assert short.status_code == 200


# -- perspectives ----------------------------------------------------------------------


def test_drafts_follow_the_perspective(sanity: SanityStandIn) -> None:
    sanity.load_documents(DOCS)
    groq = '*[_type == "tenant"]'
    assert ids(query_post(sanity, groq, perspective="raw")) == [
        "tenant-a", "drafts.tenant-a", "tenant-b"]
    assert ids(query_post(sanity, groq, perspective="published")) == ["tenant-a", "tenant-b"]


def test_default_perspective_depends_on_api_version(sanity: SanityStandIn) -> None:
    sanity.load_documents(DOCS)
    groq = '*[_type == "tenant"]'
    assert "drafts.tenant-a" in ids(query_get(sanity, groq, version=OLD))
    assert "drafts.tenant-a" in ids(query_get(sanity, groq, version="v2025-02-18"))
    assert "drafts.tenant-a" not in ids(query_get(sanity, groq, version=NEW))
    assert "drafts.tenant-a" not in ids(query_get(sanity, groq, version="v2026-01-01"))


# -- transactions ----------------------------------------------------------------------


def test_create_assigns_system_fields_and_rev_is_the_transaction_id(sanity: SanityStandIn) -> None:
    response = mutate(sanity, [{"create": {"_id": "a", "_type": "thing", "n": 1}}], tx="tx-1")
    assert response.status_code == 200
    assert response.json() == {"transactionId": "tx-1",
                               "results": [{"id": "a", "operation": "create"}]}
    (doc,) = sanity.dump()
    assert doc["_rev"] == "tx-1"
    assert doc["_createdAt"] == doc["_updatedAt"] and doc["_createdAt"].endswith("Z")


def test_failing_mutation_rolls_back_the_whole_transaction(sanity: SanityStandIn) -> None:
    sanity.load_documents([{"_id": "taken", "_type": "thing", "v": 1}])
    response = mutate(sanity, [
        {"create": {"_id": "fresh", "_type": "thing"}},
        {"patch": {"id": "taken", "set": {"v": 2}}},
        {"create": {"_id": "taken", "_type": "thing"}},
    ])
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["type"] == "mutationError"
    assert error["items"] == [{"error": {"description": 'Document by ID "taken" already exists',
                                         "id": "taken", "type": "documentAlreadyExistsError"},
                               "index": 2}]
    assert [(d["_id"], d.get("v")) for d in sanity.dump()] == [("taken", 1)]


def test_create_if_not_exists_is_idempotent(sanity: SanityStandIn) -> None:
    doc = {"_id": "subscription-cs_1", "_type": "subscription", "passId": "p1"}
    first = mutate(sanity, [{"createIfNotExists": doc}], tx="t1")
    again = mutate(sanity, [{"createIfNotExists": {**doc, "passId": "changed"}}], tx="t2")
    assert first.json()["results"] == [{"id": "subscription-cs_1", "operation": "create"}]
    assert again.status_code == 200 and again.json()["results"] == []
    (stored,) = sanity.dump()
    assert (stored["passId"], stored["_rev"]) == ("p1", "t1")


def test_create_or_replace_and_delete(sanity: SanityStandIn) -> None:
    mutate(sanity, [{"create": {"_id": "a", "_type": "t", "x": 1}}])
    created_at = sanity.dump()[0]["_createdAt"]
    replaced = mutate(sanity, [{"createOrReplace": {"_id": "a", "_type": "t", "y": 2}}])
    assert replaced.json()["results"] == [{"id": "a", "operation": "update"}]
    (doc,) = sanity.dump()
    assert "x" not in doc and doc["y"] == 2 and doc["_createdAt"] == created_at
    deleted = mutate(sanity, [{"delete": {"id": "a"}}, {"delete": {"id": "never-was"}}])
    assert deleted.json()["results"] == [{"id": "a", "operation": "delete"}]
    assert sanity.dump() == []


def test_patch_operations_with_dotted_paths(sanity: SanityStandIn) -> None:
    sanity.load_documents([{"_id": "p", "_type": "t", "a": {"b": 1, "c": 2}, "n": 5, "m": 5,
                            "keep": "yes", "gone": True}])
    response = mutate(sanity, [{"patch": {
        "id": "p",
        "set": {"a.b": 10, "x.y": "new"},
        "setIfMissing": {"keep": "no", "fresh": 1},
        "unset": ["a.c", "gone"],
        "inc": {"n": 2, "missing": 1},
        "dec": {"m": 3},
    }}], tx="tx-p")
    assert response.status_code == 200
    (doc,) = sanity.dump()
    assert doc["a"] == {"b": 10} and doc["x"] == {"y": "new"}
    assert (doc["keep"], doc["fresh"], doc["n"], doc["m"]) == ("yes", 1, 7, 2)
    assert "gone" not in doc and "missing" not in doc and doc["_rev"] == "tx-p"


def test_patch_if_revision_id_mismatch_is_a_409(sanity: SanityStandIn) -> None:
    mutate(sanity, [{"create": {"_id": "r", "_type": "t"}}], tx="rev-1")
    stale = mutate(sanity, [{"patch": {"id": "r", "ifRevisionID": "rev-0", "set": {"v": 1}}}])
    assert stale.status_code == 409
    assert "v" not in sanity.dump()[0]
    fresh = mutate(sanity, [{"patch": {"id": "r", "ifRevisionID": "rev-1", "set": {"v": 1}}}])
    assert fresh.status_code == 200 and sanity.dump()[0]["v"] == 1


def test_patch_of_a_missing_document_fails(sanity: SanityStandIn) -> None:
    response = mutate(sanity, [{"patch": {"id": "ghost", "set": {"v": 1}}}])
    assert response.status_code == 409
    assert response.json()["error"]["items"][0]["error"]["id"] == "ghost"


@pytest.mark.parametrize("bad_id", ["-leading-dash", "has space", "x" * 129, "bad#char"])
def test_malformed_document_ids_are_400(sanity: SanityStandIn, bad_id: str) -> None:
    response = mutate(sanity, [{"create": {"_id": bad_id, "_type": "t"}}])
    assert response.status_code == 400
    assert "Malformed document ID" in response.json()["error"]["items"][0]["error"]["description"]
    assert sanity.dump() == []


def test_valid_ids_include_dots_dashes_and_128_chars(sanity: SanityStandIn) -> None:
    good = ["drafts.subscription-cs_test_1", "a" * 128, "A.b-c_9"]
    response = mutate(sanity, [{"create": {"_id": i, "_type": "t"}} for i in good])
    assert response.status_code == 200
    assert sorted(d["_id"] for d in sanity.dump()) == sorted(good)


def test_dry_run_validates_without_committing(sanity: SanityStandIn) -> None:
    ok = mutate(sanity, [{"create": {"_id": "d", "_type": "t"}}], dry_run=True)
    assert ok.status_code == 200 and ok.json()["results"] == [{"id": "d", "operation": "create"}]
    assert sanity.dump() == []
    sanity.load_documents([{"_id": "d", "_type": "t"}])
    conflict = mutate(sanity, [{"create": {"_id": "d", "_type": "t"}}], dry_run=True)
    assert conflict.status_code == 409


# -- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "sanity-write-sandbox"}])
def test_missing_or_unknown_token_is_401(sanity: SanityStandIn, headers: dict[str, str]) -> None:
    response = query_get(sanity, "*", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "error": "Unauthorized",
                               "message": "Session not found", "errorCode": "SIO-401-ANF"}
    assert mutate(sanity, [], headers=headers).status_code == 401


def test_read_token_reads_but_cannot_write(sanity: SanityStandIn) -> None:
    assert query_get(sanity, "count(*)", headers=READ).status_code == 200
    response = mutate(sanity, [{"create": {"_id": "a", "_type": "t"}}], headers=READ)
    assert response.status_code == 403
    item = response.json()["error"]["items"][0]["error"]
    assert item["description"] == 'Insufficient permissions; permission "create" required'
    assert item["type"] == "insufficientPermissionsError"
    assert sanity.dump() == []


def test_unknown_dataset_is_404(sanity: SanityStandIn) -> None:
    response = requests.get(f"{sanity.url}/{NEW}/data/query/staging", params={"query": "*"},
                            headers=WRITE, timeout=10)
    assert response.status_code == 404


def test_doc_endpoint_returns_documents_and_omitted(sanity: SanityStandIn) -> None:
    sanity.load_documents(DOCS)
    response = requests.get(f"{sanity.url}/{NEW}/data/doc/production/tenant-a,nope,drafts.tenant-a",
                            headers=WRITE, timeout=10)
    body = response.json()
    assert [d["_id"] for d in body["documents"]] == ["tenant-a", "drafts.tenant-a"]
    assert body["omitted"] == [{"id": "nope", "reason": "existence"}]


# -- faults and controls ---------------------------------------------------------------


def test_injected_status_fault_is_consumed_once(sanity: SanityStandIn) -> None:
    sanity.inject_fault("query", status=429, headers={"Retry-After": "3"})
    first = query_get(sanity, "count(*)")
    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
    assert first.json()["statusCode"] == 429
    assert query_get(sanity, "count(*)").status_code == 200


def test_fault_kinds_are_separate_queues(sanity: SanityStandIn) -> None:
    assert sanity.inject_fault("mutate", status=503) == {"query": 0, "mutate": 1, "doc": 0}
    assert query_get(sanity, "count(*)").status_code == 200
    assert mutate(sanity, []).status_code == 503


def test_dropped_connection(sanity: SanityStandIn) -> None:
    sanity.inject_fault("query", drop=True)
    with pytest.raises(requests.ConnectionError):
        query_get(sanity, "count(*)")
    assert query_get(sanity, "count(*)").status_code == 200


def test_drop_after_commits_then_loses_the_answer(sanity: SanityStandIn) -> None:
    sanity.inject_fault("mutate", drop_after=True)
    with pytest.raises(requests.ConnectionError):
        mutate(sanity, [{"create": {"_id": "a", "_type": "t"}}], tx="lost")
    assert [d["_rev"] for d in sanity.dump()] == ["lost"]


def test_malformed_body(sanity: SanityStandIn) -> None:
    sanity.inject_fault("query", malformed=True)
    response = query_get(sanity, "count(*)")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_latency_and_fault_delay_slow_requests(sanity: SanityStandIn) -> None:
    sanity.set_latency(150)
    response = query_get(sanity, "count(*)")
    assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.15
    sanity.set_latency(0)
    sanity.inject_fault("query", delay_ms=300)
    with pytest.raises(requests.Timeout):
        requests.get(f"{sanity.url}/{NEW}/data/query/production", params={"query": "1"},
                     headers=WRITE, timeout=0.1)


def test_request_log_records_and_resets(sanity: SanityStandIn) -> None:
    sanity.reset_log()
    query_post(sanity, '*[_type == "t"]')
    mutate(sanity, [{"create": {"_id": "a", "_type": "t"}}, {"delete": {"id": "a"}}], tx="tx-log")
    entries = sanity.log()
    assert [(e["kind"], e["method"], e["status"]) for e in entries] == [
        ("query", "POST", 200), ("mutate", "POST", 200)]
    assert entries[1]["mutations"] == 2 and entries[1]["transactionId"] == "tx-log"
    assert all(e["ms"] >= 0 for e in entries)
    assert entries[0]["index"] == "1/1"  # the one *[…] was answered from the index
    sanity.reset_log()
    assert sanity.log() == []


def test_ndjson_load_and_dump_round_trip(sanity: SanityStandIn) -> None:
    docs = [{"_id": f"d{n}", "_type": "t", "_rev": f"r{n}", "_createdAt": "2025-01-01T00:00:00Z",
             "_updatedAt": "2025-01-02T00:00:00Z", "nested": {"list": [n, {"k": "é"}]}}
            for n in range(50)]
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    assert sanity.load_ndjson(text) == 50
    assert sanity.dump() == docs
    raw = requests.get(f"{sanity.url}/_sandbox/dump", timeout=10)
    assert raw.text == "".join(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n"
                               for d in docs)
    assert sanity.stats()["documents"] == 50


def test_stats_report_cpu_seconds(sanity: SanityStandIn) -> None:
    stats = sanity.stats()
    assert stats["cpuSeconds"] > 0 and stats["documents"] == 0 and stats["queryMode"] == "index"


def test_data_file_tokens_and_dataset_options(sanity_factory: Any, tmp_path: Any) -> None:
    path = tmp_path / "export.ndjson"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    server = sanity_factory(path, dataset="staging", write_token="w-1", read_token="r-1")
    response = requests.get(f"{server.url}/{NEW}/data/query/staging",
                            params={"query": "count(*)", "perspective": "raw"},
                            headers={"Authorization": "Bearer r-1"}, timeout=10)
    assert response.json()["result"] == len(DOCS)
    assert query_get(server, "count(*)").status_code == 401  # the default token is not valid here


def test_missing_node_modules_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Any) -> None:
    monkeypatch.setattr("sandbox.sanity_server.SERVER_DIR", tmp_path)
    with pytest.raises(StandInError, match="run: npm ci --prefix sandbox/sanity"):
        SanityStandIn().start()
