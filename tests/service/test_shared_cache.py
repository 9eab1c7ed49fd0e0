"""The CLI and the language server share one road to the engine (the service) and so one result
cache: a `bonsai compare` after the same comparison through the service reads it from the
store's cache, and the other way round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelbonsai import wire
from modelbonsai.cli import main
from modelbonsai.compare import behavior as B
from modelbonsai.compare import weights as W
from modelbonsai.service import CompareBehaviorJob, CompareWeightsJob, QuietReporter, RunJob, handle
from modelbonsai.store import LineageStore
from support.workspace import EXPERIMENT_HEAD, write_workspace

EXPERIMENT = (
    EXPERIMENT_HEAD
    + """\
  - name: pruned
    ops:
      - prune.magnitude: {sparsity: 0.5}
  - name: int4
    ops:
      - quantize.weights: {bits: 4}
"""
)


@pytest.fixture
def computed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The toy workspace run, and the other model of every weights / behaviour comparison the
    engine computes from then on (a cache hit computes none)."""
    exp = write_workspace(tmp_path, EXPERIMENT, "")
    assert not handle(RunJob(file=str(exp), folder=str(tmp_path), device="cpu")).failed
    seen: dict[str, list[str]] = {"weights": [], "behavior": []}
    weights, behavior = W.compare_weights, B.compare_behavior

    def count_weights(base: Any, others: dict[str, Any], **kw: Any) -> Any:
        seen["weights"] += list(others)
        return weights(base, others, **kw)

    def count_behavior(base: Any, others: dict[str, Any], **kw: Any) -> Any:
        seen["behavior"] += list(others)
        return behavior(base, others, **kw)

    monkeypatch.setattr(W, "compare_weights", count_weights)
    monkeypatch.setattr(B, "compare_behavior", count_behavior)
    monkeypatch.chdir(tmp_path)
    return seen


def _ids(root: Path) -> dict[str, str]:
    with LineageStore.open(root) as store:
        return {m.name: m.id for m in store.list_models()}


def _cli_compare(base: str, other: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["compare", base, other, "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out)["others"][other])


def test_the_cli_reads_what_the_service_compared(
    computed: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _ids(Path.cwd())
    pages = QuietReporter()
    folder = str(Path.cwd())
    handle(CompareWeightsJob(folder=folder, base=ids["toy"], models=(ids["pruned"],)), pages)
    handle(CompareBehaviorJob(folder=folder, base=ids["toy"], models=(ids["pruned"],)), pages)
    assert computed == {"weights": [ids["pruned"]], "behavior": [ids["pruned"]]}

    out = _cli_compare("toy", "pruned", capsys)
    assert computed == {"weights": [ids["pruned"]], "behavior": [ids["pruned"]]}  # nothing again
    weights, behavior = (wire.decode_result(p).meta for p in pages.pages)
    assert out["weights"] == next(n for n in weights["tree"] if n["parent"] is None)
    assert out["behavior"] == behavior["summary"] and out["not_compared"] == []
    # half of the 4x16 + 16x3 weights are zero, none of the 16 + 3 biases
    assert out["weights"]["metrics"]["sparsity_other"] == pytest.approx(56 / 131)


def test_the_service_reads_what_the_cli_compared(
    computed: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _ids(Path.cwd())
    out = _cli_compare("toy", "int4", capsys)
    assert computed == {"weights": [ids["int4"]], "behavior": [ids["int4"]]}

    pages = QuietReporter()
    folder = str(Path.cwd())
    handle(CompareWeightsJob(folder=folder, base="toy", models=("int4",)), pages)
    handle(CompareBehaviorJob(folder=folder, base="toy", models=("int4",)), pages)
    assert computed == {"weights": [ids["int4"]], "behavior": [ids["int4"]]}  # both from the cache
    weights, behavior = (wire.decode_result(p).meta for p in pages.pages)
    assert weights["other"] == ids["int4"] and behavior["summary"] == out["behavior"]
