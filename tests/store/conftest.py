"""The store tests' fixture: a fresh store in a temporary workspace, closed after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbonsai.store import LineageStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LineageStore]:
    s = LineageStore.open(tmp_path)
    yield s
    s.close()
