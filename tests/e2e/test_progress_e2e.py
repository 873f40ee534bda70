"""`reconcile run` on a terminal: a live bar per account on stderr, stdout still clean JSON;
NO_COLOR honoured. Off a terminal: no bars, structured log lines only."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.sanity_server import SanityStandIn
from tests.e2e.harness import Sandbox, start_sandbox

COLOUR = re.compile(r"\x1b\[(?:3[0-7]|38;|9[0-7])")  # SGR foreground colours
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def world(tmp_path: Path, sanity: SanityStandIn) -> Iterator[Sandbox]:
    box = start_sandbox(tmp_path, sanity, seed=5, sessions=600)
    yield box
    box.stripe.stop()


def run_on_a_terminal(world: Sandbox, **env: str) -> tuple[int, str, str]:
    """The run with stderr on a pseudo-terminal and stdout on a pipe: (code, stdout, tty)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(world.command("run", *world.window_args, "--json"), cwd=world.root,
                            env=world.env(TERM="xterm-256color", COLUMNS="140",
                                          RECONCILER_LOG_FORMAT="auto", **env),
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("no_color", ["", "1"])
def test_a_run_on_a_terminal_shows_a_bar_per_account(world: Sandbox, no_color: str) -> None:
    code, out, tty = run_on_a_terminal(world, NO_COLOR=no_color)
    report = json.loads(out)  # stdout stays the JSON alone
    assert code == 1, tty
    plain = ESCAPE.sub("", tty)
    for account in report["accounts"]:
        line = next(line for line in reversed(plain.splitlines())
                    if account["account"] in line and "sessions" in line)
        assert f"{account['sessions']} sessions" in line and "done" in line
    assert bool(COLOUR.search(tty)) is (no_color == "")


def test_off_a_terminal_there_are_no_bars(world: Sandbox) -> None:
    done = world.run("run", *world.window_args, "--json")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # JSON lines only
    assert {"run_started", "read_finished", "run_finished"} <= {e["event"] for e in lines}
    assert "━" not in done.stderr
