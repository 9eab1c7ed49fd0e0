"""quantize.weights (round-to-nearest) and the bit packing of its codes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from modelbonsai.ops.packing import pack_codes, pack_mask, packed_nbytes, unpack_codes, unpack_mask
from modelbonsai.ops.quantize import QuantEncoding
from modelbonsai.ops.registry import CompressedModel, OpContext, OpError, get_op


def run(cm: CompressedModel, ctx: OpContext, **params: Any) -> CompressedModel:
    op = get_op("quantize.weights")
    assert op is not None
    return op.fn(cm, op.resolve(params), ctx)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))


# -- packing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 333, 4099])
def test_pack_round_trip_is_bit_exact(bits: int, count: int) -> None:
    codes = torch.randint(0, 1 << bits, (count,), dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert (
        packed.dtype == torch.uint8
        and packed.numel() == packed_nbytes(count, bits) == (count * bits + 7) // 8
    )
    assert torch.equal(unpack_codes(packed, bits, count), codes)


def test_pack_layout_int4_two_per_byte_int2_four_per_byte() -> None:
    assert pack_codes(torch.tensor([1, 2, 3, 15], dtype=torch.uint8), 4).tolist() == [0x21, 0xF3]
    assert pack_codes(torch.tensor([1, 2, 3, 0, 3], dtype=torch.uint8), 2).tolist() == [0b00111001, 0b11]
    # 3-bit codes straddle bytes: 8 codes -> exactly 3 bytes
    assert pack_codes(torch.full((8,), 7, dtype=torch.uint8), 3).tolist() == [255, 255, 255]


def test_pack_crosses_chunk_boundary() -> None:
    codes = torch.randint(0, 8, ((1 << 22) + 13,), dtype=torch.uint8)
    assert torch.equal(unpack_codes(pack_codes(codes, 3), 3, codes.numel()), codes)


def test_mask_round_trip() -> None:
    m = torch.rand(5, 13) > 0.5
    assert torch.equal(unpack_mask(pack_mask(m), m.numel()).reshape(5, 13), m)


def test_mask_layout_is_little_endian_bits() -> None:
    """Element i is bit i % 8 of byte i // 8 (as the decode kernels read it), the tail zero-padded."""
    m = torch.zeros(19, dtype=torch.bool)
    m[[0, 9, 15, 18]] = True
    assert pack_mask(m).tolist() == [0b1, 0b10000010, 0b100]
    assert pack_codes(m.to(torch.uint8), 1).tolist() == [0b1, 0b10000010, 0b100]
    assert (
        unpack_codes(torch.tensor([0b1, 0b10000010, 0b100], dtype=torch.uint8), 1, 19).tolist()
        == m.int().tolist()
    )


def test_unpack_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="bytes"):
        unpack_codes(torch.zeros(3, dtype=torch.uint8), 4, 100)


# -- the op --------------------------------------------------------------------------------------
SCHEMES = [
    (bits, sym, gran)
    for bits in (2, 3, 4, 8)
    for sym in (True, False)
    for gran in ("tensor", "channel", "group")
]


@pytest.mark.parametrize(("bits", "symmetric", "granularity"), SCHEMES)
def test_error_bound_and_levels(bits: int, symmetric: bool, granularity: str, ctx: OpContext) -> None:
    m = mlp()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    cm = run(CompressedModel(m), ctx, bits=bits, symmetric=symmetric, granularity=granularity, group_size=16)
    assert set(cm.encodings) == {"0.weight", "2.weight"}
    for name in cm.encodings:
        enc = cm.encodings[name]
        assert isinstance(enc, QuantEncoding)
        w0, w = before[name], dict(m.named_parameters())[name].detach()
        assert not torch.equal(w0, w)
        # per-element bound |w - q(w)| <= scale/2, with the element's own scale
        scale = enc.from_rows(enc.scales.unsqueeze(-1).expand_as(enc.to_rows(w0)).contiguous())
        assert bool(((w - w0).abs() <= scale / 2 * (1 + 1e-5) + 1e-12).all())
        # every value is on the grid: at most 2**bits distinct values per scale group
        rows = enc.to_rows(w)
        for r in range(rows.shape[0]):
            for g in range(rows.shape[1]):
                assert rows[r, g].unique().numel() <= 2**bits
        # the stored codes reproduce the weights exactly, and projection is idempotent
        assert torch.equal(enc.dequantize(enc.encode(w)), w)
        assert torch.equal(enc.project(w), w)
    assert torch.equal(before["0.bias"], m[0].bias.detach())  # biases untouched by default


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pruned_zeros_stay_exactly_zero(symmetric: bool, bits: int, ctx: OpContext) -> None:
    m = mlp()
    with torch.no_grad():
        w = m[0].weight
        w.abs_()  # all-positive rows: an asymmetric grid must still contain 0 exactly
        w.add_(0.3)
        zero = torch.rand_like(w) < 0.4
        w[zero] = 0.0
    run(CompressedModel(m), ctx, bits=bits, symmetric=symmetric, granularity="group", group_size=16)
    assert bool((m[0].weight[zero] == 0).all())
    assert int((m[0].weight == 0).sum()) >= int(zero.sum())


def test_asymmetric_zero_point_is_rounded_into_range(ctx: OpContext) -> None:
    m = nn.Linear(16, 4)
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 2.0, 64).reshape(4, 16))  # no zero inside the data
    cm = run(CompressedModel(nn.Sequential(m)), ctx, bits=3, symmetric=False, granularity="channel")
    enc = cm.encodings["0.weight"]
    assert isinstance(enc, QuantEncoding) and enc.zeros is not None
    assert enc.zeros.dtype == torch.int16 and bool((enc.zeros >= 0).all()) and bool((enc.zeros <= 7).all())
    assert float(enc.project(torch.zeros(4, 16)).abs().max()) == 0.0


def test_group_size_must_divide_columns(ctx: OpContext) -> None:
    m = nn.Sequential(nn.Linear(24, 8), nn.Linear(8, 2))
    before = m[0].weight.detach().clone()
    with pytest.raises(OpError) as err:
        run(CompressedModel(m), ctx, bits=4, granularity="group", group_size=16, strict=True)
    assert err.value.layer == "0.weight" and err.value.param == "group_size"
    assert "24" in str(err.value)
    assert torch.equal(m[0].weight.detach(), before)  # nothing half-done


def test_hf_conv1d_scales_per_output_channel(tiny_gpt2: nn.Module, ctx: OpContext) -> None:
    cm = run(CompressedModel(tiny_gpt2), ctx, bits=4, granularity="channel")
    enc = cm.encodings["transformer.h.0.mlp.c_fc.weight"]  # Conv1D weight [in=32, out=128]
    assert isinstance(enc, QuantEncoding) and enc.axis == 1 and tuple(enc.scales.shape) == (128, 1)
    enc_g = run(CompressedModel(tiny_gpt2), ctx, bits=4, granularity="group", group_size=16).encodings[
        "transformer.h.0.mlp.c_proj.weight"
    ]  # [in=128, out=32]: 8 groups of 16 inputs per output
    assert isinstance(enc_g, QuantEncoding) and tuple(enc_g.scales.shape) == (32, 8)
    assert "transformer.wte.weight" not in cm.encodings  # embeddings excluded unless included
    assert not any("ln_" in n or n.endswith(".bias") for n in cm.encodings)


def test_conv_and_include_exclude(tiny_cnn: nn.Module, cnn_input: torch.Tensor, ctx: OpContext) -> None:
    ref = tiny_cnn(cnn_input)
    cm = run(CompressedModel(tiny_cnn), ctx, bits=8, exclude=["fc2.*"])
    assert set(cm.encodings) == {"conv1.weight", "conv2.weight", "fc1.weight"}
    assert torch.allclose(tiny_cnn(cnn_input), ref, atol=0.05)
    cm2 = run(CompressedModel(tiny_cnn), ctx, bits=8, include=["fc1.bias", "bn1.weight"])
    assert set(cm2.encodings) == {"fc1.bias", "bn1.weight"}


def test_patterns_matching_nothing_are_errors(ctx: OpContext) -> None:
    with pytest.raises(OpError, match="matches no parameter"):
        run(CompressedModel(mlp()), ctx, include=["encoder.*"])
    with pytest.raises(OpError, match="exclude"):
        run(CompressedModel(mlp()), ctx, exclude=["nope*"])


def test_out_of_range_bits_rejected() -> None:
    op = get_op("quantize.weights")
    assert op is not None
    with pytest.raises(OpError, match="bits"):
        op.resolve({"bits": 9})
    with pytest.raises(OpError, match="granularity"):
        op.resolve({"granularity": "per-row"})


def test_scale_storage_dtype(ctx: OpContext) -> None:
    m = mlp()
    cm = run(CompressedModel(m), ctx, bits=4)
    enc = cm.encodings["0.weight"]
    assert isinstance(enc, QuantEncoding) and enc.scale_dtype == "float16"
    assert torch.equal(enc.scales.half().float(), enc.scales)
    with torch.no_grad():
        m[2].weight.mul_(1e-5)  # scales below float16's normal range: kept in float32
    cm = run(CompressedModel(m), ctx, bits=8)
    assert cm.encodings["2.weight"].scale_dtype == "float32"  # type: ignore[attr-defined]


def test_runs_on_tiny_transformers(tiny_bert: nn.Module, bert_input: torch.Tensor, ctx: OpContext) -> None:
    ref = tiny_bert(input_ids=bert_input).logits
    cm = run(CompressedModel(tiny_bert), ctx, bits=8, granularity="channel")
    assert len(cm.encodings) == 2 * 6 + 2  # q,k,v,o,intermediate,output per layer + pooler + classifier
    assert torch.allclose(tiny_bert(input_ids=bert_input).logits, ref, atol=0.05)


def test_non_finite_weights_are_an_error(ctx: OpContext) -> None:
    m = mlp()
    with torch.no_grad():
        m[2].weight[0, 0] = float("nan")
    with pytest.raises(OpError, match="NaN") as err:
        run(CompressedModel(m), ctx, bits=4)
    assert err.value.layer == "2.weight"


def test_project_moves_any_tensor_onto_the_fixed_grid(ctx: OpContext) -> None:
    """finetune relies on this: after an optimizer step, project() lands back on the stored grid."""
    m = mlp()
    cm = run(CompressedModel(m), ctx, bits=3, symmetric=False, granularity="group", group_size=16)
    enc = cm.encodings["0.weight"]
    assert isinstance(enc, QuantEncoding)
    moved = m[0].weight.detach() + 0.01 * torch.randn_like(m[0].weight)
    p = enc.project(moved)
    assert torch.equal(enc.project(p), p)
    assert torch.equal(enc.dequantize(enc.encode(p)), p)
    assert enc.to_json()["bits"] == 3 and enc.kind == "quant"
