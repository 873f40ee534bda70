"""The wheel ships the product only: every package under jobs/, its templates, no sandbox."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def shipped() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return find_packages(str(ROOT), **config["packages"]["find"])


def test_the_wheel_holds_every_package_of_jobs_and_nothing_else() -> None:
    packages = shipped()
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "jobs").rglob(
        "__init__.py")}
    assert set(packages) == on_disk
    assert not [p for p in packages if p.split(".")[0] != "jobs"]


def test_the_templates_ship_with_the_renderer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    (package, patterns), = config["package-data"].items()
    folder = ROOT / package.replace(".", "/")
    assert (folder / "render.py").exists()
    assert sorted(p.name for pattern in patterns for p in folder.glob(pattern)) == sorted(
        p.name for p in (folder / "templates").iterdir())
