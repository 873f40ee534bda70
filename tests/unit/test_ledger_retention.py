"""The ledger forgets history beyond its retention, but never what still needs a person."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from jobs.adapters.ledger import Ledger
from jobs.config.settings import load_settings
from jobs.core.errors import ConfigError
from jobs.core.model import Anomaly
from tests.support import reports
from tests.support.ledger import T0, Clock
from tests.unit.test_ledger import created_item, pending_item, present_item, record, report, start

KEEP = timedelta(days=400)




def finish(ledger: Ledger, run_id: str) -> None:
    ledger.finish_run(run_id, "ok", None, None)


def test_prune_forgets_old_history_and_keeps_what_needs_a_person(
        ledger: Ledger, clock: Clock) -> None:
    start(ledger, "r-plain")  # a run whose sessions all go: the run goes too
    record(ledger, report("r-plain", decisions=[created_item("cs_c", T0)], anomalies=[
        Anomaly("duplicate_subscriptions", "cs_c", ("s1", "s2"), "")]),
        present=[present_item("cs_p", T0)])
    finish(ledger, "r-plain")
    ledger.record_alert("missing_spike:r-plain", "missing_spike", True)
    clock.advance(hours=1)
    start(ledger, "r-open")  # a purchase still needing a person and a pending payment
    record(ledger, report("r-open", decisions=[
        pending_item("cs_wait"),
        reports.manual("cs_m", "pass_not_found", amount=1.5, currency="eur")]))
    finish(ledger, "r-open")
    clock.advance(days=300)
    start(ledger, "r-recent")
    record(ledger, report("r-recent"), present=[present_item("cs_recent", T0)])
    finish(ledger, "r-recent")
    start(ledger, "r-running")  # a run under way is never pruned, however old it gets

    assert ledger.prune(KEEP) == {"anomalies": 0, "sessions": 0, "alerts": 0, "runs": 0}
    clock.advance(days=101)  # r-plain and r-open are now 401 days old, r-recent 101
    # cs_wait expired after 30 days (pending_expired): history like the others.
    assert ledger.prune(KEEP) == {"anomalies": 1, "sessions": 3, "alerts": 1, "runs": 1}
    assert [ledger.session(s) for s in ("cs_p", "cs_c", "cs_wait")] == [None, None, None]
    assert ledger.run("r-plain") is None
    assert not ledger.alert_sent("missing_spike:r-plain")  # forgotten
    kept = ledger.session("cs_m")
    assert kept is not None and kept.outcome == "needs_manual"
    assert [m.session_id for m in ledger.open_manual()] == ["cs_m"]
    assert ledger.run("r-open") is not None  # its purchases still point at it
    assert ledger.run("r-recent") is not None and ledger.session("cs_recent") is not None
    assert ledger.run("r-running") is not None
    assert ledger.prune(KEEP) == {"anomalies": 0, "sessions": 0, "alerts": 0, "runs": 0}


def test_retention_is_a_setting_of_at_least_eight_weeks(tmp_path: Path) -> None:
    base = {"HOME": str(tmp_path)}
    assert load_settings(base).run.ledger_retention == timedelta(days=400)
    assert load_settings({**base, "RECONCILER_LEDGER_RETENTION": "730d"}
                         ).run.ledger_retention == timedelta(days=730)
    with pytest.raises(ConfigError, match="RECONCILER_LEDGER_RETENTION: must be at least 56d"):
        load_settings({**base, "RECONCILER_LEDGER_RETENTION": "30d"})
    toml = tmp_path / "r.toml"
    toml.write_text('[run]\nledger_retention = "100d"\n')
    assert load_settings(base, config_path=toml).run.ledger_retention == timedelta(days=100)


def test_the_state_dir_defaults_to_systemds_state_directory(tmp_path: Path) -> None:
    base = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert load_settings(base).run.state_dir == tmp_path / "xdg" / "pass-reconciler"
    unit = {**base, "STATE_DIRECTORY": "/var/lib/pass-reconciler:/var/lib/other"}
    assert load_settings(unit).run.state_dir == Path("/var/lib/pass-reconciler")
    # RECONCILER_STATE_DIR still wins; a relative STATE_DIRECTORY is not systemd's: ignored.
    chosen = {**unit, "RECONCILER_STATE_DIR": str(tmp_path / "mine")}
    assert load_settings(chosen).run.state_dir == tmp_path / "mine"
    assert load_settings({**base, "STATE_DIRECTORY": "relative"}).run.state_dir == (
        tmp_path / "xdg" / "pass-reconciler")


def test_a_deep_pass_prunes_the_ledger_and_a_quick_pass_does_not(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.unit.test_daemon import Clock as PassClock
    from tests.unit.test_daemon import Pings, runner, settings_for, two_schools

    now = datetime.now(UTC)
    with Ledger.open(tmp_path, clock=lambda: now - timedelta(days=401)) as old:
        start(old, "r-old")
        record(old, report("r-old"), present=[present_item("cs_old", T0)])
        finish(old, "r-old")
    settings = settings_for(tmp_path)
    stripe, sanity = two_schools()
    with Ledger.open(tmp_path) as ledger:
        run = runner(settings, stripe, sanity, ledger, PassClock(now), Pings())
        assert run("quick") == 0
        assert ledger.run("r-old") is not None
        assert run("deep") == 0
        assert ledger.run("r-old") is None and ledger.session("cs_old") is None
        assert len(ledger.recent_runs()) == 2  # the two passes just made are kept
