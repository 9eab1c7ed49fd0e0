"""The fused CPU path of `quantize.weights` (ops/kernels.py) against the torch formula it
replaces: identical weights, scales and zero points on odd shapes, every layout it walks
(rows, Conv1D's transposed cols), every granularity, bits and symmetry, and pruned zeros."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelbonsai.ops.quantize import QuantEncoding, quantize_rtn
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

CASES = [
    (bits, sym, gran)
    for bits in (2, 3, 4, 8)
    for sym in (True, False)
    for gran in ("tensor", "channel", "group")
]


class _Conv1D(nn.Module):
    """transformers' Conv1D layout: weight [in, out], output channels on axis 1."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(48, 13), nn.ReLU(), nn.Linear(13, 5), nn.Conv2d(3, 7, 3))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(torch.rand_like(p) * 3)  # uneven ranges per row
            p[torch.rand_like(p) < 0.2] = 0.0  # pruned zeros, and all-zero groups now and then
        m[2].weight[1].zero_()
    return m


def _reference(
    w: torch.Tensor, bits: int, sym: bool, gran: str, axis: int
) -> tuple[torch.Tensor, QuantEncoding]:
    enc = quantize_rtn(w, bits, sym, gran, 16 if gran == "group" else None, axis, op="t", layer="t")
    return enc.project(w), enc


@pytest.mark.parametrize(("bits", "symmetric", "granularity"), CASES)
def test_fused_op_equals_the_torch_formula(bits: int, symmetric: bool, granularity: str) -> None:
    m = _model(1)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    op = get_op("quantize.weights")
    assert op is not None
    params = {"bits": bits, "symmetric": symmetric, "granularity": granularity, "group_size": 16}
    if granularity == "group":
        params["exclude"] = ["2.weight", "3.weight"]  # 13 and 27 columns: no group of 16 divides them
    cm = op.fn(CompressedModel(m), op.resolve(params), OpContext(device=torch.device("cpu"), seed=0))
    assert cm.encodings
    for name, enc in cm.encodings.items():
        assert isinstance(enc, QuantEncoding)
        ref, ref_enc = _reference(before[name], bits, symmetric, granularity, 0)
        assert torch.equal(dict(m.named_parameters())[name].detach(), ref), name
        assert torch.equal(enc.scales, ref_enc.scales)
        assert enc.scale_dtype == ref_enc.scale_dtype
        assert (enc.zeros is None) == (ref_enc.zeros is None)
        if enc.zeros is not None:
            assert ref_enc.zeros is not None and torch.equal(enc.zeros, ref_enc.zeros)


@pytest.mark.parametrize(("bits", "symmetric", "granularity"), CASES)
def test_fused_conv1d_layout(
    bits: int, symmetric: bool, granularity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelbonsai.ops.quantize as Q

    torch.manual_seed(2)
    m = nn.Module()
    m.c = _Conv1D(48, 11)
    with torch.no_grad():
        m.c.weight[torch.rand_like(m.c.weight) < 0.3] = 0.0
        m.c.weight[:, 3] = 0.0
    before = m.c.weight.detach().clone()
    monkeypatch.setattr(Q, "output_axis", lambda module, name: 1)
    op = get_op("quantize.weights")
    assert op is not None
    params = {
        "bits": bits,
        "symmetric": symmetric,
        "granularity": granularity,
        "group_size": 16,
        "include": ["c.weight"],
    }
    cm = op.fn(CompressedModel(m), op.resolve(params), OpContext(device=torch.device("cpu"), seed=0))
    ref, ref_enc = _reference(before, bits, symmetric, granularity, 1)
    enc = cm.encodings["c.weight"]
    assert isinstance(enc, QuantEncoding)
    assert torch.equal(m.c.weight.detach(), ref)
    assert torch.equal(enc.scales, ref_enc.scales)
    assert enc.axis == 1


@pytest.mark.parametrize("where", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("layout", ["rows", "cols"])
def test_fused_range_pass_refuses_non_finite(
    where: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelbonsai.ops.quantize as Q
    from modelbonsai.ops.registry import OpError

    torch.manual_seed(3)
    m = nn.Module()
    m.a = _Conv1D(32, 9)
    m.b = _Conv1D(32, 9)
    before = m.a.weight.detach().clone()
    with torch.no_grad():
        m.b.weight[17, 4] = float(where)
    monkeypatch.setattr(Q, "output_axis", lambda module, name: 1 if layout == "cols" else 0)
    op = get_op("quantize.weights")
    assert op is not None
    params = {"bits": 4, "include": ["*.weight"]}
    with pytest.raises(OpError, match="NaN") as err:
        op.fn(CompressedModel(m), op.resolve(params), OpContext(device=torch.device("cpu"), seed=0))
    assert err.value.layer == "b.weight"
    assert torch.equal(m.a.weight.detach(), before)  # nothing touched before the refusal
