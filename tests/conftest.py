"""Shared test set-up: paths to the repository, its examples and the shared real traces."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


@pytest.fixture()
def repo_root() -> Path:
    return REPO
