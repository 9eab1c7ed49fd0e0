"""Comparing stored artifacts streams ranges of every stored form and gives the whole-tensor numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai.artifacts import StoredTensors, save_artifact
from modelbonsai.compare import stats as S
from modelbonsai.compare.sources import ArtifactSource, FunctionSource, artifact_source
from modelbonsai.compare.weights import compare_weights
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

CTX = OpContext(device=torch.device("cpu"), seed=0)


def mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        return nn.Sequential(
            nn.Linear(96, 200), nn.ReLU(), nn.Linear(200, 72), nn.ReLU(), nn.Linear(72, 10)
        ).eval()


def apply(cm: CompressedModel, name: str, **params: Any) -> CompressedModel:
    op = get_op(name)
    assert op is not None
    return op.fn(cm, op.resolve(params), CTX)


@pytest.fixture()
def stored(tmp_path: Path) -> tuple[Path, Path]:
    base = CompressedModel(mlp())
    save_artifact(base, tmp_path / "base")
    m = mlp()
    with torch.no_grad():
        m[0].weight[torch.rand_like(m[0].weight) < 0.7] = 0.0  # pruned, then quantized: packed-bitmask
        m[4].weight[torch.rand_like(m[4].weight) < 0.6] = 0.0
    other = apply(CompressedModel(m), "quantize.weights", bits=4, granularity="group", group_size=8,
                  symmetric=False, include=["0.weight", "2.weight"])  # fmt: skip
    forms = save_artifact(other, tmp_path / "other").forms
    assert (
        forms["0.weight"] == "packed-bitmask"
        and forms["2.weight"] == "packed"
        and forms["4.weight"] == "bitmask"
    )
    return tmp_path / "base", tmp_path / "other"


def test_artifact_comparison_streams_ranges_and_matches_whole_tensors(
    stored: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_dir, other_dir = stored
    # reference: the same comparison over whole decoded tensors (no range readers)
    whole_b, whole_o = ArtifactSource(base_dir), ArtifactSource(other_dir)
    ref = compare_weights(
        FunctionSource({n: whole_b.shape(n) for n in whole_b.names()}, whole_b.get),
        {"o": FunctionSource({n: whole_o.shape(n) for n in whole_o.names()}, whole_o.get)},
        hist_sample=None,
    )["o"]

    def no_whole(self: StoredTensors, name: str) -> torch.Tensor:
        raise AssertionError(f"{name} was decoded whole")

    monkeypatch.setattr(StoredTensors, "tensor", no_whole)
    monkeypatch.setattr(S, "CHUNK", 1000)  # ragged chunks across rows and groups
    got = compare_weights(artifact_source(base_dir), {"o": artifact_source(other_dir)}, hist_sample=None)["o"]
    for a, b in zip(got.tensors, ref.tensors, strict=True):
        assert a.name == b.name and a.status == b.status == "ok"
        assert a.stats is not None and b.stats is not None
        for k in ("n", "finite", "zeros_base", "zeros_other", "zeros_both", "max_abs_diff"):
            assert getattr(a.stats, k) == getattr(b.stats, k), (a.name, k)
        for k in ("sum_b2", "sum_o2", "sum_bo", "sum_d2"):
            assert getattr(a.stats, k) == pytest.approx(getattr(b.stats, k), rel=1e-6), (a.name, k)
        np.testing.assert_array_equal(a.stats.rel_hist, b.stats.rel_hist)
    assert got.tensor("0.weight").stats.zeros_other >= int(0.7 * 200 * 96 * 0.9)  # type: ignore[union-attr]


def test_bad_artifact_is_a_compare_error(tmp_path: Path) -> None:
    from modelbonsai.compare import CompareError

    with pytest.raises(CompareError, match="manifest"):
        artifact_source(tmp_path / "missing")
