"""`quantize.static`: W8A8, int8 weights and int8 activations with calibrated observers.

Weights are quantized to int8 per output channel (symmetric, a QuantEncoding stored packed like
`quantize.weights`). The *input* of every quantized layer gets one scale and zero point, fitted
by an observer on calibration batches: `minmax` (the observed range), `percentile` (clip the
rarest values) or `mse` (the clipping range minimising the squared quantization error over the
observed distribution). In eager PyTorch the input is fake-quantized by the layer's forward
pre-hook (smoothquant.input_transform): rounded onto the int grid and back, so the model runs on
any device and shows the accuracy an int8 kernel would give.

What is stored, per quantized layer, for an exporter (ONNX QDQ: QuantizeLinear/DequantizeLinear
on the input, DequantizeLinear on the weight): `<layer>.act_scale` (float32, one value) and
`<layer>.act_zero_point` (uint8 for asymmetric activations, int8 for symmetric ones: the dtype
ONNX uses for the quantized type), and the weight's encoding in the manifest (8-bit codes with
the constant zero 128, per-channel float scales). The `input.transform` edit lists the layers
(`quantized`) and the activation type (`act_dtype`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .quantize import check_finite, output_axis, quantize_rtn, select_targets
from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .smoothquant import (
    ACT_SCALE,
    ACT_ZERO,
    CALIBRATION_PARAMS,
    EDIT,
    attach_hook,
    calibration_batches,
    is_linear_like,
    weight_of,
)
from .targets import EXCLUDE, INCLUDE, refuse_encoded, to_device

OP = "quantize.static"
BINS = 2048
MSE_CANDIDATES = 100


@dataclass
class _Observer:
    """Running range, then a histogram over it, of one layer's input values."""

    lo: float = float("inf")
    hi: float = float("-inf")
    hist: torch.Tensor | None = None


def _layers(model: nn.Module, params: dict[str, Any]) -> list[str]:
    """Module names of the selected Linear / Conv1D / Conv1d / Conv2d weights."""
    out = []
    for w in select_targets(model, params.get("include"), params.get("exclude"), op=OP):
        mod_name, _, leaf = w.rpartition(".")
        mod = model.get_submodule(mod_name) if mod_name else model
        if leaf == "weight" and (is_linear_like(mod) or isinstance(mod, (nn.Conv1d, nn.Conv2d))):
            out.append(mod_name)
    if not out:
        raise OpError(
            OP, "no Linear or convolution layer is selected; W8A8 applies to those", param="include"
        )
    return out


def _observe(
    model: nn.Module,
    names: list[str],
    batches: list[Any],
    task: Any,
    ctx: OpContext,
    symmetric: bool,
    hist: bool,
) -> dict[str, _Observer]:
    """Pass 1: each input's range. Pass 2 (hist): a histogram of x (asymmetric) or |x| over it."""
    obs = {n: _Observer() for n in names}

    def run(hook_fn: Any) -> None:
        handles = [model.get_submodule(n).register_forward_pre_hook(hook_fn(n)) for n in names]
        try:
            with torch.no_grad():
                for batch in batches:
                    ctx.check_cancelled()
                    task.forward(model, batch)
        finally:
            for h in handles:
                h.remove()

    def ranges(name: str) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().to(torch.float32)
            o = obs[name]
            lo, hi = torch.aminmax(x.abs() if symmetric else x)
            o.lo, o.hi = min(o.lo, float(lo)), max(o.hi, float(hi))

        return hook

    def histogram(name: str) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().to(torch.float32)
            o = obs[name]
            h = torch.histc(x.abs() if symmetric else x, BINS, o.lo, o.hi).cpu()
            o.hist = h if o.hist is None else o.hist + h

        return hook

    was_training = model.training
    model.eval()
    try:
        run(ranges)
        for n, o in obs.items():
            if o.lo == float("inf"):
                raise OpError(
                    OP, "this layer never ran on the calibration batches; exclude it", layer=f"{n}.weight"
                )
            if not (abs(o.lo) < float("inf") and abs(o.hi) < float("inf")):
                raise OpError(OP, "this layer's input holds NaN or infinite values", layer=f"{n}.weight")
            if symmetric:
                o.lo = 0.0
            if o.hi <= o.lo:  # a constant input: widen so the histogram has a width
                o.hi = o.lo + 1e-8
        if hist:
            run(histogram)
    finally:
        model.train(was_training)
    return obs


def qparams(lo: float, hi: float, symmetric: bool) -> tuple[float, int]:
    """(scale, zero point) of the range [lo, hi]; symmetric: int8 around 0 (zero 0), asymmetric:
    uint8 with the range stretched to contain 0 so that 0.0 is exact (padding, ReLU zeros)."""
    if symmetric:
        scale = max(abs(lo), abs(hi)) / 127.0
        return (scale if scale > 0 else 1.0), 0
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if scale <= 0:
        return 1.0, 0
    return scale, int(min(255, max(0, round(-lo / scale))))


def _centres(o: _Observer) -> torch.Tensor:
    width = (o.hi - o.lo) / BINS
    return o.lo + width * (torch.arange(BINS, dtype=torch.float64) + 0.5)


def choose_range(o: _Observer, observer: str, percentile: float, symmetric: bool) -> tuple[float, float]:
    """The clipping range an observer picks from the range and histogram of one input."""
    if observer == "minmax" or o.hist is None:
        return o.lo, o.hi
    counts = o.hist.to(torch.float64)
    values = _centres(o)
    if observer == "percentile":
        cdf = counts.cumsum(0) / counts.sum()
        width = (o.hi - o.lo) / BINS

        def bin_of(q: float) -> int:  # the first bin where the cumulative share reaches q
            found = torch.searchsorted(cdf, torch.tensor([q], dtype=torch.float64))
            return min(int(found), BINS - 1)

        p = percentile / 100.0
        hi = o.lo + width * (bin_of(p) + 1)  # the right edge of that bin
        if symmetric:
            return 0.0, hi
        return o.lo + width * bin_of(1.0 - p), hi  # the left edge of the lower tail's bin
    # mse: shrink the observed range towards 0 by t and keep the t whose fake quantization of
    # the histogram's values has the least expected squared error
    best: tuple[float, float, float] | None = None
    for k in range(MSE_CANDIDATES):
        t = 1.0 - k / MSE_CANDIDATES * 0.9
        lo, hi = o.lo * t, o.hi * t
        scale, zero = qparams(lo, hi, symmetric)
        qmin, qmax = (-128, 127) if symmetric else (0, 255)
        q = torch.clamp(torch.round(values / scale) + zero, qmin, qmax)
        err = float((counts * (values - (q - zero) * scale).pow(2)).sum())
        if best is None or err < best[0]:
            best = (err, lo, hi)
    assert best is not None
    return best[1], best[2]


@register_op(
    OP,
    family="quantize",
    summary="W8A8 static quantization: int8 weights and int8 activations calibrated on training batches.",
    params=[
        Param(
            "observer",
            "enum",
            "How each input's int8 range is chosen: `minmax` (observed range), `percentile` "
            "(clip the rarest values) or `mse` (least squared quantization error).",
            default="minmax",
            choices=("minmax", "percentile", "mse"),
        ),
        Param(
            "percentile",
            "float",
            "Observer `percentile`: the share of values (in %) kept inside the range.",
            default=99.99,
            minimum=50.0,
            maximum=100.0,
        ),
        Param(
            "act_symmetric",
            "bool",
            "Activations on a symmetric int8 grid (zero point 0) instead of uint8 with a zero point.",
            default=False,
        ),
        *CALIBRATION_PARAMS,
        INCLUDE,
        EXCLUDE,
    ],
    needs_task=True,
)
def quantize_static(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Quantize weights to int8 per output channel and each quantized layer's input to 8 bits.

    Applies to Linear, transformers Conv1D and Conv1d/Conv2d layers (the default weight targets).
    The input of each one gets one scale and zero point from calibration batches of the task's
    training split: `observer: minmax` uses the observed range, `percentile` clips the values
    beyond the given percentile, `mse` picks the clipping that minimises the squared error.
    Activations are uint8 with a zero point, or int8 around 0 with `act_symmetric: true`. The
    model simulates int8 inference: each layer's input is rounded onto its grid before the layer
    runs. Stored: int8 weight codes with per-channel scales (as `quantize.weights`), and each
    layer's `act_scale` / `act_zero_point` for exporters. Ranges are observed on the model with its int8 weights and
    float activations, as PyTorch's prepare/convert flow does. Place
    `smoothquant` before it for models with activation outliers.
    """
    task = ctx.task
    model = to_device(cm, ctx)
    names = _layers(model, params)
    refuse_encoded(OP, cm, [f"{n}.weight" for n in names], "quantize statically")
    for n in names:
        check_finite(model.get_parameter(f"{n}.weight"), op=OP, layer=f"{n}.weight")
    batches = calibration_batches(OP, task, params, ctx)
    symmetric = bool(params["act_symmetric"])
    observer = str(params["observer"])
    zero_dtype = torch.int8 if symmetric else torch.uint8

    with torch.no_grad():
        for n in names:  # weights first: the activation ranges then see the int8 weights' outputs
            wname = f"{n}.weight"
            p = model.get_parameter(wname)
            enc = quantize_rtn(p, 8, True, "channel", None, output_axis(model, wname), op=OP, layer=wname)
            p.copy_(enc.project(p))
            enc.to_cpu()
            cm.encodings[wname] = enc
        ctx.progress(0.2, f"int8 weights for {len(names)} layers")
        obs = _observe(model, names, batches, task, ctx, symmetric, hist=observer != "minmax")
        for i, n in enumerate(names):
            lo, hi = choose_range(obs[n], observer, float(params["percentile"]), symmetric)
            scale, zero = qparams(lo, hi, symmetric)
            mod = model.get_submodule(n)
            device = weight_of(mod).device
            mod.register_buffer(ACT_SCALE, torch.tensor([scale], dtype=torch.float32, device=device))
            mod.register_buffer(ACT_ZERO, torch.tensor([zero], dtype=zero_dtype, device=device))
            attach_hook(mod)
            ctx.progress(0.2 + 0.8 * (i + 1) / len(names), f"{n}: input scale {scale:.3g}, zero {zero}")
    cm.edits.append(
        {"kind": EDIT, "scaled": [], "quantized": names, "act_dtype": "int8" if symmetric else "uint8"}
    )
    return cm
