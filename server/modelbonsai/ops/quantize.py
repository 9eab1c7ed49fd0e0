"""`quantize.weights`: round-to-nearest weight quantization, and the quantized-tensor encoding.

The in-memory model keeps dequantized float weights (so it runs anywhere); the exact grid each
tensor lies on is kept in a :class:`QuantEncoding` (bits, scheme, scales, zero points), which the
artifact writer uses to store the tensor as packed integer codes plus scales.

Conventions shared with `quantize.calibrated` and the artifact format:

- A tensor is viewed as rows × columns: rows are the output channels (`axis`: 0 for Linear and
  Conv weights, 1 for transformers' Conv1D, whose weight is [in, out]); columns are everything
  else, flattened. Groups are runs of `group_size` consecutive columns.
- Codes are unsigned, in [0, 2**bits). value = (code - zero) * scale, computed in float32 and then
  cast to the tensor's dtype. Symmetric: zero = 2**(bits-1) for every row, codes use the
  symmetric range zero ± (2**(bits-1) - 1), so 0.0 is exact. Asymmetric: one integer zero point
  per scale, rounded, so 0.0 is exact too (pruned weights stay pruned).
- Scales are stored in float16 when every scale is a normal float16 number (rounded *up*, so the
  per-element error bound |w - q(w)| <= scale/2 still holds), otherwise float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .targets import EXCLUDE, INCLUDE, STRICT, to_device

GRANULARITIES = ("tensor", "channel", "group")
_FP16_MIN_NORMAL = 2.0**-14
_FP16_MAX = 65504.0


# -- the encoding ----------------------------------------------------------------------------------
@dataclass
class QuantEncoding:
    """How one quantized tensor is stored: integer codes on a fixed grid of scales/zero points.

    `scales` is float32 [rows, groups] (holding float16-representable values when `scale_dtype`
    is "float16"); `zeros` is int16 [rows, groups] for asymmetric schemes, None for symmetric.
    """

    bits: int
    symmetric: bool
    granularity: str
    group_size: int | None
    axis: int
    shape: tuple[int, ...]
    scales: torch.Tensor
    zeros: torch.Tensor | None
    scale_dtype: str = "float16"
    kind: str = "quant"

    # -- layout ---------------------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return int(self.scales.shape[1])

    def to_rows(self, t: torch.Tensor) -> torch.Tensor:
        """t viewed as [rows, groups, group_len] following the layout conventions above."""
        return _to_rows(t, self.granularity, self.axis, self.n_groups)

    def from_rows(self, r: torch.Tensor) -> torch.Tensor:
        return _from_rows(r, self.shape, self.axis, self.granularity)

    def zero_points(self) -> torch.Tensor:
        """Zero points as float32 [rows, groups] (symmetric: the constant 2**(bits-1))."""
        if self.zeros is None:
            return torch.full_like(self.scales, float(1 << (self.bits - 1)))
        return self.zeros.to(torch.float32)

    def code_range(self) -> tuple[int, int]:
        if self.symmetric:
            return 1, (1 << self.bits) - 1
        return 0, (1 << self.bits) - 1

    # -- numbers --------------------------------------------------------------------------------
    def _codes_float(self, t: torch.Tensor) -> torch.Tensor:
        """Codes as float32 in row layout [rows, groups, len] (in-place ops: one temporary)."""
        if tuple(t.shape) != tuple(self.shape):
            raise ValueError(f"tensor shape {tuple(t.shape)} does not match the encoding's {self.shape}")
        s = self.scales.to(t.device, torch.float32).unsqueeze(-1)
        r = self.to_rows(t.detach().to(torch.float32))
        lo, hi = self.code_range()
        q = torch.div(r, s).round_()
        if self.zeros is None:
            q.add_(float(1 << (self.bits - 1)))
        else:
            q.add_(self.zeros.to(t.device, torch.float32).unsqueeze(-1))
        return q.clamp_(lo, hi)

    def _values_from_codes(self, q: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(q - zero) * scale in place on float32 row-layout codes; the one dequantization formula."""
        s = self.scales.to(q.device, torch.float32).unsqueeze(-1)
        if self.zeros is None:
            q.sub_(float(1 << (self.bits - 1)))
        else:
            q.sub_(self.zeros.to(q.device, torch.float32).unsqueeze(-1))
        return self.from_rows(q.mul_(s)).to(dtype)

    def encode(self, t: torch.Tensor) -> torch.Tensor:
        """Codes (uint8, same shape as t) of the nearest grid point to each element of t."""
        return self.from_rows(self._codes_float(t).to(torch.uint8))

    def dequantize(self, codes: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Float values of codes (float32 unless `dtype`); the one formula every path (op,
        project, artifact) uses."""
        if dtype is None:  # not a default argument: that would import torch on registering
            dtype = torch.float32
        if tuple(codes.shape) != tuple(self.shape):
            raise ValueError(f"codes shape {tuple(codes.shape)} does not match the encoding's {self.shape}")
        return self._values_from_codes(self.to_rows(codes).to(torch.float32), dtype)

    def project(self, tensor: torch.Tensor) -> torch.Tensor:
        """Fake-quantize onto this encoding's fixed grid (used by finetune to keep it quantized)."""
        return self._values_from_codes(self._codes_float(tensor), tensor.dtype)

    def zero_codes(self) -> torch.Tensor:
        """The code of 0.0 for every element, as uint8 of the tensor's shape."""
        z = self.zero_points().to(torch.uint8)
        full = z.unsqueeze(-1).expand(*z.shape, self._group_len())
        return self.from_rows(full.contiguous())

    def _group_len(self) -> int:
        numel = 1
        for d in self.shape:
            numel *= d
        return numel // (self.scales.shape[0] * self.scales.shape[1])

    def to_cpu(self) -> None:
        self.scales = self.scales.detach().cpu()
        if self.zeros is not None:
            self.zeros = self.zeros.detach().cpu()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bits": self.bits,
            "symmetric": self.symmetric,
            "granularity": self.granularity,
            "group_size": self.group_size,
            "axis": self.axis,
            "shape": list(self.shape),
            "scale_dtype": self.scale_dtype,
            "scales_shape": list(self.scales.shape),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], scales: torch.Tensor, zeros: torch.Tensor | None) -> QuantEncoding:
        return cls(
            bits=int(d["bits"]),
            symmetric=bool(d["symmetric"]),
            granularity=str(d["granularity"]),
            group_size=None if d.get("group_size") is None else int(d["group_size"]),
            axis=int(d["axis"]),
            shape=tuple(int(x) for x in d["shape"]),
            scales=scales.to(torch.float32),
            zeros=None if zeros is None else zeros.to(torch.int16),
            scale_dtype=str(d.get("scale_dtype", "float32")),
        )


def _to_rows(t: torch.Tensor, granularity: str, axis: int, n_groups: int) -> torch.Tensor:
    if granularity == "tensor" or t.dim() < 2:
        flat = t.reshape(1, -1)
    else:
        flat = t.movedim(axis, 0).reshape(t.shape[axis], -1)
    return flat.reshape(flat.shape[0], n_groups, -1)


def _from_rows(r: torch.Tensor, shape: tuple[int, ...], axis: int, granularity: str) -> torch.Tensor:
    if granularity == "tensor" or len(shape) < 2:
        return r.reshape(shape)
    moved = list(shape)
    moved.insert(0, moved.pop(axis))
    return r.reshape(moved).movedim(0, axis).contiguous()


# -- choosing scales -------------------------------------------------------------------------------
def scheme_shape(
    shape: Sequence[int], granularity: str, group_size: int | None, axis: int, *, op: str, layer: str
) -> tuple[int, int]:
    """(rows, groups) of the scale grid for a tensor; OpError when groups don't divide columns."""
    rows, cols = _rows_cols(shape, granularity, axis)
    if granularity == "tensor":
        return 1, 1
    if granularity == "channel":
        return rows, 1
    assert group_size is not None
    misfit = group_misfit(shape, granularity, group_size, axis)
    if misfit:
        raise OpError(
            op, f"{misfit}; pick a divisor of {cols} or exclude the layer", param="group_size", layer=layer
        )
    return rows, cols // group_size


def _rows_cols(shape: Sequence[int], granularity: str, axis: int) -> tuple[int, int]:
    numel = 1
    for d in shape:
        numel *= d
    rows = 1 if granularity == "tensor" or len(shape) < 2 else int(shape[axis])
    return rows, numel // rows


def group_misfit(shape: Sequence[int], granularity: str, group_size: int | None, axis: int) -> str | None:
    """Why a tensor of `shape` cannot be split into groups of `group_size` columns (None: it can)."""
    if granularity != "group" or group_size is None:
        return None
    _rows, cols = _rows_cols(shape, granularity, axis)
    if cols % group_size:
        return f"group_size {group_size} does not divide the {cols} input columns of this tensor (shape {list(shape)})"
    return None


def fitting_targets(
    module: nn.Module,
    names: list[str],
    granularity: str,
    group_size: int | None,
    ctx: OpContext,
    *,
    op: str,
    strict: bool,
) -> list[str]:
    """`names` without the tensors whose columns `group_size` does not divide (a 3x3 conv has 9
    per input channel): those are skipped and stay float (`OpContext.skip_layer`; `strict` fails)."""
    lookup = dict(module.named_parameters())
    out = []
    for name in names:
        misfit = group_misfit(tuple(lookup[name].shape), granularity, group_size, output_axis(module, name))
        if misfit:
            ctx.skip_layer(op, name, misfit, strict=strict, param="group_size")
        else:
            out.append(name)
    return out


def fit_scales(r: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Scales (and zero points) covering each row-group of r [rows, groups, len] without clipping.

    Returns float32 scales [rows, groups], int16 zeros or None, and the storage dtype of scales.
    """
    r = r.to(torch.float32)
    lo, hi = torch.aminmax(r, dim=-1)
    return scales_from_ranges(lo, hi, bits, symmetric)


def scales_from_ranges(
    lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """:func:`fit_scales` from each row-group's float32 min and max [rows, groups] (what the
    fused range kernel gives without a second pass over the weight)."""
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        scales = torch.maximum(lo.abs(), hi.abs()) / qmax  # = max |x|, exactly
    else:
        qmax = (1 << bits) - 1
        lo = torch.clamp(lo, max=0.0)  # the range always contains 0, so 0.0 is exact
        hi = torch.clamp(hi, min=0.0)
        scales = (hi - lo) / qmax
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # all-zero group: any scale works
    scales, scale_dtype = _storage_scales(scales)
    if symmetric:
        return scales, None, scale_dtype
    zeros = torch.clamp(torch.round(-lo / scales), 0, qmax).to(torch.int16)
    return scales, zeros, scale_dtype


def _storage_scales(scales: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Round scales to float16 (upwards, to keep the no-clipping guarantee) when all fit."""
    if bool(((scales >= _FP16_MIN_NORMAL) & (scales <= _FP16_MAX / 2)).all()):
        device = scales.device
        s = scales.cpu()  # few values; nextafter on half is sure to exist on the CPU
        half = s.to(torch.float16)
        low = half.to(torch.float32) < s
        if bool(low.any()):
            up = torch.nextafter(half, torch.full_like(half, float("inf")))
            half = torch.where(low, up, half)
        return half.to(torch.float32).to(device), "float16"
    return scales, "float32"


def scale_storage_dtype(scales: torch.Tensor) -> str:
    """ "float16" when every scale is exactly a normal float16 number, else "float32"."""
    s = scales.to(torch.float32)
    fits = (s >= _FP16_MIN_NORMAL) & (s <= _FP16_MAX) & (s.to(torch.float16).to(torch.float32) == s)
    return "float16" if bool(fits.all()) else "float32"


def check_finite(t: torch.Tensor, *, op: str, layer: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise OpError(op, "this tensor holds NaN or infinite values, which cannot be quantized", layer=layer)


def quantize_rtn(
    t: torch.Tensor,
    bits: int,
    symmetric: bool,
    granularity: str,
    group_size: int | None,
    axis: int,
    *,
    op: str,
    layer: str,
) -> QuantEncoding:
    """The round-to-nearest encoding of t (scales from each row-group's range)."""
    _rows, groups = scheme_shape(tuple(t.shape), granularity, group_size, axis, op=op, layer=layer)
    r = _to_rows(t.detach(), granularity, axis, groups)
    scales, zeros, scale_dtype = fit_scales(r, bits, symmetric)
    return QuantEncoding(
        bits=bits,
        symmetric=symmetric,
        granularity=granularity,
        group_size=group_size if granularity == "group" else None,
        axis=axis,
        shape=tuple(t.shape),
        scales=scales,
        zeros=zeros,
        scale_dtype=scale_dtype,
    )


# -- which tensors ---------------------------------------------------------------------------------
def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except Exception:  # transformers missing or changed: only torch layer types then
        return None
    return Conv1D


def output_axis(module: nn.Module, name: str) -> int:
    """The output-channel axis of a parameter: 1 for transformers Conv1D weights, else 0."""
    conv1d = _conv1d_type()
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if conv1d is not None and isinstance(owner, conv1d) and leaf == "weight":
        return 1
    return 0


def select_targets(
    module: nn.Module, include: str | list[str] | None, exclude: str | list[str] | None, *, op: str
) -> list[str]:
    """Parameter names an op applies to: the same rule as every weight op (see `targets.py`).

    No include: the default weight targets (Linear/Conv/Conv1D weights; a weight tied to an
    embedding is left out). With include: every parameter matching it, so biases, norms and
    embeddings are quantized only when a pattern names them. Exclude always wins; a pattern that
    matches nothing is an error naming it.
    """
    from .targets import select_weights

    params = dict(module.named_parameters())
    return [n for n in select_weights(op, module, include, exclude) if params[n].is_floating_point()]


SCHEME_PARAMS = [
    Param("bits", "int", "Bits per weight (2–8).", default=8, minimum=2, maximum=8),
    Param(
        "symmetric",
        "bool",
        "Symmetric grid around 0 (true) or with a zero point per scale (false).",
        default=True,
    ),
    Param(
        "granularity",
        "enum",
        "One scale per tensor, per output channel, or per group of input columns.",
        default="channel",
        choices=GRANULARITIES,
    ),
    Param(
        "group_size",
        "int",
        "Input columns per scale when granularity is group; a layer whose columns it "
        "does not divide is skipped (see `strict`).",
        default=128,
        minimum=2,
    ),
    INCLUDE,
    EXCLUDE,
    STRICT,
]


@register_op(
    "quantize.weights",
    family="quantize",
    summary="Round-to-nearest weight quantization (2–8 bits), stored packed with its scales.",
    params=SCHEME_PARAMS,
)
def quantize_weights(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Quantize weights to `bits` bits by rounding each value to the nearest grid point.

    The grid has one scale per tensor, per output channel or per group of `group_size` input
    columns; symmetric grids are centred on 0, asymmetric ones have an integer zero point per
    scale. A layer whose input columns `group_size` does not divide (a 3x3 conv has 9 per input
    channel) is skipped and stays float, with a warning in the run's output and the model's
    `skipped_layers` metric; `strict: true` fails the variant instead. Zeros (e.g. from pruning)
    stay exactly zero. The model keeps running on the
    dequantized floats; the artifact stores the integer codes packed at `bits` bits (int4: two per
    byte) plus float16 scales (float32 when a scale does not fit float16) and, for asymmetric
    grids, zero points packed at `bits` bits. The error of every weight is at most half its scale.
    """
    op = "quantize.weights"
    bits, symmetric = int(params["bits"]), bool(params["symmetric"])
    gran = str(params["granularity"])
    group_size = int(params["group_size"]) if gran == "group" else None
    module = to_device(cm, ctx)
    names = select_targets(module, params.get("include"), params.get("exclude"), op=op)
    names = fitting_targets(module, names, gran, group_size, ctx, op=op, strict=bool(params.get("strict")))
    lookup = dict(module.named_parameters())
    plans = []
    for name in names:
        p = lookup[name]
        axis = output_axis(module, name)
        _rows, groups = scheme_shape(tuple(p.shape), gran, group_size, axis, op=op, layer=name)
        plans.append(_Plan(name, p, axis, groups, _fused_view(p, gran, axis, groups)))

    def ranges(plan: _Plan) -> tuple[bool, tuple[torch.Tensor, torch.Tensor] | None]:
        """(finite, the plan's group ranges: None on the torch path)."""
        if plan.view is None:
            return bool(torch.isfinite(plan.p).all()), None
        return _fused_ranges(plan)

    # Validate everything before touching the model (no partial results): the fused path's
    # range pass is also its finiteness check, and its ranges are kept for the scales.
    checked = list(_in_threads(ranges, plans))
    for plan, (finite, _) in zip(plans, checked, strict=True):
        if not finite:
            raise OpError(
                op, "this tensor holds NaN or infinite values, which cannot be quantized", layer=plan.name
            )
    found = [rng for _, rng in checked]

    def quantize(i: int) -> QuantEncoding:
        plan, rng = plans[i], found[i]
        with torch.no_grad():
            if rng is None or plan.view is None:
                enc = quantize_rtn(
                    plan.p, bits, symmetric, gran, group_size, plan.axis, op=op, layer=plan.name
                )
                plan.p.copy_(enc.project(plan.p))
            else:
                scales, zeros, scale_dtype = scales_from_ranges(rng[0], rng[1], bits, symmetric)
                enc = _encoding(plan, bits, symmetric, gran, group_size, scales, zeros, scale_dtype)
                _fused_project(plan, enc)
        enc.to_cpu()  # small; kept off the accelerator between ops
        return enc

    for i, enc in enumerate(_in_threads(quantize, range(len(plans)), check=ctx.check_cancelled)):
        cm.encodings[plans[i].name] = enc
        ctx.progress((i + 1) / len(plans), f"quantized {plans[i].name}")
    return cm


# -- the fused CPU path (ops/kernels.py) -----------------------------------------------------------
class _Plan(NamedTuple):
    name: str
    p: torch.Tensor
    axis: int
    groups: int
    #: ("rows" | "cols", numpy view of the weight) for the fused kernels, None for torch
    view: tuple[str, np.ndarray] | None


def _fused_view(p: torch.Tensor, granularity: str, axis: int, groups: int) -> tuple[str, np.ndarray] | None:
    """The weight as the fused kernels read it, sharing its memory; None where they do not
    apply (not float32 on the CPU, not contiguous, empty, or a channel axis they do not walk)."""
    if p.device.type != "cpu" or p.dtype != torch.float32 or not p.is_contiguous() or p.numel() == 0:
        return None
    arr = p.detach().numpy()
    if granularity == "tensor" or p.dim() < 2 or axis == 0:
        rows = 1 if granularity == "tensor" or p.dim() < 2 else int(p.shape[0])
        return "rows", arr.reshape(rows, groups, -1)
    if p.dim() == 2 and axis == 1:  # transformers' Conv1D: [in, out], groups along `in`
        return "cols", arr
    return None


def _fused_ranges(plan: _Plan) -> tuple[bool, tuple[torch.Tensor, torch.Tensor] | None]:
    """(finite, (min, max) of every scale group as float32 [rows, groups]; None when the weight
    holds NaN or ±Inf)."""
    from . import kernels as K

    assert plan.view is not None
    kind, arr = plan.view
    rows = arr.shape[0] if kind == "rows" else arr.shape[1]
    lo = np.empty((rows, plan.groups), np.int32)
    hi = np.empty((rows, plan.groups), np.int32)
    if kind == "rows":
        ok = K.group_ranges(arr, lo, hi)
    else:
        ok = K.group_ranges_cols(arr, arr.shape[0] // plan.groups, lo, hi)
    if not ok:
        return False, None
    return True, (torch.from_numpy(lo.view(np.float32)), torch.from_numpy(hi.view(np.float32)))


def _fused_project(plan: _Plan, enc: QuantEncoding) -> None:
    """Project the weight onto enc's grid in place (bit-identical to `enc.project`)."""
    from . import kernels as K

    assert plan.view is not None
    kind, arr = plan.view
    scales = enc.scales.numpy()
    zeros = enc.zero_points().numpy()
    qlo, qhi = (np.float32(v) for v in enc.code_range())
    if kind == "rows":
        K.project_groups(arr, scales, zeros, qlo, qhi, arr)
    else:
        K.project_groups_cols(arr, arr.shape[0] // plan.groups, scales, zeros, qlo, qhi, arr)


def _encoding(
    plan: _Plan, bits: int, symmetric: bool, granularity: str, group_size: int | None,
    scales: torch.Tensor, zeros: torch.Tensor | None, scale_dtype: str,
) -> QuantEncoding:  # fmt: skip
    return QuantEncoding(
        bits=bits,
        symmetric=symmetric,
        granularity=granularity,
        group_size=group_size if granularity == "group" else None,
        axis=plan.axis,
        shape=tuple(plan.p.shape),
        scales=scales,
        zeros=zeros,
        scale_dtype=scale_dtype,
    )


_T = TypeVar("_T")
_R = TypeVar("_R")


def _in_threads(
    fn: Callable[[_T], _R], items: Iterable[_T], check: Callable[[], None] | None = None
) -> Iterator[_R]:
    """fn over items, in order, on as many threads as torch may use (the kernels release the GIL;
    torch's own ops run their threads anyway); `check` runs before each result is handed on (the
    op's cancellation check), and a raise there cancels what has not started."""
    items = list(items)
    threads = max(1, min(torch.get_num_threads(), len(items)))
    if threads == 1:
        for item in items:
            if check is not None:
                check()
            yield fn(item)
        return
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for f in futures:
                if check is not None:
                    check()
                yield f.result()
        finally:
            for f in futures:
                f.cancel()
