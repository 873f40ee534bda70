"""`reconcile doctor`, `diagnose` and `audit` through the CLI against the stand-ins.

Each world plants its problems on purpose (tests/e2e/operator_world.py): every one must be found
and named, and nothing else flagged. `diagnose --fix` is checked by dumping the Sanity stand-in
before and after.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller

from jobs.adapters.ledger import Ledger
from jobs.adapters.sanity_store import SanityStore
from jobs.adapters.stripe_client import make_client
from jobs.adapters.stripe_source import StripeSource
from jobs.cli import main
from jobs.commands.audit import run_audit
from jobs.commands.doctor import webhook_health
from jobs.config.sources import SETTINGS
from jobs.core import rules
from sandbox.sanity_server import SanityStandIn
from sandbox.stripe.server import StripeStandIn
from sandbox.world.generate import generate
from tests.e2e import operator_world as ow

pytest_plugins = ["tests.integration.conftest_sanity", "tests.integration.conftest_stripe"]

ENV_NAMES = {name for section in SETTINGS.values() for spec in section.values()
             for name in spec.env} | {"RECONCILER_CONFIG"}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """Runs `reconcile …` in this process with the environment pointed at the stand-ins."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 state_dir: Path) -> None:
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.state_dir = state_dir
        for name in ENV_NAMES:
            monkeypatch.delenv(name, raising=False)

    def configure(self, stripe: StripeStandIn, sanity: SanityStandIn, *, key: str = ow.FULL_KEY,
                  token: str | None = None, **extra: str) -> None:
        env = {"STRIPE_SECRET_KEY": key, "STRIPE_API_BASE": stripe.url,
               "SANITY_PROJECT_ID": "sandbox", "SANITY_API_BASE": sanity.url,
               "SANITY_API_TOKEN": token or sanity.write_token,
               "RECONCILER_STATE_DIR": str(self.state_dir), "RECONCILER_LOG_FORMAT": "json",
               **extra}
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)

    def run(self, *argv: str) -> Result:
        self.capsys.readouterr()
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> Iterator[Cli]:
    yield Cli(monkeypatch, capsys, tmp_path / "state")
    # `main` pointed structlog at this test's captured stderr, which closes after the test.
    structlog.reset_defaults()


def load(world: ow.World, stripe_standin: Any, sanity: SanityStandIn) -> StripeStandIn:
    sanity.load_documents(world.sanity)
    standin: StripeStandIn = stripe_standin(world.stripe)
    return standin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """An SMTP handler that keeps every message it is given (the doctor must send none)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def mail_env(port: int) -> dict[str, str]:
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": "false",
            "REPORT_FROM": "reconciler@example.com", "REPORT_TO": "ops@example.com"}


def now() -> int:
    return int(time.time())


def problems(result: Result) -> set[tuple[str, str]]:
    return {(c["name"], c["status"]) for c in result.json()["checks"] if c["status"] != "ok"}


def no_secrets(*results: Result) -> bool:
    secrets = (ow.FULL_KEY, ow.PARTIAL_KEY, "sanity-write-sandbox", "sanity-read-sandbox")
    return not any(s in r.out or s in r.err for r in results for s in secrets)


# ---- doctor ---------------------------------------------------------------------------------


def test_doctor_on_a_healthy_world_is_all_ok(cli: Cli, stripe_standin: Any, sanity: SanityStandIn,
                                             smtp_server: tuple[int, Recorder]) -> None:
    port, recorder = smtp_server
    standin = load(ow.doctor_world(now(), broken=False), stripe_standin, sanity)
    cli.configure(standin, sanity, HEARTBEAT_URL="https://hc.example.com/ping/f00d",
                  **mail_env(port))
    result = cli.run("doctor", "--json")
    assert result.code == 0, result.out
    # The stand-in's dataset is called `production` and the sandbox's key is a test key.
    assert problems(result) == {("sanity dataset", "warn")}
    names = [c["name"] for c in result.json()["checks"]]
    assert names == ["sanity dataset", "heartbeat", "sanity read", "sanity write", "stripe mode",
                     "stripe account platform",
                     f"stripe account {ow.ACCT_A}", f"stripe account {ow.ACCT_B}",
                     "webhook endpoints", "webhook connect endpoint", "webhook deliveries platform",
                     f"webhook deliveries {ow.ACCT_A}", f"webhook deliveries {ow.ACCT_B}",
                     "webhook log errors", "webhook signature failures", "smtp"]
    assert recorder.messages == []
    # The write probe was validated only: no document was added.
    assert {d["_id"] for d in sanity.dump()} == {d["_id"] for d in ow.doctor_world(
        now(), broken=False).sanity}
    assert no_secrets(result)


def test_doctor_names_each_planted_problem_and_nothing_else(
        cli: Cli, stripe_standin: Any, sanity: SanityStandIn) -> None:
    standin = load(ow.doctor_world(now(), broken=True), stripe_standin, sanity)
    cli.configure(standin, sanity, key=ow.PARTIAL_KEY, **mail_env(free_port()))
    result = cli.run("doctor", "--json")
    assert result.code == 1
    assert problems(result) == {
        ("webhook duplicate endpoints", "fail"),
        ("webhook endpoint we_off", "fail"),
        ("webhook endpoint we_charges", "warn"),
        ("webhook connect endpoint", "fail"),
        (f"webhook deliveries {ow.ACCT_A}", "fail"),
        (f"stripe account {ow.ACCT_B}", "fail"),
        ("webhook log errors", "fail"),
        ("webhook signature failures", "fail"),
        ("smtp", "fail"),
        ("sanity dataset", "warn"),
        ("heartbeat", "warn"),
    }
    checks = {c["name"]: c for c in result.json()["checks"]}
    assert "2 event(s) not delivered" in checks[f"webhook deliveries {ow.ACCT_A}"]["detail"]
    assert "1 processing error(s)" in checks["webhook log errors"]["detail"]
    assert "1 signature verification failure(s)" in checks["webhook signature failures"]["detail"]
    assert "we_dup1, we_dup2" in checks["webhook duplicate endpoints"]["detail"]
    table = cli.run("doctor")
    assert table.code == 1 and "something to fix: " in table.out
    assert "webhook connect endpoint" in table.out and "FAIL" in table.out
    assert no_secrets(result, table)


@pytest.mark.parametrize(("case", "blocking"), [
    ("unknown key", "stripe account platform"),
    ("read-only token", "sanity write"),
    ("no project", "sanity settings"),
])
def test_doctor_exits_2_when_the_job_cannot_run(cli: Cli, stripe_standin: Any,
                                                sanity: SanityStandIn, case: str,
                                                blocking: str) -> None:
    standin = load(ow.doctor_world(now(), broken=False), stripe_standin, sanity)
    cli.configure(standin, sanity, key="sk_test_unknown" if case == "unknown key" else ow.FULL_KEY,
                  token=sanity.read_token if case == "read-only token" else None)
    if case == "no project":
        cli.monkeypatch.delenv("SANITY_PROJECT_ID")
    result = cli.run("doctor", "--json")
    assert result.code == 2
    failing = [c for c in result.json()["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failing if c["blocking"]] == [blocking]
    assert no_secrets(result)


def test_webhook_health_for_the_weekly_report(stripe_standin: Any, sanity: SanityStandIn) -> None:
    world = ow.doctor_world(now(), broken=True)
    standin = load(world, stripe_standin, sanity)
    stripe = StripeSource(make_client(ow.FULL_KEY, standin.url, 5.0))
    store = SanityStore(sanity.url, sanity.dataset, sanity.write_token, "2025-02-19")
    health = webhook_health(stripe, store, datetime.now(UTC))
    assert health["undelivered_events"] == 2
    assert health["undelivered_by_account"] == {"platform": 0, ow.ACCT_A: 2, ow.ACCT_B: 0}
    assert (health["webhook_log_errors"], health["signature_failures"]) == (1, 1)
    assert len(health["endpoint_problems"]) == 4 and health["errors"] == []


# ---- audit ----------------------------------------------------------------------------------


def findings(report: dict[str, Any]) -> set[tuple[str, tuple[str, ...]]]:
    return {(f["kind"], tuple(f["subscription_ids"])) for f in report["findings"]}


def test_audit_names_each_planted_anomaly_and_nothing_else(
        cli: Cli, stripe_standin: Any, sanity: SanityStandIn) -> None:
    world = ow.audit_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity)
    result = cli.run("audit", "--json")
    assert result.code == 1
    report = result.json()
    assert findings(report) == world.facts["expected"]
    assert report["subscriptions"] == sum(1 for d in world.sanity
                                          if d["_type"] == "subscription")
    assert report["counts"]["duplicate_subscriptions"] == 2
    assert all(a["error"] is None for a in report["accounts"])
    text = cli.run("audit")
    assert text.code == 1
    assert "A subscription exists but the app cannot show it (1)" in text.out
    assert "- dupA, dupB [session cs_test_dup0000001]" in text.out


def test_audit_reads_sanity_in_pages(stripe_standin: Any, sanity: SanityStandIn) -> None:
    world = ow.audit_world(now())
    standin = load(world, stripe_standin, sanity)
    stripe = StripeSource(make_client(ow.FULL_KEY, standin.url, 5.0))
    store = SanityStore(sanity.url, sanity.dataset, sanity.write_token, "2025-02-19")
    at = datetime.now(UTC)
    sanity.reset_log()
    report = run_audit(stripe, store, now=at, since=at - timedelta(days=90), page_size=4)
    subs = report["subscriptions"]
    assert report["pages"] == -(-subs // 4)
    assert findings(report) == world.facts["expected"]
    queries = [e for e in sanity.log() if e.get("kind") == "query"]
    assert len(queries) == report["pages"] + (1 if subs % 4 else 2)  # + catalog (+ empty page)


def test_audit_of_a_clean_dataset_exits_0(cli: Cli, stripe_standin: Any,
                                          sanity: SanityStandIn) -> None:
    world = ow.purchases_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity, RECONCILER_LOG_LEVEL="warning")
    result = cli.run("audit", "--since", "30d")
    assert result.code == 0 and "Nothing found." in result.out
    assert "1 subscriptions checked" in result.out


def test_audit_of_a_generated_world_finds_what_the_world_planted(
        tmp_path: Path, stripe_standin: Any, sanity: SanityStandIn) -> None:
    at = datetime.now(UTC)
    world = generate(5, sessions=300, now=at)
    sanity.load_documents(world.sanity)
    standin = stripe_standin(world.stripe)
    stripe = StripeSource(make_client(ow.FULL_KEY, standin.url, 5.0))
    store = SanityStore(sanity.url, sanity.dataset, sanity.write_token, "2025-02-19")
    report = run_audit(stripe, store, now=at, since=at - timedelta(days=90))
    found = {(f["kind"], f["session_id"]) for f in report["findings"]}
    audited = {"duplicate_subscriptions", "mistyped_subscription", "wrong_tenant",
               "invisible_shape", "refunded_but_active", "draft_only"}
    planted = {(kind, sid) for sid, entry in world.truth["sessions"].items()
               for kind in entry["anomalies"] if kind in audited}
    assert {k for k, _ in planted} == audited  # the world planted one of each
    # A draft found only by its payment intent names no session: drafts are counted.
    assert {p for p in planted if p[0] != "draft_only"} <= found
    drafts = [f for f in report["findings"] if f["kind"] == "draft_only"]
    assert len(drafts) >= len([p for p in planted if p[0] == "draft_only"])


# ---- diagnose -------------------------------------------------------------------------------


def purchases(result: Result) -> dict[str, dict[str, Any]]:
    return {p["session_id"]: p for p in result.json()["purchases"]}


def test_diagnose_session_shows_the_whole_chain(cli: Cli, stripe_standin: Any,
                                                sanity: SanityStandIn) -> None:
    world = ow.purchases_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity)
    sid = world.facts["alice_missing"]
    text = cli.run("diagnose", "--session", sid)
    assert text.code == 1
    for line in (f"Purchase {sid}", f"Stripe:     {ow.ACCT_A} (Dance City)",
                 "Pass:       10 Single Clip Card (pClip), type multi -> clipcard, classes 10, "
                 "validity days 90, school Dance City (tA)",
                 "Student:    user_alice -> uAlice", "Existing:   none",
                 f"Verdict:    MISSING: no subscription records this purchase; the job would "
                 f"create subscription-{sid}"):
        assert line in text.out
    view = cli.run("diagnose", "--session", sid, "--json").json()
    (purchase,) = view["purchases"]
    assert (purchase["outcome"], purchase["would_create"]) == ("created", f"subscription-{sid}")
    assert view["searched"][0] == {"account": "platform", "error": None}
    present = cli.run("diagnose", "--session", world.facts["alice_present"], "--json")
    assert present.code == 0
    (ok,) = present.json()["purchases"]
    assert ok["verdict"] == "OK" and [s["_id"] for s in ok["existing"]] == [
        world.facts["present_sub"]]


def test_diagnose_of_an_unknown_session(cli: Cli, stripe_standin: Any,
                                        sanity: SanityStandIn) -> None:
    cli.configure(load(ow.purchases_world(now()), stripe_standin, sanity), sanity)
    result = cli.run("diagnose", "--session", "cs_test_nosuchsession")
    assert result.code == 1 and "No checkout sessions found." in result.out
    assert cli.run("diagnose", "--session", "pi_123").code == 2


def by_id(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["_id"]: d for d in docs}


def test_diagnose_fix_repairs_one_students_passes_and_touches_nothing_else(
        cli: Cli, stripe_standin: Any, sanity: SanityStandIn) -> None:
    world = ow.purchases_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity)
    facts = world.facts
    before = by_id(sanity.dump())
    result = cli.run("diagnose", "--email", "alice@example.com", "--fix", "--json")
    assert result.code == 0, result.out
    after = by_id(sanity.dump())
    added = set(after) - set(before)
    assert added == {f"subscription-{facts['alice_missing']}",
                     f"subscription-{facts['alice_product']}"}
    assert {i: after[i] for i in before} == before  # nothing else changed, nothing removed
    fix = result.json()["fix"]
    clip = after[f"subscription-{facts['alice_missing']}"]
    created = next(s for s in world.stripe["data"][ow.ACCT_A]["checkout_sessions"]
                   if s["id"] == facts["alice_missing"])["created"]
    assert (clip["type"], clip["remainingClips"], clip["user"]["_ref"], clip["tenant"]["_ref"]) \
        == ("clipcard", 10, "uAlice", "tA")
    assert clip["endDate"] == rules.iso_ms((created + 90 * ow.DAY) * 1000)
    assert clip["reconcileRunId"] == fix["run_id"] and clip["createdViaRecovery"] is True
    month = after[f"subscription-{facts['alice_product']}"]
    assert (month["type"], month["tenant"]["_ref"], "remainingClips" in month) == (
        "monthly", "tB", False)
    with Ledger.open(cli.state_dir) as ledger:
        (run,) = ledger.recent_runs()
        assert (run.run_id, run.kind, run.status, run.dry_run) == (
            fix["run_id"], "diagnose", "ok", False)
        assert ledger.session(facts["alice_missing"]).outcome == "created"  # type: ignore[union-attr]
    # Bob's missing pass is still missing; a second fix for Alice changes nothing.
    bob = cli.run("diagnose", "--session", facts["bob_missing"], "--json")
    assert purchases(bob)[facts["bob_missing"]]["verdict"] == "MISSING"
    again = cli.run("diagnose", "--email", "alice@example.com", "--fix", "--json")
    assert again.code == 0 and again.json()["fix"]["created"] == []
    assert by_id(sanity.dump()) == after
    verdicts = {sid: p["verdict"] for sid, p in purchases(again).items()}
    assert verdicts == {facts["alice_missing"]: "OK", facts["alice_product"]: "OK",
                        facts["alice_present"]: "OK",
                        facts["alice_abandoned"]: "NO PASS DUE (not_complete)"}
    assert "alice@example.com" not in result.err  # logs mask e-mails
    assert no_secrets(result, again)


def test_diagnose_fix_rechecks_so_a_pass_the_webhook_wrote_since_is_not_doubled(
        cli: Cli, stripe_standin: Any, sanity: SanityStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = ow.purchases_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity)
    sid = world.facts["alice_missing"]
    paid = next(s for s in world.stripe["data"][ow.ACCT_A]["checkout_sessions"] if s["id"] == sid)
    late = ow.webhook_sub(sid, pass_doc=next(d for d in world.sanity if d["_id"] == "pClip"),
                          user="uAlice", created=paid["created"], pi=paid["payment_intent"])
    from jobs.commands import diagnose as command

    diagnosed = command.diagnose

    def then_the_webhook_delivers(*args: Any, **kwargs: Any) -> Any:
        found = diagnosed(*args, **kwargs)
        # Stripe's retry arrives between the diagnosis and the fix: the webhook writes the
        # pass under its own id, so createIfNotExists alone would make a second one.
        sanity.load_documents([*sanity.dump(), late])
        return found

    monkeypatch.setattr(command, "diagnose", then_the_webhook_delivers)
    result = cli.run("diagnose", "--session", sid, "--fix", "--json")
    assert result.code == 0, result.out
    assert [d["_id"] for d in sanity.dump() if d.get("stripeSessionId") == sid] == [late["_id"]]
    fix = result.json()["fix"]
    assert (fix["created"], fix["sessions"], fix["error"]) == ([], [sid], None)
    (purchase,) = purchases(result).values()
    assert (purchase["outcome"], purchase["verdict"]) == ("already_present", "OK")


def test_diagnose_fix_dry_run_and_the_cap_write_nothing(cli: Cli, stripe_standin: Any,
                                                        sanity: SanityStandIn) -> None:
    world = ow.purchases_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity)
    before = by_id(sanity.dump())
    dry = cli.run("diagnose", "--email", "alice@example.com", "--fix", "--dry-run", "--json")
    assert dry.code == 1 and dry.json()["fix"]["dry_run"] is True
    assert len(dry.json()["fix"]["created"]) == 2
    capped = cli.run("diagnose", "--email", "alice@example.com", "--fix", "--max-creates", "1",
                     "--json")
    assert capped.code == 1 and capped.json()["fix"]["error"].startswith("safety cap: 2")
    assert by_id(sanity.dump()) == before
    with Ledger.open(cli.state_dir) as ledger:
        runs = {r.run_id: r for r in ledger.recent_runs()}
        assert runs[dry.json()["fix"]["run_id"]].dry_run is True
        assert runs[capped.json()["fix"]["run_id"]].status == "partial"
    assert cli.run("diagnose", "--email", "alice@example.com", "--dry-run").code == 2


def test_diagnose_user_reads_ninety_days_and_says_so(cli: Cli, stripe_standin: Any,
                                                     sanity: SanityStandIn) -> None:
    world = ow.purchases_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity)
    result = cli.run("diagnose", "--user", "user_alice", "--json")
    assert result.code == 1
    facts = world.facts
    assert set(purchases(result)) == {facts["alice_present"], facts["alice_missing"],
                                      facts["alice_product"]}
    (note,) = result.json()["notes"]
    assert "cannot filter sessions by user" in note and "90 days" in note
    product = purchases(result)[facts["alice_product"]]
    assert product["student"]["user_id"] == "user_alice"
    assert product["would_create"] == f"subscription-{facts['alice_product']}"
    assert product["line_items"] == ["Monthly Unlimited"]
    assert product["pass"]["school"] == "Salsa Nord"
    assert [u["_id"] for u in result.json()["users"]] == ["uAlice"]


def test_diagnose_names_an_account_it_cannot_search(cli: Cli, stripe_standin: Any,
                                                    sanity: SanityStandIn) -> None:
    world = ow.purchases_world(now())
    cli.configure(load(world, stripe_standin, sanity), sanity, key=ow.PARTIAL_KEY)
    result = cli.run("diagnose", "--email", "alice@example.com", "--json")
    assert result.code == 1
    searched = {s["account"]: s["error"] for s in result.json()["searched"]}
    assert searched[ow.ACCT_A] is None and searched["platform"] is None
    assert searched[ow.ACCT_B] is not None and "cannot be read" in searched[ow.ACCT_B]
    assert world.facts["alice_product"] not in purchases(result)
    text = cli.run("diagnose", "--email", "alice@example.com")
    assert f"! account {ow.ACCT_B} could not be searched" in text.out
    assert no_secrets(result, text)



def upgrade_world() -> tuple[ow.World, str, str]:
    """Carol upgraded her drop-in to a clip card: the webhook wrote the new subscription but
    never deactivated the old one (domain §2.8, `upgrade_incomplete`)."""
    world = ow.purchases_world(now())
    by_id_ = {d["_id"]: d for d in world.sanity}
    old = ow.webhook_sub("cs_test_carolsingle0", pass_doc=by_id_["pSingle"], user="uAlice",
                         created=now() - 9 * ow.DAY, pi="pi_carolsingle0")
    upgrade = ow.purchase(
        "cs_test_carolupgrade", created=now() - ow.DAY, pass_id="pClip", user="user_alice",
        tenant="tA", email="alice@example.com", amount=175000,
        metadata={"type": "pass_upgrade", "passId": "pClip", "userId": "user_alice",
                  "tenantId": "tA", "upgradeFromSubscriptionId": old["_id"]})
    new = ow.webhook_sub(upgrade["id"], pass_doc=by_id_["pClip"], user="uAlice",
                         created=upgrade["created"], pi=upgrade["payment_intent"], isUpgrade=True)
    world.sanity += [old, new]
    world.stripe["data"][ow.ACCT_A]["checkout_sessions"].append(upgrade)
    return world, upgrade["id"], old["_id"]


def test_run_reports_an_incomplete_upgrade_and_diagnose_fix_completes_it_once(
        cli: Cli, stripe_standin: Any, sanity: SanityStandIn) -> None:
    world, sid, old_id = upgrade_world()
    cli.configure(load(world, stripe_standin, sanity), sanity)
    run = cli.run("run", "--since", rules.iso_ms((now() - 2 * ow.DAY) * 1000), "--json",
                  "--account", ow.ACCT_A, "--dry-run")
    kinds = {(a["kind"], a["session_id"]) for a in run.json()["anomalies"]}
    assert ("upgrade_incomplete", sid) in kinds
    before = by_id(sanity.dump())
    fixed = cli.run("diagnose", "--session", sid, "--fix", "--json")
    assert fixed.json()["fix"]["upgrades_completed"] == [old_id], fixed.out
    after = by_id(sanity.dump())
    old = after[old_id]
    assert (old["isActive"], old["upgradedToPassId"], old["upgradedToPassName"]) == (
        False, "pClip", before["pClip"]["name"])
    assert set(after) == set(before)  # nothing created
    assert {i: d for i, d in after.items() if i != old_id} == {
        i: d for i, d in before.items() if i != old_id}
    # Settled now: a second fix patches nothing, the run reports nothing.
    again = cli.run("diagnose", "--session", sid, "--fix", "--json")
    assert again.json()["fix"]["upgrades_completed"] == []
    assert by_id(sanity.dump()) == after


def test_diagnose_fix_leaves_an_upgrade_source_changed_since_it_was_read(
        cli: Cli, stripe_standin: Any, sanity: SanityStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    world, sid, old_id = upgrade_world()
    cli.configure(load(world, stripe_standin, sanity), sanity)
    from jobs.adapters import sanity_store

    real = sanity_store.SanityStore.get_documents

    def read_then_someone_edits(self: Any, ids: Any) -> Any:
        docs = real(self, ids)
        # An admin edits the old pass between our read and our patch.
        self.commit([{"patch": {"id": old_id, "set": {"notes": "edited by an admin"}}}],
                    "admin-edit")
        return docs

    monkeypatch.setattr(sanity_store.SanityStore, "get_documents", read_then_someone_edits)
    fixed = cli.run("diagnose", "--session", sid, "--fix", "--json")
    assert fixed.json()["fix"]["upgrades_completed"] == []
    assert "not completed" in fixed.json()["fix"]["error"]
    old = by_id(sanity.dump())[old_id]
    assert (old["isActive"], old.get("upgradedToPassId"), old["notes"]) == (
        True, None, "edited by an admin")
