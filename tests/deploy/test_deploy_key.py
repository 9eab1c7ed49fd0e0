"""The experiment file's `deploy:` key: parsed (the file's, a variant's override, the mapping
form), bad input reported at the exact place, completion and hover of the targets, the schema."""

from __future__ import annotations

from pathlib import Path

from modelbonsai.experiment import parse_experiment
from modelbonsai.experiment.document import completions_at, hover_at
from modelbonsai.experiment.schema import json_schema

HEAD = """\
base:
  load: m.py:build
"""
VARIANTS = """\
variants:
  - name: a
    ops: [prune.magnitude]
  - name: b
    ops: [prune.magnitude]
    deploy: []
  - name: c
    ops: [prune.magnitude]
    deploy: {targets: [executorch], tolerance: 0.01}
"""


def _parse(text: str, tmp_path: Path):
    (tmp_path / "m.py").write_text("def build():\n    pass\n")
    return parse_experiment(text, tmp_path / "x.bonsai.yaml")


def test_file_and_variant_deploy(tmp_path: Path) -> None:
    r = _parse(HEAD + "deploy: [onnxruntime, executorch]\n" + VARIANTS, tmp_path)
    assert r.ok, r.problems
    e = r.experiment
    assert e.deploy_for(None).targets == ("onnxruntime", "executorch")  # the base model
    assert e.deploy_for("a").targets == ("onnxruntime", "executorch")  # inherited
    assert e.deploy_for("b") is None  # `deploy: []` turns it off
    c = e.deploy_for("c")
    assert c.targets == ("executorch",) and c.tolerance == 0.01
    # the base model's own `deploy:` replaces the file's for it alone
    e3 = _parse(HEAD + "  deploy: [executorch]\ndeploy: [onnxruntime]\n" + VARIANTS, tmp_path).experiment
    assert e3.deploy_for(None).targets == ("executorch",) and e3.deploy_for("a").targets == ("onnxruntime",)
    # without a file-level deploy, only the variant that asks gets targets
    e2 = _parse(HEAD + VARIANTS, tmp_path).experiment
    assert e2.deploy_for(None) is None and e2.deploy_for("a") is None
    assert e2.deploy_for("c").targets == ("executorch",)


def test_bad_deploy_values_are_reported_where_they_are(tmp_path: Path) -> None:
    text = (
        HEAD
        + "deploy: [onnxruntime, onnxrutime, 3, onnxruntime]\n"
        + VARIANTS.replace("targets: [executorch], tolerance: 0.01", "targts: [x], tolerance: -1")
        + "  - name: d\n    ops: [prune.magnitude]\n    deploy: {tolerance: 0.1}\n"
    )
    r = _parse(text, tmp_path)
    got = {(p.range.start_line, p.range.start_col, p.range.end_col, p.code): p.message for p in r.problems}
    line = 2
    assert (
        got[(line, 22, 32, "out-of-range")]
        == "unknown deploy target 'onnxrutime'; did you mean 'onnxruntime'?"
    )
    assert "got the number 3" in got[(line, 34, 35, "wrong-type")]
    assert "listed twice" in got[(line, 37, 48, "duplicate-name")]
    msgs = [p.message for p in r.problems]
    assert any("'tolerance' is a positive number" in m for m in msgs)
    assert any("unknown key 'targts' in deploy" in m for m in msgs)
    assert sum("'deploy' needs `targets:`" in m for m in msgs) == 1  # d's; c's misspelt key is one problem
    assert not r.ok


def test_completion_and_hover_of_targets() -> None:
    text = HEAD + "deploy: [onnxruntime, exec]\n" + VARIANTS
    labels = [c.label for c in completions_at(text, 2, 24)]
    assert labels == ["onnxruntime", "executorch"]
    h = hover_at(text, 2, 12)
    assert h is not None and "deploy target `onnxruntime`" in h.markdown and "--format onnx" in h.markdown
    key = hover_at(text, 2, 2)
    assert key is not None and "**deploy**" in key.markdown
    assert "deploy" in [c.label for c in completions_at(HEAD + VARIANTS, 2, 5)]  # a variant key
    in_mapping = HEAD + VARIANTS
    assert "executorch" in [c.label for c in completions_at(in_mapping, 10, 25)]


def test_schema_declares_deploy() -> None:
    s = json_schema()
    top = s["properties"]["deploy"]
    variant = s["properties"]["variants"]["items"]["properties"]["deploy"]
    assert top["anyOf"][0]["items"]["enum"] == ["onnxruntime", "executorch"]
    assert variant["anyOf"][1]["properties"]["tolerance"]["exclusiveMinimum"] == 0
