"""Settings: one frozen value built once from the environment, an env file and a TOML file.

Precedence per setting: the environment, then the env file (`--env-file`), then the TOML file
(`--config PATH` or `RECONCILER_CONFIG`), then the default. Secrets come only from the first
two. Every value is validated here, up front; a bad one is a one-line `ConfigError` naming the
setting. Which settings a command needs is checked by `Settings.require(...)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from jobs.config.envfile import read_env_file
from jobs.config.sources import (
    SETTINGS,
    Layers,
    first_value,
    read_toml,
    toml_value,
    where_to_set,
)
from jobs.config.values import Secret, WeeklyAt
from jobs.core.errors import ConfigError

Part = Literal["stripe", "sanity", "smtp"]

# Stripe's documented limits (req/s): per account by mode, and per endpoint by default.
STRIPE_MODE_LIMITS = {"live": 100, "test": 25}
STRIPE_ENDPOINT_LIMIT = 25


@dataclass(frozen=True)
class StripeSettings:
    secret_key: Secret | None = None
    api_base: str = "https://api.stripe.com"
    rate_share: float = 0.5  # of Stripe's limits; peers found half a safe budget
    concurrency: int = 4  # parallel requests (accounts / pages)
    dashboard_url: str = "https://dashboard.stripe.com"

    @property
    def key_mode(self) -> Literal["live", "test"]:
        """`live` or `test`, from the key's prefix."""
        if self.secret_key is None:
            raise ConfigError("STRIPE_SECRET_KEY is not set")
        # The key was validated as (sk|rk)_(live|test)_...
        return "live" if self.secret_key.reveal().split("_")[1] == "live" else "test"

    @property
    def requests_per_second(self) -> float:
        """Our budget of the per-account limit for the key's mode."""
        return self.rate_share * STRIPE_MODE_LIMITS[self.key_mode]

    @property
    def endpoint_requests_per_second(self) -> float:
        """Our budget of the per-endpoint limit (the same in both modes)."""
        return self.rate_share * STRIPE_ENDPOINT_LIMIT


@dataclass(frozen=True)
class SanitySettings:
    project_id: str | None = None
    dataset: str = "production"
    token: Secret | None = None
    api_base: str | None = None  # None: https://{project_id}.api.sanity.io
    api_version: str = "2025-02-19"  # pinned; the adapter asks for perspective=raw itself

    @property
    def base_url(self) -> str:
        if self.api_base is not None:
            return self.api_base
        if self.project_id is None:
            raise ConfigError("SANITY_PROJECT_ID is not set")
        return f"https://{self.project_id}.api.sanity.io"


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 587  # 465 when ssl is on and no port is given
    username: str | None = None
    password: Secret | None = None
    starttls: bool = True
    ssl: bool = False  # implicit TLS from the first byte
    report_from: str | None = None
    report_to: tuple[str, ...] = ()

    @property
    def plaintext(self) -> bool:
        """Neither STARTTLS nor implicit TLS (only ever by an explicit SMTP_STARTTLS=false)."""
        return not (self.starttls or self.ssl)


@dataclass(frozen=True)
class RunSettings:
    state_dir: Path = field(default_factory=lambda: default_state_dir({}))
    max_creates: int = 50
    # until = now - grace: the webhook's time. Stripe's first delivery comes within seconds of
    # the payment (retries only minutes to hours later), so the grace covers that one.
    grace: timedelta = timedelta(seconds=60)
    ledger_retention: timedelta = timedelta(days=400)  # a year of weekly trends, and a margin


@dataclass(frozen=True)
class ScheduleSettings:
    quick_interval: timedelta = timedelta(seconds=30)
    quick_overlap: timedelta = timedelta(minutes=15)
    deep_interval: timedelta = timedelta(minutes=60)
    deep_window: timedelta = timedelta(days=3)
    weekly_at: WeeklyAt = field(default_factory=lambda: WeeklyAt(day="mon", hour=8, minute=0))
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Oslo"))


@dataclass(frozen=True)
class AlertSettings:
    heartbeat_url: Secret | None = None
    missing_spike: int = 5  # sessions created by one run before it counts as a spike
    failed_runs: int = 3  # consecutive failed runs before an alert
    no_success_for: timedelta = timedelta(hours=2)
    chat_webhook_url: Secret | None = None  # Slack-compatible incoming webhook; its path is a token


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    format: str = "auto"  # auto: JSON lines unless stderr is a terminal

    @property
    def json(self) -> bool | None:
        return None if self.format == "auto" else self.format == "json"


@dataclass(frozen=True)
class MetricsSettings:
    listen: tuple[str, int] | None = None  # daemon: serve /metrics here (loopback only)
    textfile: Path | None = None  # cron: node_exporter textfile-collector file, written per run


@dataclass(frozen=True)
class NotifySettings:
    """The e-mail that tells a student their lost pass was repaired (off by default)."""

    students: bool = False
    sender: str | None = None  # None: REPORT_FROM
    reply_to: str | None = None
    app_url: str | None = None  # the app's base URL (NEXT_PUBLIC_BASE_URL) for the link
    language: str = "nb"  # Norwegian Bokmål unless a school says otherwise
    languages: Mapping[str, str] = field(default_factory=dict)  # tenant id or slug -> language
    exclude: tuple[str, ...] = ()  # tenant ids or slugs whose students are never e-mailed

    def language_of(self, tenant_id: str | None, slug: str | None) -> str:
        for key in (tenant_id, slug):
            if key is not None and key in self.languages:
                return self.languages[key]
        return self.language

    def excludes(self, tenant_id: str | None, slug: str | None) -> bool:
        return any(key is not None and key in self.exclude for key in (tenant_id, slug))


@dataclass(frozen=True)
class DatabaseSettings:
    url: Secret | None = None  # a postgresql:// URL: the ledger and locks there; None: SQLite

    @property
    def postgresql(self) -> bool:
        return self.url is not None


@dataclass(frozen=True)
class Settings:
    stripe: StripeSettings = field(default_factory=StripeSettings)
    sanity: SanitySettings = field(default_factory=SanitySettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    run: RunSettings = field(default_factory=RunSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    config_path: Path | None = None  # the TOML file read, if any
    notify: NotifySettings = field(default_factory=NotifySettings)

    def missing(self, part: Part) -> tuple[str, ...]:
        """The variables `part` needs that are not set, in the order they are reported."""
        checks: dict[Part, tuple[tuple[str, bool], ...]] = {
            "stripe": (("STRIPE_SECRET_KEY", self.stripe.secret_key is None),),
            "sanity": (
                ("SANITY_PROJECT_ID", self.sanity.project_id is None),
                ("SANITY_API_TOKEN", self.sanity.token is None),
            ),
            "smtp": (
                ("SMTP_HOST", self.smtp.host is None),
                ("REPORT_FROM", self.smtp.report_from is None),
                ("REPORT_TO", not self.smtp.report_to),
                ("SMTP_PASSWORD", self.smtp.username is not None and self.smtp.password is None),
                ("SMTP_USERNAME", self.smtp.password is not None and self.smtp.username is None),
            ),
        }
        return tuple(name for name, absent in checks[part] if absent)

    def require(self, *parts: Part) -> Settings:
        """Raise `ConfigError` naming the first missing variable of `parts`; else `self`."""
        for part in parts:
            for name in self.missing(part):
                raise ConfigError(f"{name} is not set ({where_to_set(name)})")
        return self

    def require_stripe(self) -> Settings:
        return self.require("stripe")

    def require_sanity(self) -> Settings:
        return self.require("sanity")

    def require_smtp(self) -> Settings:
        return self.require("smtp")

    def secret_values(self) -> tuple[str, ...]:
        """Every secret's text, for the log redactor (a ping URL's path is its token)."""
        secrets = [self.stripe.secret_key, self.sanity.token, self.smtp.password,
                   self.alerts.heartbeat_url, self.alerts.chat_webhook_url]
        values = [secret.reveal() for secret in secrets if secret is not None]
        values += database_url_secrets(self.database.url)
        for url in (self.alerts.heartbeat_url, self.alerts.chat_webhook_url):
            token_part = urlsplit(url.reveal()).path.strip("/") if url is not None else ""
            if len(token_part) >= 8:
                values.append(token_part)
        return tuple(value for value in values if value)


_SECTIONS = {
    "stripe": StripeSettings, "sanity": SanitySettings, "smtp": SmtpSettings,
    "run": RunSettings, "schedule": ScheduleSettings, "alerts": AlertSettings, "log": LogSettings,
    "metrics": MetricsSettings,
    "notify": NotifySettings,
    "database": DatabaseSettings,
}


def load_settings(
    environ: Mapping[str, str], *, config_path: Path | None = None, env_file: Path | None = None
) -> Settings:
    """Read, merge and validate every setting; `ConfigError` on the first bad one."""
    layers: Layers = [(environ, None)]
    if env_file is not None:
        layers.append((read_env_file(env_file), str(env_file)))
    if config_path is None:
        named = first_value(layers, ("RECONCILER_CONFIG",))
        config_path = Path(str(named[0])).expanduser() if named else None
    toml = read_toml(config_path) if config_path is not None else {}

    sections: dict[str, dict[str, object]] = {}
    for section, specs in SETTINGS.items():
        found: dict[str, object] = {}
        for key, spec in specs.items():
            raw = first_value(layers, spec.env)
            if raw is None and not spec.secret:
                raw = toml_value(toml, section, key, config_path)
            if raw is not None:
                found[key] = _relative_to(spec.convert(raw[0], raw[1]), raw[2])
        sections[section] = found

    smtp = sections["smtp"]
    if smtp.get("ssl"):
        if smtp.get("starttls") is True:
            raise ConfigError("SMTP_STARTTLS and SMTP_SSL: both on; STARTTLS upgrades a plain "
                              "connection, SMTP_SSL is TLS from the start: choose one")
        smtp["starttls"] = False
        smtp.setdefault("port", 465)
    sections["run"].setdefault("state_dir", default_state_dir(environ))
    if sections["notify"].get("students") and not smtp.get("host"):
        raise ConfigError("RECONCILER_NOTIFY_STUDENTS is on but SMTP_HOST is not set: the "
                          "students' e-mails need a mail server")
    if (sections["notify"].get("students") and not sections["notify"].get("sender")
            and not smtp.get("report_from")):
        raise ConfigError("RECONCILER_NOTIFY_STUDENTS is on but neither RECONCILER_NOTIFY_FROM "
                          "nor REPORT_FROM is set: the students' e-mails need a sender")

    parts = {name: cls(**sections[name]) for name, cls in _SECTIONS.items()}
    return Settings(**parts, config_path=config_path)


def database_url_secrets(url: Secret | None) -> list[str]:
    """The database URL and its password, for the log redactor (a driver may quote either)."""
    if url is None:
        return []
    password = urlsplit(url.reveal()).password or ""
    return [url.reveal(), *(p for p in {password, unquote(password)} if len(p) >= 4)]


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """$STATE_DIRECTORY (systemd's `StateDirectory=`), else $XDG_STATE_HOME/pass-reconciler,
    else ~/.local/state/pass-reconciler."""
    # systemd sets it to the absolute path(s) of the unit's StateDirectory=, colon-separated.
    systemd = environ.get("STATE_DIRECTORY", "").strip().split(":")[0]
    if systemd and Path(systemd).is_absolute():
        return Path(systemd)
    xdg = environ.get("XDG_STATE_HOME", "").strip()
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "pass-reconciler"
    home = environ.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / ".local" / "state" / "pass-reconciler"


def _relative_to(value: object, base: Path | None) -> object:
    """A relative path means relative to the file that gave it, else to the working directory."""
    if isinstance(value, Path) and not value.is_absolute():
        return ((base or Path.cwd()) / value).absolute()
    return value
