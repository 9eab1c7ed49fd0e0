"""quantize.calibrated (GPTQ): beats round-to-nearest on layer output error, keeps zeros, errors."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from modelbonsai.ops.quantize import QuantEncoding
from modelbonsai.ops.registry import CompressedModel, OpContext, OpError, get_op
from modelbonsai.tasks.base import Batch

DIM = 64


def _mixing() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    # strongly correlated features with very different scales: where GPTQ's compensation shines
    basis = torch.randn(8, DIM, generator=g)
    return basis * torch.logspace(0, 1, DIM).unsqueeze(0)


class CorrelatedTask:
    """Inputs x = z·A + small noise (rank-8 structure in 64 dims)."""

    def __init__(self) -> None:
        self.mix = _mixing()

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, 8, generator=gen)
        return z @ self.mix + 0.05 * torch.randn(n, DIM, generator=gen)

    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n):
            yield Batch(ids=[str(i) for i in range(batch_size)], inputs=self.sample(batch_size, gen))

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        yield from self.calibration_batches(10**9, batch_size, seed)

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.forward(model, batch).pow(2).mean()


def model() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 32))


def quantize(name: str, m: nn.Module, task: Any, **params: Any) -> CompressedModel:
    op = get_op(name)
    assert op is not None
    ctx = OpContext(device=torch.device("cpu"), seed=0, task=task)
    return op.fn(CompressedModel(m), op.resolve(params), ctx)


def layer_errors(ref: nn.Module, q: nn.Module, x: torch.Tensor) -> list[float]:
    """Relative output error of each Linear on the *reference* model's inputs (isolated error)."""
    errs, h = [], x
    for r_layer, q_layer in zip(ref, q, strict=True):
        if isinstance(r_layer, nn.Linear):
            out_ref, out_q = r_layer(h), q_layer(h)
            errs.append(float((out_ref - out_q).pow(2).sum() / out_ref.pow(2).sum()))
        h = r_layer(h)
    return errs


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize(
    ("granularity", "extra"),
    [("channel", {}), ("group", {"group_size": 16}), ("channel", {"act_order": True})],
)
def test_calibrated_beats_round_to_nearest(bits: int, granularity: str, extra: dict[str, Any]) -> None:
    task = CorrelatedTask()
    ref = model().eval()
    x = task.sample(512, torch.Generator().manual_seed(99))  # held-out inputs
    common = {"bits": bits, "granularity": granularity, **extra}
    with torch.no_grad():
        rtn = quantize(
            "quantize.weights",
            copy.deepcopy(ref),
            None,
            **{k: v for k, v in common.items() if k != "act_order"},
        ).module
        gptq = quantize(
            "quantize.calibrated", copy.deepcopy(ref), task, batches=8, batch_size=64, **common
        ).module
        e_rtn, e_gptq = layer_errors(ref, rtn, x), layer_errors(ref, gptq, x)
    for a, b in zip(e_gptq, e_rtn, strict=True):
        assert a < 0.7 * b, f"GPTQ {e_gptq} vs RTN {e_rtn}"


@pytest.mark.parametrize("symmetric", [True, False])
def test_result_is_on_its_grid_and_keeps_zeros(symmetric: bool) -> None:
    task = CorrelatedTask()
    m = model()
    with torch.no_grad():
        zero = torch.rand_like(m[0].weight) < 0.5
        m[0].weight[zero] = 0.0
    cm = quantize(
        "quantize.calibrated",
        m,
        task,
        bits=4,
        symmetric=symmetric,
        granularity="group",
        group_size=16,
        batches=2,
        batch_size=32,
    )
    for name, p in m.named_parameters():
        if name in cm.encodings:
            enc = cm.encodings[name]
            assert isinstance(enc, QuantEncoding) and enc.bits == 4
            assert torch.equal(enc.project(p.detach()), p.detach())  # exactly on the stored grid
    assert bool((m[0].weight[zero] == 0).all())


def test_calibrated_on_transformer_and_cnn(
    tiny_gpt2: nn.Module, gpt2_task: Any, tiny_cnn: nn.Module, cnn_task: Any
) -> None:
    cm = quantize("quantize.calibrated", tiny_gpt2, gpt2_task, bits=4, batches=2, batch_size=4)
    assert "transformer.h.1.mlp.c_proj.weight" in cm.encodings
    enc = cm.encodings["transformer.h.0.attn.c_attn.weight"]
    assert isinstance(enc, QuantEncoding) and enc.axis == 1
    cm2 = quantize("quantize.calibrated", tiny_cnn, cnn_task, bits=4, batches=2, batch_size=4)
    assert {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"} <= set(cm2.encodings)


def test_needs_a_task() -> None:
    with pytest.raises(OpError, match="task"):
        quantize("quantize.calibrated", model(), None, bits=4)
    op = get_op("quantize.calibrated")
    assert op is not None and op.needs_task


def test_group_divisibility_checked_before_calibration() -> None:
    m = nn.Sequential(nn.Linear(DIM, 8))
    with pytest.raises(OpError) as err:
        quantize(
            "quantize.calibrated",
            m,
            CorrelatedTask(),
            bits=4,
            granularity="group",
            group_size=24,
            strict=True,
        )
    assert err.value.layer == "0.weight"
