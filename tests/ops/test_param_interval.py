"""A parameter's range is written one way everywhere (hover, completion, op docs, README)."""

from __future__ import annotations

import pytest

from modelbonsai.experiment.document import param_detail
from modelbonsai.ops.registry import Param


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({}, ""),
        ({"minimum": 0, "maximum": 1, "exclusive_maximum": True}, "[0, 1)"),
        ({"minimum": 0, "exclusive_minimum": True}, "(0, inf)"),
        ({"maximum": 2.5}, "(-inf, 2.5]"),
        ({"minimum": 1, "maximum": 10_000_000}, "[1, 10000000]"),
    ],
)
def test_interval_notation(kw: dict[str, float | bool], text: str) -> None:
    p = Param("x", "float", "doc", **kw)  # type: ignore[arg-type]
    assert p.interval() == text
    assert param_detail(p) == f"float {text}".rstrip()  # the hover and completion detail
