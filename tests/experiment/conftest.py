from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import make_workspace, register_test_ops

register_test_ops()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)
