"""Low-rank factorisation: rank and energy exactness, skipping, replay, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelbonsai.ops.lowrank import LowRankConv2d, LowRankLinear, choose_rank
from modelbonsai.ops.registry import CompressedModel, OpContext, OpError, replay_edits


def test_rank_gives_best_rank_r_approximation(tiny_cnn, tiny_cnn_factory, ctx, run_op) -> None:
    base = tiny_cnn_factory()
    messages: list[str] = []
    ctx.progress = lambda f, m: messages.append(m)
    cm = run_op("lowrank", CompressedModel(tiny_cnn), {"rank": 4}, ctx)
    fc1 = tiny_cnn.fc1
    assert (
        isinstance(fc1, LowRankLinear)
        and fc1.first.weight.shape == (4, 256)
        and fc1.second.weight.shape == (32, 4)
    )
    w = base.fc1.weight.detach()
    s = torch.linalg.svdvals(w)
    err = torch.linalg.matrix_norm(w - fc1.second.weight @ fc1.first.weight)
    assert torch.isclose(err, s[4:].pow(2).sum().sqrt(), rtol=1e-4)
    assert torch.equal(fc1.second.bias, base.fc1.bias)
    # fc2 (4x32) would grow at rank 4; 3x3 convs are not targets by default
    assert isinstance(tiny_cnn.fc2, nn.Linear) and isinstance(tiny_cnn.conv1, nn.Conv2d)
    assert any("fc2" in m and "would not save" in m for m in messages)
    assert cm.edits == [{"kind": "lowrank.factorize", "module": "fc1", "rank": 4}]


def test_energy_picks_smallest_rank() -> None:
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])  # energies 9, 4, 1, 0.25 of 14.25
    assert choose_rank(s, None, 9 / 14.25) == 1
    assert choose_rank(s, None, 9 / 14.25 + 1e-3) == 2
    assert choose_rank(s, None, 0.99) == 4
    assert choose_rank(s, None, 1.0) == 4
    assert choose_rank(s, 10, None) == 4


def test_energy_on_model_and_replay(tiny_gpt2, tiny_gpt2_factory, gpt2_input, ctx, run_op) -> None:
    cm = run_op("lowrank", CompressedModel(tiny_gpt2), {"energy": 0.5, "include": "*mlp.c_fc.weight"}, ctx)
    base = tiny_gpt2_factory()
    for i, edit in enumerate(cm.edits):
        w = base.transformer.h[i].mlp.c_fc.weight.detach().t()
        s = torch.linalg.svdvals(w)
        r = edit["rank"]
        frac = s.pow(2).cumsum(0) / s.pow(2).sum()
        assert frac[r - 1] >= 0.5 and (r == 1 or frac[r - 2] < 0.5)
        fc = tiny_gpt2.transformer.h[i].mlp.c_fc
        assert isinstance(fc, LowRankLinear) and fc.rank == r
    fresh = tiny_gpt2_factory()
    replay_edits(fresh, cm.edits)
    fresh.load_state_dict(tiny_gpt2.state_dict())
    assert torch.allclose(fresh(gpt2_input).logits, tiny_gpt2(gpt2_input).logits)


def test_one_by_one_conv_with_stride_and_padding(ctx, run_op) -> None:
    conv = nn.Conv2d(32, 24, 1, stride=2, padding=1)
    model = nn.Sequential(conv)
    x = torch.randn(2, 32, 5, 5)
    w = conv.weight.detach().clone()
    run_op("lowrank", CompressedModel(model), {"rank": 3}, ctx)
    assert isinstance(model[0], LowRankConv2d)
    u, s, vh = torch.linalg.svd(w.flatten(1), full_matrices=False)
    wr = (u[:, :3] * s[:3]) @ vh[:3]
    expected = nn.functional.conv2d(x, wr.reshape(24, 32, 1, 1), conv.bias, stride=2, padding=1)
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_errors(tiny_cnn, ctx: OpContext, run_op) -> None:
    with pytest.raises(OpError, match="exactly one"):
        run_op("lowrank", CompressedModel(tiny_cnn), {}, ctx)
    with pytest.raises(OpError, match="exactly one"):
        run_op("lowrank", CompressedModel(tiny_cnn), {"rank": 2, "energy": 0.9}, ctx)
    with pytest.raises(OpError) as e:
        run_op("lowrank", CompressedModel(tiny_cnn), {"rank": 2, "include": "conv1.weight"}, ctx)
    assert e.value.layer == "conv1" and "1x1" in str(e.value)
    with pytest.raises(OpError, match="would get smaller"):
        run_op("lowrank", CompressedModel(tiny_cnn), {"rank": 30}, ctx)
    with pytest.raises(OpError) as e:
        run_op("lowrank", CompressedModel(tiny_cnn), {"energy": 0.0}, ctx)
    assert e.value.param == "energy"
