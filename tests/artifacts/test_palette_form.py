"""The `palette` stored form in the comparison: the weight comparison streams palettized tensors by
range (never decoding them whole) and gets the numbers of a direct computation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbonsai.artifacts import StoredTensors, save_artifact
from modelbonsai.compare import stats as S
from modelbonsai.compare.sources import artifact_source
from modelbonsai.compare.weights import compare_weights
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op


def mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        return nn.Sequential(
            nn.Linear(96, 200), nn.ReLU(), nn.Linear(200, 72), nn.ReLU(), nn.Linear(72, 8)
        ).eval()


@pytest.mark.parametrize(
    "params",
    [
        {"n_bits": 3},
        {"n_bits": 4, "granularity": "grouped-channel", "group_size": 8, "per_channel_scale": True},
    ],
)
def test_weight_comparison_reads_palettes_by_range(
    params: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = mlp()
    save_artifact(CompressedModel(base), tmp_path / "base")
    op = get_op("palettize")
    assert op is not None
    cm = op.fn(CompressedModel(mlp()), op.resolve(params), OpContext(device=torch.device("cpu"), seed=0))
    size = save_artifact(cm, tmp_path / "pal")
    assert {size.forms[n] for n in ("0.weight", "2.weight", "4.weight")} == {"palette"}

    def no_whole(self: StoredTensors, name: str) -> torch.Tensor:
        raise AssertionError(f"{name} was decoded whole")

    monkeypatch.setattr(StoredTensors, "tensor", no_whole)
    monkeypatch.setattr(S, "CHUNK", 1000)  # ragged chunks across rows and LUT groups
    got = compare_weights(artifact_source(tmp_path / "base"), {"p": artifact_source(tmp_path / "pal")})["p"]
    for name in ("0.weight", "2.weight", "4.weight"):
        st = got.tensor(name).stats
        assert st is not None
        w = base.get_parameter(name).detach().double()
        q = cm.module.get_parameter(name).detach().double()
        sqnr = 10 * math.log10(float(w.pow(2).sum() / (w - q).pow(2).sum()))
        assert st.sqnr_db == pytest.approx(sqnr, abs=1e-4)
        assert st.max_abs_diff == pytest.approx(float((w - q).abs().max()), rel=1e-6)
