"""The in-kernel decode of stored tensors (artifacts/kernels.py: expand_mask, dequant_any,
decode_range) against the position-array reference it replaces, on random masks of odd sizes
and unaligned ranges; and through the artifact readers, against the full decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai.artifacts import kernels as K
from modelbonsai.artifacts import open_stored, read_tensor, save_artifact
from modelbonsai.artifacts.ranged import _spec
from modelbonsai.ops.quantize import quantize_rtn
from modelbonsai.ops.registry import CompressedModel

SIZES = [1, 7, 8, 9, 63, 1001, 4099, 65537 + 3]
DENSITIES = [0.0, 0.01, 0.5, 0.99, 1.0]


def _old_bitmask_read(mask: np.ndarray, values: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The reader this replaces: an int64 position array of the set bits, then a scatter."""
    bits = np.unpackbits(mask, bitorder="little")
    off = int(bits[:start].sum())
    pos = np.nonzero(bits[start:stop])[0]
    out = np.zeros(stop - start, np.float32)
    out[pos] = values[off : off + pos.size]
    return out


def _ranges(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    out = [(0, n), (n - 1, n), (0, 1)]
    for _ in range(30):
        a = int(rng.integers(0, n))
        out.append((a, int(rng.integers(a + 1, n + 1))))
    return out


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("density", DENSITIES)
def test_expand_mask_equals_the_position_array_reader(n: int, density: float) -> None:
    rng = np.random.default_rng(n)
    keep = rng.random(n) < density
    mask = np.packbits(keep, bitorder="little")
    values = rng.standard_normal(int(keep.sum())).astype(np.float32)
    for a, b in _ranges(n, rng):
        off = int(keep[:a].sum())
        out = np.full(b - a, np.nan, np.float32)
        end = K.expand_mask(mask, a, values, off, np.float32(0.0), out)
        np.testing.assert_array_equal(
            out.view(np.uint32), _old_bitmask_read(mask, values, a, b).view(np.uint32)
        )
        assert end == off + int(keep[a:b].sum())


@pytest.mark.parametrize("n", [9, 1001, 65537 + 3])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_decode_range_packed_bitmask_transposed_layout(n: int, bits: int) -> None:
    """Codes of the set bits only, scales on the transposed [groups, out] layout: against a numpy
    decode, range by range with the state carried on and set afresh on jumps."""
    rng = np.random.default_rng(bits)
    out_ch = 7
    n_in = -(-n // out_ch)
    n = n_in * out_ch
    group_len = max(1, n_in // 3)
    groups = -(-n_in // group_len)
    keep = rng.random(n) < 0.6
    codes_all = rng.integers(0, 1 << bits, n).astype(np.uint8)
    stored_codes = codes_all[keep]
    packed = np.packbits(
        np.unpackbits(stored_codes[:, None], axis=1, bitorder="little")[:, :bits].reshape(-1),
        bitorder="little",
    )
    scales = rng.random((groups, out_ch)).astype(np.float32) + 0.1
    zeros = rng.integers(0, 1 << bits, (groups, out_ch)).astype(np.float32)
    i = np.arange(n)
    g = (i // (out_ch * group_len)) * out_ch + i % out_ch
    ref = ((codes_all.astype(np.float32) - zeros.reshape(-1)[g]) * scales.reshape(-1)[g]).astype(np.float32)
    ref[~keep] = 0.0
    spec = _spec(
        K.PACKED_BITMASK,
        mask=np.packbits(keep, bitorder="little"),
        packed=packed,
        bits=bits,
        scales=scales.reshape(-1),
        zeros=zeros.reshape(-1),
        a=out_ch * group_len,
        b=out_ch,
        c=out_ch,
    )
    state = np.zeros(3, np.int64)
    scratch = np.empty(n, np.uint8), np.empty(n, np.uint8)
    for a, b in _ranges(n, rng):
        state[0] = int(keep[:a].sum())
        got = np.empty(b - a, np.float32)
        K.decode_range(spec, a, b, state, *scratch, got)
        np.testing.assert_array_equal(got.view(np.uint32), ref[a:b].view(np.uint32), err_msg=f"[{a},{b})")
        assert state[0] == int(keep[:b].sum())


class _Holder(nn.Module):
    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        for name, t in tensors.items():
            self.register_parameter(name, nn.Parameter(t, requires_grad=False))


def test_spec_readers_match_the_full_decode_on_odd_shapes(tmp_path: Path) -> None:
    """Every form a spec reader serves (bitmask, CSR, packed and packed-bitmask in both scale
    layouts), odd shapes, ragged sequential ranges and jumps: bit-identical to the full decode."""
    g = torch.Generator().manual_seed(5)
    tensors: dict[str, torch.Tensor] = {}
    encs = {}
    for k, (shape, density) in enumerate(
        [((3, 5), 0.5), ((37, 129), 0.45), ((61, 1000), 0.004), ((1, 9), 1.0)]
    ):
        t = torch.randn(shape, generator=g)
        t[torch.rand(shape, generator=g) >= density] = 0.0
        tensors[f"sparse{k}"] = t
    for k, (shape, axis, gran, prune) in enumerate(
        [
            ((41, 37), 0, "channel", 0.0),
            ((48, 11), 1, "group", 0.0),
            ((40, 64), 0, "group", 0.85),
            ((64, 33), 1, "channel", 0.9),
        ]
    ):
        w = torch.randn(shape, generator=g)
        w[torch.rand(shape, generator=g) < prune] = 0.0
        enc = quantize_rtn(w, 3, False, gran, 16 if gran == "group" else None, axis, op="t", layer="t")
        tensors[f"q{k}"] = enc.dequantize(enc.encode(w))
        encs[f"q{k}"] = enc
    cm = CompressedModel(_Holder(tensors))
    cm.encodings = dict(encs)
    forms = save_artifact(cm, tmp_path).forms
    assert {"bitmask", "csr", "packed", "packed-bitmask"} <= set(forms.values()), forms
    st = open_stored(tmp_path)
    rng = np.random.default_rng(0)
    for name in tensors:
        full = read_tensor(tmp_path, name).float().reshape(-1).numpy()
        read = st.range_reader(name)
        assert read is not None, name
        assert forms[name] == "dense" or getattr(read, "spec", None) is not None, (name, forms[name])
        n = full.size
        seq, start = [], 0
        while start < n:
            stop = min(n, start + int(rng.integers(1, 700)))
            seq.append((start, stop))
            start = stop
        for a, b in seq + _ranges(n, rng):
            got = np.array(read(a, b))
            np.testing.assert_array_equal(
                got.view(np.uint32), full[a:b].view(np.uint32), err_msg=f"{name} [{a},{b})"
            )
