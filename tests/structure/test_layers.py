"""The house's shape, checked: the layers' imports point one way only, and no room grows too big.

Layers, bottom up: `core` (pure) <- `config` <- `adapters` and `reports` <- `run` <- `commands`
<- the entry points (`jobs.cli`, `jobs.__main__`). A module may import its own layer and the
ones below; the core imports only the core. Imports are read with `ast` (lazy imports inside
functions count too), so a cycle hidden in a function body fails here as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[2] / "jobs"
MAX_LINES = 400

RANK = {"core": 0, "config": 1, "adapters": 2, "reports": 2, "run": 3, "commands": 4}
TOP = 5  # jobs/cli.py, jobs/__main__.py, jobs/__init__.py


def modules() -> list[Path]:
    return sorted(JOBS.rglob("*.py"))


def layer(module: str) -> str | None:
    """`jobs.core.model` -> "core"; None for a module at the top of the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else None


def rank(module: str) -> int:
    name = layer(module)
    return RANK[name] if name is not None else TOP


def module_name(path: Path) -> str:
    rel = path.relative_to(JOBS.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every `jobs...` module the file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "jobs")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "jobs":  # `from jobs import core` names a sub-package
                found.update(f"jobs.{a.name}" for a in node.names)
            elif node.module.startswith("jobs."):
                found.add(node.module)
    return found


def arrows() -> list[tuple[str, str]]:
    return [(module_name(p), target) for p in modules() for target in sorted(imports(p))]


def test_every_module_lives_in_a_layer_folder() -> None:
    loose = [module_name(p) for p in modules() if layer(module_name(p)) is None]
    assert sorted(loose) == ["jobs", "jobs.__main__", "jobs.cli"]
    assert {p.name for p in JOBS.iterdir() if p.is_dir() and p.name != "__pycache__"} == \
        set(RANK)


def test_the_core_imports_nothing_outside_the_core() -> None:
    bad = [(src, dst) for src, dst in arrows()
           if layer(src) == "core" and dst != "jobs" and layer(dst) != "core"]
    assert bad == []


def test_no_import_points_back_up() -> None:
    up = [(src, dst) for src, dst in arrows() if rank(dst) > rank(src)]
    assert up == [], "imports from a higher layer: " + ", ".join(f"{s} -> {d}" for s, d in up)


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The checks above must be able to fail: a core module importing a command is caught.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from jobs.commands.daemon import cmd_daemon\n")
    (dst,) = imports(sample)
    assert rank(dst) > rank("jobs.core.model") and layer(dst) == "commands"


COMPOSITION_ROOT = "jobs.run.compose"


def adapter_imports_in_run(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The arrows from `jobs.run` into `jobs.adapters` that do not leave the composition root."""
    return [(src, dst) for src, dst in found
            if layer(src) == "run" and layer(dst) == "adapters" and src != COMPOSITION_ROOT]


def test_in_the_run_layer_only_the_composition_root_imports_adapters() -> None:
    # The run talks to the outside through the ports; `jobs.run.compose` builds the adapters.
    bad = adapter_imports_in_run(arrows())
    assert bad == [], "run modules importing adapters: " + ", ".join(f"{s} -> {d}"
                                                                      for s, d in bad)


def test_the_composition_root_check_sees_a_run_module_importing_an_adapter(
        tmp_path: Path) -> None:
    # The check above must be able to fail: a lazy adapter import in a run module is caught,
    # the same import in the composition root is not.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from jobs.adapters.ledger import Ledger\n")
    (dst,) = imports(sample)
    assert adapter_imports_in_run([("jobs.run.service", dst)]) == [("jobs.run.service", dst)]
    assert adapter_imports_in_run([(COMPOSITION_ROOT, dst)]) == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(JOBS.parent)))
def test_no_module_passes_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by concern"
