"""Where each setting is read from: its env names, its TOML key, its converter.

The TOML key of a setting is `<section>.<field name>` of the `Settings` dataclass it fills.
Secrets have a TOML key only so that finding one there is a clear error.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from jobs.config import values as v
from jobs.config.values import Converter
from jobs.core.errors import ConfigError


@dataclass(frozen=True)
class SettingSpec:
    """Where one setting is read from; its TOML key is `<section>.<field name>`."""

    env: tuple[str, ...]  # canonical name first, then accepted aliases
    convert: Converter
    secret: bool = False  # secrets are read only from the environment or an env file


_HOST = v.matching(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]+", "host name", 253)

SETTINGS: Mapping[str, Mapping[str, SettingSpec]] = {
    "stripe": {
        "secret_key": SettingSpec(("STRIPE_SECRET_KEY",), v.stripe_key, secret=True),
        "api_base": SettingSpec(("STRIPE_API_BASE",), v.base_url),
        "rate_share": SettingSpec(("RECONCILER_STRIPE_RATE_SHARE",), v.fraction),
        "concurrency": SettingSpec(("RECONCILER_STRIPE_CONCURRENCY",), v.integer(1, 64)),
        "dashboard_url": SettingSpec(("RECONCILER_DASHBOARD_URL",), v.base_url),
    },
    "sanity": {
        "project_id": SettingSpec(("SANITY_PROJECT_ID", "NEXT_PUBLIC_SANITY_PROJECT_ID"),
                                  v.matching(r"[a-z0-9-]+", "Sanity project id", 64)),
        "dataset": SettingSpec(("SANITY_DATASET", "NEXT_PUBLIC_SANITY_DATASET"),
                               v.matching(r"[a-z0-9_-]+", "Sanity dataset name", 64)),
        "token": SettingSpec(("SANITY_API_TOKEN",), v.token, secret=True),
        "api_base": SettingSpec(("SANITY_API_BASE",), v.base_url),
        "api_version": SettingSpec(("SANITY_API_VERSION",), v.api_version),
    },
    "smtp": {
        "host": SettingSpec(("SMTP_HOST",), _HOST),
        "port": SettingSpec(("SMTP_PORT",), v.integer(1, 65535)),
        "username": SettingSpec(("SMTP_USERNAME",), v.text),
        "password": SettingSpec(("SMTP_PASSWORD",), v.password, secret=True),
        "starttls": SettingSpec(("SMTP_STARTTLS",), v.boolean),
        "ssl": SettingSpec(("SMTP_SSL",), v.boolean),
        "report_from": SettingSpec(("REPORT_FROM",), v.address),
        "report_to": SettingSpec(("REPORT_TO",), v.address_list),
    },
    "run": {
        "state_dir": SettingSpec(("RECONCILER_STATE_DIR",), v.path),
        "max_creates": SettingSpec(("RECONCILER_MAX_CREATES",), v.integer(1, 100_000)),
        "grace": SettingSpec(("RECONCILER_GRACE",), v.duration_or_zero),
        "ledger_retention": SettingSpec(("RECONCILER_LEDGER_RETENTION",), v.retention),
    },
    "schedule": {
        "quick_interval": SettingSpec(("RECONCILER_QUICK_INTERVAL",), v.duration),
        "quick_overlap": SettingSpec(("RECONCILER_QUICK_OVERLAP",), v.duration),
        "deep_interval": SettingSpec(("RECONCILER_DEEP_INTERVAL",), v.duration),
        "deep_window": SettingSpec(("RECONCILER_DEEP_WINDOW",), v.duration),
        "weekly_at": SettingSpec(("RECONCILER_WEEKLY_AT",), v.weekly_at),
        "timezone": SettingSpec(("RECONCILER_TIMEZONE",), v.timezone),
    },
    "alerts": {
        "heartbeat_url": SettingSpec(("HEARTBEAT_URL",), v.secret_url, secret=True),
        "missing_spike": SettingSpec(("RECONCILER_ALERT_MISSING_SPIKE",), v.integer(1, 100_000)),
        "failed_runs": SettingSpec(("RECONCILER_ALERT_FAILED_RUNS",), v.integer(1, 1000)),
        "no_success_for": SettingSpec(("RECONCILER_ALERT_NO_SUCCESS_FOR",), v.duration),
        "chat_webhook_url": SettingSpec(("CHAT_WEBHOOK_URL",), v.secret_url, secret=True),
    },
    "log": {
        "level": SettingSpec(("RECONCILER_LOG_LEVEL",),
                             v.choice("debug", "info", "warning", "error")),
        "format": SettingSpec(("RECONCILER_LOG_FORMAT",), v.choice("auto", "json", "console")),
    },    # A secret only when it holds a password: the converter refuses one from the config file.
    "database": {
        "url": SettingSpec(("RECONCILER_DATABASE_URL",), v.database_url),
    },
    "metrics": {
        "listen": SettingSpec(("RECONCILER_METRICS_LISTEN",), v.loopback_listen),
        "textfile": SettingSpec(("RECONCILER_METRICS_TEXTFILE",), v.path),
    },
    "notify": {
        "students": SettingSpec(("RECONCILER_NOTIFY_STUDENTS",), v.boolean),
        "sender": SettingSpec(("RECONCILER_NOTIFY_FROM",), v.address),
        "reply_to": SettingSpec(("RECONCILER_NOTIFY_REPLY_TO",), v.address),
        "app_url": SettingSpec(("RECONCILER_APP_URL", "NEXT_PUBLIC_BASE_URL"), v.base_url),
        "language": SettingSpec(("RECONCILER_NOTIFY_LANGUAGE",), v.choice("nb", "en")),
        "languages": SettingSpec(("RECONCILER_NOTIFY_LANGUAGES",), v.language_map),
        "exclude": SettingSpec(("RECONCILER_NOTIFY_EXCLUDE",), v.name_list),
    },
}
_SECRETISH = ("token", "password", "secret", "secret_key", "api_key", "heartbeat_url",
              "webhook_url")


Raw = tuple[object, str, Path | None]  # value, where (for messages), base dir for relative paths
Layers = list[tuple[Mapping[str, str], str | None]]  # values, the env file they came from


def first_value(layers: Layers, names: tuple[str, ...]) -> Raw | None:
    """The first non-empty value of `names` across the layers, in precedence order."""
    for values, source in layers:
        for name in names:
            value = values.get(name)
            if value is not None and value.strip():
                where = name if source is None else f"{name} in {source}"
                return value, where, (Path(source).parent if source else None)
    return None


def toml_value(toml: Mapping[str, Mapping[str, object]], section: str, key: str,
               path: Path | None) -> Raw | None:
    """The TOML file's value for `section.key`; an empty string counts as not set."""
    value = toml.get(section, {}).get(key)
    if value is None or value == "":
        return None
    return value, f"{section}.{key} in {path}", (path.parent if path else None)


def read_toml(path: Path) -> dict[str, dict[str, object]]:
    """Parse the config file; unknown sections or keys and secrets in it are `ConfigError`s."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"config file {path}: cannot be read as UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path}: invalid TOML ({error})") from None
    for section, table in data.items():
        if section not in SETTINGS:
            _unknown(section, path, known=f"sections: {', '.join(SETTINGS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{section} in {path}: must be a table ([{section}])")
        for key in table:
            spec = SETTINGS[section].get(key)
            if spec is not None and spec.secret:
                raise ConfigError(
                    f"{section}.{key} in {path}: secrets are not read from the config file; "
                    f"set {spec.env[0]} in the environment or an env file (--env-file)")
            if spec is None:
                _unknown(f"{section}.{key}", path, known=f"keys: {', '.join(SETTINGS[section])}")
    return data


def _unknown(name: str, path: Path, *, known: str) -> NoReturn:
    if any(name.lower().endswith(word) for word in _SECRETISH):
        raise ConfigError(f"{name} in {path}: looks like a secret; secrets are not read from the "
                          "config file: set them in the environment or an env file (--env-file)")
    raise ConfigError(f"{name} in {path}: unknown setting (known {known})")


def where_to_set(name: str) -> str:
    """Where a missing variable can be given, for the `require` message."""
    for section, specs in SETTINGS.items():
        for key, spec in specs.items():
            if name in spec.env:
                aliases = f", also read as {', '.join(spec.env[1:])}" if spec.env[1:] else ""
                if spec.secret:
                    return f"set it in the environment or an env file{aliases}"
                return (f"set it in the environment, an env file or as {section}.{key} "
                        f"in the config file{aliases}")
    return "set it in the environment"
