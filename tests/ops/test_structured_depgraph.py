"""prune.structured across residual additions, depthwise and grouped convolutions (depgraph.py):
coupled channels go together, the model runs, and kept indices map every tensor back to the base."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from modelbonsai.ops.registry import CompressedModel, OpError, replay_edits
from modelbonsai.ops.structured import find_units


class TinyResNet(nn.Module):
    """stem -> [depthwise + pointwise residual block] -> [grouped-conv residual block] -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise
        self.bn1 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.bn2 = nn.BatchNorm2d(16)
        self.g1 = nn.Conv2d(16, 32, 3, padding=1, groups=4)  # grouped: 4 in / 8 out per group
        self.bn3 = nn.BatchNorm2d(32)
        self.g2 = nn.Conv2d(32, 16, 1, groups=4)  # grouped: 8 in / 4 out per group
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.stem(x)))
        h = h + self.bn2(self.pw(F.relu(self.bn1(self.dw(h)))))
        h = h + self.g2(F.relu(self.bn3(self.g1(h))))
        return self.fc(h.mean((2, 3)))


def build() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = TinyResNet()
        for bn in (m.bn0, m.bn1, m.bn2, m.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            with torch.no_grad():
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
    return m.eval()


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _removed(kept: list[int], size: int) -> list[int]:
    return [i for i in range(size) if i not in set(kept)]


def test_the_residual_cnn_is_found_as_two_coupled_groups() -> None:
    found = find_units(build())
    assert set(found.units) == {"stem", "g1"}
    trunk = found.units["stem"]
    # one space: everything adding into the residual stream, and everything reading it
    assert {s.module for s in trunk.slices} == {"stem", "bn0", "dw", "bn1", "pw", "bn2", "g1", "g2", "fc"}
    assert trunk.size == 4  # 16 channels in 4 blocks (the grouped convs' groups) of 4 positions
    # g1's 32 outputs are read by g2 as 4 groups of 8 inputs: 8 positions, each in every group
    assert found.units["g1"].size == 8
    assert {s.module for s in found.units["g1"].slices} == {"g1", "bn3", "g2"}
    assert found.problems["fc"] == "it is an output of the model"


def test_prune_residual_cnn_keeps_it_running_and_maps_to_the_base(ctx, run_op) -> None:
    base = build()
    cm = run_op("prune.structured", CompressedModel(build()), {"amount": 0.5}, ctx)
    m = cm.module
    # trunk: 2 of 4 positions in each of the 4 blocks -> 8 channels
    kept = cm.kept_indices["stem.weight"][0]
    assert len(kept) == 8
    pos = [k for k in kept if k < 4]
    assert kept == [b * 4 + p for b in range(4) for p in pos]
    for name, dim in [("bn0.weight", 0), ("dw.weight", 0), ("pw.weight", 0), ("pw.weight", 1),
                      ("bn2.running_mean", 0), ("g2.weight", 0), ("fc.weight", 1)]:  # fmt: skip
        assert cm.kept_indices[name][dim] == kept, name
    assert cm.kept_indices["g1.weight"][1] == pos  # one group's inputs: local positions
    # the importance of a position: L2 over every weight writing those channels, in every block
    score = torch.zeros(4)
    for w in (base.stem.weight, base.dw.weight, base.pw.weight, base.g2.weight):
        score += w.detach().reshape(4, 4, -1).pow(2).sum((0, 2))
    assert pos == sorted(score.argsort(descending=True)[:2].tolist())
    # shapes and module attributes
    assert m.stem.weight.shape == (8, 3, 3, 3) and m.bn0.num_features == 8
    assert m.dw.weight.shape == (8, 1, 3, 3) and m.dw.groups == 8 and m.dw.in_channels == 8
    assert m.pw.weight.shape == (8, 8, 1, 1)
    kept_g1 = cm.kept_indices["g1.weight"][0]
    assert len(kept_g1) == 16 and m.g1.weight.shape == (16, 2, 3, 3) and m.g1.groups == 4
    assert m.g2.weight.shape == (8, 4, 1, 1) and m.g2.in_channels == 16 and m.g2.out_channels == 8
    assert m.fc.weight.shape == (10, 8) and m.fc.in_features == 8
    # values are the base's, at the kept indices
    assert torch.equal(m.g1.weight, base.g1.weight[kept_g1][:, pos])
    assert torch.equal(m.pw.weight, base.pw.weight[kept][:, kept])
    # removing channels = cutting what reads them in the base
    g1_pos = [k for k in kept_g1 if k < 8]
    with torch.no_grad():
        gone = _removed(kept, 16)
        base.pw.weight[:, gone] = 0
        base.fc.weight[:, gone] = 0
        base.g1.weight[:, _removed(pos, 4)] = 0
        base.g2.weight[:, _removed(g1_pos, 8)] = 0
        torch.testing.assert_close(m(X), base(X), rtol=1e-5, atol=1e-5)
    # and the edits replay on a fresh model
    fresh = build()
    replay_edits(fresh, cm.edits)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(X), m(X))


class _Shared(nn.Module):
    """One conv applied twice (shared weights) and a residual around it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        h = h + torch.relu(self.shared(h))
        h = h + torch.relu(self.shared(h))
        return self.head(h)


def test_a_layer_called_twice_prunes_its_calls_alike(ctx, run_op) -> None:
    torch.manual_seed(0)
    model = _Shared().eval()
    cm = run_op("prune.structured", CompressedModel(model), {"amount": 0.25}, ctx)
    assert model.shared.weight.shape == (6, 6, 3, 3) and model.a.out_channels == 6
    assert cm.kept_indices["shared.weight"][0] == cm.kept_indices["a.weight"][0]
    assert model(torch.randn(1, 3, 5, 5)).shape == (1, 4, 5, 5)


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.cat([self.a(x), self.b(x)], 1))


def test_concatenation_is_refused_with_a_reason(ctx, run_op) -> None:
    found = find_units(_Concat())
    assert "cat" in found.problems["a"] and "cat" in found.problems["b"]
    with pytest.raises(OpError, match="no layer can be structurally pruned"):
        run_op("prune.structured", CompressedModel(_Concat()), {}, ctx)
    with pytest.raises(OpError) as e:
        run_op("prune.structured", CompressedModel(_Concat()), {"include": "a.weight"}, ctx)
    assert e.value.layer == "a"


def test_include_one_producer_prunes_its_whole_group(ctx, run_op) -> None:
    model = build()
    cm = run_op("prune.structured", CompressedModel(model), {"amount": 0.5, "include": "pw.weight"}, ctx)
    assert model.stem.out_channels == 8 and model.g1.out_channels == 32  # g1's group untouched
    assert "g1.weight" not in cm.kept_indices or 0 not in cm.kept_indices["g1.weight"]
    assert copy.deepcopy(model)(X).shape == (2, 10)


def test_pruned_residual_cnn_stores_and_reloads(tmp_path, ctx, run_op) -> None:
    from modelbonsai.artifacts import load_artifact, save_artifact

    cm = run_op("prune.structured", CompressedModel(build()), {"amount": 0.25}, ctx)
    size = save_artifact(cm, tmp_path / "a")
    loaded = load_artifact(tmp_path / "a", build)
    assert loaded.kept_indices == cm.kept_indices
    assert loaded.module.g1.groups == 4 and loaded.module.dw.groups == 12
    with torch.no_grad():
        assert torch.equal(loaded.module(X), cm.module(X))
    params = sum(p.numel() for p in cm.module.parameters())
    assert size.bytes_total > params * 4  # dense float32 tensors, plus the manifest
