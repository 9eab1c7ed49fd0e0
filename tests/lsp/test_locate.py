"""support/locate.py, which the LSP and the experiment-file tests find their positions with: a
wrong column there would make both suites check the wrong place and still pass."""

from __future__ import annotations

import pytest

from support.locate import line_col, position_of, range_of

# "é" is one UTF-16 unit, "🌳" two (a surrogate pair): columns after them differ by unit
TEXT = "name: é🌳 tree\n  ops: [tree, tree]\n"


def test_columns_are_code_points_or_utf16_units() -> None:
    assert line_col(TEXT, "tree") == (0, 9)
    assert line_col(TEXT, "tree", utf16=True) == (0, 10)
    p = position_of(TEXT, "tree")
    assert (p.line, p.character) == (0, 10)
    assert line_col(TEXT, "tree", 2, offset=2) == (1, 16)
    assert range_of(TEXT, "🌳") == (0, 7, 0, 9)


def test_a_token_that_is_not_there_fails() -> None:
    with pytest.raises(ValueError, match="does not occur"):
        line_col(TEXT, "forest")
    with pytest.raises(ValueError, match="3 time"):
        position_of(TEXT, "ops", 2)
    with pytest.raises(ValueError, match="outside"):
        line_col(TEXT, "tree", offset=5)
