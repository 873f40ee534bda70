"""The `--soak` and `--soak-minutes` options, as a plugin of their own.

The chaos conftest imports the hook, so `pytest tests/chaos --soak` just works. From the
repository root, pytest reads only the options of the conftests it loads first; there,
`pytest -p tests.chaos.soak_option --soak` (or this module in the root conftest's
`pytest_plugins`) registers them. Registered twice, the second registration is a no-op.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos")
    try:
        group.addoption("--soak", action="store_true", default=False,
                        help="run the long chaos soak tests (tests marked soak)")
        group.addoption("--soak-minutes", type=float, default=5.0,
                        help="how long each soak test keeps going (default 5 minutes)")
    except ValueError:  # already added: this hook is both a plugin and in the chaos conftest
        pass
