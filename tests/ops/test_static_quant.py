"""smoothquant (function unchanged in float, folded where exact) and quantize.static (W8A8:
observers, fake-quantized inputs, stored scales for exporters)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import (
    build_tiny_bert,
    build_tiny_cnn,
    build_tiny_gpt2,
    make_bert_task,
    make_cnn_task,
    make_gpt2_task,
)
from modelbonsai.artifacts import load_artifact, save_artifact
from modelbonsai.ops.quantize import QuantEncoding
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op
from modelbonsai.ops.smoothquant import ACT_SCALE, ACT_ZERO, SCALE, fake_quant
from modelbonsai.ops.static_quant import qparams
from modelbonsai.tasks.base import Batch

DIM = 32
OUTLIERS = [2, 9, 30]


class OutlierTask:
    """Inputs with a few channels 50x larger than the rest, and a long-tailed extra value."""

    def __init__(self) -> None:
        self.scale = torch.ones(DIM)
        self.scale[OUTLIERS] = 50.0

    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n):
            x = torch.randn(batch_size, DIM, generator=gen) * self.scale
            yield Batch(ids=[str(i) for i in range(batch_size)], inputs=x)

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        yield from self.calibration_batches(10**9, batch_size, seed)

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.forward(model, batch).pow(2).mean()


def mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.LayerNorm(DIM), nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 16))


def run(name: str, m: nn.Module, task: Any, **params: Any) -> CompressedModel:
    op = get_op(name)
    assert op is not None
    ctx = OpContext(device=torch.device("cpu"), seed=0, task=task)
    return op.fn(CompressedModel(m), op.resolve(params), ctx)


def rel_error(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float((out - ref).detach().pow(2).sum() / ref.detach().pow(2).sum())


# -- smoothquant ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "make_task"),
    [(build_tiny_gpt2, make_gpt2_task), (build_tiny_bert, make_bert_task)],
)
def test_smoothquant_keeps_the_function(build: Any, make_task: Any) -> None:
    task = make_task()
    base = build()
    cm = run("smoothquant", copy.deepcopy(base), task, alpha=0.5, batches=2, batch_size=4)
    changed = [n for n, p in cm.module.named_parameters() if not torch.equal(p, base.get_parameter(n))]
    assert changed  # the weights did move
    for batch in task.calibration_batches(2, 4, seed=5):
        ref, out = task.forward(base, batch), task.forward(cm.module, batch)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_smoothquant_folds_into_pre_ln_only() -> None:
    task = make_gpt2_task()
    cm = run("smoothquant", build_tiny_gpt2(), task, batches=2, batch_size=4)
    block = cm.module.transformer.h[1]
    assert SCALE not in block.attn.c_attn._buffers  # folded into ln_1
    assert SCALE in block.attn.c_proj._buffers  # reads the merged heads: explicit
    bert = run("smoothquant", build_tiny_bert(), make_bert_task(), batches=2, batch_size=4)
    # Post-LN: the norm also feeds the residual, so the fold is refused and scales are explicit
    assert SCALE in bert.module.bert.encoder.layer[0].intermediate.dense._buffers


def test_smoothquant_scales_follow_the_formula() -> None:
    task = OutlierTask()
    base = mlp()
    cm = run("smoothquant", copy.deepcopy(base), task, alpha=0.5, batches=2, batch_size=32)
    x = torch.cat([b.inputs for b in task.calibration_batches(2, 32, seed=0)])
    with torch.no_grad():
        h = base[0](x)
    s = (h.abs().amax(0).pow(0.5) / base[1].weight.abs().amax(0).pow(0.5)).clamp_min(1e-5)
    # the LayerNorm feeds only the first Linear: folded, its weight divided by s
    torch.testing.assert_close(cm.module[0].weight, base[0].weight / s)
    torch.testing.assert_close(cm.module[1].weight, base[1].weight * s)


# -- quantize.static -----------------------------------------------------------------------------
def test_minmax_observer_scales_and_fake_quantized_inputs() -> None:
    task = OutlierTask()
    base = mlp()
    cm = run("quantize.static", copy.deepcopy(base), task, batches=2, batch_size=32)
    x = torch.cat([b.inputs for b in task.calibration_batches(2, 32, seed=0)])
    with torch.no_grad():
        h = base[0](x)  # the LayerNorm is not quantized: the first Linear's input is exact
    scale, zero = qparams(float(h.min()), float(h.max()), symmetric=False)
    lin = cm.module[1]
    assert float(getattr(lin, ACT_SCALE)) == pytest.approx(scale, rel=1e-6)
    assert int(getattr(lin, ACT_ZERO)) == zero and getattr(lin, ACT_ZERO).dtype == torch.uint8
    # the layer computes with the rounded input and the int8 weight
    enc = cm.encodings["1.weight"]
    assert isinstance(enc, QuantEncoding) and enc.bits == 8 and enc.granularity == "channel"
    hq = fake_quant(h, getattr(lin, ACT_SCALE), getattr(lin, ACT_ZERO), 0, 255)
    assert len(torch.unique(hq)) <= 256
    with torch.no_grad():
        torch.testing.assert_close(lin(h), nn.functional.linear(hq, lin.weight, lin.bias))


def test_observers() -> None:
    task = OutlierTask()
    base = mlp()
    x = torch.cat([b.inputs for b in task.calibration_batches(4, 32, seed=9)])
    with torch.no_grad():
        ref = base(x)
    scales, errors = {}, {}
    for observer in ("minmax", "percentile", "mse"):
        cm = run(
            "quantize.static",
            copy.deepcopy(base),
            task,
            observer=observer,
            percentile=99.0,
            batches=4,
            batch_size=32,
        )
        scales[observer] = float(getattr(cm.module[3], ACT_SCALE))
        with torch.no_grad():
            errors[observer] = rel_error(ref, cm.module(x))
    assert scales["percentile"] < scales["minmax"]
    assert scales["mse"] <= scales["minmax"]
    assert errors["mse"] <= errors["minmax"] * 1.05


def test_smoothquant_helps_w8a8_with_outliers() -> None:
    task = OutlierTask()
    torch.manual_seed(3)
    base = nn.Sequential(nn.Linear(DIM, 64))  # outlier channels straight into the layer
    x = torch.cat([b.inputs for b in task.calibration_batches(4, 32, seed=9)])
    with torch.no_grad():
        ref = base(x)
    plain = run("quantize.static", copy.deepcopy(base), task, act_symmetric=True, batches=4, batch_size=32)
    smooth = run("smoothquant", copy.deepcopy(base), task, alpha=0.5, batches=4, batch_size=32)
    op = get_op("quantize.static")
    assert op is not None
    both = op.fn(smooth, op.resolve({"act_symmetric": True, "batches": 4, "batch_size": 32}),
                 OpContext(device=torch.device("cpu"), seed=0, task=task))  # fmt: skip
    with torch.no_grad():
        e_plain, e_smooth = rel_error(ref, plain.module(x)), rel_error(ref, both.module(x))
    assert e_smooth < 0.5 * e_plain, (e_smooth, e_plain)
    assert getattr(both.module[0], ACT_ZERO).dtype == torch.int8


def test_w8a8_stores_and_reloads(tmp_path: Path) -> None:
    task = make_gpt2_task()
    cm = run("smoothquant", build_tiny_gpt2(), task, batches=2, batch_size=4)
    op = get_op("quantize.static")
    assert op is not None
    cm = op.fn(cm, op.resolve({"batches": 2, "batch_size": 4}), OpContext(torch.device("cpu"), 0, task=task))
    size = save_artifact(cm, tmp_path / "a")
    assert size.forms["transformer.h.0.mlp.c_fc.weight"].startswith("packed")
    assert "transformer.h.0.mlp.c_fc.act_scale" in size.forms
    loaded = load_artifact(tmp_path / "a", build_tiny_gpt2)
    c_fc = loaded.module.transformer.h[0].mlp.c_fc
    assert getattr(c_fc, ACT_ZERO).dtype == torch.uint8
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(input_ids=ids).logits, cm.module(input_ids=ids).logits)


def test_w8a8_on_a_cnn() -> None:
    task = make_cnn_task()
    base = build_tiny_cnn()
    cm = run("quantize.static", copy.deepcopy(base), task, observer="mse", batches=2, batch_size=8)
    assert ACT_SCALE in cm.module.conv2._buffers and ACT_SCALE in cm.module.fc1._buffers
    batch = next(task.calibration_batches(1, 8, seed=3))
    ref, out = task.forward(base, batch), task.forward(cm.module, batch)
    assert rel_error(ref, out) < 1e-3
    assert not torch.equal(ref, out)


def test_w8a8_inputs_pass_gradients_straight_through() -> None:
    """finetune after quantize.static: the rounding of inputs must not stop gradients."""
    task = OutlierTask()
    cm = run("quantize.static", mlp(), task, batches=2, batch_size=32)
    x = next(task.calibration_batches(1, 8, seed=1)).inputs
    cm.module(x).pow(2).sum().backward()
    assert cm.module[0].weight.grad is not None and bool(cm.module[0].weight.grad.abs().sum() > 0)
    with torch.no_grad():  # and the forward value is the rounded one either way
        ref = cm.module(x)
    torch.testing.assert_close(cm.module(x).detach(), ref)


def test_w8a8_and_awq_on_a_residual_cnn_with_depthwise_and_grouped_convs() -> None:
    from test_structured_depgraph import X, build

    class Task(OutlierTask):
        def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Batch]:
            gen = torch.Generator().manual_seed(seed)
            for _ in range(n):
                yield Batch(
                    ids=[str(i) for i in range(batch_size)],
                    inputs=torch.randn(batch_size, 3, 8, 8, generator=gen),
                )

    task = Task()
    base = build()
    with torch.no_grad():
        ref = base(X)
    w8a8 = run("quantize.static", build(), task, observer="percentile", batches=2, batch_size=8)
    assert ACT_SCALE in w8a8.module.dw._buffers and ACT_SCALE in w8a8.module.g1._buffers
    awq = run("quantize.awq", build(), task, granularity="channel", batches=2, batch_size=8)
    assert {"stem.weight", "dw.weight", "g1.weight", "fc.weight"} <= set(awq.encodings)
    with torch.no_grad():
        for cm in (w8a8, awq):
            assert rel_error(ref, cm.module(X)) < 0.05
