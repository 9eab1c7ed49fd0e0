"""quantize.dynamic: int8 dynamic quantization of Linear (and GPT-2 Conv1D) layers."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
from torch import nn

from modelbonsai.ops.dynamic import dynamic_linear_type
from modelbonsai.ops.registry import CompressedModel, OpContext, OpError, get_op, replay_edits


def run(m: nn.Module, ctx: OpContext, **params: Any) -> CompressedModel:
    op = get_op("quantize.dynamic")
    assert op is not None and op.changes_structure
    return op.fn(CompressedModel(m), op.resolve(params), ctx)


def mlp() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
    ).eval()


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_dynamic_int8_linear(granularity: str, ctx: OpContext) -> None:
    m = mlp()
    x = torch.randn(32, 256)
    ref = m(x)
    cm = run(m, ctx, granularity=granularity, exclude=["4.*"])
    kind = dynamic_linear_type()
    assert isinstance(cm.module[0], kind) and isinstance(cm.module[2], kind)
    assert isinstance(cm.module[4], nn.Linear) and not isinstance(cm.module[4], kind)
    w = cm.module[0].weight()
    assert w.dtype == torch.qint8
    with torch.no_grad():
        out = cm.module(x)
    assert torch.allclose(out, ref, atol=0.05, rtol=0.05)
    assert cm.edits == [
        {"kind": "quantize.dynamic", "modules": ["0", "2"], "conv1d": [], "granularity": granularity}
    ]


def test_dynamic_is_timed_and_runs(ctx: OpContext) -> None:
    """The point of the op is CPU speed; timing is reported, not asserted (shared CI machines)."""
    m = mlp()
    x = torch.randn(64, 256)

    def median_ms(model: nn.Module) -> float:
        times = []
        with torch.no_grad():
            for _ in range(7):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        return sorted(times)[3] * 1000

    before = median_ms(m)
    cm = run(m, ctx)
    after = median_ms(cm.module)
    assert before > 0 and after > 0
    print(f"float {before:.3f} ms, dynamic int8 {after:.3f} ms")


def test_replay_rebuilds_the_same_modules(ctx: OpContext) -> None:
    cm = run(mlp(), ctx)
    fresh = mlp()
    replay_edits(fresh, cm.edits)
    assert [type(m) for m in fresh.modules()] == [type(m) for m in cm.module.modules()]


def test_gpt2_conv1d_converted_and_keeps_zeros(
    tiny_gpt2: nn.Module, gpt2_input: torch.Tensor, tiny_gpt2_factory: Any, ctx: OpContext
) -> None:
    with torch.no_grad():
        ref = tiny_gpt2(input_ids=gpt2_input).logits
        w = tiny_gpt2.transformer.h[0].mlp.c_fc.weight  # Conv1D [in, out]
        zero = torch.rand_like(w) < 0.5
        w[zero] = 0.0
    cm = run(tiny_gpt2, ctx, include=["transformer.h.*"])
    kind = dynamic_linear_type()
    c_fc = cm.module.transformer.h[0].mlp.c_fc
    assert isinstance(c_fc, kind)
    assert bool((c_fc.weight().int_repr()[zero.t()] == 0).all())  # Linear weight is [out, in]
    assert "transformer.h.0.mlp.c_fc" in cm.edits[0]["conv1d"]
    with torch.no_grad():
        out = cm.module(input_ids=gpt2_input).logits
    assert out.shape == ref.shape and torch.isfinite(out).all()
    fresh = tiny_gpt2_factory()
    replay_edits(fresh, cm.edits)
    assert isinstance(fresh.transformer.h[1].attn.c_attn, kind)


def test_nothing_to_convert_is_an_error(tiny_cnn: nn.Module, ctx: OpContext) -> None:
    with pytest.raises(OpError, match="Linear"):
        run(tiny_cnn, ctx, include=["conv*"])


def test_runs_on_tiny_cnn_and_bert(
    tiny_cnn: nn.Module,
    cnn_input: torch.Tensor,
    tiny_bert: nn.Module,
    bert_input: torch.Tensor,
    ctx: OpContext,
) -> None:
    ref = tiny_cnn(cnn_input)
    cm = run(tiny_cnn, ctx)
    kind = dynamic_linear_type()
    assert isinstance(cm.module.fc1, kind) and isinstance(cm.module.conv1, nn.Conv2d)
    with torch.no_grad():
        assert torch.allclose(cm.module(cnn_input), ref, atol=0.05)
    ref = tiny_bert(input_ids=bert_input).logits
    cm = run(tiny_bert, ctx)
    assert isinstance(cm.module.bert.encoder.layer[0].attention.self.query, kind)
    with torch.no_grad():
        assert torch.allclose(cm.module(input_ids=bert_input).logits, ref, atol=0.05)


def test_a_bfloat16_model_is_refused_for_what_it_is(ctx: OpContext) -> None:
    """Loaded in bfloat16 (the base's `dtype:`), no cast applied: the message says so, not "before a
    cast" (issue 22 item 6); after a cast op it names the cast."""
    with pytest.raises(OpError) as e:
        run(mlp().to(torch.bfloat16), ctx)
    msg = str(e.value)
    assert "bfloat16 as loaded" in msg and "dtype: float32" in msg and "cast" not in msg.replace("`cast`", "")
    assert e.value.layer == "0.weight"
    cast = get_op("cast")
    assert cast is not None
    cm = cast.fn(CompressedModel(mlp()), cast.resolve({"dtype": "fp16"}), ctx)
    op = get_op("quantize.dynamic")
    assert op is not None
    with pytest.raises(
        OpError, match=r"an earlier `cast` op made the weights float16; apply quantize\.dynamic before"
    ):
        op.fn(cm, op.resolve({}), ctx)
