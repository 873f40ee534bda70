"""Logging: real output asserted; secrets never appear, e-mails are masked, context is bound."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.contextvars import bound_contextvars

from jobs.adapters.logs import configure_logging, get_logger
from jobs.core.errors import ConfigError

KEY = "sk_test_51SecretKeyValue"
TOKEN = "skSanityTokenValue123"
SECRETS = (KEY, TOKEN)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def configured(**kwargs: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(stream=stream, secrets=SECRETS, **kwargs)
    return stream


def test_json_lines_with_timestamp_level_event_and_logger_name() -> None:
    stream = configured()
    get_logger("jobs.reconcile").info("page fetched", sessions=100)
    [line] = json_lines(stream)
    assert line["event"] == "page fetched"
    assert line["level"] == "info"
    assert line["logger"] == "jobs.reconcile"
    assert line["sessions"] == 100
    assert line["timestamp"].endswith("Z") and line["timestamp"][10] == "T"


def test_context_bound_with_contextvars_reaches_every_line() -> None:
    stream = configured()
    log = get_logger("jobs.reconcile")
    with bound_contextvars(run_id="run_1", account="acct_1"):
        log.info("one")
        with bound_contextvars(session_id="cs_test_1"):
            log.warning("two")
    log.info("three")
    one, two, three = json_lines(stream)
    assert (one["run_id"], one["account"]) == ("run_1", "acct_1")
    assert (two["run_id"], two["session_id"], two["level"]) == ("run_1", "cs_test_1", "warning")
    assert "run_id" not in three


def test_secrets_are_redacted_in_event_values_nested_values_and_objects() -> None:
    stream = configured()
    get_logger("t").info(
        f"calling with {KEY}",
        header=f"Bearer {TOKEN}",
        nested={"auth": [KEY, {"deep": f"x{TOKEN}y"}]},
        path=Path("/tmp") / KEY,
        **{f"key_{TOKEN}": 1},
    )
    output = stream.getvalue()
    assert KEY not in output and TOKEN not in output
    [line] = json_lines(stream)
    assert line["event"] == "calling with [REDACTED]"
    assert line["header"] == "Bearer [REDACTED]"
    assert line["nested"] == {"auth": ["[REDACTED]", {"deep": "x[REDACTED]y"}]}
    assert line["path"] == "/tmp/[REDACTED]"


def test_a_secret_containing_another_is_redacted_whole() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, secrets=["abcd", "abcd-longer-secret"])
    get_logger("t").info("x", value="abcd-longer-secret")
    assert json_lines(stream)[0]["value"] == "[REDACTED]"


def test_exceptions_are_rendered_without_secrets_or_addresses() -> None:
    stream = configured()
    log = get_logger("jobs.stripe_source")
    try:
        raise RuntimeError(f"401 for key {KEY} (owner kari.nordmann@example.com)")
    except RuntimeError:
        log.exception("request failed")
    output = stream.getvalue()
    [line] = json_lines(stream)
    assert "RuntimeError: 401 for key [REDACTED] (owner ka***@example.com)" in line["exception"]
    assert "Traceback" in line["exception"]
    assert KEY not in output and "kari.nordmann" not in output


def test_an_exception_passed_as_a_value_is_scrubbed() -> None:
    stream = configured()
    get_logger("t").warning("retrying", error=ValueError(f"token {TOKEN} rejected"))
    assert json_lines(stream)[0]["error"] == "token [REDACTED] rejected"


@pytest.mark.parametrize(("address", "masked"), [
    ("kari.nordmann@example.com", "ka***@example.com"),
    ("ab@example.no", "a***@example.no"),
    ("x@sub.example.org", "x***@sub.example.org"),
    ("Ola+pass@gmail.com", "Ol***@gmail.com"),
])
def test_email_addresses_are_masked_in_every_string(address: str, masked: str) -> None:
    stream = configured()
    get_logger("t").info(f"created for {address}", email=address, emails=[address],
                         detail={"to": f"<{address}>"})
    output = stream.getvalue()
    assert address not in output
    [line] = json_lines(stream)
    assert line["event"] == f"created for {masked}"
    assert (line["email"], line["emails"], line["detail"]) == (masked, [masked],
                                                               {"to": f"<{masked}>"})


def test_ids_and_plain_values_are_left_alone() -> None:
    stream = configured()
    get_logger("t").info("ok", session_id="cs_test_a1", amount=1500, ok=True, nothing=None,
                         ratio=0.5)
    [line] = json_lines(stream)
    assert (line["session_id"], line["amount"], line["ok"], line["nothing"], line["ratio"]) == (
        "cs_test_a1", 1500, True, None, 0.5)


def test_console_renderer_on_a_terminal_still_scrubs() -> None:
    stream = Terminal()
    configure_logging(stream=stream, secrets=SECRETS)
    try:
        raise ValueError(f"bad {KEY}")
    except ValueError:
        get_logger("jobs.cli").exception("failed", email="kari@example.com")
    output = stream.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])
    assert "failed" in output and "ka***@example.com" in output
    assert "ValueError: bad [REDACTED]" in output
    assert KEY not in output and "kari@" not in output


def test_json_can_be_forced_on_a_terminal_and_console_forced_off_one() -> None:
    terminal = Terminal()
    configure_logging(stream=terminal, json=True)
    get_logger("t").info("hello")
    assert json_lines(terminal)[0]["event"] == "hello"
    plain = io.StringIO()
    configure_logging(stream=plain, json=False)
    get_logger("t").info("hello")
    assert plain.getvalue().rstrip().endswith("[t]")
    assert "\x1b[" not in plain.getvalue()  # no colours off a terminal


def test_level_filters_lower_levels() -> None:
    stream = configured(level="warning")
    log = get_logger("t")
    log.info("hidden")
    log.debug("hidden too")
    log.error("shown")
    assert [line["event"] for line in json_lines(stream)] == ["shown"]
    with pytest.raises(ConfigError, match="log level"):
        configure_logging(stream=stream, level="loud")


def test_reconfiguring_moves_existing_loggers_to_the_new_stream_and_secrets() -> None:
    log = get_logger("made.before.configure")
    first = configured()
    log.info("to first")
    second = io.StringIO()
    configure_logging(stream=second, secrets=["new-secret-value"])
    log.info("to second new-secret-value")
    assert [line["event"] for line in json_lines(first)] == ["to first"]
    assert [line["event"] for line in json_lines(second)] == ["to second [REDACTED]"]


def test_get_logger_binds_extra_context() -> None:
    stream = configured()
    get_logger("jobs.daemon", job="quick").info("tick")
    assert json_lines(stream)[0]["job"] == "quick"
