"""Settings: precedence, secrets, validation messages, per-command requirements."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from jobs.config.settings import Settings, load_settings
from jobs.config.sources import SETTINGS
from jobs.config.values import Secret, WeeklyAt
from jobs.core.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "reconciler.example.toml"
BASE = {"HOME": "/home/ops"}


def load(env: dict[str, str] | None = None, **kwargs: object) -> Settings:
    return load_settings({**BASE, **(env or {})}, **kwargs)  # type: ignore[arg-type]


def config_error(env: dict[str, str] | None = None, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load(env, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and precedence ----------------------------------------------------------------

def test_defaults_without_any_configuration() -> None:
    s = load()
    assert s.stripe.secret_key is None
    assert s.stripe.api_base == "https://api.stripe.com"
    assert (s.stripe.rate_share, s.stripe.concurrency) == (0.5, 4)
    assert s.stripe.dashboard_url == "https://dashboard.stripe.com"
    assert (s.sanity.dataset, s.sanity.api_version) == ("production", "2025-02-19")
    assert (s.smtp.port, s.smtp.starttls, s.smtp.ssl) == (587, True, False)
    assert s.run.state_dir == Path("/home/ops/.local/state/pass-reconciler")
    assert (s.run.max_creates, s.run.grace) == (50, timedelta(seconds=60))
    assert s.schedule.quick_interval == timedelta(seconds=30)
    assert s.schedule.quick_overlap == timedelta(minutes=15)
    assert s.schedule.deep_interval == timedelta(hours=1)
    assert s.schedule.deep_window == timedelta(days=3)
    assert s.schedule.weekly_at == WeeklyAt("mon", 8, 0)
    assert s.schedule.timezone.key == "Europe/Oslo"
    assert (s.alerts.missing_spike, s.alerts.failed_runs) == (5, 3)
    assert s.alerts.no_success_for == timedelta(hours=2)
    assert (s.log.level, s.log.json) == ("info", None)
    assert s.config_path is None


def test_state_dir_follows_xdg_state_home_when_absolute() -> None:
    assert load({"XDG_STATE_HOME": "/xdg"}).run.state_dir == Path("/xdg/pass-reconciler")
    relative_is_ignored = load({"XDG_STATE_HOME": "xdg"}).run.state_dir
    assert relative_is_ignored == Path("/home/ops/.local/state/pass-reconciler")


def test_environment_beats_env_file_beats_toml_beats_default(tmp_path: Path) -> None:
    toml = write(tmp_path, "r.toml", "[run]\nmax_creates = 30\n[schedule]\ndeep_window = '5d'\n"
                 "[smtp]\nport = 2525\n")
    env_file = write(tmp_path, ".env", "RECONCILER_MAX_CREATES=20\nSMTP_PORT=2526\n")
    s = load({"RECONCILER_MAX_CREATES": "10"}, config_path=toml, env_file=env_file)
    assert s.run.max_creates == 10  # environment
    assert s.smtp.port == 2526  # env file over TOML
    assert s.schedule.deep_window == timedelta(days=5)  # TOML over default
    assert s.schedule.deep_interval == timedelta(hours=1)  # default
    assert s.config_path == toml


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    toml = write(tmp_path, "r.toml", "[sanity]\ndataset = 'staging'\n")
    s = load({"SANITY_DATASET": "", "SMTP_HOST": "  "}, config_path=toml)
    assert s.sanity.dataset == "staging"
    assert s.smtp.host is None


def test_config_path_from_reconciler_config_in_env_or_env_file(tmp_path: Path) -> None:
    toml = write(tmp_path, "r.toml", "[run]\nmax_creates = 7\n")
    assert load({"RECONCILER_CONFIG": str(toml)}).run.max_creates == 7
    env_file = write(tmp_path, ".env", f"RECONCILER_CONFIG={toml}\n")
    assert load(env_file=env_file).run.max_creates == 7
    other = write(tmp_path, "o.toml", "[run]\nmax_creates = 8\n")
    assert load({"RECONCILER_CONFIG": str(toml)}, config_path=other).run.max_creates == 8


def test_the_apps_own_env_names_are_accepted_and_ours_win() -> None:
    s = load({"NEXT_PUBLIC_SANITY_PROJECT_ID": "app1", "NEXT_PUBLIC_SANITY_DATASET": "dev"})
    assert (s.sanity.project_id, s.sanity.dataset) == ("app1", "dev")
    both = load({"NEXT_PUBLIC_SANITY_PROJECT_ID": "app1", "SANITY_PROJECT_ID": "ours"})
    assert both.sanity.project_id == "ours"


def test_relative_state_dir_is_relative_to_its_source(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    toml = write(conf_dir, "r.toml", "[run]\nstate_dir = 'state'\n")
    assert load(config_path=toml).run.state_dir == conf_dir / "state"
    monkeypatch.chdir(tmp_path)
    assert load({"RECONCILER_STATE_DIR": ".state"}).run.state_dir == tmp_path / ".state"


# --- secrets --------------------------------------------------------------------------------

def test_secrets_never_show_in_repr_or_str() -> None:
    s = load({"STRIPE_SECRET_KEY": "sk_test_verysecret1", "SANITY_API_TOKEN": "tok-secret-2",
              "SMTP_PASSWORD": "pw-secret-3", "SMTP_USERNAME": "u",
              "HEARTBEAT_URL": "https://hc.example.com/ping/abcdef123456"})
    for text in (repr(s), str(s), f"{s.stripe.secret_key}", str(s.smtp.password)):
        for secret in ("verysecret1", "tok-secret-2", "pw-secret-3", "abcdef123456"):
            assert secret not in text
    assert repr(s.stripe.secret_key) == "Secret('***')"
    assert s.stripe.secret_key == Secret("sk_test_verysecret1")
    assert s.stripe.secret_key is not None
    assert s.stripe.secret_key.reveal() == "sk_test_verysecret1"
    assert set(s.secret_values()) == {"sk_test_verysecret1", "tok-secret-2", "pw-secret-3",
                                      "https://hc.example.com/ping/abcdef123456",
                                      "ping/abcdef123456"}


@pytest.mark.parametrize(("toml", "names"), [
    ("[stripe]\nsecret_key = 'sk_test_hidden42'\n", "STRIPE_SECRET_KEY"),
    ("[sanity]\ntoken = 'hidden42'\n", "SANITY_API_TOKEN"),
    ("[smtp]\npassword = 'hidden42'\n", "SMTP_PASSWORD"),
    ("[alerts]\nheartbeat_url = 'https://x.example/hidden42'\n", "HEARTBEAT_URL"),
    ("STRIPE_SECRET_KEY = 'sk_test_hidden42'\n", "environment"),
    ("[sanity]\napi_token = 'hidden42'\n", "environment"),
])
def test_a_secret_in_the_toml_file_is_refused_and_not_echoed(tmp_path: Path, toml: str,
                                                             names: str) -> None:
    path = write(tmp_path, "r.toml", toml)
    message = config_error({"STRIPE_SECRET_KEY": "sk_test_fine"}, config_path=path)
    assert "hidden42" not in message
    assert "secret" in message
    assert names in message


@pytest.mark.parametrize(("value", "expected"), [
    ("pk_live_hidden42", "publishable"),
    ("whsec_hidden42", "webhook signing secret"),
    ("sk_prod_hidden42", "does not look like a Stripe key"),
    ("sk_test_ hidden42", "does not look like a Stripe key"),
])
def test_bad_stripe_keys_are_named_but_never_echoed(value: str, expected: str) -> None:
    message = config_error({"STRIPE_SECRET_KEY": value})
    assert message.startswith("STRIPE_SECRET_KEY: ")
    assert expected in message
    assert "hidden42" not in message


def test_bad_secret_urls_and_tokens_are_not_echoed() -> None:
    message = config_error({"HEARTBEAT_URL": "http://hc.example.com/hidden42"})
    assert message.startswith("HEARTBEAT_URL: plain http")
    assert "hidden42" not in message
    message = config_error({"SANITY_API_TOKEN": "two words-hidden42"})
    assert message.startswith("SANITY_API_TOKEN: ") and "hidden42" not in message


@pytest.mark.parametrize(("key", "mode", "budget"), [
    ("sk_live_abc", "live", 50.0), ("rk_live_abc", "live", 50.0),
    ("sk_test_sandbox", "test", 12.5), ("rk_test_abc", "test", 12.5),
])
def test_key_mode_and_rate_budget(key: str, mode: str, budget: float) -> None:
    stripe = load({"STRIPE_SECRET_KEY": key}).stripe
    assert stripe.key_mode == mode
    assert stripe.requests_per_second == budget
    assert stripe.endpoint_requests_per_second == 12.5


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "problem"), [
    ("STRIPE_API_BASE", "http://api.example.com", "plain http is allowed only for loopback"),
    ("STRIPE_API_BASE", "ftp://127.0.0.1", "not an http(s) URL"),
    ("STRIPE_API_BASE", "https://user:pw@api.example.com", "must not embed credentials"),
    ("STRIPE_API_BASE", "https://api.example.com?x=1", "no query"),
    ("SANITY_API_BASE", "http://10.0.0.5:3333", "plain http is allowed only for loopback"),
    ("RECONCILER_DASHBOARD_URL", "dashboard.stripe.com", "not an http(s) URL"),
    ("SANITY_PROJECT_ID", "My_Project", "not a valid Sanity project id"),
    ("SANITY_DATASET", "Prod.Data", "not a valid Sanity dataset name"),
    ("SANITY_API_VERSION", "2025-02-30", "not a date YYYY-MM-DD"),
    ("SANITY_API_VERSION", "2025-2-19", "not a date YYYY-MM-DD"),
    ("SMTP_PORT", "smtp", "not a whole number"),
    ("SMTP_PORT", "70000", "out of range"),
    ("SMTP_STARTTLS", "maybe", "not a boolean"),
    ("SMTP_HOST", "mail example com", "not a valid host name"),
    ("REPORT_FROM", "ops", "not an e-mail address"),
    ("REPORT_TO", "ops@example.com, nobody", "not an e-mail address"),
    ("REPORT_TO", " , ", "lists no address"),
    ("RECONCILER_MAX_CREATES", "0", "out of range"),
    ("RECONCILER_MAX_CREATES", "-3", "out of range"),
    ("RECONCILER_STRIPE_RATE_SHARE", "1.5", "at most 1"),
    ("RECONCILER_STRIPE_RATE_SHARE", "half", "not a number"),
    ("RECONCILER_STRIPE_CONCURRENCY", "0", "out of range"),
    ("RECONCILER_GRACE", "-5m", "not a duration"),
    ("RECONCILER_QUICK_INTERVAL", "0", "must be positive"),
    ("RECONCILER_DEEP_WINDOW", "3 days", "not a duration"),
    ("RECONCILER_ALERT_NO_SUCCESS_FOR", "2w", "not a duration"),
    ("RECONCILER_WEEKLY_AT", "mon 8am", "not DAY HH:MM"),
    ("RECONCILER_WEEKLY_AT", "moon 08:00", "not DAY HH:MM"),
    ("RECONCILER_WEEKLY_AT", "mon 24:00", "no such time"),
    ("RECONCILER_TIMEZONE", "Europe/Olso", "not a known IANA timezone"),
    ("RECONCILER_TIMEZONE", "../etc/passwd", "not a known IANA timezone"),
    ("RECONCILER_LOG_LEVEL", "loud", "not one of"),
])
def test_a_malformed_value_is_one_line_naming_the_setting(name: str, value: str,
                                                          problem: str) -> None:
    message = config_error({name: value})
    assert message.startswith(f"{name}: ")
    assert problem in message


def test_a_bad_value_in_toml_or_env_file_names_key_and_file(tmp_path: Path) -> None:
    toml = write(tmp_path, "r.toml", "[schedule]\ntimezone = 'Mars/Base'\n")
    assert config_error(config_path=toml).startswith(f"schedule.timezone in {toml}: ")
    wrong_type = write(tmp_path, "t.toml", "[run]\nmax_creates = true\n")
    assert "must be a whole number" in config_error(config_path=wrong_type)
    env_file = write(tmp_path, ".env", "SMTP_PORT=x\n")
    assert config_error(env_file=env_file).startswith(f"SMTP_PORT in {env_file}: ")


@pytest.mark.parametrize(("toml", "problem"), [
    ("[stripe]\napi_bsae = 'https://x.example'\n", "stripe.api_bsae in"),
    ("[stripee]\nx = 1\n", "stripee in"),
    ("max_creates = 3\n", "max_creates in"),
    ("stripe = 3\n", "must be a table"),
    ("[run\n", "invalid TOML"),
])
def test_the_toml_file_is_checked_for_unknown_keys_and_syntax(tmp_path: Path, toml: str,
                                                              problem: str) -> None:
    assert problem in config_error(config_path=write(tmp_path, "r.toml", toml))


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    assert "not found" in config_error(config_path=tmp_path / "nope.toml")
    assert "not found" in config_error({"RECONCILER_CONFIG": str(tmp_path / "nope.toml")})
    assert "not found" in config_error(env_file=tmp_path / "nope.env")


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("10m", timedelta(minutes=10)), ("2h", timedelta(hours=2)),
    ("3d", timedelta(days=3)), ("600", timedelta(minutes=10)), (" 5M ", timedelta(minutes=5)),
])
def test_durations_accept_units_and_plain_seconds(text: str, expected: timedelta) -> None:
    assert load({"RECONCILER_DEEP_WINDOW": text}).schedule.deep_window == expected


def test_toml_numbers_are_seconds_and_grace_may_be_zero(tmp_path: Path) -> None:
    toml = write(tmp_path, "r.toml", "[schedule]\nquick_interval = 120\n[run]\ngrace = 0\n")
    s = load(config_path=toml)
    assert s.schedule.quick_interval == timedelta(minutes=2)
    assert s.run.grace == timedelta(0)


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("No", False),
])
def test_booleans(text: str, expected: bool) -> None:
    assert load({"SMTP_STARTTLS": text}).smtp.starttls is expected


@pytest.mark.parametrize("url", ["http://127.0.0.1:8420", "http://localhost:8420/",
                                 "http://[::1]:8420", "https://api.example.com/"])
def test_plain_http_only_for_loopback(url: str) -> None:
    assert load({"STRIPE_API_BASE": url}).stripe.api_base == url.rstrip("/")


def test_sanity_base_url_and_api_version() -> None:
    s = load({"SANITY_PROJECT_ID": "ab12-cd", "SANITY_API_VERSION": "v2024-01-01"})
    assert s.sanity.base_url == "https://ab12-cd.api.sanity.io"
    assert s.sanity.api_version == "2024-01-01"
    local = load({"SANITY_API_BASE": "http://127.0.0.1:3333/"}).sanity
    assert local.base_url == "http://127.0.0.1:3333"
    with pytest.raises(ConfigError, match="SANITY_PROJECT_ID"):
        _ = load().sanity.base_url


def test_weekly_at_accepts_day_names_and_timezone_is_a_zoneinfo() -> None:
    s = load({"RECONCILER_WEEKLY_AT": "Friday 17:30", "RECONCILER_TIMEZONE": "UTC"})
    assert s.schedule.weekly_at == WeeklyAt("fri", 17, 30)
    assert str(s.schedule.weekly_at) == "fri 17:30"
    assert s.schedule.timezone.key == "UTC"


def test_report_to_from_env_list_or_toml_list(tmp_path: Path) -> None:
    env = load({"REPORT_TO": "a@example.com, Ops <b@example.com>,"}).smtp
    assert env.report_to == ("a@example.com", "Ops <b@example.com>")
    toml = write(tmp_path, "r.toml", "[smtp]\nreport_to = ['c@example.com']\n")
    assert load(config_path=toml).smtp.report_to == ("c@example.com",)


# --- SMTP transport security ----------------------------------------------------------------

def test_implicit_tls_defaults_to_port_465_and_turns_starttls_off() -> None:
    smtp = load({"SMTP_HOST": "smtp.example.com", "SMTP_SSL": "true"}).smtp
    assert (smtp.ssl, smtp.starttls, smtp.port, smtp.plaintext) == (True, False, 465, False)
    explicit_port = load({"SMTP_SSL": "true", "SMTP_PORT": "2465"}).smtp
    assert explicit_port.port == 2465


def test_starttls_and_implicit_tls_together_are_refused() -> None:
    message = config_error({"SMTP_SSL": "true", "SMTP_STARTTLS": "true"})
    assert message.startswith("SMTP_STARTTLS and SMTP_SSL")


def test_plain_smtp_only_by_explicit_choice() -> None:
    assert load({"SMTP_HOST": "mail.example.com"}).smtp.plaintext is False
    plain = load({"SMTP_HOST": "mail.example.com", "SMTP_STARTTLS": "false"}).smtp
    assert plain.plaintext is True


# --- per-command requirements ---------------------------------------------------------------

def test_require_names_the_first_missing_variable() -> None:
    s = load()
    assert s.missing("sanity") == ("SANITY_PROJECT_ID", "SANITY_API_TOKEN")
    with pytest.raises(ConfigError, match=r"^STRIPE_SECRET_KEY is not set \(set it in the "
                                          r"environment or an env file\)$"):
        s.require("stripe", "sanity")
    with pytest.raises(ConfigError, match=r"^SANITY_PROJECT_ID is not set .*"
                                          r"NEXT_PUBLIC_SANITY_PROJECT_ID"):
        s.require_sanity()
    with pytest.raises(ConfigError, match=r"^SMTP_HOST is not set .*smtp\.host"):
        s.require_smtp()


def test_require_passes_when_everything_is_there() -> None:
    s = load({"STRIPE_SECRET_KEY": "sk_test_sandbox", "SANITY_PROJECT_ID": "p1",
              "SANITY_API_TOKEN": "t", "SMTP_HOST": "localhost", "REPORT_FROM": "r@example.com",
              "REPORT_TO": "ops@example.com"})
    assert s.require("stripe", "sanity", "smtp") is s
    assert s.require_stripe() is s


def test_smtp_login_needs_both_halves() -> None:
    base = {"SMTP_HOST": "h", "REPORT_FROM": "r@example.com", "REPORT_TO": "o@example.com"}
    assert load({**base, "SMTP_USERNAME": "u"}).missing("smtp") == ("SMTP_PASSWORD",)
    assert load({**base, "SMTP_PASSWORD": "p"}).missing("smtp") == ("SMTP_USERNAME",)
    assert load({**base, "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p"}).missing("smtp") == ()


# --- the documented example -----------------------------------------------------------------

def test_the_example_file_loads_and_states_the_defaults() -> None:
    from_example = load(config_path=EXAMPLE)
    assert replace(from_example, config_path=None) == load()


def test_the_example_file_documents_every_setting() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    sections = set(re.findall(r"^\[(\w+)\]", text, re.MULTILINE))
    assert sections == set(SETTINGS)
    for section, specs in SETTINGS.items():
        for key, spec in specs.items():
            for name in spec.env:
                assert name in text, name
            if not spec.secret:
                assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"{section}.{key}"


# --- metrics and chat (issue: probes, metrics, chat alerts) ----------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("9464", ("127.0.0.1", 9464)), ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("localhost:9464", ("localhost", 9464)), ("[::1]:9464", ("::1", 9464))])
def test_metrics_listen_takes_a_loopback_address(raw: str, expected: tuple[str, int]) -> None:
    assert load({"RECONCILER_METRICS_LISTEN": raw}).metrics.listen == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("0.0.0.0:9464", "loopback address only"), ("10.1.2.3:9464", "loopback address only"),
    ("127.0.0.1:99999", "is not PORT or HOST:PORT"), ("metrics", "is not PORT or HOST:PORT")])
def test_metrics_listen_refuses_anything_else_in_one_line(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^RECONCILER_METRICS_LISTEN: .*{message}"):
        load({"RECONCILER_METRICS_LISTEN": raw})


def test_the_chat_webhook_url_is_a_secret_kept_out_of_messages_and_logs(tmp_path: Path) -> None:
    url = "https://hooks.slack.com/services/T000/B000/abcdefgh12345"
    settings = load({"CHAT_WEBHOOK_URL": url})
    assert settings.alerts.chat_webhook_url == Secret(url)
    assert url in settings.secret_values()
    assert "services/T000/B000/abcdefgh12345" in settings.secret_values()
    toml = tmp_path / "c.toml"
    toml.write_text(f'[alerts]\nchat_webhook_url = "{url}"\n')
    with pytest.raises(ConfigError, match="secrets are not read from the config file") as e:
        load(config_path=toml)
    assert "abcdefgh" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^CHAT_WEBHOOK_URL: plain http") as e:
        load({"CHAT_WEBHOOK_URL": "http://chat.example.com/hooks/abcdefgh"})
    assert "abcdefgh" not in str(e.value)


# ---- the student e-mails (notify.*) ---------------------------------------------------------

MAIL = {"SMTP_HOST": "smtp.example.org", "REPORT_FROM": "ops@example.org"}


def test_student_emails_are_off_by_default_and_read_from_env_and_toml(tmp_path: Path) -> None:
    assert load().notify.students is False
    on = load({**MAIL, "RECONCILER_NOTIFY_STUDENTS": "true",
               "NEXT_PUBLIC_BASE_URL": "https://app.example.org",
               "RECONCILER_NOTIFY_LANGUAGES": "west=en, nord=nb",
               "RECONCILER_NOTIFY_EXCLUDE": "tenant-x,tenant-y"})
    assert on.notify.students and on.notify.app_url == "https://app.example.org"
    assert on.notify.language_of("tenant-w", "west") == "en"
    assert on.notify.language_of("tenant-q", None) == "nb"
    assert on.notify.excludes("tenant-y", None) and not on.notify.excludes("tenant-z", "z")
    path = write(tmp_path, "c.toml", '[notify]\nstudents = true\nsender = "S <s@example.org>"\n'
                 'languages = { "tenant-w" = "en" }\nexclude = ["quiet"]\n')
    toml = load({"SMTP_HOST": "smtp.example.org"}, config_path=path)
    assert toml.notify.sender == "S <s@example.org>"
    assert toml.notify.language_of("tenant-w", None) == "en"
    assert toml.notify.excludes(None, "quiet")


@pytest.mark.parametrize(("env", "says"), [
    ({"RECONCILER_NOTIFY_STUDENTS": "yes"}, "RECONCILER_NOTIFY_STUDENTS is on but SMTP_HOST"),
    ({"RECONCILER_NOTIFY_STUDENTS": "yes", "SMTP_HOST": "smtp.example.org"},
     "neither RECONCILER_NOTIFY_FROM nor REPORT_FROM"),
    ({"RECONCILER_NOTIFY_LANGUAGES": "west=de"}, "is not a language of the student e-mail"),
    ({"RECONCILER_NOTIFY_LANGUAGES": "west"}, "is not SCHOOL=LANGUAGE"),
    ({"RECONCILER_NOTIFY_REPLY_TO": "front desk"}, "is not an e-mail address"),
])
def test_bad_student_email_settings_are_one_line_errors(env: dict[str, str], says: str) -> None:
    assert says in config_error(env)


# --- the ledger's database ------------------------------------------------------------------

def test_database_url_from_the_environment_is_a_secret_and_redacted() -> None:
    url = "postgresql://job:p%40ss-w0rd@db.internal:5432/ledger?sslmode=require"
    s = load({"RECONCILER_DATABASE_URL": url})
    assert s.database.postgresql and s.database.url == Secret(url)
    assert url not in repr(s)
    assert {url, "p%40ss-w0rd", "p@ss-w0rd"} <= set(s.secret_values())
    assert load().database.url is None and not load().database.postgresql


def test_database_url_in_toml_only_without_a_password(tmp_path: Path) -> None:
    plain = write(tmp_path, "a.toml", "[database]\nurl = 'postgresql://job@db:5432/ledger'\n")
    assert load(config_path=plain).database.url == Secret("postgresql://job@db:5432/ledger")
    for url in ("postgresql://job:hunter22@db/ledger", "postgres://db/ledger?password=hunter22"):
        toml = write(tmp_path, "b.toml", f"[database]\nurl = '{url}'\n")
        message = config_error(config_path=toml)
        assert message.startswith("database.url in ") and "holds a password" in message
        assert "hunter22" not in message


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite:///tmp/x", "db.internal:5432"])
def test_a_database_url_that_is_not_postgresql_is_refused(url: str) -> None:
    message = config_error({"RECONCILER_DATABASE_URL": url})
    assert message.startswith("RECONCILER_DATABASE_URL: must be a postgresql:// URL")
