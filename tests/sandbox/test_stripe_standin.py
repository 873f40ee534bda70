"""The Stripe stand-in, driven by the real `stripe` SDK over HTTP (and plain HTTP for headers)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from sandbox.stripe.server import RemoteControls, StripeStandIn
from tests.integration import conftest_stripe
from tests.integration.conftest_stripe import StandInFactory, stripe_test_client
from tests.support.stripe_data import (
    TEST_KEY,
    account,
    account_data,
    event,
    line_item,
    many_sessions,
    object_id,
    product,
    refund,
    session,
    stripe_file,
    webhook_endpoint,
)

stripe_standin = conftest_stripe.stripe_standin  # until conftest.py wires it for every module

NEWEST = 1_800_000_000
NOW = NEWEST + 100
DAY = 86400
EMAILS = ("ann@example.com", "bob@example.com", "cy@example.com")
LIMITED_KEY = "sk_test_only_a"
EVENTS_KEY = "rk_test_events_only"


def platform_sessions() -> list[dict[str, Any]]:
    """1,050 sessions, 7 to a second, with every filterable field varied."""
    sessions = many_sessions(1050, newest=NEWEST, per_second=7, tag="p")
    for n, s in enumerate(sessions):
        s["status"] = "open" if n % 5 == 0 else "expired" if n % 7 == 0 else "complete"
        s["customer_details"]["email"] = EMAILS[n % 3]
        s["customer"] = f"cus_{n % 4}"
        s["payment_link"] = f"plink_{n % 6}" if n % 2 else None
        s["subscription"] = f"sub_{n % 9}" if n % 3 == 0 else None
    first = sessions[0]["id"]
    sessions[0]["_line_items"] = [
        line_item("li_1", description="10 klipp", product="prod_clip", amount=90000),
        line_item("li_2", description="Drop-in", product="prod_drop", amount=20000)]
    sessions[0]["payment_intent"] = "pi_first"
    assert first == object_id("cs_test", 0, "p")
    return sessions


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    connected = {
        "acct_A": account("acct_A", name="Studio A"),
        "acct_B": account("acct_B", name="Studio B"),
        "acct_C": account("acct_C", name="Studio C"),
    }
    platform = account_data(
        sessions=platform_sessions(),
        products=[product("prod_clip", name="10 klipp", metadata={"passId": "pass-1"}),
                  product("prod_drop", name="Drop-in")],
        events=[
            event("evt_new_ok", type="checkout.session.completed", created=NOW - 10),
            event("evt_new_failed", type="checkout.session.completed", created=NOW - 20,
                  delivery_success=False, obj={"id": "cs_x", "_secret": 1}),
            event("evt_async", type="checkout.session.async_payment_succeeded",
                  created=NOW - DAY),
            event("evt_charge", type="charge.refunded", created=NOW - 2 * DAY),
            event("evt_old", type="checkout.session.completed", created=NOW - 31 * DAY),
        ],
        refunds=[refund(f"re_{n}", created=NEWEST - n, payment_intent=f"pi_{n % 2}",
                        amount=100) for n in range(5)],
        webhook_endpoints=[
            webhook_endpoint("we_1", url="https://example.com/hook",
                             enabled_events=["checkout.session.completed"], created=NEWEST - 5),
            webhook_endpoint("we_2", url="https://example.com/connect", enabled_events=["*"],
                             created=NEWEST - 9, status="disabled")],
    )
    return stripe_file(
        keys={TEST_KEY: {"mode": "test", "accounts": "*", "permissions": "*"},
              LIMITED_KEY: {"mode": "test", "accounts": ["acct_A"], "permissions": "*"},
              EVENTS_KEY: {"mode": "test", "accounts": "*", "permissions": ["events_read"]}},
        accounts=connected,
        data={"platform": platform,
              "acct_A": account_data(sessions=many_sessions(30, newest=NEWEST, per_second=3,
                                                            tag="a")),
              "acct_B": account_data(sessions=many_sessions(30, newest=NEWEST, per_second=3,
                                                            tag="b"))},
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def rate_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def standin(world: dict[str, Any], rate_clock: Clock) -> Iterator[StripeStandIn]:
    with StripeStandIn(world, now=lambda: NOW, clock=rate_clock) as server:
        yield server


@pytest.fixture(autouse=True)
def _plain(standin: StripeStandIn) -> None:
    standin.controls.reset()


@pytest.fixture
def client(standin: StripeStandIn) -> stripe.StripeClient:
    return stripe_test_client(standin)


def raw(standin: StripeStandIn, path: str, *, key: str | None = TEST_KEY,
        account: str | None = None) -> tuple[int, dict[str, str], Any]:
    """Plain HTTP GET: status, headers, parsed body."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if account:
        headers["Stripe-Account"] = account
    request = urllib.request.Request(standin.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def listing(client: stripe.StripeClient, path: str, account: str | None = None,
            **params: Any) -> dict[str, Any]:
    if account:
        params["stripe_account"] = account
    data: dict[str, Any] = client.raw_request("get", path, **params).data
    return data


def ordered(sessions: list[dict[str, Any]]) -> list[str]:
    """Stripe's list order: created desc, then id desc."""
    return [s["id"] for s in sorted(sessions, key=lambda s: (s["created"], s["id"]),
                                    reverse=True)]


# --------------------------------------------------------------------------- paging


def test_sdk_pages_1050_sessions_sharing_seconds_without_loss_or_repeat(
        client: stripe.StripeClient, world: dict[str, Any]) -> None:
    pages = client.v1.checkout.sessions.list(params={"limit": 100})
    seen = [s.id for s in pages.auto_paging_iter()]
    assert seen == ordered(world["data"]["platform"]["checkout_sessions"])
    assert len(seen) == 1050 == len(set(seen))


def test_ending_before_walks_back_to_the_newest(client: stripe.StripeClient,
                                               world: dict[str, Any]) -> None:
    expected = ordered(world["data"]["platform"]["checkout_sessions"])
    oldest = expected[-1]
    page = client.v1.checkout.sessions.list(params={"limit": 100, "ending_before": oldest})
    backwards = [s.id for s in page.auto_paging_iter()]
    assert backwards == list(reversed(expected[:-1]))


def test_cursor_page_sits_right_after_the_cursor_inside_one_second(
        client: stripe.StripeClient, world: dict[str, Any]) -> None:
    expected = ordered(world["data"]["platform"]["checkout_sessions"])
    page = listing(client, "/v1/checkout/sessions", limit=5, starting_after=expected[3])
    assert [s["id"] for s in page["data"]] == expected[4:9]
    assert page["has_more"] is True and page["url"] == "/v1/checkout/sessions"
    back = listing(client, "/v1/checkout/sessions", limit=3, ending_before=expected[9])
    assert [s["id"] for s in back["data"]] == expected[6:9]


def test_default_limit_is_ten_and_last_page_has_no_more(client: stripe.StripeClient,
                                                       world: dict[str, Any]) -> None:
    expected = ordered(world["data"]["platform"]["checkout_sessions"])
    assert len(listing(client, "/v1/checkout/sessions")["data"]) == 10
    tail = listing(client, "/v1/checkout/sessions", limit=100, starting_after=expected[-3])
    assert [s["id"] for s in tail["data"]] == expected[-2:] and tail["has_more"] is False


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize("created", [
    {"gte": NEWEST - 10}, {"gt": NEWEST - 10}, {"lt": NEWEST - 140}, {"lte": NEWEST - 140},
    {"gte": NEWEST - 20, "lt": NEWEST - 5}, {"gt": NEWEST - 20, "lte": NEWEST - 5},
    {"gte": NEWEST + 1}])
def test_created_filters_match_brute_force(client: stripe.StripeClient, world: dict[str, Any],
                                           created: dict[str, int]) -> None:
    tests = {"gte": lambda c, v: c >= v, "gt": lambda c, v: c > v,
             "lt": lambda c, v: c < v, "lte": lambda c, v: c <= v}
    sessions = world["data"]["platform"]["checkout_sessions"]
    expected = ordered([s for s in sessions
                        if all(tests[op](s["created"], v) for op, v in created.items())])
    got = [s.id for s in client.v1.checkout.sessions.list(
        params={"limit": 100, "created": created}).auto_paging_iter()]  # type: ignore[typeddict-item]
    assert got == expected


def test_exact_created_second(client: stripe.StripeClient) -> None:
    page = listing(client, "/v1/checkout/sessions", created=NEWEST - 3, limit=100)
    assert len(page["data"]) == 7 and {s["created"] for s in page["data"]} == {NEWEST - 3}


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "open"}, lambda s: s["status"] == "open"),
    ({"status": "complete"}, lambda s: s["status"] == "complete"),
    ({"customer_details": {"email": "bob@example.com"}},
     lambda s: s["customer_details"]["email"] == "bob@example.com"),
    ({"payment_intent": "pi_first"}, lambda s: s["payment_intent"] == "pi_first"),
    ({"customer": "cus_2"}, lambda s: s["customer"] == "cus_2"),
    ({"payment_link": "plink_3"}, lambda s: s["payment_link"] == "plink_3"),
    ({"subscription": "sub_0"}, lambda s: s["subscription"] == "sub_0"),
    ({"status": "complete", "customer": "cus_1", "created": {"lt": NEWEST - 50}},
     lambda s: s["status"] == "complete" and s["customer"] == "cus_1"
     and s["created"] < NEWEST - 50),
])
def test_equality_filters_page_like_brute_force(client: stripe.StripeClient,
                                                world: dict[str, Any], params: dict[str, Any],
                                                field: Any) -> None:
    sessions = world["data"]["platform"]["checkout_sessions"]
    expected = ordered([s for s in sessions if field(s)])
    got: list[str] = []
    cursor = None
    while True:  # small pages, so cursors cross filtered-out objects and shared seconds
        page = listing(client, "/v1/checkout/sessions", limit=37, **params,
                       **({"starting_after": cursor} if cursor else {}))
        got += [s["id"] for s in page["data"]]
        if not page["has_more"]:
            break
        cursor = got[-1]
    assert got == expected and expected


# --------------------------------------------------------------------------- Connect


def test_each_account_sees_only_its_own_sessions(client: stripe.StripeClient,
                                                 world: dict[str, Any]) -> None:
    seen: dict[str, set[str]] = {}
    for name in ("acct_A", "acct_B"):
        pages = client.v1.checkout.sessions.list(params={"limit": 100},
                                                 options={"stripe_account": name})
        seen[name] = {s.id for s in pages.auto_paging_iter()}
        assert seen[name] == {s["id"] for s in world["data"][name]["checkout_sessions"]}
    platform = {s["id"] for s in world["data"]["platform"]["checkout_sessions"]}
    assert not (seen["acct_A"] & seen["acct_B"]) and not (platform & seen["acct_A"])
    other = next(iter(seen["acct_B"]))
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve(other, options={"stripe_account": "acct_A"})
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert f"No such checkout.session: '{other}'" in str(missing.value)
    assert client.v1.checkout.sessions.retrieve(
        other, options={"stripe_account": "acct_B"}).id == other


def test_account_endpoints_follow_the_header(client: stripe.StripeClient) -> None:
    assert listing(client, "/v1/account")["object"] == "account"
    assert listing(client, "/v1/account", account="acct_A")["id"] == "acct_A"
    accounts = listing(client, "/v1/accounts", limit=2)
    assert len(accounts["data"]) == 2 and accounts["has_more"] is True
    with pytest.raises(stripe.PermissionError):
        listing(client, "/v1/accounts", account="acct_A")


# --------------------------------------------------------------------------- expansion


def test_list_expands_line_items_with_product_ids(client: stripe.StripeClient) -> None:
    page = listing(client, "/v1/checkout/sessions", limit=10, expand=["data.line_items"])
    by_id = {s["id"]: s["line_items"] for s in page["data"]}
    items = by_id.pop(object_id("cs_test", 0, "p"))
    assert items["object"] == "list" and items["has_more"] is False
    assert [i["price"]["product"] for i in items["data"]] == ["prod_clip", "prod_drop"]
    assert all(other["data"] == [] for other in by_id.values()) and len(by_id) == 9
    assert "line_items" not in listing(client, "/v1/checkout/sessions", limit=1)["data"][0]


def test_line_items_expand_the_product(client: stripe.StripeClient) -> None:
    first = object_id("cs_test", 0, "p")
    items = listing(client, f"/v1/checkout/sessions/{first}/line_items",
                    expand=["data.price.product"])
    assert items["data"][0]["price"]["product"]["metadata"] == {"passId": "pass-1"}
    plain = listing(client, f"/v1/checkout/sessions/{first}/line_items", limit=1)
    assert plain["data"][0]["price"]["product"] == "prod_clip" and plain["has_more"] is True
    after = listing(client, f"/v1/checkout/sessions/{first}/line_items", starting_after="li_1")
    assert [i["id"] for i in after["data"]] == ["li_2"]
    session_view = client.v1.checkout.sessions.retrieve(first, params={"expand": ["line_items"]})
    assert session_view.line_items is not None and len(session_view.line_items.data) == 2


def test_products_are_listed_by_id(client: stripe.StripeClient) -> None:
    found = listing(client, "/v1/products", ids=["prod_drop", "prod_nope", "prod_clip"],
                    limit=100)
    assert found["object"] == "list" and found["has_more"] is False
    assert sorted(p["id"] for p in found["data"]) == ["prod_clip", "prod_drop"]
    assert next(p for p in found["data"] if p["id"] == "prod_clip")["metadata"] == {
        "passId": "pass-1"}
    assert len(listing(client, "/v1/products", ids=["prod_drop", "prod_clip"], limit=1)
               ["data"]) == 1
    # Another account's products are not this account's.
    assert listing(client, "/v1/products", ids=["prod_clip"], account="acct_A")["data"] == []
    for params in ({"ids": ["prod_clip"], "starting_after": "prod_drop"},
                   {"ids": [f"prod_{n}" for n in range(101)]}):
        with pytest.raises(stripe.InvalidRequestError) as error:
            listing(client, "/v1/products", **params)
        assert error.value.http_status == 400 and error.value.param == "ids"


def test_expansion_deeper_than_four_levels_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        listing(client, "/v1/checkout/sessions", expand=["data.line_items.data.price.product"])
    assert error.value.http_status == 400 and "4 levels" in str(error.value)
    assert error.value.param == "expand"


def test_private_keys_are_never_served(client: stripe.StripeClient) -> None:
    first = object_id("cs_test", 0, "p")
    bodies = [
        client.raw_request("get", "/v1/checkout/sessions", limit=3).body,
        client.raw_request("get", f"/v1/checkout/sessions/{first}").body,
        client.raw_request("get", "/v1/events", limit=10).body,
    ]
    assert not any('"_' in body for body in bodies)


# --------------------------------------------------------------------------- other lists


def test_events_filters_and_retention(client: stripe.StripeClient) -> None:
    def ids(**params: Any) -> list[str]:
        return [e["id"] for e in listing(client, "/v1/events", limit=100, **params)["data"]]

    assert ids() == ["evt_new_ok", "evt_new_failed", "evt_async", "evt_charge"]  # 30 days
    assert ids(type="checkout.session.completed") == ["evt_new_ok", "evt_new_failed"]
    assert ids(type="checkout.session.*") == ["evt_new_ok", "evt_new_failed", "evt_async"]
    assert ids(types=["charge.refunded", "checkout.session.async_payment_succeeded"]) == [
        "evt_async", "evt_charge"]
    assert ids(delivery_success=False) == ["evt_new_failed"]
    assert ids(delivery_success=True, created={"gte": NOW - DAY}) == ["evt_new_ok", "evt_async"]
    with pytest.raises(stripe.InvalidRequestError):
        ids(types=[f"t{n}" for n in range(21)])


def test_refunds_and_webhook_endpoints(client: stripe.StripeClient) -> None:
    refunds = listing(client, "/v1/refunds", limit=100, payment_intent="pi_1")["data"]
    assert [r["id"] for r in refunds] == ["re_1", "re_3"]
    assert [r["id"] for r in listing(client, "/v1/refunds", charge="ch_0")["data"]] == [
        "re_0", "re_2", "re_4"]
    assert [r["id"] for r in listing(client, "/v1/refunds",
                                     created={"lte": NEWEST - 3})["data"]] == ["re_3", "re_4"]
    endpoints = listing(client, "/v1/webhook_endpoints")["data"]
    assert [(e["id"], e["status"]) for e in endpoints] == [("we_1", "enabled"),
                                                          ("we_2", "disabled")]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("params", "message"), [
    ({"limit": 0}, "greater than or equal to 1"),
    ({"limit": 101}, "less than or equal to 100"),
    ({"starting_after": "cs_a", "ending_before": "cs_b"}, "only specify one"),
    ({"starting_after": "cs_nowhere"}, "No such checkout.session: 'cs_nowhere'"),
    ({"payment_status": "paid"}, "unknown parameter: payment_status"),
    ({"created": {"gte": "soon"}}, "Invalid integer: soon"),
    ({"status": "paid"}, "Invalid status"),
    ({"expand": ["data.customer"]}, "cannot be expanded"),
])
def test_bad_parameters_are_stripes_400(client: stripe.StripeClient, params: dict[str, Any],
                                        message: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        listing(client, "/v1/checkout/sessions", **params)
    assert error.value.http_status == 400 and message in str(error.value)


def test_error_bodies_and_request_ids(standin: StripeStandIn) -> None:
    status, headers, body = raw(standin, "/v1/checkout/sessions/cs_missing")
    assert status == 404 and headers["Request-Id"].startswith("req_")
    assert body == {"error": {
        "type": "invalid_request_error", "code": "resource_missing",
        "message": "No such checkout.session: 'cs_missing'", "param": "session",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing"}}
    ok_status, ok_headers, _ = raw(standin, "/v1/account")
    assert ok_status == 200 and ok_headers["Request-Id"] != headers["Request-Id"]
    assert raw(standin, "/v1/nothing_here")[0] == 404


def test_unknown_key_is_401_with_the_key_masked(standin: StripeStandIn) -> None:
    key = "sk_test_wrongwrongwrong1234"
    client = stripe_test_client(standin, key=key)
    with pytest.raises(stripe.AuthenticationError) as error:
        listing(client, "/v1/checkout/sessions")
    assert error.value.http_status == 401
    assert "sk_test_" in str(error.value) and "1234" in str(error.value)
    assert "wrongwrong" not in str(error.value)
    assert raw(standin, "/v1/account", key=None)[0] == 401


def test_key_without_access_to_an_account_is_403(standin: StripeStandIn) -> None:
    client = stripe_test_client(standin, key=LIMITED_KEY)
    assert listing(client, "/v1/checkout/sessions", account="acct_A")["data"]
    with pytest.raises(stripe.PermissionError) as error:
        listing(client, "/v1/checkout/sessions", account="acct_B")
    message = str(error.value)
    assert error.value.http_status == 403 and error.value.error.type == "permission_error"
    assert "does not have access to account 'acct_B' (or that account does not exist)" in message
    assert LIMITED_KEY not in message and "sk_test_" in message
    with pytest.raises(stripe.PermissionError):  # an account that does not exist at all
        listing(stripe_test_client(standin), "/v1/checkout/sessions", account="acct_nope")


def test_restricted_key_names_the_missing_permission(standin: StripeStandIn) -> None:
    client = stripe_test_client(standin, key=EVENTS_KEY)
    assert listing(client, "/v1/events")["object"] == "list"
    assert listing(client, "/v1/account")["object"] == "account"  # needs no permission
    for path, permission in [("/v1/checkout/sessions", "checkout_sessions_read"),
                             ("/v1/refunds", "refunds_read"),
                             ("/v1/webhook_endpoints", "webhook_endpoints_read"),
                             ("/v1/accounts", "connected_accounts_read"),
                             ("/v1/products", "products_read")]:
        with pytest.raises(stripe.PermissionError, match=f"'{permission}' permission"):
            listing(client, path)


# --------------------------------------------------------------------------- controls


def test_endpoint_rate_limit_answers_429_until_the_clock_moves(
        standin: StripeStandIn, client: stripe.StripeClient, rate_clock: Clock) -> None:
    standin.controls.set_rate_limit(3, "GET /v1/checkout/sessions")
    for _ in range(3):
        listing(client, "/v1/checkout/sessions", limit=1)
    with pytest.raises(stripe.RateLimitError) as error:
        listing(client, "/v1/checkout/sessions", limit=1)
    assert error.value.http_status == 429
    assert error.value.json_body["error"]["code"] == "rate_limit"  # type: ignore[index]
    assert error.value.headers["retry-after"] == "1"
    assert error.value.headers["stripe-rate-limited-reason"] == "endpoint-rate"
    listing(client, "/v1/account")  # another operation is not limited
    rate_clock.t += 1.0
    for _ in range(3):
        listing(client, "/v1/checkout/sessions", limit=1)
    assert standin.controls.stats()["rate_limited"] == 1


def test_global_rate_limit_counts_every_operation(standin: StripeStandIn,
                                                  rate_clock: Clock) -> None:
    rate_clock.t += 10
    standin.controls.set_rate_limit(2)
    statuses = [raw(standin, path)[0] for path in ("/v1/account", "/v1/events", "/v1/refunds")]
    assert statuses == [200, 200, 429]
    status, headers, body = raw(standin, "/v1/account")
    assert status == 429 and headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert body["error"]["code"] == "rate_limit" and int(headers["Retry-After"]) >= 1


def test_fault_queue_is_consumed_one_per_matching_request(standin: StripeStandIn,
                                                          client: stripe.StripeClient) -> None:
    standin.controls.inject_fault("GET /v1/checkout/sessions", status=503,
                                  headers={"Stripe-Should-Retry": "true"}, times=2)
    standin.controls.inject_fault("GET /v1/checkout/sessions", drop=True)
    standin.controls.inject_fault("GET /v1/checkout/sessions", malformed=True)
    assert standin.controls.pending_faults() == {"GET /v1/checkout/sessions": 4}
    listing(client, "/v1/account")  # another endpoint takes none of them
    for _ in range(2):
        with pytest.raises(stripe.APIError) as error:
            listing(client, "/v1/checkout/sessions")
        assert error.value.http_status == 503
        assert error.value.headers["stripe-should-retry"] == "true"
    with pytest.raises(stripe.APIConnectionError):
        listing(client, "/v1/checkout/sessions")
    with pytest.raises(stripe.APIError, match="Invalid response body"):
        listing(client, "/v1/checkout/sessions")
    assert listing(client, "/v1/checkout/sessions")["object"] == "list"
    assert standin.controls.pending_faults() == {}


def test_faults_can_target_one_account_or_any_endpoint(standin: StripeStandIn,
                                                       client: stripe.StripeClient) -> None:
    standin.controls.inject_fault("GET /v1/checkout/sessions", status=500, account="acct_B")
    standin.controls.inject_fault("*", status=400, body={"error": {"message": "teapot"}})
    with pytest.raises(stripe.InvalidRequestError, match="teapot"):
        listing(client, "/v1/checkout/sessions", account="acct_A")
    assert listing(client, "/v1/checkout/sessions", account="acct_A")["data"]
    with pytest.raises(stripe.APIError) as error:
        listing(client, "/v1/checkout/sessions", account="acct_B")
    assert error.value.http_status == 500 and error.value.error.type == "api_error"


def test_a_slow_answer_times_the_client_out(standin: StripeStandIn) -> None:
    standin.controls.inject_fault("GET /v1/account", delay=0.6)
    impatient = stripe_test_client(standin, timeout=0.15)
    started = time.perf_counter()
    with pytest.raises(stripe.APIConnectionError, match="Timeout"):
        listing(impatient, "/v1/account")
    assert time.perf_counter() - started < 0.5


def test_latency_does_not_block_other_requests(standin: StripeStandIn) -> None:
    standin.controls.set_latency(0.25)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(raw(standin, "/v1/account")[0]))
               for _ in range(6)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert statuses == [200] * 6
    assert 0.25 <= elapsed < 0.25 * 3  # served side by side, not one after another


def test_request_log_and_stats(standin: StripeStandIn, client: stripe.StripeClient) -> None:
    listing(client, "/v1/checkout/sessions", account="acct_A", limit=2, status="complete")
    raw(standin, "/v1/checkout/sessions/cs_missing")
    log = standin.controls.log()
    assert [(e["method"], e["path"], e["account"], e["status"]) for e in log] == [
        ("GET", "/v1/checkout/sessions", "acct_A", 200),
        ("GET", "/v1/checkout/sessions/cs_missing", "platform", 404)]
    assert "limit=2" in log[0]["query"] and "status=complete" in log[0]["query"]
    assert all(e["duration"] >= 0 for e in log)
    stats = standin.controls.stats()
    assert stats["requests"] == {"GET /v1/checkout/sessions": 1,
                                 "GET /v1/checkout/sessions/{session}": 1}
    assert stats["rate_limited"] == 0 and stats["cpu_seconds"] > 0
    standin.controls.reset_log()
    assert standin.controls.log() == [] and standin.controls.stats()["total"] == 0


def test_http_controls_drive_the_same_knobs(standin: StripeStandIn) -> None:
    remote = RemoteControls(standin.url)
    remote.inject_fault("GET /v1/account", status=500, headers={"Stripe-Should-Retry": "false"})
    assert remote.pending_faults() == {"GET /v1/account": 1}
    status, headers, _ = raw(standin, "/v1/account")
    assert status == 500 and headers["Stripe-Should-Retry"] == "false"
    remote.set_now(NOW + 40 * DAY)  # every event is now past retention
    assert raw(standin, "/v1/events")[2]["data"] == []
    remote.set_latency(0.01)
    assert standin.controls.latency == 0.01
    assert [(e["path"], e["status"]) for e in remote.log()
            if e["path"] in ("/v1/account", "/v1/events")] == [("/v1/account", 500),
                                                              ("/v1/events", 200)]
    assert remote.stats()["requests"]["GET /v1/events"] == 1
    remote.reset()
    assert remote.log() == [] and standin.controls.latency == 0
    assert raw(standin, "/v1/events")[2]["data"]


# --------------------------------------------------------------------------- scale and process


def test_stays_fast_at_100000_sessions_in_one_account(stripe_standin: StandInFactory) -> None:
    slim = [{"id": object_id("cs_test", n), "object": "checkout.session", "status": "complete",
             "created": NEWEST - n // 13, "payment_intent": f"pi_{n}"} for n in range(100_000)]
    started = time.perf_counter()
    standin = stripe_standin(stripe_file(data={"platform": {"checkout_sessions": slim}}))
    startup = time.perf_counter() - started
    client = stripe_test_client(standin)
    deep = object_id("cs_test", 77_777)
    started = time.perf_counter()
    for _ in range(20):
        page = listing(client, "/v1/checkout/sessions", limit=100, status="complete",
                       created={"gte": NEWEST - 7000, "lt": NEWEST - 10}, starting_after=deep)
        listing(client, "/v1/checkout/sessions", payment_intent="pi_99999")
    per_request = (time.perf_counter() - started) / 40
    # 13 sessions a second, id desc inside a second: 77_776 follows 77_777.
    assert [s["id"] for s in page["data"]][:2] == [object_id("cs_test", 77_776),
                                                   object_id("cs_test", 77_775)]
    assert startup < 3.0 and per_request < 0.05


def test_runs_as_a_process_until_sigterm(tmp_path: Path, world: dict[str, Any]) -> None:
    data = tmp_path / "stripe.json"
    data.write_text(json.dumps(world))
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "sandbox.stripe.server", "--data",
                                str(data), "--now", str(NOW)], cwd=root,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("LISTENING http://127.0.0.1:")
        url = line.split()[1]
        client = make_remote_client(url)
        assert len(listing(client, "/v1/events", limit=100)["data"]) == 4  # --now applied
        RemoteControls(url).inject_fault("GET /v1/account", status=502)
        with pytest.raises(stripe.APIError):
            listing(client, "/v1/account")
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def make_remote_client(url: str) -> stripe.StripeClient:
    from jobs.adapters.stripe_client import make_client

    return make_client(TEST_KEY, url, 5.0)


def test_a_session_line_item_shape_survives_the_round_trip(
        stripe_standin: StandInFactory) -> None:
    s = session("cs_test_one", created=NEWEST, metadata={"passId": "p1"},
                line_items=[line_item("li_x", description="Pass", product="prod_x")])
    standin = stripe_standin(stripe_file(data={"platform": account_data(sessions=[s])}))
    served = listing(stripe_test_client(standin), "/v1/checkout/sessions/cs_test_one")
    expected = {k: v for k, v in s.items() if not k.startswith("_")}
    assert served == expected


def test_sessions_added_at_run_time_are_listed_in_order_with_their_line_items(
        world: dict[str, Any]) -> None:
    with StripeStandIn(world, now=lambda: NOW) as own:  # not the module's shared stand-in
        client = stripe_test_client(own)
        before = client.v1.checkout.sessions.list(params={"limit": 3})
        late = session("cs_late", created=NEWEST + 50, payment_intent="pi_late",
                       line_items=[line_item("li_late", description="10 klipp",
                                             product="prod_clip", amount=90000)])
        assert RemoteControls(own.url).add_sessions("platform", [late]) == 1051
        after = client.v1.checkout.sessions.list(params={"limit": 3,
                                                         "expand": ["data.line_items"]})
        # The newest session comes first, the rest of the list is unchanged behind it.
        assert [s.id for s in after.data] == ["cs_late", *[s.id for s in before.data[:2]]]
        assert after.data[0].line_items.data[0].description == "10 klipp"
        assert "_line_items" not in after.data[0]
        window = client.v1.checkout.sessions.list(params={"created": {"gt": NEWEST}})
        assert [s.id for s in window.data] == ["cs_late"]
