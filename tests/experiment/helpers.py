"""Helpers for the experiment-file tests: a small workspace, test ops, exact positions."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from modelbonsai.experiment import ParseResult, Problem, parse_experiment
from modelbonsai.ops.registry import CompressedModel, OpContext, Param, get_op, register_op
from support.locate import line_col


def _identity(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Test op: returns the model unchanged."""
    return cm


def register_test_ops() -> None:
    """Ops under `test.*` so the tests do not depend on the built-in ops' exact parameters."""
    if get_op("test.scale") is not None:
        return
    register_op(
        "test.scale",
        family="test",
        summary="Scales weights (test op).",
        source="test",
        params=[
            Param(
                "factor",
                "float",
                "scale factor",
                required=True,
                minimum=0.0,
                maximum=10.0,
                exclusive_minimum=True,
            ),
            Param("mode", "enum", "how", default="a", choices=("a", "b")),
            Param("flag", "bool", "a switch", default=False),
            Param("steps", "int", "how many steps", default=1, minimum=1, maximum=100),
            Param("count", "int", "not sweepable", default=1, minimum=0, sweepable=False),
            Param("include", "patterns", "parameters to touch", default=None),
            Param("exclude", "patterns", "parameters to leave", default=None),
            Param("dims", "int_list", "dimensions", default=None),
        ],
    )(_identity)
    register_op("test.noop", family="test", summary="Does nothing (test op).", source="test")(_identity)
    register_op(
        "test.calibrate", family="test", summary="Needs a task (test op).", source="test", needs_task=True
    )(_identity)


def make_workspace(root: Path) -> Path:
    """A folder with an HF-like model folder, data, a factory file and a user ops file."""
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"]})
    )
    (root / "data").mkdir()
    (root / "weights.safetensors").write_bytes(b"")
    (root / "build.py").write_text("def build():\n    return None\n")
    (root / "my_ops.py").write_text(
        "from modelbonsai.ops.registry import register_op\n\n"
        "@register_op('user.double', family='user', summary='x', source='user')\n"
        "def double(cm, params, ctx):\n    return cm\n"
    )
    return root


def parse(text: str, root: Path) -> ParseResult:
    return parse_experiment(textwrap.dedent(text), root / "exp.bonsai.yaml")


def pos(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """(line, col) of the nth occurrence of `needle` in the text dedented as `parse` dedents it;
    columns in code points, as the parser counts them."""
    return line_col(textwrap.dedent(text), needle, nth)


def only(result: ParseResult, code: str) -> Problem:
    """The single problem with `code` (fails listing all problems otherwise)."""
    found = [p for p in result.problems if p.code == code]
    assert len(found) == 1, f"expected one {code}, got {[str(p) + ' ' + p.code for p in result.problems]}"
    return found[0]


def at(p: Problem) -> tuple[int, int, int, int]:
    r = p.range
    return r.start_line, r.start_col, r.end_line, r.end_col
