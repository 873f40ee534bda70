"""The CLI as people expect it: help everywhere, exit codes stated, NO_COLOR, Ctrl-C is 130."""

from __future__ import annotations

import argparse
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from jobs import cli
from jobs.adapters.heartbeat import Heartbeat
from jobs.adapters.logs import configure_logging, get_logger, no_color
from jobs.commands.daemon import Daemon, make_pass_runner
from jobs.commands.help import COMMANDS
from jobs.config.settings import load_settings
from jobs.run.schedule import build_scheduler


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def test_every_option_of_every_command_has_help() -> None:
    parser = cli.build_parser()
    undocumented = [
        f"{name} {action.option_strings[-1]}"
        for name, sub in [("reconcile", parser), *subcommands(parser).items()]
        for action in sub._actions
        if action.option_strings and not (action.help and action.help.strip())
    ]
    assert undocumented == []


def test_every_command_has_a_description_examples_and_the_exit_codes() -> None:
    parser = cli.build_parser()
    subs = subcommands(parser)
    assert set(subs) == set(COMMANDS)
    for name, sub in subs.items():
        text = sub.format_help()
        assert sub.description and len(sub.description) > 40, name
        assert f"examples:\n  reconcile {name}" in text, name
        for code in ("0 ", "1 ", "2 ", "130 "):
            assert f"\n  {code}" in text, (name, code)
    top = parser.format_help()
    assert "exit codes:" in top and "1h30m" in top


def test_help_prints_the_examples_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["report", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "reconcile report --weekly --json" in out and "interrupted by Ctrl-C" in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("value", "coloured"), [(None, True), ("", True), ("1", False)])
def test_no_color_turns_colour_off_on_a_terminal(
        monkeypatch: pytest.MonkeyPatch, value: str | None, coloured: bool) -> None:
    if value is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", value)
    assert no_color() is not coloured
    terminal = Terminal()
    configure_logging(stream=terminal, json=False)
    get_logger("t").warning("hello", account="platform")
    assert ("\x1b[" in terminal.getvalue()) is coloured


def test_ctrl_c_in_any_command_exits_130_with_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_args: argparse.Namespace, _settings: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "status", interrupted)
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path))
    assert cli.main(["status"]) == 130
    err = capsys.readouterr().err
    assert err == "reconcile: interrupted\n"


@pytest.mark.parametrize(("reason", "code"), [("SIGINT", 130), ("SIGTERM", 0)])
def test_the_daemon_exits_130_after_ctrl_c_and_0_after_sigterm(
        tmp_path: Path, reason: str, code: int) -> None:
    settings = load_settings({"RECONCILER_STATE_DIR": str(tmp_path), "HOME": str(tmp_path)})
    cancel = threading.Event()
    scheduler = build_scheduler(
        settings, make_pass_runner(lambda kind: None, Heartbeat(None), cancel), lambda: None)
    daemon = Daemon(scheduler, cancel)
    daemon.request_stop(reason)
    assert daemon.run() == code
    assert cancel.is_set()
