"""The Layers panel's one-click fixes (extension/src/fixVariant.ts) write experiment files the
server accepts: every expected file of tests/fixtures/fix-variant/ (the vitest suite checks the
extension writes exactly those) parses with no problem at all, its patterns match parameters of
the base model, and the new variant expands to the ops it says. The extension's list of
weight-targeting ops is checked against the op registry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from modelbonsai.experiment import check_patterns, parse_experiment
from modelbonsai.ops import builtin  # noqa: F401  (registers the built-in ops)
from modelbonsai.ops.registry import all_ops, get_op

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "fix-variant"
CASES: list[dict[str, Any]] = json.loads((FIXTURES / "cases.json").read_text())
LINEAGE: dict[str, list[dict[str, Any]]] = json.loads((FIXTURES / "lineage.json").read_text())

# parameter names of the two samples' base models (MiniLM's: the ones the cases name)
PARAMS = {
    "minilm": [
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.output.dense.weight",
        "encoder.layer.0.attention.output.LayerNorm.weight",
        "encoder.layer.0.attention.output.LayerNorm.bias",
    ],
    "digits": ["0.weight", "1.weight", "1.bias", "3.weight", "4.weight", "4.bias", "16.weight", "16.bias"],
}


def _workspace(tmp: Path, kind: str) -> None:
    """The paths the sample files name, so that no missing-path problem hides another."""
    if kind == "minilm":
        (tmp / "model").mkdir()
        (tmp / "model" / "config.json").write_text("{}")
        (tmp / "data").mkdir()
        (tmp / "data" / "sentences.jsonl").write_text('{"text": "a"}\n')
    else:
        (tmp / "model").mkdir()
        (tmp / "model" / "model.safetensors").write_bytes(b"")
        (tmp / "model.py").write_text("def build():\n    return None\n")
        (tmp / "data").mkdir()


@pytest.mark.parametrize("case", CASES, ids=[c["expected"] for c in CASES])
def test_fixed_file_parses_with_no_problem(case: dict[str, Any], tmp_path: Path) -> None:
    _workspace(tmp_path, case["lineage"])
    text = (FIXTURES / case["expected"]).read_text()
    res = parse_experiment(text, tmp_path / case["file"])
    assert [(p.code, p.message) for p in res.problems] == []
    assert res.experiment is not None
    assert check_patterns(res.experiment, PARAMS[case["lineage"]]) == []
    new = res.experiment.variant(case["variant"])
    assert new is not None
    # the new variant: the model's steps as the lineage has them (each op's parameters resolve to
    # the same dict), the patterns added to exclude or restored at the end; from the model's origin
    models = {m["id"]: m for m in LINEAGE[case["lineage"]]}
    chain = [models[case["model"]]]
    ops = [c.name for c in new.ops]
    want = len(ops) - (1 if case["action"] == "restore" else 0)
    while len(chain) < want:
        chain.insert(0, models[chain[0]["parent"]])
    origin = models[chain[0]["parent"]]
    assert new.parent == ("base" if origin["parent"] is None else origin["name"])
    for call, step in zip(new.ops, chain, strict=False):
        op = get_op(call.name)
        assert op is not None and call.name == step["op"]
        params = op.resolve(dict(call.params))
        expected = dict(step["params"])
        if case["action"] == "exclude" and {"include", "exclude"} <= {p.name for p in op.params}:
            expected["exclude"] = [*expected.get("exclude", []), *case["patterns"]]
        assert params == expected
    if case["action"] == "restore":
        assert (new.ops[-1].name, new.ops[-1].params) == ("restore", {"patterns": case["patterns"]})


def test_targeting_ops_match_the_registry() -> None:
    """The extension adds a layer to `exclude` of the ops that select parameters by include and
    exclude; restore's exclude means "not restored" and is left alone."""
    src = (REPO / "extension" / "src" / "fixVariant.ts").read_text()
    block = re.search(r"TARGETING_OPS[^=]*= new Set\(\[(.*?)\]\)", src, re.S)
    assert block is not None
    listed = set(re.findall(r"'([^']+)'", block.group(1)))
    registry = {
        op.name
        for op in all_ops()
        if op.source == "builtin" and {"include", "exclude"} <= {p.name for p in op.params}
    }
    assert listed == registry
