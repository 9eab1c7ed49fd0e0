"""`quantize.awq`: activation-aware weight quantization (Lin et al., 2024).

A few input channels of a Linear carry much larger activations than the rest; their weights
matter most for the output, yet group quantization gives them the same relative precision. AWQ
multiplies those weight columns by s > 1 before quantizing (and divides the input by s), which
makes their rounding error relatively smaller. s = mean|x|^alpha per input channel, normalised
so that max(s)·min(s) = 1, and alpha is searched on a grid: the one whose quantized layer output
on calibration rows is closest to the float output wins (alpha = 0 is plain round-to-nearest, so
the chosen scales never do worse than it on those rows). Layers reading the same input (q/k/v)
share one s, chosen on their summed error.

The scaled weight is then quantized by round-to-nearest (with AWQ's clip search: each row-group's
range shrunk by the factor with the least output error) or by the GPTQ solver of
`quantize.calibrated` (on the Hessian of the scaled inputs), onto the usual grid: stored as packed
codes + scales exactly like `quantize.weights`. The division of the input by s is folded into the
preceding norm where that is exact, else kept as the layer's `input_scale` (see smoothquant.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .quantize import (
    SCHEME_PARAMS,
    QuantEncoding,
    check_finite,
    fitting_targets,
    output_axis,
    quantize_rtn,
    scales_from_ranges,
    select_targets,
)
from .registry import CompressedModel, OpContext, Param, register_op
from .smoothquant import (
    CALIBRATION_PARAMS,
    apply_scale,
    calibration_batches,
    check_folds,
    collect_inputs,
    column_view,
    find_groups,
    is_linear_like,
    record_scaled,
)
from .targets import refuse_encoded, to_device

OP = "quantize.awq"


def _scheme_params() -> list[Param]:
    """quantize.weights' scheme with AWQ's usual defaults: 4 bits, asymmetric, groups of 128."""
    defaults = {"bits": 4, "symmetric": False, "granularity": "group"}
    return [
        dataclasses.replace(p, default=defaults[p.name]) if p.name in defaults else p for p in SCHEME_PARAMS
    ]


@register_op(
    OP,
    family="quantize",
    summary="AWQ: activation-aware per-channel scales searched on calibration data, then 4-bit group quantization.",
    params=[
        *_scheme_params()[:4],
        Param(
            "grid",
            "int",
            "Number of alpha values tried in [0, 1) for s = mean|x|^alpha.",
            default=20,
            minimum=1,
            maximum=100,
        ),
        Param(
            "solver",
            "enum",
            "How the scaled weights are quantized: `rtn` (round to nearest) or `gptq` (the "
            "error-compensating solver of quantize.calibrated).",
            default="rtn",
            choices=("rtn", "gptq"),
        ),
        Param(
            "clip",
            "bool",
            "RTN solver: also search, per row and group, how far to shrink the range (1 down to "
            "0.5) for the least output error, as AWQ does.",
            default=True,
        ),
        *CALIBRATION_PARAMS,
        Param(
            "max_rows",
            "int",
            "Calibration input rows per layer kept to measure the output error of each alpha.",
            default=1024,
            minimum=16,
        ),
        Param("damp", "float", "GPTQ solver: Hessian damping (fraction of the mean diagonal).", default=0.01,
              minimum=0.0, exclusive_minimum=True, maximum=1.0),
        *_scheme_params()[4:],
    ],
    needs_task=True,
)  # fmt: skip
def quantize_awq(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Quantize Linear weights with activation-aware scaling (AWQ), 4-bit groups by default.

    For each group of Linear/Conv1D layers reading the same input, per-channel scales
    s = mean|x|^alpha are tried for `grid` values of alpha in [0, 1); for each, the scaled weight
    W·diag(s) is quantized and the layers' output error on calibration rows (input divided by s)
    is measured; the best alpha is kept. alpha = 0 is round-to-nearest, so the choice is never
    worse than it on those rows. Then the scaled weights are quantized with `solver`: `rtn`, where
    `clip` (on by default) also shrinks each row-group's range by the factor in [0.5, 1] with the
    least output error, or `gptq` with the Hessian of the scaled inputs. The input's division by s is folded into a
    preceding LayerNorm/RMSNorm when that is exact (checked on a batch), otherwise the layer keeps
    a per-channel `input_scale` (stored with the model). Stored like `quantize.weights`: packed
    codes + scales (+ zero points). Other targeted weights (Conv2d) are rounded to nearest; layers
    whose columns `group_size` does not divide are skipped (see `strict`).
    """
    task = ctx.task
    bits, symmetric = int(params["bits"]), bool(params["symmetric"])
    gran = str(params["granularity"])
    group_size = int(params["group_size"]) if gran == "group" else None
    model = to_device(cm, ctx)
    names = select_targets(model, params.get("include"), params.get("exclude"), op=OP)
    names = fitting_targets(model, names, gran, group_size, ctx, op=OP, strict=bool(params.get("strict")))
    refuse_encoded(OP, cm, names, "apply AWQ")
    lookup = dict(model.named_parameters())
    for n in names:
        check_finite(lookup[n], op=OP, layer=n)
    layers = [n.rpartition(".")[0] for n in names if n.endswith(".weight")]
    linear = [m for m in layers if m and is_linear_like(model.get_submodule(m))]
    others = [n for n in names if n.rpartition(".")[0] not in set(linear)]

    batches = calibration_batches(OP, task, params, ctx)
    model.eval()
    with torch.no_grad():
        for n in others:  # not a Linear: plain rounding, no activation scaling
            _rtn(model, cm, n, bits, symmetric, gran, group_size)
        if not linear:
            return cm
        groups = [g for g in find_groups(model, batches[0], task) if any(c in linear for c in g.consumers)]
        check_folds(model, groups, batches[0], task, ctx.seed)
        gptq = params["solver"] == "gptq"
        stats = collect_inputs(
            model, linear, batches, task, ctx, op=OP, max_rows=int(params["max_rows"]), hessian=gptq
        )
        scaled: list[str] = []
        for i, g in enumerate(groups):
            ctx.check_cancelled()
            chosen = [c for c in g.consumers if c in linear]
            st = stats[chosen[0]]
            rows = torch.cat(st.rows)
            weights = [column_view(model.get_submodule(c)).detach().to(torch.float32) for c in chosen]
            s, alpha = search_scales(
                weights, rows, st.absmean, bits, symmetric, gran, group_size, int(params["grid"])
            )
            scaled += apply_scale(model, g, s, set(chosen))
            for c in chosen:
                wname = f"{c}.weight"
                if gptq:
                    _gptq(model, cm, c, stats[c].hessian, s, bits, symmetric, gran, group_size, params)
                elif params["clip"] and gran != "tensor":
                    _clipped(model, cm, wname, rows / s.unsqueeze(0), bits, symmetric, group_size)
                else:
                    _rtn(model, cm, wname, bits, symmetric, gran, group_size)
            ctx.progress((i + 1) / len(groups), f"{', '.join(chosen)}: alpha {alpha:.2f}")
        record_scaled(cm, scaled)
    return cm


def search_scales(
    weights: list[torch.Tensor],
    rows: torch.Tensor,
    absmean: torch.Tensor,
    bits: int,
    symmetric: bool,
    gran: str,
    group_size: int | None,
    grid: int,
) -> tuple[torch.Tensor, float]:
    """(s, alpha) minimising Σ‖X·Wᵀ - (X/s)·Q(W·diag(s))ᵀ‖² over the layers' [out, in] weights
    `weights`, alpha in {0, 1/grid, ..., (grid-1)/grid}; ties keep the smaller alpha."""
    x_mean = absmean.to(torch.float32).clamp_min(1e-4)
    # ‖X·Dᵀ‖² for D = W - Q/s: with few rows straight from X (rows x in x out per alpha), with
    # many through G = XᵀX as Σ (D·G) ∘ D (in x in x out)
    x = rows.to(torch.float32)
    gram = x.t() @ x if x.shape[0] > x.shape[1] else None
    best: tuple[float, torch.Tensor, float] | None = None
    for k in range(grid):
        alpha = k / grid
        s = awq_scales(x_mean, alpha)
        err = 0.0
        for w in weights:
            ws = w * s.unsqueeze(0)
            enc = quantize_rtn(ws, bits, symmetric, gran, group_size, 0, op=OP, layer="")
            d = w - enc.project(ws) / s.unsqueeze(0)
            err += float(((d @ gram) * d).sum()) if gram is not None else float((x @ d.t()).pow(2).sum())
        if best is None or err < best[0]:
            best = (err, s, alpha)
    assert best is not None
    return best[1], best[2]


def awq_scales(x_mean: torch.Tensor, alpha: float) -> torch.Tensor:
    """mean|x|^alpha, normalised so that max·min = 1 (the scales stay centred around 1)."""
    s = x_mean.pow(alpha).clamp_min(1e-4)
    return s / (s.max() * s.min()).sqrt()


def _rtn(
    model: nn.Module,
    cm: CompressedModel,
    name: str,
    bits: int,
    symmetric: bool,
    gran: str,
    group_size: int | None,
) -> None:
    p = model.get_parameter(name)
    enc = quantize_rtn(p, bits, symmetric, gran, group_size, output_axis(model, name), op=OP, layer=name)
    p.copy_(enc.project(p))
    enc.to_cpu()
    cm.encodings[name] = enc


#: range shrink factors tried by the clip search (AWQ's grid: 1 down to 0.5 in 20 steps)
CLIP_RATIOS = tuple(1.0 - 0.5 * k / 20 for k in range(20))


def clip_search(
    w: torch.Tensor, x: torch.Tensor, bits: int, symmetric: bool, group_size: int | None
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(scales, zeros, scale dtype) for w [out, in] whose ranges, shrunk per row and group by
    the best of CLIP_RATIOS, give the least output error ‖X_g·(w_g - q(w_g))ᵀ‖² on the rows x
    [n, in] (the layer's inputs as it reads them). Ratio 1 is round-to-nearest, so every group's
    error is at most RTN's."""
    rows, cols = w.shape
    gs = group_size or cols
    groups = cols // gs
    wr = w.reshape(rows, groups, gs)
    xg = x.reshape(x.shape[0], groups, gs)
    gram = torch.einsum("ngi,ngj->gij", xg, xg)  # each group's block of XᵀX
    lo, hi = torch.aminmax(wr, dim=-1)
    best_err = torch.full((rows, groups), float("inf"), device=w.device)
    best_ratio = torch.ones((rows, groups), device=w.device)
    for ratio in CLIP_RATIOS:
        scales, zeros, _ = scales_from_ranges(lo * ratio, hi * ratio, bits, symmetric)
        d = wr - _round_trip(wr, scales, zeros, bits, symmetric)
        err = torch.einsum("rgi,gij,rgj->rg", d, gram, d)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_ratio = torch.where(better, torch.full_like(best_ratio, ratio), best_ratio)
    return scales_from_ranges(lo * best_ratio, hi * best_ratio, bits, symmetric)


def _round_trip(
    wr: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, bits: int, symmetric: bool
) -> torch.Tensor:
    """wr [rows, groups, len] rounded onto the grid of scales/zeros [rows, groups] (clipped)."""
    s = scales.unsqueeze(-1)
    if zeros is None:
        z = torch.full_like(s, float(1 << (bits - 1)))
        lo, hi = 1, (1 << bits) - 1
    else:
        z = zeros.to(torch.float32).unsqueeze(-1)
        lo, hi = 0, (1 << bits) - 1
    return (torch.clamp(torch.round(wr / s) + z, lo, hi) - z) * s


def _clipped(
    model: nn.Module,
    cm: CompressedModel,
    name: str,
    x: torch.Tensor,
    bits: int,
    symmetric: bool,
    group_size: int | None,
) -> None:
    """Quantize the (already scaled) weight `name` with clip-searched group ranges."""
    layer = model.get_submodule(name.rpartition(".")[0])
    p = model.get_parameter(name)
    w = column_view(layer).detach().to(torch.float32)
    scales, zeros, scale_dtype = clip_search(w, x, bits, symmetric, group_size)
    enc = QuantEncoding(
        bits=bits,
        symmetric=symmetric,
        granularity="group" if group_size else "channel",
        group_size=group_size,
        axis=output_axis(model, name),
        shape=tuple(p.shape),
        scales=scales,
        zeros=zeros,
        scale_dtype=scale_dtype,
    )
    p.copy_(enc.project(p))
    enc.to_cpu()
    cm.encodings[name] = enc


def _gptq(
    model: nn.Module,
    cm: CompressedModel,
    layer_name: str,
    h: torch.Tensor | None,
    s: torch.Tensor,
    bits: int,
    symmetric: bool,
    gran: str,
    group_size: int | None,
    params: dict[str, Any],
) -> None:
    """GPTQ on the scaled weight: the scaled layer reads x/s, so its Hessian is H / (s sᵀ)."""
    from .calibrated import _gptq_layer

    assert h is not None
    layer = model.get_submodule(layer_name)
    weight = layer.weight
    assert isinstance(weight, nn.Parameter)
    hs = h / (s.unsqueeze(0) * s.unsqueeze(1))
    solver = {"act_order": False, "block_size": 128, "damp": float(params["damp"])}
    enc = _gptq_layer(weight, layer, hs, f"{layer_name}.weight", bits, symmetric, gran, group_size, solver)
    enc.to_cpu()
    cm.encodings[f"{layer_name}.weight"] = enc
