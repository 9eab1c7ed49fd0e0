"""`quantize.calibrated`: GPTQ-style weight quantization that minimises each layer's output error.

For every target layer we collect H = 2·XᵀX/n over the layer's inputs X on a few calibration
batches (forward pre-hooks), then quantize the weight column by column; after each column the
rounding error is spread over the columns not yet quantized, weighted by the inverse Hessian
(Cholesky factor), so the layer's output on the calibration inputs changes as little as possible
(Frantar et al., 2022). The result lies on the same kind of grid as `quantize.weights` and is
stored the same way (a QuantEncoding: packed codes + scales).

Hessians cost in_features² floats each, so layers are processed in chunks that fit
`max_hessian_mb`; each chunk runs the calibration batches again through the model whose earlier
layers are already quantized, so later layers calibrate on the quantized model's inputs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import F, nn, torch

from .quantize import (
    SCHEME_PARAMS,
    QuantEncoding,
    _conv1d_type,
    check_finite,
    fit_scales,
    fitting_targets,
    output_axis,
    quantize_rtn,
    scale_storage_dtype,
    scheme_shape,
    select_targets,
)
from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .targets import move_batch, to_device

OP = "quantize.calibrated"


@register_op(
    OP,
    family="quantize",
    summary="GPTQ-style calibrated weight quantization: Hessian-based error compensation on a few batches.",
    params=[
        *SCHEME_PARAMS[:4],
        Param("batches", "int", "Calibration batches from the task's training split.", default=8, minimum=1),
        Param("batch_size", "int", "Instances per calibration batch.", default=16, minimum=1),
        Param(
            "damp",
            "float",
            "Hessian damping, as a fraction of its mean diagonal.",
            default=0.01,
            minimum=0.0,
            exclusive_minimum=True,
            maximum=1.0,
        ),
        Param(
            "act_order", "bool", "Quantize columns in order of decreasing Hessian diagonal.", default=False
        ),
        Param("block_size", "int", "Columns per lazy-update block (speed only).", default=128, minimum=1),
        Param(
            "max_hessian_mb",
            "int",
            "Memory for Hessians held at once; more layers share a pass.",
            default=1024,
            minimum=1,
        ),
        *SCHEME_PARAMS[4:],
    ],
    needs_task=True,
)
def quantize_calibrated(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Quantize weights with GPTQ: minimise each layer's output error on calibration batches.

    For each Linear / Conv1D / Conv2d weight, the inputs it sees on `batches` calibration batches
    give a Hessian H = 2XᵀX; columns are quantized one at a time and each rounding error is
    compensated on the remaining columns through the Cholesky factor of H⁻¹ (damped by `damp`).
    `act_order` visits columns with the largest activations first (group scales are then fixed
    from the original weights, so groups stay contiguous). Zeros from earlier pruning stay zero
    (their error is compensated like any other). At 3–4 bits this keeps layer outputs much closer
    to the original than round-to-nearest. Stored like `quantize.weights`: packed codes + scales.
    Layers the method cannot use (grouped convolutions, biases, norms) fall back to
    round-to-nearest. Layers whose columns `group_size` does not divide are skipped and stay
    float, as in `quantize.weights` (`strict: true` fails instead).
    """
    task = ctx.task
    if task is None:
        raise OpError(OP, "needs a task with calibration data (add a task: section)")
    bits, symmetric = int(params["bits"]), bool(params["symmetric"])
    gran = str(params["granularity"])
    group_size = int(params["group_size"]) if gran == "group" else None
    module = to_device(cm, ctx)
    names = select_targets(module, params.get("include"), params.get("exclude"), op=OP)
    names = fitting_targets(module, names, gran, group_size, ctx, op=OP, strict=bool(params.get("strict")))
    lookup = dict(module.named_parameters())
    for name in names:
        axis = output_axis(module, name)
        scheme_shape(tuple(lookup[name].shape), gran, group_size, axis, op=OP, layer=name)
        check_finite(lookup[name], op=OP, layer=name)

    batches = _calibration_batches(task, params, ctx)
    gptq_layers: list[tuple[str, nn.Module]] = []
    with torch.no_grad():
        for name in names:
            layer = _hessian_layer(module, name)
            if layer is None:  # not a layer weight GPTQ can model: plain rounding
                p = lookup[name]
                enc = quantize_rtn(
                    p, bits, symmetric, gran, group_size, output_axis(module, name), op=OP, layer=name
                )
                p.copy_(enc.project(p))
                enc.to_cpu()  # small; kept off the accelerator between ops
                cm.encodings[name] = enc
            else:
                gptq_layers.append((name, layer))

        budget = int(params["max_hessian_mb"]) * 2**20
        chunks = _chunks(gptq_layers, budget)
        done = 0
        for chunk in chunks:
            hessians = _collect_hessians(module, chunk, batches, task, ctx)
            for name, layer in chunk:
                ctx.check_cancelled()
                weight = lookup[name]
                h = hessians.pop(name)
                enc = _gptq_layer(weight, layer, h, name, bits, symmetric, gran, group_size, params)
                enc.to_cpu()  # small; kept off the accelerator between ops
                cm.encodings[name] = enc
                done += 1
                ctx.progress(done / max(1, len(gptq_layers)), f"quantized {name}")
    return cm


# -- calibration data --------------------------------------------------------------------------
def _calibration_batches(task: Any, params: dict[str, Any], ctx: OpContext) -> list[Any]:
    out = []
    for batch in task.calibration_batches(int(params["batches"]), int(params["batch_size"]), ctx.seed):
        out.append(move_batch(batch, ctx.device))
    if not out:
        raise OpError(OP, "the task produced no calibration batches", param="batches")
    return out


def _hessian_layer(module: nn.Module, name: str) -> nn.Module | None:
    owner_name, _, leaf = name.rpartition(".")
    if leaf != "weight":
        return None
    owner = module.get_submodule(owner_name) if owner_name else module
    conv1d = _conv1d_type()
    if isinstance(owner, nn.Linear) or (conv1d is not None and isinstance(owner, conv1d)):
        return owner
    if isinstance(owner, nn.Conv2d) and owner.groups == 1:
        return owner
    return None


def _columns(layer: nn.Module) -> int:
    w = layer.weight
    assert isinstance(w, torch.Tensor)
    conv1d = _conv1d_type()
    if conv1d is not None and isinstance(layer, conv1d):
        return int(w.shape[0])
    return int(w[0].numel())


def _chunks(layers: list[tuple[str, nn.Module]], budget: int) -> list[list[tuple[str, nn.Module]]]:
    chunks: list[list[tuple[str, nn.Module]]] = [[]]
    used = 0
    for name, layer in layers:
        cost = _columns(layer) ** 2 * 4
        if chunks[-1] and used + cost > budget:
            chunks.append([])
            used = 0
        chunks[-1].append((name, layer))
        used += cost
    return [c for c in chunks if c]


def _layer_inputs(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows of columns matching the flattened weight (n, columns)."""
    if isinstance(layer, nn.Conv2d):
        cols = F.unfold(
            x,
            layer.kernel_size,
            dilation=layer.dilation,
            padding=layer.padding,  # type: ignore[arg-type]
            stride=layer.stride,
        )  # (N, C*kh*kw, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def _collect_hessians(
    module: nn.Module, chunk: list[tuple[str, nn.Module]], batches: list[Any], task: Any, ctx: OpContext
) -> dict[str, torch.Tensor]:
    hessians: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook_for(name: str, layer: nn.Module) -> Any:
        def hook(_mod: nn.Module, inputs: tuple[Any, ...]) -> None:
            x = _layer_inputs(layer, inputs[0].detach()).to(torch.float32)
            n_old, n_new = counts.get(name, 0), x.shape[0]
            h = hessians.get(name)
            if h is None:
                h = torch.zeros(x.shape[1], x.shape[1], device=x.device)
            total = n_old + n_new
            # running mean of 2·xxᵀ, kept in float32
            h.mul_(n_old / total)
            x = x * math.sqrt(2.0 / total)
            h.addmm_(x.t(), x)
            hessians[name] = h
            counts[name] = total

        return hook

    for name, layer in chunk:
        handles.append(layer.register_forward_pre_hook(hook_for(name, layer)))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                ctx.check_cancelled()
                task.forward(module, batch)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    for name, _ in chunk:
        if name not in hessians:
            raise OpError(
                OP,
                "this layer never ran on the calibration batches, so it cannot be calibrated; exclude it",
                layer=name,
            )
    return hessians


# -- the GPTQ solve ------------------------------------------------------------------------------
def _gptq_layer(
    weight: nn.Parameter,
    layer: nn.Module,
    h: torch.Tensor,
    name: str,
    bits: int,
    symmetric: bool,
    gran: str,
    group_size: int | None,
    params: dict[str, Any],
) -> QuantEncoding:
    conv1d = _conv1d_type()
    transposed = conv1d is not None and isinstance(layer, conv1d)
    axis = 1 if transposed else 0
    w0 = weight.detach().to(torch.float32)
    W = (w0.t() if transposed else w0.reshape(w0.shape[0], -1)).clone()  # [rows, columns]
    rows, cols = W.shape
    pruned = W == 0  # stays exactly zero: quantized to the zero code, its error compensated

    n_groups = 1 if gran != "group" else cols // int(group_size or cols)
    enc = quantize_rtn(weight.detach(), bits, symmetric, gran, group_size, axis, op=OP, layer=name)
    # enc gives the layout; scales are refit below as GPTQ goes (except tensor/channel/act-order)
    scales = enc.scales.to(W.device).clone()  # [rows or 1, n_groups]
    zeros = (enc.zero_points().to(W.device)).clone()
    lo, hi = enc.code_range()
    gsize = cols // n_groups

    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = None
    if params["act_order"]:
        perm = torch.argsort(torch.diag(h), descending=True)
        W, h, pruned = W[:, perm], h[perm][:, perm], pruned[:, perm]
    damp = float(params["damp"]) * torch.mean(torch.diag(h))
    h = h + damp * torch.eye(cols, device=h.device)
    hinv = _inverse_cholesky(h, name)

    codes = torch.zeros_like(W)
    refit_groups = gran == "group" and perm is None
    block = int(params["block_size"])
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        err1 = torch.zeros_like(W1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            orig = int(perm[col]) if perm is not None else col
            g = orig // gsize
            if refit_groups and orig % gsize == 0:
                # fit this group's scales on the error-compensated weights, as GPTQ does
                future = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :gsize].reshape(rows, 1, gsize)
                s, z, _ = fit_scales(future, bits, symmetric)
                scales[:, g] = s[:, 0]
                zeros[:, g] = z[:, 0].to(torch.float32) if z is not None else float(1 << (bits - 1))
            srow = scales[:, g] if scales.shape[0] == rows else scales[0, g].expand(rows)
            zrow = zeros[:, g] if zeros.shape[0] == rows else zeros[0, g].expand(rows)
            w = W1[:, i]
            q = torch.clamp(torch.round(w / srow) + zrow, lo, hi)
            q = torch.where(pruned[:, i], zrow, q)
            codes[:, col] = q
            deq = (q - zrow) * srow
            e = (w - deq) / hinv1[i, i]
            W1[:, i:] -= e.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        W[:, i2:] -= err1 @ hinv[i1:i2, i2:]

    if perm is not None:
        codes = codes[:, torch.argsort(perm)]
    enc.scales = scales
    enc.scale_dtype = scale_storage_dtype(scales)  # groups refit one by one may differ in range
    enc.zeros = None if symmetric else zeros.to(torch.int16)
    code_t = codes.t() if transposed else codes.reshape(weight.shape)
    with torch.no_grad():
        weight.copy_(enc.dequantize(code_t.to(torch.uint8).contiguous(), weight.dtype))
    return enc


def _inverse_cholesky(h: torch.Tensor, name: str) -> torch.Tensor:
    """Upper Cholesky factor of H⁻¹; retries with more damping if H is numerically singular."""
    extra = 0.0
    mean_diag = float(torch.mean(torch.diag(h)))
    for _ in range(6):
        try:
            L = torch.linalg.cholesky(h + extra * torch.eye(h.shape[0], device=h.device))
            inv = torch.cholesky_inverse(L)
            return torch.linalg.cholesky(inv, upper=True)
        except RuntimeError:
            extra = mean_diag * (0.1 if extra == 0 else extra / mean_diag * 10)
    raise OpError(
        OP,
        "the calibration Hessian is not positive definite even with strong damping; "
        "use more calibration batches or a larger damp",
        layer=name,
    )
