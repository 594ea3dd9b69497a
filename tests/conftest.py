"""Shared test set-up: paths to the repository, its examples and the shared real traces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SHARED_REAL = REPO.parent / "shared" / "data" / "real"

LONG_RUN_TIMEOUT = 4 * 3600  # seconds, for `make long`


@pytest.fixture()
def repo_root() -> Path:
    return REPO


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long property runs (`@pytest.mark.slow`) run only with PRICING_LAB_LONG=1 (`make long`).

    They are deselected, not skipped, so the default run reports only tests that ran. When they
    run, they get LONG_RUN_TIMEOUT instead of the default timeout: 20,000 ledger scenarios take
    about half an hour.
    """
    if os.environ.get("PRICING_LAB_LONG") == "1":
        for item in items:
            if item.get_closest_marker("slow"):
                item.add_marker(pytest.mark.timeout(LONG_RUN_TIMEOUT))
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
