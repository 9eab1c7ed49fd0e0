"""Stored forms of one tensor: how it is written to the artifact and read back, bit-exactly.

Forms (the manifest's "form" field):

- ``dense``: the tensor itself (its own dtype).
- ``bitmask``: packed bit per element (1 = non-zero) + the non-zero values in order.
- ``csr``: the tensor as [shape[0], rest] in CSR: int32 indptr, int32 column indices, values.
- ``packed``: quantized (QuantEncoding): integer codes bit-packed at the encoding's bit width,
  scales (float16 or float32, as the encoding says) and, when asymmetric, zero points packed at
  the same bit width.
- ``packed-bitmask``: as ``packed`` but only the codes of non-zero elements, plus a bitmask.
- ``qint8``: a dynamically quantized Linear weight: int8 values (optionally bitmask + non-zero
  int8 values), float32 (or float64) scales, zero points only when not all zero.
- ``palette``: palettized (PaletteEncoding): look-up-table indices bit-packed at the encoding's
  bit width, the LUTs (float16 or float32, [groups, 2**bits]) and, with a per-channel scale, the
  scales (float16 or float32, one per output channel).
- ``alias``: the same storage as another entry (tied weights), stored once.

Every form is chosen only when it is smaller than dense, counting a small per-entry header cost.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..ops.packing import pack_codes, pack_mask, packed_nbytes, unpack_codes, unpack_mask
from ..ops.palettize import PaletteEncoding
from ..ops.quantize import QuantEncoding
from .manifest import SEP

HEADER_COST = 96  # approx. bytes of safetensors header per stored entry (key, dtype, shape, offsets)

_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def dtype_of(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype '{name}'")
    return _DTYPES[name]


@dataclass
class Encoded:
    """A manifest entry and the tensors it stores (component key -> tensor)."""

    entry: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def cost(self) -> int:
        return self.nbytes + HEADER_COST * len(self.tensors)


def _base(t: torch.Tensor, form: str) -> dict[str, Any]:
    return {"form": form, "dtype": dtype_name(t.dtype), "shape": list(t.shape)}


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


#: dtypes numpy counts exactly as torch does (-0.0 is a zero; bfloat16 has no numpy type)
_NUMPY_COUNTABLE = (torch.float32, torch.float64, torch.float16, torch.int8, torch.uint8, torch.int16,
                    torch.int32, torch.int64, torch.bool)  # fmt: skip


def count_nonzero(t: torch.Tensor) -> int:
    """int(torch.count_nonzero(t)), by numpy for a host tensor of a dtype it has: torch's takes
    ~1.1 s over MiniLM's 103 parameters on this 2-core machine (intra-op threads started per
    call), numpy's 0.06-0.11 s; writing a model and measuring it count every parameter."""
    if t.device.type == "cpu" and t.dtype in _NUMPY_COUNTABLE:
        return int(np.count_nonzero(t.detach().numpy()))
    return int(torch.count_nonzero(t))


_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _masked(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """t[mask] (row-major order, the same bytes) for host tensors: gathered by numpy on an
    integer view of the same element size, ~8x faster than torch's boolean indexing on the CPU
    (0.78 s vs 0.09 s for a MiniLM-sized tensor: most of writing a pruned model); any dtype
    (bfloat16 too: only bytes are moved)."""
    ints = _SAME_SIZE_INT.get(t.element_size())
    if ints is None or t.device.type != "cpu" or mask.device.type != "cpu":
        return t[mask]
    src = t.detach().contiguous().view(ints).numpy()
    picked = src.reshape(-1)[mask.detach().contiguous().reshape(-1).numpy()]
    return torch.from_numpy(picked).view(t.dtype)


# -- float (and other plain) tensors ---------------------------------------------------------------
def encode_plain(name: str, t: torch.Tensor) -> Encoded:
    """The smallest of dense, bitmask+values and CSR for a plain tensor."""
    t = _cpu(t)
    options = [Encoded(_base(t, "dense"), {name: t})]
    if t.is_floating_point() and t.numel() > 0:
        nnz = count_nonzero(t)
        elem = t.element_size()
        dense_bytes = t.numel() * elem
        if packed_nbytes(t.numel(), 1) + nnz * elem < dense_bytes:
            nz = t != 0
            options.append(
                Encoded(
                    _base(t, "bitmask"),
                    {f"{name}{SEP}mask": pack_mask(nz), f"{name}{SEP}values": _masked(t, nz)},
                )
            )
        if t.dim() >= 2 and t[0].numel() < 2**31 and (t.shape[0] + 1 + nnz) * 4 + nnz * elem < dense_bytes:
            options.append(_encode_csr(name, t))
    return min(options, key=lambda e: e.cost)


def _encode_csr(name: str, t: torch.Tensor) -> Encoded:
    m = t.reshape(t.shape[0], -1)
    nz = m != 0
    indptr = torch.zeros(m.shape[0] + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(torch.count_nonzero(m, dim=1), dim=0)
    indices = nz.nonzero()[:, 1]  # row-major order, matching m[nz]
    return Encoded(
        _base(t, "csr"),
        {
            f"{name}{SEP}indptr": indptr.to(torch.int32),
            f"{name}{SEP}indices": indices.to(torch.int32),
            f"{name}{SEP}values": _masked(m, nz),
        },
    )


# -- quantized tensors -----------------------------------------------------------------------------
def encode_quant(name: str, t: torch.Tensor, enc: QuantEncoding) -> Encoded | None:
    """Packed codes + scales, or None when t does not lie exactly on the encoding's grid.

    (A tensor changed after quantization without being projected back, e.g. by a later op, is
    then stored as a plain tensor instead: honest, and still bit-exact.)
    """
    t = _cpu(t)
    if tuple(t.shape) != tuple(enc.shape):
        return None
    enc_cpu = _encoding_cpu(enc)
    codes = enc_cpu.encode(t)
    if not torch.equal(enc_cpu.dequantize(codes, t.dtype), t):
        return None
    scale_dt = torch.float16 if enc.scale_dtype == "float16" else torch.float32
    scales = enc_cpu.scales.to(scale_dt)
    if not torch.equal(scales.to(torch.float32), enc_cpu.scales):
        scales = enc_cpu.scales  # a scale that is not float16-exact: keep float32, stay exact
    common: dict[str, torch.Tensor] = {f"{name}{SEP}scales": scales.contiguous()}
    if enc_cpu.zeros is not None:
        common[f"{name}{SEP}zeros"] = pack_codes(enc_cpu.zeros.to(torch.uint8), enc.bits)
    entry = {**_base(t, "packed"), "bits": enc.bits}
    options = [Encoded(entry, {f"{name}{SEP}codes": pack_codes(codes, enc.bits), **common})]
    nnz = count_nonzero(t)
    if packed_nbytes(t.numel(), 1) + packed_nbytes(nnz, enc.bits) < packed_nbytes(t.numel(), enc.bits):
        nz = t != 0
        options.append(
            Encoded(
                {**entry, "form": "packed-bitmask"},
                {
                    f"{name}{SEP}mask": pack_mask(nz),
                    f"{name}{SEP}codes": pack_codes(_masked(codes, nz), enc.bits),
                    **common,
                },
            )
        )
    return min(options, key=lambda e: e.cost)


def _encoding_cpu(enc: QuantEncoding) -> QuantEncoding:
    return QuantEncoding(
        bits=enc.bits,
        symmetric=enc.symmetric,
        granularity=enc.granularity,
        group_size=enc.group_size,
        axis=enc.axis,
        shape=tuple(enc.shape),
        scales=enc.scales.detach().cpu().to(torch.float32),
        zeros=None if enc.zeros is None else enc.zeros.detach().cpu(),
        scale_dtype=enc.scale_dtype,
    )


# -- palettized tensors ----------------------------------------------------------------------------
def encode_palette(name: str, t: torch.Tensor, enc: PaletteEncoding) -> Encoded | None:
    """Packed LUT indices + LUTs (+ per-channel scales), or None when t is not exactly on the
    palette (then stored as a plain tensor, as for quantized tensors)."""
    t = _cpu(t)
    if tuple(t.shape) != tuple(enc.shape):
        return None
    cpu = PaletteEncoding.from_json(
        enc.to_json(), enc.lut.detach().cpu(), None if enc.scales is None else enc.scales.detach().cpu()
    )
    codes = cpu.encode(t)
    if not torch.equal(cpu.dequantize(codes, t.dtype), t):
        return None
    tensors = {
        f"{name}{SEP}codes": pack_codes(codes, enc.bits),
        f"{name}{SEP}lut": _exact_half(cpu.lut, enc.lut_dtype),
    }
    if cpu.scales is not None:
        tensors[f"{name}{SEP}scales"] = _exact_half(cpu.scales, enc.scale_dtype)
    return Encoded({**_base(t, "palette"), "bits": enc.bits}, tensors)


def _exact_half(t: torch.Tensor, dtype: str) -> torch.Tensor:
    """t as float16 when the encoding says its values are float16-exact (checked), else float32."""
    if dtype == "float16":
        half = t.to(torch.float16)
        if torch.equal(half.to(torch.float32), t):
            return half.contiguous()
    return t.to(torch.float32).contiguous()


def palette_encoding(
    name: str, encoding: dict[str, Any], get: Callable[[str], torch.Tensor]
) -> PaletteEncoding:
    lut = get(f"{name}{SEP}lut").to(torch.float32)
    scales = get(f"{name}{SEP}scales").to(torch.float32) if encoding.get("per_channel_scale") else None
    return PaletteEncoding.from_json(encoding, lut, scales)


# -- dynamic int8 weights --------------------------------------------------------------------------
def encode_qint8(name: str, qweight: torch.Tensor) -> Encoded:
    ints = qweight.int_repr().contiguous()
    per_channel = qweight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    if per_channel:
        scales = qweight.q_per_channel_scales()
        zps = qweight.q_per_channel_zero_points()
        axis = int(qweight.q_per_channel_axis())
    else:
        scales = torch.tensor([qweight.q_scale()], dtype=torch.float64)
        zps = torch.tensor([qweight.q_zero_point()], dtype=torch.int64)
        axis = 0
    scales32 = scales.to(torch.float32)
    stored_scales = scales32 if torch.equal(scales32.to(torch.float64), scales.to(torch.float64)) else scales
    entry = {
        "form": "qint8",
        "dtype": "float32",
        "shape": list(ints.shape),
        "qscheme": "channel" if per_channel else "tensor",
        "axis": axis,
        "sparse": False,
    }
    tensors = {f"{name}{SEP}scales": stored_scales.contiguous()}
    if bool((zps != 0).any()):
        tensors[f"{name}{SEP}zero_points"] = zps.to(torch.int32)
        entry["has_zero_points"] = True
    dense = Encoded(entry, {f"{name}{SEP}values": ints, **tensors})
    nnz = count_nonzero(ints)
    nz = ints != 0
    if f"{name}{SEP}zero_points" not in tensors and packed_nbytes(ints.numel(), 1) + nnz < ints.numel():
        sparse = Encoded(
            {**entry, "sparse": True},
            {f"{name}{SEP}mask": pack_mask(nz), f"{name}{SEP}values": _masked(ints, nz), **tensors},
        )
        return min([dense, sparse], key=lambda e: e.cost)
    return dense


def _qint8_parts(
    name: str, entry: dict[str, Any], get: Callable[[str], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(int8 values, float64 scales, int64 zero points) of a `qint8` entry."""
    shape = [int(x) for x in entry["shape"]]
    numel = _numel(shape)
    if entry.get("sparse"):
        mask = unpack_mask(get(f"{name}{SEP}mask"), numel)
        ints = torch.zeros(numel, dtype=torch.int8)
        ints[mask] = get(f"{name}{SEP}values").to(torch.int8)
        ints = ints.reshape(shape)
    else:
        ints = get(f"{name}{SEP}values").to(torch.int8).reshape(shape)
    scales = get(f"{name}{SEP}scales").to(torch.float64)
    zkey = f"{name}{SEP}zero_points"
    zps = (
        get(zkey).to(torch.int64)
        if entry.get("has_zero_points")
        else torch.zeros_like(scales, dtype=torch.int64)
    )
    return ints, scales, zps


def decode_qint8(name: str, entry: dict[str, Any], get: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """The quantized (torch.qint8) weight tensor of a `qint8` entry, for the dynamic layer."""
    ints, scales, zps = _qint8_parts(name, entry, get)
    with warnings.catch_warnings():  # torch 2.13 flags quantized tensors as deprecated; still the API
        warnings.simplefilter("ignore")
        if entry["qscheme"] == "channel":
            return torch._make_per_channel_quantized_tensor(ints, scales, zps, int(entry["axis"]))
        return torch._make_per_tensor_quantized_tensor(ints, float(scales[0]), int(zps[0]))


def dequantize_qint8(name: str, entry: dict[str, Any], get: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Float32 values of a `qint8` entry, (int - zero point) * scale, as torch's dequantize gives."""
    ints, scales, zps = _qint8_parts(name, entry, get)
    view = [1] * ints.dim()
    axis = int(entry["axis"]) if entry["qscheme"] == "channel" else 0
    if entry["qscheme"] == "channel":
        view[axis] = -1
    s = (
        scales.to(torch.float32).reshape(view)
        if entry["qscheme"] == "channel"
        else scales.to(torch.float32)[0]
    )
    z = zps.reshape(view) if entry["qscheme"] == "channel" else zps[0]
    return (ints.to(torch.int64) - z).to(torch.float32) * s


# -- decoding --------------------------------------------------------------------------------------
def decode(
    name: str, entry: dict[str, Any], get: Callable[[str], torch.Tensor], encoding: dict[str, Any] | None
) -> torch.Tensor:
    """The tensor an entry stores, as the model held it (quantized forms dequantized exactly)."""
    form = entry["form"]
    shape = [int(x) for x in entry["shape"]]
    dtype = dtype_of(entry["dtype"])
    numel = _numel(shape)
    if form == "dense":
        t = get(name)
        _expect(name, t, shape, dtype)
        return t
    if form == "bitmask":
        mask = unpack_mask(get(f"{name}{SEP}mask"), numel)
        out = torch.zeros(numel, dtype=dtype)
        out[mask] = get(f"{name}{SEP}values").to(dtype)
        return out.reshape(shape)
    if form == "csr":
        indptr = get(f"{name}{SEP}indptr").to(torch.int64)
        indices = get(f"{name}{SEP}indices").to(torch.int64)
        values = get(f"{name}{SEP}values").to(dtype)
        rows = shape[0] if shape else 1
        counts = indptr[1:] - indptr[:-1]
        row_idx = torch.repeat_interleave(torch.arange(rows), counts)
        out = torch.zeros(rows, numel // max(rows, 1), dtype=dtype)
        out[row_idx, indices] = values
        return out.reshape(shape)
    if form in ("packed", "packed-bitmask"):
        if encoding is None:
            raise ValueError("quantized tensor without its encoding in the manifest")
        enc = quant_encoding(name, encoding, get)
        bits = int(entry["bits"])
        if form == "packed":
            codes = unpack_codes(get(f"{name}{SEP}codes"), bits, numel).reshape(shape)
        else:
            mask = unpack_mask(get(f"{name}{SEP}mask"), numel)
            codes = enc.zero_codes().reshape(-1).clone()
            codes[mask] = unpack_codes(get(f"{name}{SEP}codes"), bits, int(mask.sum()))
            codes = codes.reshape(shape)
        return enc.dequantize(codes, dtype)
    if form == "palette":
        if encoding is None:
            raise ValueError("palettized tensor without its encoding in the manifest")
        pal = palette_encoding(name, encoding, get)
        codes = unpack_codes(get(f"{name}{SEP}codes"), int(entry["bits"]), numel).reshape(shape)
        return pal.dequantize(codes, dtype)
    if form == "qint8":
        return dequantize_qint8(name, entry, get)
    raise ValueError(f"unknown stored form '{form}'")


def quant_encoding(name: str, encoding: dict[str, Any], get: Callable[[str], torch.Tensor]) -> QuantEncoding:
    scales = get(f"{name}{SEP}scales").to(torch.float32)
    zeros = None
    if not encoding["symmetric"]:
        count = scales.numel()
        zeros = unpack_codes(get(f"{name}{SEP}zeros"), int(encoding["bits"]), count).reshape(scales.shape)
    return QuantEncoding.from_json(encoding, scales, zeros)


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _expect(name: str, t: torch.Tensor, shape: list[int], dtype: torch.dtype) -> None:
    if list(t.shape) != shape or t.dtype != dtype:
        raise ValueError(f"stored as {t.dtype} {list(t.shape)}, manifest says {dtype} {shape}")
