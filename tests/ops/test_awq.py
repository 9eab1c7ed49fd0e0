"""quantize.awq: beats round-to-nearest on a layer with outlier input channels, its scales are the
ones a direct grid search picks, folds into a Pre-LN norm, and stores/reloads honestly."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import build_tiny_bert, build_tiny_gpt2, make_bert_task, make_gpt2_task
from modelbonsai.artifacts import load_artifact, save_artifact
from modelbonsai.ops.quantize import QuantEncoding, quantize_rtn
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op
from modelbonsai.ops.smoothquant import SCALE
from modelbonsai.tasks.base import Batch

DIM, OUT = 64, 48
OUTLIERS = [3, 17, 40, 41]


class OutlierTask:
    """Inputs whose channels OUTLIERS are 30x larger than the rest (what LLM activations look like)."""

    def __init__(self) -> None:
        self.scale = torch.ones(DIM)
        self.scale[OUTLIERS] = 30.0

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


def layer() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(DIM, OUT))


def run(name: str, m: nn.Module, task: Any, **params: Any) -> CompressedModel:
    op = get_op(name)
    assert op is not None
    ctx = OpContext(device=torch.device("cpu"), seed=0, task=task)
    return op.fn(CompressedModel(m), op.resolve(params), ctx)


def held_out(task: OutlierTask) -> torch.Tensor:
    return torch.cat([b.inputs for b in task.calibration_batches(4, 64, seed=99)])


def rel_error(ref: nn.Module, q: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        r = ref(x)
        return float((q(x) - r).pow(2).sum() / r.pow(2).sum())


SCHEME = {"bits": 4, "group_size": 16, "batches": 4, "batch_size": 64}


@pytest.mark.parametrize("symmetric", [True, False])
def test_awq_beats_rtn_on_outlier_channels(symmetric: bool) -> None:
    task = OutlierTask()
    base = layer()
    x = held_out(task)
    rtn = run("quantize.weights", copy.deepcopy(base), task, granularity="group", symmetric=symmetric, **{
        k: v for k, v in SCHEME.items() if k in ("bits", "group_size")})  # fmt: skip
    awq = run("quantize.awq", copy.deepcopy(base), task, symmetric=symmetric, **SCHEME)
    e_rtn, e_awq = rel_error(base, rtn.module, x), rel_error(base, awq.module, x)
    assert e_awq < 0.7 * e_rtn, (e_awq, e_rtn)
    # the weight lies on a 4-bit group grid; the explicit input scale is 1/s
    enc = awq.encodings["0.weight"]
    assert isinstance(enc, QuantEncoding) and enc.bits == 4 and enc.group_size == 16
    w = awq.module[0].weight
    assert torch.equal(enc.project(w), w)
    assert getattr(awq.module[0], SCALE).shape == (DIM,)


def test_awq_scales_equal_a_direct_grid_search() -> None:
    task = OutlierTask()
    base = layer()
    awq = run("quantize.awq", copy.deepcopy(base), task, grid=10, symmetric=True, clip=False, **SCHEME)
    s_op = 1.0 / getattr(awq.module[0], SCALE)

    # the direct search, written out: every alpha, scale, quantize, measure, keep the best
    batches = list(task.calibration_batches(4, 64, seed=0))
    x = torch.cat([b.inputs for b in batches])  # 256 rows <= max_rows: all rows are used
    mean = x.abs().mean(0).clamp_min(1e-4)
    w = base[0].weight.detach()
    best = None
    for k in range(10):
        s = mean ** (k / 10)
        s = s / (s.max() * s.min()).sqrt()
        enc = quantize_rtn(w * s, 4, True, "group", 16, 0, op="t", layer="t")
        err = float((x @ (enc.project(w * s) / s).t() - x @ w.t()).pow(2).sum())
        if best is None or err < best[0]:
            best = (err, s, k)
    assert best is not None
    assert best[2] > 0  # the outliers make a non-trivial alpha win
    torch.testing.assert_close(s_op, best[1], rtol=1e-6, atol=0)
    # and the stored weight is exactly RTN of the scaled weight
    enc = quantize_rtn(w * best[1], 4, True, "group", 16, 0, op="t", layer="t")
    torch.testing.assert_close(awq.module[0].weight, enc.project(w * best[1]), rtol=0, atol=1e-6)


def test_clip_search_never_loses_to_rtn_and_is_stored_on_its_grid() -> None:
    task = OutlierTask()
    base = layer()
    calib = torch.cat([b.inputs for b in task.calibration_batches(4, 64, seed=0)])
    plain = run("quantize.awq", copy.deepcopy(base), task, clip=False, **SCHEME)
    clipped = run("quantize.awq", copy.deepcopy(base), task, **SCHEME)
    # the same scales s; the clip search lowers the error on the rows it was searched on
    assert torch.equal(getattr(plain.module[0], SCALE), getattr(clipped.module[0], SCALE))
    assert rel_error(base, clipped.module, calib) < rel_error(base, plain.module, calib)
    enc = clipped.encodings["0.weight"]
    assert isinstance(enc, QuantEncoding)
    w = clipped.module[0].weight
    assert torch.equal(enc.project(w), w)
    # per row and group: the chosen range is never worse than the full one
    from modelbonsai.ops.awq import _round_trip, clip_search
    from modelbonsai.ops.quantize import fit_scales

    g = torch.Generator().manual_seed(0)
    wt, x = torch.randn(8, 32, generator=g), torch.randn(100, 32, generator=g)
    wr = wt.reshape(8, 2, 16)
    scales, zeros, _ = clip_search(wt, x, 3, False, 16)
    s0, z0, _ = fit_scales(wr, 3, False)
    xg = x.reshape(100, 2, 16)

    def err(sc: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        d = wr - _round_trip(wr, sc, z, 3, False)
        return torch.einsum("ngi,rgi->nrg", xg, d).pow(2).sum(0)

    assert bool((err(scales, zeros) <= err(s0, z0) * (1 + 1e-5)).all())
    assert bool((scales <= s0 * (1 + 1e-3)).all()) and bool((scales < s0 * 0.999).any())


def test_awq_gptq_solver() -> None:
    """GPTQ after the scaling lowers the error on the calibration rows it solves for against
    plain rounding (on iid inputs it has little to compensate, and the clip search does as well
    there), and AWQ+GPTQ is far better than GPTQ alone here."""
    task = OutlierTask()
    base = layer()
    calib = torch.cat([b.inputs for b in task.calibration_batches(4, 64, seed=0)])
    a_rtn = run("quantize.awq", copy.deepcopy(base), task, clip=False, **SCHEME)
    a_gptq = run("quantize.awq", copy.deepcopy(base), task, solver="gptq", **SCHEME)
    gptq = run(
        "quantize.calibrated", copy.deepcopy(base), task, granularity="group", symmetric=False, **SCHEME
    )
    assert rel_error(base, a_gptq.module, calib) < rel_error(base, a_rtn.module, calib)
    assert rel_error(base, a_gptq.module, held_out(task)) < 0.5 * rel_error(base, gptq.module, held_out(task))
    enc = a_gptq.encodings["0.weight"]
    assert isinstance(enc, QuantEncoding)
    w = a_gptq.module[0].weight
    assert torch.equal(enc.project(w), w)


def test_awq_folds_into_gpt2_norms_and_reloads(tmp_path: Path) -> None:
    task = make_gpt2_task()
    base = build_tiny_gpt2()
    cm = run("quantize.awq", copy.deepcopy(base), task, group_size=16, batches=2, batch_size=4)
    block = cm.module.transformer.h[0]
    # ln_1 feeds only c_attn and ln_2 only c_fc: folded, no explicit scale; the projections
    # read attention outputs / GELU outputs: explicit
    assert SCALE not in block.attn.c_attn._buffers and SCALE not in block.mlp.c_fc._buffers
    assert SCALE in block.attn.c_proj._buffers and SCALE in block.mlp.c_proj._buffers
    assert not torch.equal(block.ln_1.weight, base.transformer.h[0].ln_1.weight)
    assert {e["kind"] for e in cm.edits} == {"input.transform"}
    size = save_artifact(cm, tmp_path / "a")
    loaded = load_artifact(tmp_path / "a", build_tiny_gpt2)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(input_ids=ids).logits, cm.module(input_ids=ids).logits)
    assert size.forms["transformer.h.0.attn.c_attn.weight"].startswith("packed")


def test_awq_on_bert_uses_explicit_scales() -> None:
    task = make_bert_task()
    cm = run("quantize.awq", build_tiny_bert(), task, group_size=16, batches=2, batch_size=4)
    q = cm.module.bert.encoder.layer[0].attention.self.query
    # BERT's norms also feed the residual: no fold is exact, so q/k/v share one explicit scale
    assert SCALE in q._buffers
    k = cm.module.bert.encoder.layer[0].attention.self.key
    assert torch.equal(getattr(q, SCALE), getattr(k, SCALE))
