"""bn.recalibrate (statistics by hand) and finetune (masks and quantization held fixed)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from modelbonsai.ops.finetune import _lr_factor
from modelbonsai.ops.registry import Cancelled, CompressedModel, OpError


def _batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=True)


def test_bn_recalibrate_matches_hand_computed_stats(tiny_cnn, cnn_task, make_ctx, run_op) -> None:
    m = copy.deepcopy(tiny_cnn)
    sums: dict[str, list[torch.Tensor]] = {"m1": [], "v1": [], "m2": [], "v2": []}
    it = cnn_task.training_batches(8, 0)
    with torch.no_grad():
        for _ in range(3):  # the tiny CNN by hand, BatchNorm normalising with batch statistics
            h = m.conv1(next(it).inputs)
            mean, var = _batch_stats(h)
            sums["m1"].append(mean)
            sums["v1"].append(var)
            h = F.batch_norm(h, None, None, m.bn1.weight, m.bn1.bias, training=True, eps=m.bn1.eps)
            h = m.conv2(F.relu(h))
            mean, var = _batch_stats(h)
            sums["m2"].append(mean)
            sums["v2"].append(var)
    run_op(
        "bn.recalibrate", CompressedModel(tiny_cnn), {"batches": 3, "batch_size": 8}, make_ctx(task=cnn_task)
    )
    for bn, i in ((tiny_cnn.bn1, "1"), (tiny_cnn.bn2, "2")):
        assert torch.allclose(bn.running_mean, torch.stack(sums["m" + i]).mean(0), atol=1e-5)
        assert torch.allclose(bn.running_var, torch.stack(sums["v" + i]).mean(0), atol=1e-5)
        assert bn.momentum == 0.1 and not bn.training
    assert not tiny_cnn.training and torch.equal(tiny_cnn.conv1.weight, m.conv1.weight)


def test_bn_recalibrate_errors(tiny_cnn, tiny_gpt2, gpt2_task, ctx, make_ctx, run_op) -> None:
    with pytest.raises(OpError, match="needs a task"):
        run_op("bn.recalibrate", CompressedModel(tiny_cnn), {}, ctx)
    with pytest.raises(OpError, match="no BatchNorm"):
        run_op("bn.recalibrate", CompressedModel(tiny_gpt2), {}, make_ctx(task=gpt2_task))
    with pytest.raises(OpError) as e:
        run_op("bn.recalibrate", CompressedModel(tiny_cnn), {"batches": 0}, make_ctx(task=gpt2_task))
    assert e.value.param == "batches"


def _eval_loss(model: nn.Module, task: Any) -> float:
    it = task.training_batches(64, 12345)
    with torch.no_grad():
        return float(sum(task.loss(model, next(it)) for _ in range(2)) / 2)


def test_finetune_keeps_masks_and_improves_loss(tiny_cnn, cnn_task, make_ctx, run_op) -> None:
    ctx = make_ctx(task=cnn_task)
    cm = run_op("prune.magnitude", CompressedModel(tiny_cnn), {"sparsity": 0.6}, ctx)
    before = _eval_loss(tiny_cnn, cnn_task)
    run_op(
        "finetune",
        cm,
        {"steps": 40, "lr": 1e-2, "batch_size": 32, "schedule": "cosine", "warmup_steps": 2},
        ctx,
    )
    after = _eval_loss(tiny_cnn, cnn_task)
    assert after < before - 0.1, (before, after)
    for name, mask in cm.masks.items():
        p = tiny_cnn.get_parameter(name)
        assert bool((p[mask] == 0).all()) and int((p == 0).sum()) == int(mask.sum())
    assert not tiny_cnn.training


def test_finetune_is_deterministic(tiny_cnn_factory, cnn_task, make_ctx, run_op) -> None:
    def train(seed: int) -> list[torch.Tensor]:
        m = tiny_cnn_factory()
        run_op(
            "finetune",
            CompressedModel(m),
            {"steps": 3, "lr": 1e-2, "optimizer": "sgd"},
            make_ctx(task=cnn_task, seed=seed),
        )
        return [p.detach().clone() for p in m.parameters()]

    a, b, c = train(3), train(3), train(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


class _Grid:
    """A fake quantization encoding: values on multiples of `step`."""

    kind = "grid"

    def __init__(self, step: float) -> None:
        self.step = step

    def project(self, t: torch.Tensor) -> torch.Tensor:
        return torch.round(t / self.step) * self.step

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step}


def test_finetune_keeps_weights_on_quantization_grid(tiny_cnn, cnn_task, make_ctx, run_op) -> None:
    grid = _Grid(0.02)
    with torch.no_grad():
        tiny_cnn.fc1.weight.copy_(grid.project(tiny_cnn.fc1.weight))
    start = tiny_cnn.fc1.weight.detach().clone()
    cm = CompressedModel(tiny_cnn, encodings={"fc1.weight": grid})
    run_op("finetune", cm, {"steps": 20, "lr": 2e-3, "optimizer": "adam"}, make_ctx(task=cnn_task))
    w = tiny_cnn.fc1.weight.detach()
    assert torch.allclose(w, grid.project(w), atol=1e-6)
    # updates (2e-3 per step) smaller than the grid step still accumulate into moves
    assert int((w != start).sum()) > 0


def test_finetune_schedule_epochs_and_cancel(tiny_cnn, cnn_task, make_ctx, run_op) -> None:
    f = _lr_factor("cosine", 0, 10)
    assert f(0) == 1.0 and math.isclose(f(5), 0.5) and f(10) < 1e-9
    assert _lr_factor("linear", 2, 12)(0) == pytest.approx(1 / 3) and _lr_factor("linear", 2, 12)(7) == 0.5
    with pytest.raises(OpError) as e:
        run_op("finetune", CompressedModel(tiny_cnn), {"epochs": 1.0}, make_ctx(task=cnn_task))
    assert e.value.param == "epochs"
    cnn_task.training_size = 100
    seen: list[str] = []
    ctx = make_ctx(task=cnn_task)
    ctx.progress = lambda frac, msg: seen.append(msg)
    run_op("finetune", CompressedModel(tiny_cnn), {"epochs": 0.5, "batch_size": 16}, ctx)
    assert len(seen) == 4 and seen[-1].startswith("step 4/4")
    ctx.cancelled = lambda: len(seen) >= 6
    with pytest.raises(Cancelled):
        run_op("finetune", CompressedModel(tiny_cnn), {"steps": 50}, ctx)
    with pytest.raises(OpError, match="needs a task"):
        run_op("finetune", CompressedModel(tiny_cnn), {}, make_ctx())


def test_finetune_transformer(tiny_gpt2, gpt2_task, make_ctx, run_op) -> None:
    ctx = make_ctx(task=gpt2_task)
    cm = run_op("prune.nm", CompressedModel(tiny_gpt2), {}, ctx)
    before = _eval_loss(tiny_gpt2, gpt2_task)
    run_op("finetune", cm, {"steps": 15, "lr": 3e-3, "batch_size": 8}, ctx)
    assert _eval_loss(tiny_gpt2, gpt2_task) < before
    w = tiny_gpt2.transformer.h[0].mlp.c_fc.weight
    assert bool(((w.t().reshape(w.shape[1], -1, 4) != 0).sum(-1) <= 2).all())
