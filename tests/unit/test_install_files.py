"""The install steps as written: directories before the files in them, one owner of the env
file, the state directory from systemd, every cron log rotated."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "config" / "pass-reconciler.service"
CRONTAB = ROOT / "crontab.example"
LOGROTATE = ROOT / "logrotate.example"
RUNBOOK = ROOT / "docs" / "runbook.md"


def commented_commands(path: Path) -> list[str]:
    return [line.lstrip("# ").strip() for line in path.read_text().splitlines()
            if re.match(r"#\s+(install|useradd|cp|crontab|systemctl)\b", line)]


def test_every_install_creates_its_directory_first() -> None:
    for path in (UNIT, CRONTAB, LOGROTATE):
        made: set[str] = {"/etc/systemd/system", "/etc/logrotate.d"}
        for command in commented_commands(path):
            if not command.startswith("install"):
                continue
            if " -d " in command:
                made.update(w for w in command.split() if w.startswith("/"))
                continue
            target = command.split()[-1]
            assert str(Path(target).parent) in made, f"{path.name}: {command}"


def test_one_story_about_the_env_file() -> None:
    steps = " ".join(commented_commands(UNIT))
    assert "install -m 0600 -o pass-reconciler -g pass-reconciler /dev/null " \
           "/etc/pass-reconciler/env" in steps
    unit = UNIT.read_text()
    assert "root-only" not in unit and "-o root -g root /dev/null" not in unit
    runbook = RUNBOOK.read_text()
    assert "mode 0600, owned by that user" in runbook
    assert "owned by the user" in CRONTAB.read_text()


def test_the_unit_takes_its_state_directory_from_systemd() -> None:
    unit = UNIT.read_text()
    assert "StateDirectory=pass-reconciler" in unit
    assert "RECONCILER_STATE_DIR" not in unit  # $STATE_DIRECTORY is the default


def test_logrotate_covers_every_cron_log() -> None:
    logs = re.findall(r">>\s*(\S+\.log)", CRONTAB.read_text())
    assert len(logs) == 3
    patterns = re.findall(r"^(/\S+)\s*\{", LOGROTATE.read_text(), re.MULTILINE)
    for log in logs:
        assert any(fnmatch.fnmatch(log, p) for p in patterns), log
