"""The fault-injection suite runs only when asked for (`make test-faults`, `pytest -m faults`
or NALAR_TEST_FAULTS=1): a plain `pytest` / `make test` deselects it."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection suite (make test-faults); "
                            "deselected unless -m names it or NALAR_TEST_FAULTS=1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "faults" in (config.getoption("markexpr") or "") or \
            os.environ.get("NALAR_TEST_FAULTS", "").lower() in ("1", "true", "yes"):
        return
    drop = [i for i in items if i.get_closest_marker("faults") is not None]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i.get_closest_marker("faults") is None]
