"""The doctor's pure checks, its SMTP probe (fake SMTP classes) and its composition over fakes."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from jobs.commands.doctor import attempt, run_checks, webhook_health
from jobs.commands.doctor_checks import (
    Check,
    Probe,
    SmtpProbe,
    check_account,
    check_connect,
    check_dataset_mode,
    check_deliveries,
    check_endpoints,
    check_heartbeat,
    check_key_mode,
    check_sanity,
    check_settings,
    check_smtp,
    check_webhook_log,
    exit_code,
)
from jobs.commands.doctor_smtp import probe_smtp
from jobs.config.settings import Settings, SmtpSettings, StripeSettings
from jobs.config.values import Secret
from jobs.core.errors import AccountError, CredentialsRejected, ReconcilerError, ServiceUnavailable
from jobs.core.ports import SessionPage
from tests.support.stripe_data import webhook_endpoint

NOW = datetime(2026, 8, 20, 12, 0, tzinfo=UTC)
HOOK = "https://school.example.com/api/stripe/webhook"


def statuses(checks: list[Check]) -> list[tuple[str, str]]:
    return [(c.name, c.status) for c in checks]


def endpoint(n: int, url: str = HOOK, events: tuple[str, ...] = ("checkout.session.completed",),
             status: str = "enabled", **extra: Any) -> dict[str, Any]:
    return webhook_endpoint(f"we_{n}", url=url, enabled_events=list(events), status=status,
                            **extra)


# ---- key mode and accounts ------------------------------------------------------------------


def test_key_mode_matching_sessions_is_ok() -> None:
    check = check_key_mode("live", ["cs_live_a", "cs_live_b"])
    assert check.status == "ok"
    assert "2 session id(s) seen, all cs_live_" in check.detail


def test_key_mode_against_other_mode_sessions_fails() -> None:
    check = check_key_mode("live", ["cs_live_a", "cs_test_b"])
    assert check.status == "fail"
    assert "1 of 2" in check.detail and "cs_test_b" in check.detail


def test_test_key_seeing_live_sessions_fails_and_no_sessions_is_ok() -> None:
    assert check_key_mode("test", ["cs_live_x"]).status == "fail"
    check = check_key_mode("test", [])
    assert check.status == "ok" and "no sessions seen" in check.detail


def test_account_listing_ok_names_the_latest_session() -> None:
    check = check_account("acct_1", "Dance City", Probe(["cs_test_1"]))
    assert (check.status, check.blocking) == ("ok", False)
    assert "acct_1 (Dance City)" in check.detail and "cs_test_1" in check.detail


def test_connected_account_refused_is_a_failure_but_not_blocking() -> None:
    check = check_account("acct_1", None, Probe(error="403 no access", fatal=True))
    assert (check.status, check.blocking) == ("fail", False)
    assert "403 no access" in check.detail


def test_platform_key_refused_blocks() -> None:
    check = check_account("platform", None, Probe(error="401", fatal=True))
    assert (check.status, check.blocking) == ("fail", True)


# ---- sanity ---------------------------------------------------------------------------------


def test_sanity_read_failure_blocks_and_skips_write() -> None:
    checks = check_sanity(Probe(error="401 bad token", fatal=True), None)
    assert statuses(checks) == [("sanity read", "fail")]
    assert checks[0].blocking


def test_sanity_write_refused_blocks() -> None:
    checks = check_sanity(Probe(([{}], [{}, {}])),
                          Probe(error='lacks permission "create"', fatal=True))
    assert statuses(checks) == [("sanity read", "ok"), ("sanity write", "fail")]
    assert "1 schools, 2 passes" in checks[0].detail
    assert checks[1].blocking and "create" in checks[1].detail


def test_sanity_read_and_write_ok() -> None:
    checks = check_sanity(Probe(([], [])), Probe(None))
    assert statuses(checks) == [("sanity read", "ok"), ("sanity write", "ok")]


def test_attempt_turns_expected_errors_into_data() -> None:
    def raising(error: Exception) -> Callable[[], Any]:
        def fn() -> Any:
            raise error
        return fn

    assert attempt(lambda: 3) == Probe(3)
    assert attempt(raising(CredentialsRejected("no"))) == Probe(error="no", fatal=True)
    assert attempt(raising(ServiceUnavailable("down"))) == Probe(error="down", fatal=True)
    assert attempt(raising(AccountError("acct"))) == Probe(error="acct")
    with pytest.raises(ZeroDivisionError):
        attempt(lambda: 1 / 0)


# ---- webhook endpoints ----------------------------------------------------------------------


def test_healthy_endpoints_give_one_ok() -> None:
    checks = check_endpoints([endpoint(1)])
    assert statuses(checks) == [("webhook endpoints", "ok")]
    assert "1 listening for checkout.session.completed" in checks[0].detail


def test_no_endpoint_at_all_fails() -> None:
    assert statuses(check_endpoints([])) == [("webhook endpoints", "fail")]


def test_two_enabled_endpoints_for_one_url_fail() -> None:
    checks = check_endpoints([endpoint(1), endpoint(2)])
    assert statuses(checks) == [("webhook duplicate endpoints", "fail")]
    assert "we_1, we_2" in checks[0].detail and "2 enabled" in checks[0].detail


def test_duplicate_with_one_disabled_warns_twice() -> None:
    checks = check_endpoints([endpoint(1), endpoint(2, status="disabled")])
    assert statuses(checks) == [("webhook duplicate endpoints", "warn"),
                                ("webhook endpoint we_2", "warn")]


def test_disabled_only_endpoint_fails_and_nothing_receives() -> None:
    checks = check_endpoints([endpoint(1, status="disabled")])
    assert statuses(checks) == [("webhook endpoint we_1", "fail"), ("webhook endpoints", "fail")]
    assert "disabled" in checks[0].detail


def test_endpoint_without_completed_warns_and_star_counts() -> None:
    checks = check_endpoints([endpoint(1, events=("charge.succeeded",)),
                              endpoint(2, url=HOOK + "/all", events=("*",))])
    assert statuses(checks) == [("webhook endpoint we_1", "warn")]


def test_no_receiver_when_no_endpoint_listens_for_completed() -> None:
    checks = check_endpoints([endpoint(1, events=("charge.succeeded",))])
    assert ("webhook endpoints", "fail") in statuses(checks)


def test_connect_not_judged_without_connected_schools() -> None:
    assert check_connect([endpoint(1)], [], {}, set()) is None


def test_connect_purchases_reaching_the_log_are_the_evidence() -> None:
    check = check_connect([endpoint(1)], ["acct_1", "acct_2"],
                          {"acct_1": ["cs_1", "cs_2"], "acct_2": ["cs_3"]}, {"cs_2", "cs_9"})
    assert check is not None and check.status == "ok"
    assert "1 of 3 purchase(s)" in check.detail


def test_connect_purchases_that_never_reach_the_log_fail_even_with_a_marked_endpoint() -> None:
    for endpoints in ([endpoint(1)], [endpoint(1, connect=True)]):
        check = check_connect(endpoints, ["acct_1"], {"acct_1": ["cs_1", "cs_2"]}, {"cs_other"})
        assert check is not None and check.status == "fail"
        assert "none of 2 purchase(s) on 1 connected account(s)" in check.detail


def test_connect_without_evidence() -> None:
    marked = check_connect([endpoint(1, application="ca_1")], ["acct_1"], {}, set())
    assert marked is not None and marked.status == "ok"
    quiet = check_connect([endpoint(1)], ["acct_1"], {"acct_1": []}, set())
    assert quiet is not None and quiet.status == "warn"
    assert "no school sold anything" in quiet.detail
    unread = check_connect([endpoint(1)], ["acct_1"], {"acct_1": ["cs_1"]}, None)
    assert unread is not None and unread.status == "warn"
    assert "webhookLog could not be read" in unread.detail
    disabled = check_connect([endpoint(1, connect=True, status="disabled")], ["acct_1"], {},
                             set())
    assert disabled is not None and disabled.status == "warn"


def test_www_variant_of_an_address_warns() -> None:
    www = HOOK.replace("https://", "https://www.")
    checks = check_endpoints([endpoint(1), endpoint(2, url=www)])
    assert statuses(checks) == [("webhook www address", "warn")]
    assert www in checks[0].detail


# ---- deliveries, webhook log, smtp, settings -----------------------------------------------


def test_deliveries() -> None:
    assert check_deliveries("platform", Probe([])).status == "ok"
    events = [{"id": "evt_2", "type": "checkout.session.completed"},
              {"id": "evt_1", "type": "charge.succeeded"}]
    check = check_deliveries("acct_1", Probe(events))
    assert (check.name, check.status) == ("webhook deliveries acct_1", "fail")
    assert "2 event(s)" in check.detail and "newest evt_2" in check.detail
    assert check_deliveries("acct_1", Probe(error="boom")).status == "fail"


def test_webhook_log_clean() -> None:
    checks = check_webhook_log(Probe([]), str)
    assert statuses(checks) == [("webhook log errors", "ok"),
                                ("webhook signature failures", "ok")]


def test_webhook_log_errors_and_signature_failures_are_counted_apart() -> None:
    rows = [
        {"eventType": "checkout.session.completed", "status": "error",
         "timestamp": "2026-08-19T10:00:00.000Z", "error": "Pass not found for kari@example.com",
         "sessionId": "cs_test_1"},
        {"eventType": "signature_verification_failed", "status": "error",
         "timestamp": "2026-08-18T10:00:00.000Z"},
        {"eventType": "signature_verification_failed", "status": "error",
         "timestamp": "2026-08-17T10:00:00.000Z"},
    ]
    checks = check_webhook_log(Probe(rows), lambda s: s.replace("kari@", "ka***@"))
    assert statuses(checks) == [("webhook log errors", "fail"),
                                ("webhook signature failures", "fail")]
    assert "1 processing error(s)" in checks[0].detail
    assert "ka***@example.com" in checks[0].detail and "kari@" not in checks[0].detail
    assert "diagnose --session cs_test_1" in checks[0].detail
    assert "2 signature verification failure(s)" in checks[1].detail


def test_smtp_check() -> None:
    assert check_smtp(False, None).status == "warn"
    ok = check_smtp(True, SmtpProbe(("connect", "EHLO", "STARTTLS")))
    assert ok.status == "ok" and "connect + EHLO + STARTTLS" in ok.detail
    bad = check_smtp(True, SmtpProbe(("connect",), "ConnectionRefusedError: refused"))
    assert (bad.status, bad.blocking) == ("fail", False)


def test_settings_missing() -> None:
    checks = check_settings({"stripe": ("STRIPE_SECRET_KEY",), "sanity": (),
                             "smtp": ("SMTP_HOST", "REPORT_FROM")})
    assert statuses(checks) == [("stripe settings", "fail")] and checks[0].blocking
    half = check_settings({"smtp": ("REPORT_TO",)})
    assert statuses(half) == [("smtp settings", "fail")] and not half[0].blocking


@pytest.mark.parametrize(("checks", "code"), [
    ([Check("a", "ok", "")], 0),
    ([Check("a", "ok", ""), Check("b", "warn", "")], 0),
    ([Check("a", "fail", ""), Check("b", "warn", "")], 1),
    ([Check("a", "fail", ""), Check("b", "fail", "", blocking=True)], 2),
    ([Check("a", "ok", "", blocking=True)], 0),
])
def test_exit_code(checks: list[Check], code: int) -> None:
    assert exit_code(checks) == code


# ---- the SMTP probe with fake SMTP classes --------------------------------------------------


class FakeSmtp:
    instances: ClassVar[list[FakeSmtp]] = []

    def __init__(self, host: str, port: int, timeout: float, *, extensions: tuple[str, ...] = (
            "starttls", "auth"), login_error: Exception | None = None) -> None:
        self.calls: list[str] = [f"connect {host}:{port}"]
        self.extensions = extensions
        self.login_error = login_error
        FakeSmtp.instances.append(self)

    def ehlo(self) -> tuple[int, bytes]:
        self.calls.append("ehlo")
        return 250, b"ok"

    def has_extn(self, name: str) -> bool:
        return name in self.extensions

    def starttls(self, context: Any = None) -> None:
        self.calls.append("starttls")

    def login(self, user: str, password: str) -> None:
        self.calls.append(f"login {user}")
        if self.login_error is not None:
            raise self.login_error

    def sendmail(self, *args: Any) -> None:  # pragma: no cover - must never be called
        raise AssertionError("the doctor sends no mail")

    def quit(self) -> None:
        self.calls.append("quit")

    def close(self) -> None:
        self.calls.append("close")


def smtp_settings(**overrides: Any) -> SmtpSettings:
    base: dict[str, Any] = {"host": "mail.example.com", "port": 587, "report_from": "a@b.example",
                            "report_to": ("c@d.example",)}
    base.update(overrides)
    return SmtpSettings(**base)


def test_probe_smtp_runs_starttls_and_login_without_sending() -> None:
    FakeSmtp.instances.clear()
    probe = probe_smtp(smtp_settings(username="bot", password=Secret("pw")), plain=FakeSmtp)
    assert probe == SmtpProbe(("connect", "EHLO", "STARTTLS", "AUTH"))
    assert FakeSmtp.instances[0].calls == ["connect mail.example.com:587", "ehlo", "starttls",
                                           "ehlo", "login bot", "quit"]


def test_probe_smtp_without_starttls_offered_fails() -> None:
    def factory(host: str, port: int, timeout: float) -> Any:
        return FakeSmtp(host, port, timeout, extensions=())

    probe = probe_smtp(smtp_settings(), plain=factory)  # type: ignore[arg-type]
    assert probe.error == "the server does not offer STARTTLS"
    assert probe.steps == ("connect", "EHLO", "STARTTLS")


def test_probe_smtp_login_refused() -> None:
    def factory(host: str, port: int, timeout: float) -> Any:
        return FakeSmtp(host, port, timeout,
                        login_error=smtplib.SMTPAuthenticationError(535, b"bad"))

    probe = probe_smtp(smtp_settings(username="bot", password=Secret("pw")),
                       plain=factory)  # type: ignore[arg-type]
    assert probe.error == "login refused (535)"


def test_probe_smtp_connection_refused_and_implicit_tls() -> None:
    def refuse(host: str, port: int, timeout: float) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    probe = probe_smtp(smtp_settings(), plain=refuse)  # type: ignore[arg-type]
    assert probe.steps == ("connect",) and probe.error is not None
    assert probe.error.startswith("ConnectionRefusedError")
    FakeSmtp.instances.clear()
    ok = probe_smtp(smtp_settings(ssl=True, starttls=False, port=465), plain=refuse,  # type: ignore[arg-type]
                    implicit=FakeSmtp)  # type: ignore[arg-type]
    assert ok == SmtpProbe(("connect", "EHLO"))


# ---- composition over fakes -----------------------------------------------------------------


class FakeSanity:
    def __init__(self, tenants: list[dict[str, Any]], *, log_rows: list[Any] | None = None,
                 logged: list[str] | None = None, read_error: Exception | None = None) -> None:
        self.tenants = tenants
        self.log_rows = log_rows or []
        self.logged = logged or []
        self.read_error = read_error
        self.queries: list[dict[str, Any]] = []

    def load_catalog(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self.read_error is not None:
            raise self.read_error
        return self.tenants, []

    def probe_write(self) -> None:
        return None

    def webhook_log(self, since: str, signature: str) -> list[Any]:
        self.queries.append({"since": since, "signature": signature})
        return self.log_rows

    def logged_sessions(self, session_ids: list[str]) -> list[Any]:
        self.queries.append({"sids": session_ids})
        return [s for s in self.logged if s in session_ids]


class FakeStripe:
    def __init__(self, *, sessions: dict[str, list[str]], refused: dict[str, Exception],
                 events: dict[str, list[dict[str, Any]]] | None = None,
                 completed: dict[str, list[str]] | None = None,
                 endpoints: list[dict[str, Any]] | None = None) -> None:
        self.sessions = sessions
        self.refused = refused
        self.event_data = events or {}
        self.completed = completed or {}
        self.endpoint_data = endpoints or []
        self.event_calls: list[tuple[str, int, bool | None]] = []
        self.completed_calls: list[str] = []

    def session_pages(self, account: str, since: int, until: int) -> Any:
        if account in self.refused:
            raise self.refused[account]
        ids = self.sessions.get(account, [])
        yield SessionPage(account, 0, [{"id": i} for i in ids[:1]], None, len(ids) > 1)
        raise AssertionError("the probe must read one page only")

    def events(self, account: str, since: int, types: Any = None,
               delivery_success: bool | None = None) -> list[dict[str, Any]]:
        if types is not None:
            assert list(types) == ["checkout.session.completed"] and delivery_success is None
            self.completed_calls.append(account)
            return [{"id": f"evt_{sid}", "data": {"object": {"id": sid}}}
                    for sid in self.completed.get(account, [])]
        self.event_calls.append((account, since, delivery_success))
        return self.event_data.get(account, [])

    def webhook_endpoints(self) -> list[dict[str, Any]]:
        return self.endpoint_data


TENANTS = [{"_id": "t1", "schoolName": "One", "stripeConnect": {"accountId": "acct_1"}},
           {"_id": "t2", "schoolName": "Two", "stripeConnect": {"accountId": "acct_2"}},
           {"_id": "drafts.t3", "stripeConnect": {"accountId": "acct_3"}}]


def settings_for(key: str = "sk_test_x") -> Settings:
    return Settings(stripe=StripeSettings(secret_key=Secret(key)))


def test_run_checks_names_a_refused_account_once_and_reads_events_of_the_rest() -> None:
    stripe = FakeStripe(sessions={"platform": ["cs_test_a", "cs_test_b"], "acct_1": ["cs_test_c"]},
                        refused={"acct_2": AccountError("403 acct_2")},
                        endpoints=[endpoint(1, connect=True)])
    checks = run_checks(settings_for(), stripe=stripe, probe_stripe=stripe,
                        sanity=FakeSanity(TENANTS), now=NOW)
    problems = [(c.name, c.status) for c in checks if c.status != "ok"]
    # A test key with the default `production` dataset, and no heartbeat: both warned about.
    assert problems == [("sanity settings", "fail"), ("sanity dataset", "warn"),
                        ("heartbeat", "warn"), ("stripe account acct_2", "fail"),
                        ("smtp", "warn")]
    assert [a for a, _, _ in stripe.event_calls] == ["platform", "acct_1"]
    assert stripe.completed_calls == ["acct_1"]
    since = int(NOW.timestamp()) - 3 * 86400
    assert all(s == since and d is False for _, s, d in stripe.event_calls)
    mode = next(c for c in checks if c.name == "stripe mode")
    assert "2 session id(s)" in mode.detail


def test_run_checks_stops_at_a_refused_key() -> None:
    stripe = FakeStripe(sessions={}, refused={"platform": CredentialsRejected("401 key")})
    checks = run_checks(settings_for(), stripe=stripe, probe_stripe=stripe,
                        sanity=FakeSanity(TENANTS), now=NOW)
    stripe_checks = [c for c in checks if c.name.startswith(("stripe", "webhook"))]
    assert statuses(stripe_checks) == [("stripe account platform", "fail")]
    assert exit_code(checks) == 2 and stripe.event_calls == []


def test_run_checks_never_prints_a_secret() -> None:
    key = "sk_test_supersecretvalue123"
    stripe = FakeStripe(sessions={}, refused={"platform": CredentialsRejected(f"bad {key}")})
    checks = run_checks(settings_for(key), stripe=stripe, probe_stripe=stripe, sanity=None,
                        now=NOW)
    assert all(key not in c.detail for c in checks)
    assert any("[REDACTED]" in c.detail for c in checks)


def test_webhook_health_figures() -> None:
    events = {"acct_1": [{"id": "evt_1", "type": "checkout.session.completed"}] * 3}
    stripe = FakeStripe(sessions={}, refused={}, events=events,
                        completed={"acct_1": ["cs_1", "cs_2"]},
                        endpoints=[endpoint(1), endpoint(2)])
    rows = [{"eventType": "signature_verification_failed"}, {"eventType": "x", "status": "error"},
            {"eventType": "y", "status": "error"}]
    health = webhook_health(stripe, FakeSanity(TENANTS, log_rows=rows, logged=["cs_other"]),
                            NOW)
    assert health["undelivered_events"] == 3
    assert health["undelivered_by_account"] == {"platform": 0, "acct_1": 3, "acct_2": 0}
    assert health["webhook_log_errors"] == 2 and health["signature_failures"] == 1
    problems = health["endpoint_problems"]
    assert [p.split(":")[0] for p in problems] == ["webhook duplicate endpoints",
                                                   "webhook connect endpoint"]
    assert "none of 2 purchase(s)" in problems[1]
    assert health["errors"] == []


def test_webhook_health_survives_an_unreadable_sanity() -> None:
    stripe = FakeStripe(sessions={}, refused={}, endpoints=[endpoint(1)])
    sanity = FakeSanity([], read_error=ReconcilerError("400 query"))
    health = webhook_health(stripe, sanity, NOW)
    assert health["undelivered_by_account"] == {"platform": 0}
    assert health["errors"] == ["cannot read the schools: 400 query"]


@pytest.mark.parametrize(("mode", "dataset", "warned"), [
    ("test", "production", True), ("test", "staging", False), ("live", "production", False),
    ("live", "test", False)])
def test_a_test_key_with_the_production_dataset_is_warned_about(mode, dataset, warned):
    check = check_dataset_mode(mode, dataset)
    assert (check is not None) == warned
    if check is not None:
        assert (check.status, check.blocking) == ("warn", False)
        assert "production" in check.detail


def test_no_heartbeat_url_is_a_warning_and_one_is_ok():
    missing, set_ = check_heartbeat(False), check_heartbeat(True)
    assert (missing.status, set_.status) == ("warn", "ok")
    assert "HEARTBEAT_URL" in missing.detail
    assert exit_code([missing]) == 0  # shown, not counted
