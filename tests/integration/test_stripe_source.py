"""StripeSource (the adapter) against the Stripe stand-in, through the real SDK and HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from jobs.adapters.ratelimit import TokenBucket
from jobs.adapters.stripe_source import ProductCache, SessionPage, StripeSource
from jobs.core.errors import (
    AccountError,
    CredentialsRejected,
    ReconcilerError,
    RetriableError,
    ServiceUnavailable,
)
from sandbox.stripe.server import StripeStandIn
from tests.integration.conftest_stripe import stripe_test_client
from tests.support.stripe_data import (
    TEST_KEY,
    account,
    account_data,
    event,
    line_item,
    many_sessions,
    product,
    refund,
    session,
    stripe_file,
    webhook_endpoint,
)

NEWEST = 1_800_000_000
NOW = NEWEST + 60
SESSIONS = "GET /v1/checkout/sessions"
LIMITED_KEY = "sk_test_only_a"
EVENTS_KEY = "rk_test_events_only"


class Clock:
    """The stand-in's rate-limit clock; the adapter's injected sleep moves it."""

    def __init__(self) -> None:
        self.t = 5000.0


class Waits(list[float]):
    """An injected sleep that records each wait and lets the stand-in's clock move with it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.clock.t += seconds


def edge_sessions() -> list[dict[str, Any]]:
    """60 sessions, 6 to a second, a third of them not complete."""
    sessions = many_sessions(60, newest=NEWEST, per_second=6, tag="e")
    for n, s in enumerate(sessions):
        s["status"] = "expired" if n % 3 == 1 else "complete"
    return sessions


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    first = session("cs_test_items", created=NEWEST - 500, email="pass.buyer@example.com",
                    line_items=[line_item("li_1", description="10 klipp", product="prod_1"),
                                line_item("li_2", description="Mat", product="prod_2")])
    types = [f"custom.type_{n}" for n in range(25)]
    platform = account_data(
        sessions=[*many_sessions(10_000, newest=NEWEST - 1000, per_second=9, tag="p"), first],
        products=[product("prod_1", name="10 klipp", metadata={"passId": "pass-10"}),
                  product("prod_2", name="Mat")],
        refunds=[refund(f"re_{n:03d}", created=NEWEST - n, payment_intent=f"pi_{n}",
                        amount=100) for n in range(150)],
        events=[event(f"evt_{n:02d}", type=types[n], created=NOW - n,
                      delivery_success=n % 2 == 0) for n in range(25)],
        webhook_endpoints=[webhook_endpoint("we_1", url="https://example.com/hook",
                                            enabled_events=["checkout.session.completed"])],
    )
    return stripe_file(
        keys={TEST_KEY: {"mode": "test", "accounts": "*", "permissions": "*"},
              LIMITED_KEY: {"mode": "test", "accounts": ["acct_A"], "permissions": "*"},
              EVENTS_KEY: {"mode": "test", "accounts": "*", "permissions": ["events_read"]}},
        accounts={"acct_A": account("acct_A", name="A"), "acct_B": account("acct_B", name="B")},
        data={"platform": platform,
              "acct_A": account_data(sessions=edge_sessions()),
              "acct_B": account_data(sessions=many_sessions(5, newest=NEWEST, per_second=5,
                                                            tag="b"))})


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def standin(world: dict[str, Any], clock: Clock) -> Iterator[StripeStandIn]:
    with StripeStandIn(world, now=lambda: NOW, clock=lambda: clock.t) as server:
        yield server


@pytest.fixture(autouse=True)
def _plain(standin: StripeStandIn) -> None:
    standin.controls.reset()


@pytest.fixture
def waits(clock: Clock) -> Waits:
    return Waits(clock)


def source(standin: StripeStandIn, waits: Waits, *, key: str = TEST_KEY, attempts: int = 6,
           timeout: float = 5.0, **options: Any) -> StripeSource:
    return StripeSource(stripe_test_client(standin, key=key, timeout=timeout), sleep=waits,
                        attempts=attempts, **options)


def expected_ids(world: dict[str, Any], account: str, since: int, until: int) -> list[str]:
    chosen = [s for s in world["data"][account]["checkout_sessions"]
              if s["status"] == "complete" and since <= s["created"] < until]
    return [s["id"] for s in sorted(chosen, key=lambda s: (s["created"], s["id"]), reverse=True)]


def queries(standin: StripeStandIn) -> list[dict[str, list[str]]]:
    return [parse_qs(e["query"]) for e in standin.controls.log()]


# --------------------------------------------------------------------------- paging


def test_pages_10000_sessions_in_100_requests(standin: StripeStandIn, waits: Waits,
                                              world: dict[str, Any]) -> None:
    since, until = NEWEST - 3000, NEWEST - 999  # every p-session, not cs_test_items
    pages = list(source(standin, waits).session_pages("platform", since, until))
    ids = [s["id"] for page in pages for s in page.sessions]
    assert ids == expected_ids(world, "platform", since, until) and len(ids) == 10_000
    assert standin.controls.stats()["requests"] == {SESSIONS: 100}
    assert [p.index for p in pages] == list(range(100))
    assert all(p.last_id == p.sessions[-1]["id"] and p.account == "platform" for p in pages)
    assert [p.has_more for p in pages] == [True] * 99 + [False]
    first, second = queries(standin)[:2]
    assert first == {"status": ["complete"], "created[gte]": [str(since)],
                     "created[lt]": [str(until)], "limit": ["100"],
                     "expand[0]": ["data.line_items"]}
    assert second["starting_after"] == [pages[0].last_id]
    assert waits == []


def test_window_is_half_open_complete_only_and_scoped_to_the_account(
        standin: StripeStandIn, waits: Waits, world: dict[str, Any]) -> None:
    since, until = NEWEST - 7, NEWEST - 2  # both edges cut through shared seconds
    adapter = source(standin, waits, page_size=4)
    ids = [s["id"] for p in adapter.session_pages("acct_A", since, until) for s in p.sessions]
    assert ids == expected_ids(world, "acct_A", since, until) and len(ids) == 20
    assert {e["account"] for e in standin.controls.log()} == {"acct_A"}
    assert not set(ids) & {s["id"] for s in world["data"]["platform"]["checkout_sessions"]}


def test_an_empty_window_is_one_empty_page(standin: StripeStandIn, waits: Waits) -> None:
    pages = list(source(standin, waits).session_pages("acct_B", 1, 2))
    assert pages == [SessionPage("acct_B", 0, [], None, False)]


# --------------------------------------------------------------------------- retries


def test_retry_after_is_honoured(standin: StripeStandIn, waits: Waits) -> None:
    standin.controls.inject_fault(SESSIONS, status=429, headers={"Retry-After": "7"})
    pages = list(source(standin, waits).session_pages("acct_B", 0, NOW))
    assert waits == [7.0] and len(pages[0].sessions) == 5
    assert [e["status"] for e in standin.controls.log()] == [429, 200]


def test_the_stand_ins_own_rate_limit_is_waited_out(standin: StripeStandIn, waits: Waits,
                                                    world: dict[str, Any]) -> None:
    standin.controls.set_rate_limit(2, SESSIONS)
    adapter = source(standin, waits, page_size=5)
    ids = [s["id"] for p in adapter.session_pages("acct_A", 0, NOW) for s in p.sessions]
    assert ids == expected_ids(world, "acct_A", 0, NOW)
    assert waits and all(w == 1.0 for w in waits)  # Retry-After: 1, each time
    statuses = [e["status"] for e in standin.controls.log()]
    assert statuses.count(200) == 8 and statuses.count(429) == len(waits)


def test_dropped_connection_mid_window_loses_and_repeats_nothing(
        standin: StripeStandIn, waits: Waits, world: dict[str, Any]) -> None:
    pages = source(standin, waits, page_size=7).session_pages("acct_A", 0, NOW)
    got = [next(pages), next(pages)]
    standin.controls.inject_fault(SESSIONS, drop=True)
    got += list(pages)
    ids = [s["id"] for p in got for s in p.sessions]
    assert ids == expected_ids(world, "acct_A", 0, NOW) and len(ids) == len(set(ids))
    assert len(waits) == 1 and 0.25 <= waits[0] <= 0.5  # backoff, no Retry-After
    log = standin.controls.log()
    assert [e["status"] for e in log[:4]] == [200, 200, 0, 200]
    assert log[2]["query"] == log[3]["query"]  # the same cursor, asked again


def test_resume_from_the_last_page_after_retries_run_out(
        standin: StripeStandIn, waits: Waits, world: dict[str, Any]) -> None:
    adapter = source(standin, waits, page_size=7, attempts=2)
    pages = adapter.session_pages("acct_A", 0, NOW)
    done = [next(pages), next(pages)]
    standin.controls.inject_fault(SESSIONS, status=502, times=2)
    with pytest.raises(RetriableError):
        next(pages)
    rest = list(adapter.session_pages("acct_A", 0, NOW, starting_after=done[-1].last_id))
    ids = [s["id"] for p in [*done, *rest] for s in p.sessions]
    assert ids == expected_ids(world, "acct_A", 0, NOW)


@pytest.mark.parametrize("fault", [
    {"status": 500}, {"status": 503, "headers": {"Stripe-Should-Retry": "true"}},
    {"status": 409, "headers": {"Stripe-Should-Retry": "true"}},
    {"malformed": True}, {"drop": True}, {"delay": 1.0}])
def test_transient_failures_are_retried_once_each(standin: StripeStandIn, waits: Waits,
                                                  fault: dict[str, Any]) -> None:
    standin.controls.inject_fault(SESSIONS, **fault)
    adapter = source(standin, waits, timeout=0.3)
    pages = list(adapter.session_pages("acct_B", 0, NOW))
    assert len(pages) == 1 and len(pages[0].sessions) == 5 and len(waits) == 1


def test_should_retry_false_is_not_retried(standin: StripeStandIn, waits: Waits) -> None:
    standin.controls.inject_fault(SESSIONS, status=503, headers={"Stripe-Should-Retry": "false"})
    with pytest.raises(ServiceUnavailable, match="asked not to retry"):
        list(source(standin, waits).session_pages("acct_B", 0, NOW))
    assert waits == [] and len(standin.controls.log()) == 1


def test_the_retried_out_error_propagates(standin: StripeStandIn, waits: Waits) -> None:
    standin.controls.inject_fault(SESSIONS, status=503, times=10)
    with pytest.raises(RetriableError, match="503"):
        list(source(standin, waits, attempts=3).session_pages("acct_B", 0, NOW))
    assert len(waits) == 2 and len(standin.controls.log()) == 3  # the SDK adds no retries


# --------------------------------------------------------------------------- translation


@pytest.mark.parametrize(("fault", "account", "raised", "retry_after"), [
    ({"status": 401}, "platform", CredentialsRejected, None),
    ({"status": 403}, "platform", CredentialsRejected, None),
    ({"status": 403}, "acct_A", AccountError, None),
    ({"status": 429, "headers": {"Retry-After": "3"}}, "platform", RetriableError, 3.0),
    ({"status": 429}, "acct_A", RetriableError, None),
    ({"status": 500}, "platform", RetriableError, None),
    ({"status": 502}, "platform", RetriableError, None),
    ({"status": 503, "headers": {"Retry-After": "2"}}, "platform", RetriableError, 2.0),
    ({"status": 503, "headers": {"Stripe-Should-Retry": "false"}}, "platform",
     ServiceUnavailable, None),
    ({"status": 400}, "platform", ReconcilerError, None),
    ({"status": 404}, "acct_A", ReconcilerError, None),
    ({"drop": True}, "platform", RetriableError, None),
    ({"malformed": True}, "platform", RetriableError, None),
    ({"delay": 1.0}, "platform", RetriableError, None),
])
def test_error_translation(standin: StripeStandIn, waits: Waits, fault: dict[str, Any],
                           account: str, raised: type[Exception],
                           retry_after: float | None) -> None:
    standin.controls.inject_fault(SESSIONS, **fault)
    adapter = source(standin, waits, attempts=1, timeout=0.3)
    with pytest.raises(ReconcilerError) as error:
        list(adapter.session_pages(account, 0, NOW))
    assert type(error.value) is raised
    assert getattr(error.value, "retry_after", None) == retry_after
    assert TEST_KEY not in str(error.value) and "sandbox" not in str(error.value)
    if raised is AccountError:
        assert "acct_A" in str(error.value)
    if raised is CredentialsRejected:
        assert "STRIPE_SECRET_KEY" in str(error.value)


def test_real_auth_answers_translate(standin: StripeStandIn, waits: Waits) -> None:
    wrong = "sk_test_wrongwrongwrong1234"
    with pytest.raises(CredentialsRejected, match=r"STRIPE_SECRET_KEY \(401") as rejected:
        list(source(standin, waits, key=wrong).session_pages("platform", 0, 1))
    assert "wrong" not in str(rejected.value) and "1234" not in str(rejected.value)
    limited = source(standin, waits, key=LIMITED_KEY)
    assert len(next(limited.session_pages("acct_A", 0, NOW)).sessions) == 40
    with pytest.raises(AccountError, match="acct_B"):
        next(limited.session_pages("acct_B", 0, NOW))
    with pytest.raises(CredentialsRejected, match="platform"):
        next(source(standin, waits, key=EVENTS_KEY).session_pages("platform", 0, NOW))
    assert waits == []


# --------------------------------------------------------------------------- other reads


def test_line_items_come_with_the_product(standin: StripeStandIn, waits: Waits) -> None:
    items = source(standin, waits).line_items("platform", "cs_test_items")
    assert [i["price"]["product"]["metadata"] for i in items] == [{"passId": "pass-10"}, {}]
    assert parse_qs(standin.controls.log()[0]["query"])["expand[0]"] == ["data.price.product"]


def test_session_lookup_and_search_by_email(standin: StripeStandIn, waits: Waits) -> None:
    adapter = source(standin, waits)
    assert adapter.session("platform", "cs_test_items")["id"] == "cs_test_items"  # type: ignore[index]
    assert adapter.session("acct_A", "cs_test_items") is None
    assert [s["id"] for s in adapter.sessions_by_email("platform", "pass.buyer@example.com")] == [
        "cs_test_items"]
    assert adapter.sessions_by_email("acct_B", "pass.buyer@example.com") == []


def test_refunds_read_every_page(standin: StripeStandIn, waits: Waits) -> None:
    refunds = source(standin, waits).refunds("platform", NEWEST - 120)
    assert [r["id"] for r in refunds] == [f"re_{n:03d}" for n in range(121)]
    assert len(standin.controls.log()) == 2


def test_events_split_more_than_20_types_and_merge(standin: StripeStandIn,
                                                   waits: Waits) -> None:
    adapter = source(standin, waits)
    everything = adapter.events("platform", NOW - 100,
                                types=[f"custom.type_{n}" for n in range(25)])
    assert [e["id"] for e in everything] == [f"evt_{n:02d}" for n in range(25)]
    assert [sum(k.startswith("types[") for k in q) for q in queries(standin)] == [20, 5]
    failed = adapter.events("platform", NOW - 100, delivery_success=False)
    assert [e["id"] for e in failed] == [f"evt_{n:02d}" for n in range(1, 25, 2)]
    recent = adapter.events("platform", NOW - 2, types=["custom.type_1", "custom.type_5"])
    assert [e["id"] for e in recent] == ["evt_01"]


def test_webhook_endpoints_and_own_account(standin: StripeStandIn, waits: Waits,
                                           world: dict[str, Any]) -> None:
    adapter = source(standin, waits)
    assert [e["id"] for e in adapter.webhook_endpoints()] == ["we_1"]
    assert adapter.own_account()["id"] == world["platform"]["id"]
    assert {e["account"] for e in standin.controls.log()} == {"platform"}


def test_every_request_takes_a_token_first(standin: StripeStandIn, clock: Clock) -> None:
    bucket_waits: list[float] = []
    fake = {"t": 0.0}
    bucket = TokenBucket(rate=10, burst=1, clock=lambda: fake["t"], sleep=bucket_waits.append)
    adapter = StripeSource(stripe_test_client(standin), bucket=bucket, page_size=5,
                           sleep=Waits(clock))
    standin.controls.inject_fault(SESSIONS, status=500)  # a retry takes a token too
    list(adapter.session_pages("acct_A", 0, NOW))
    requests = len(standin.controls.log())
    assert requests == 9  # 8 pages + 1 retry
    assert bucket_waits == pytest.approx([0.1 * k for k in range(1, requests)])


def test_page_size_is_checked() -> None:
    with pytest.raises(ValueError):
        StripeSource(object(), page_size=101)  # type: ignore[arg-type]


@pytest.mark.parametrize(("body", "message"), [
    ({"object": "list", "data": [{"object": "checkout.session"}], "has_more": True},
     "without an id"),
    ({"object": "list", "data": "nothing", "has_more": False}, "not a list"),
])
def test_a_page_that_cannot_be_followed_stops_the_account(standin: StripeStandIn, waits: Waits,
                                                           body: dict[str, Any],
                                                           message: str) -> None:
    standin.controls.inject_fault(SESSIONS, status=200, body=body)
    with pytest.raises(ReconcilerError, match=message) as error:
        list(source(standin, waits).session_pages("acct_B", 0, NOW))
    assert not isinstance(error.value, RetriableError) and waits == []


def test_products_read_lately_cost_no_second_request(standin: StripeStandIn,
                                                      waits: Waits) -> None:
    stripe_source = source(standin, waits)
    first = stripe_source.products("platform", ["prod_1", "prod_gone"])
    assert list(first) == ["prod_1"] and first["prod_1"]["metadata"] == {"passId": "pass-10"}
    again = stripe_source.products("platform", ["prod_1", "prod_2"])
    assert sorted(again) == ["prod_1", "prod_2"]
    asked = [e["query"] for e in standin.controls.log() if e["path"] == "/v1/products"]
    # The second call asked only for the product it had not read; a missing one is asked again.
    assert len(asked) == 2 and "prod_1" not in asked[1] and "prod_2" in asked[1]
    stripe_source.products("platform", ["prod_gone"])
    assert len([e for e in standin.controls.log() if e["path"] == "/v1/products"]) == 3


def test_the_product_cache_forgets_old_entries_and_keeps_its_size() -> None:
    now = [0.0]
    cache = ProductCache(size=2, ttl=60, clock=lambda: now[0])
    cache.put("platform", {"a": {"id": "a"}, "b": {"id": "b"}})
    cache.put("acct_A", {"a": {"id": "a"}})  # another account's product of the same id
    assert cache.get("platform", ["a", "b"]) == {"b": {"id": "b"}}  # "a" went first
    now[0] = 61
    assert cache.get("platform", ["b"]) == {} and cache.get("acct_A", ["a"]) == {}


# --------------------------------------------------------------------------- SDK private parts


class _RenamedRequestor:
    """A later SDK release, as far as the adapter can tell: the private requestor is gone
    (renamed), only the public `raw_request` is left."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def raw_request(self, method: str, url: str, **params: Any) -> Any:
        return self._inner.raw_request(method, url, **params)


class _ChangedSignature:
    """The requestor is there but `request_raw` takes other arguments now."""

    def request_raw(self, method: str, url: str) -> Any:
        raise AssertionError("never called with the old arguments")

    def _interpret_response(self, *args: Any) -> Any:
        raise AssertionError("not reached")


@pytest.mark.parametrize("sdk", ["renamed", "changed"])
def test_without_the_private_requestor_the_public_raw_request_answers(
        standin: StripeStandIn, waits: Waits, world: dict[str, Any], sdk: str) -> None:
    real = stripe_test_client(standin)
    if sdk == "renamed":
        client: Any = _RenamedRequestor(real)
    else:
        client = _RenamedRequestor(real)
        client._requestor = _ChangedSignature()
    adapter = StripeSource(client, sleep=waits)
    since, until = NEWEST - 7, NEWEST - 2
    ids = [s["id"] for p in adapter.session_pages("acct_A", since, until) for s in p.sessions]
    assert ids == expected_ids(world, "acct_A", since, until) and len(ids) == 20
    assert {e["account"] for e in standin.controls.log()} == {"acct_A"}
    # Errors still come as the adapter's own classes through the public path.
    standin.controls.inject_fault(SESSIONS, status=401)
    with pytest.raises(CredentialsRejected):
        list(adapter.session_pages("acct_A", since, until))
