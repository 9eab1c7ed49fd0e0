"""Activation-aware pruning: `prune.wanda` and `prune.sparsegpt`, on the calibrated ops' machinery.

Both read what each layer's inputs look like on a few calibration batches (forward pre-hooks, the
layer's input laid out as rows of weight columns: `calibrated._layer_inputs`), and prune within
each output row, unstructured or N:M:

- Wanda (Sun et al., 2023) scores weight W_ij by |W_ij|·‖X_j‖₂, the size of its contribution to
  the output, and prunes the lowest scores of every output row; no weight changes otherwise.
- SparseGPT (Frantar & Alistarh, 2023) chooses and prunes columns left to right with the
  Hessian H = 2XᵀX/n of the layer (the GPTQ solve of `quantize.calibrated`): a weight's pruning
  cost is W_ij² / [H⁻¹]_jj², and after each column the error of what was pruned is compensated
  on the columns not yet visited (optimal brain surgeon), so the layer's output on the
  calibration inputs stays close. Unstructured masks are chosen per block of columns (adaptive
  mask selection) with exactly round(sparsity x block size) weights each.

Layers whose inputs do not map onto their weight's columns (grouped / depthwise convolutions,
Conv1d) are pruned by magnitude with the same per-row rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .calibrated import _chunks, _collect_hessians, _hessian_layer, _inverse_cholesky, _layer_inputs
from .prune import SPARSITY, Scores, apply_masks, nm_mask
from .quantize import output_axis
from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .targets import (
    EXCLUDE,
    INCLUDE,
    STRICT,
    get_param,
    input_dim,
    move_batch,
    owner,
    refuse_encoded,
    select_weights,
    to_device,
)


def _pattern_params() -> list[Param]:
    return [
        SPARSITY,
        Param("n", "int", "N:M pattern: weights kept in every group of `m` consecutive inputs "
              "(default m/2).", minimum=1, maximum=63),
        Param("m", "int", "N:M pattern: group size along the input dimension. Given, the op prunes "
              "N:M (2:4 = `n: 2, m: 4`) and `sparsity` is ignored.", minimum=2, maximum=64),
        Param("batches", "int", "Calibration batches from the task's training split.", default=8, minimum=1),
        Param("batch_size", "int", "Instances per calibration batch.", default=8, minimum=1),
    ]  # fmt: skip


CALIBRATION_TAIL = [INCLUDE, EXCLUDE, STRICT]


# -- calibration -----------------------------------------------------------------------------------
def calibration_batches(op: str, task: Any, params: dict[str, Any], ctx: OpContext) -> list[Any]:
    if task is None:
        raise OpError(op, "needs a task with calibration data (add a task: section)")
    out = [
        move_batch(b, ctx.device)
        for b in task.calibration_batches(int(params["batches"]), int(params["batch_size"]), ctx.seed)
    ]
    if not out:
        raise OpError(op, "the task produced no calibration batches", param="batches")
    return out


def input_square_norms(
    module: nn.Module, names: list[str], batches: list[Any], task: Any, ctx: OpContext, *, op: str
) -> dict[str, torch.Tensor]:
    """name -> float32 [columns]: Σ x_j² over every input row the layer saw on the batches, for
    each target whose layer maps its inputs onto its weight's columns (others are absent)."""
    sums: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str, layer: nn.Module) -> Any:
        def hook(_mod: nn.Module, inputs: tuple[Any, ...]) -> None:
            x = _layer_inputs(layer, inputs[0].detach()).to(torch.float32)
            s = x.pow(2).sum(0)
            sums[name] = s if name not in sums else sums[name] + s

        return hook

    layers = {n: _hessian_layer(module, n) for n in names}
    for name, layer in layers.items():
        if layer is not None:
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
    for name, layer in layers.items():
        if layer is not None and name not in sums:
            raise OpError(op, "this layer never ran on the calibration batches; exclude it", layer=name)
    return sums


# -- shared: rows, patterns ------------------------------------------------------------------------
def _rows(t: torch.Tensor, axis: int) -> torch.Tensor:
    """A weight as [output rows, columns] (columns in the order of `_layer_inputs`)."""
    return t.movedim(axis, 0).reshape(t.shape[axis], -1)


def _from_rows(r: torch.Tensor, shape: tuple[int, ...], axis: int) -> torch.Tensor:
    moved = list(shape)
    moved.insert(0, moved.pop(axis))
    return r.reshape(moved).movedim(0, axis).contiguous()


def _pattern(op: str, params: dict[str, Any]) -> tuple[int, int] | None:
    """(n, m) of an N:M request, or None for unstructured."""
    if params.get("m") is None:
        if params.get("n") is not None:
            raise OpError(op, "'n' needs 'm' (N:M pruning keeps n of every m)", param="m")
        return None
    m = int(params["m"])
    n = int(params["n"]) if params.get("n") is not None else m // 2
    if not 1 <= n < m:
        raise OpError(op, f"'n' must be at least 1 and smaller than 'm' (got {n}:{m})", param="n")
    return n, m


def _fits_pattern(op: str, module: nn.Module, name: str, m: int, ctx: OpContext, strict: bool) -> bool:
    p = get_param(module, name)
    _, mod, _ = owner(module, name)
    size = int(p.shape[input_dim(mod, p)])
    if size % m:
        ctx.skip_layer(op, name, f"input size {size} is not divisible by m={m}", strict=strict, param="m")
        return False
    return True


def row_masks(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """[rows, cols] True where pruned: the round(sparsity x cols) lowest scores of every row
    (ties: the earlier column first)."""
    k = round(sparsity * scores.shape[1])
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        order = torch.sort(scores, dim=1, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask


# -- Wanda -----------------------------------------------------------------------------------------
@register_op(
    "prune.wanda",
    family="pruning",
    summary="Wanda: prune the weights with the smallest |weight| x input norm in every output row "
    "(unstructured or N:M), from a few calibration batches.",
    params=[*_pattern_params(), *CALIBRATION_TAIL],
    needs_task=True,
)
def prune_wanda(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Prune by |W_ij|·‖X_j‖₂: weight times the L2 norm of the input it multiplies (Wanda).

    The input norms come from the layer's inputs on `batches` calibration batches of the task; a
    weight on an input that is large on real data is kept even when it is small itself. Within
    every output row (one output channel) the round(`sparsity` x inputs) lowest scores are
    pruned, so every row ends exactly as sparse; with `m` set, the `n` highest scores of every `m`
    consecutive inputs are kept instead (N:M, 2:4 for sparse tensor cores; layers whose input size
    `m` does not divide are skipped, see `strict`). No weight is updated. Grouped / depthwise
    convolutions (whose inputs do not map onto their columns) are scored by magnitude alone.
    Weights pruned earlier stay pruned; masks are recorded as for `prune.magnitude`.
    """
    op = "prune.wanda"
    pattern = _pattern(op, params)
    module = to_device(cm, ctx)
    names = select_weights(op, module, params.get("include"), params.get("exclude"))
    refuse_encoded(op, cm, names, "prune")
    strict = bool(params.get("strict"))
    if pattern is not None:
        names = [n for n in names if _fits_pattern(op, module, n, pattern[1], ctx, strict)]
    batches = calibration_batches(op, ctx.task, params, ctx)
    sq = input_square_norms(module, names, batches, ctx.task, ctx, op=op)
    masks: Scores = {}
    for i, name in enumerate(names):
        ctx.check_cancelled()
        p = get_param(module, name)
        axis = output_axis(module, name)
        scores = _rows(p.detach().abs().to(torch.float32), axis)
        if name in sq:
            scores = scores * sq[name].sqrt().unsqueeze(0)
        old = cm.masks.get(name)
        if old is not None:
            scores.masked_fill_(_rows(old, axis), float("-inf"))
        if pattern is None:
            masks[name] = _from_rows(row_masks(scores, float(params["sparsity"])), tuple(p.shape), axis)
        else:
            _, mod, _ = owner(module, name)
            full = _from_rows(scores, tuple(p.shape), axis)
            masks[name] = nm_mask(p, input_dim(mod, p), pattern[0], pattern[1], full)
        ctx.progress((i + 1) / max(1, len(names)), f"pruned {name}")
    apply_masks(cm, masks)
    return cm


# -- SparseGPT -------------------------------------------------------------------------------------
@register_op(
    "prune.sparsegpt",
    family="pruning",
    summary="SparseGPT: Hessian-based pruning that updates the remaining weights to keep each "
    "layer's output (unstructured or N:M), from a few calibration batches.",
    params=[
        *_pattern_params(),
        Param("damp", "float", "Hessian damping, as a fraction of its mean diagonal.", default=0.01,
              minimum=0.0, exclusive_minimum=True, maximum=1.0),
        Param("block_size", "int", "Columns per block: unstructured masks are chosen per block "
              "(adaptive mask selection) and updates are applied lazily.", default=128, minimum=1),
        Param("max_hessian_mb", "int", "Memory for Hessians held at once; more layers share a pass.",
              default=1024, minimum=1),
        *CALIBRATION_TAIL,
    ],
    needs_task=True,
)  # fmt: skip
def prune_sparsegpt(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Prune with SparseGPT: choose weights by their cost to the layer's output, and compensate.

    For each Linear / Conv1D / Conv2d weight, the inputs it sees on `batches` calibration batches
    give a Hessian H = 2XᵀX/n (damped by `damp`). Columns are visited left to right; pruning
    weight W_ij costs W_ij² / [H⁻¹]_jj² of output error, and once a column is done the error of
    the weights pruned in it is spread over the columns not yet visited through the Cholesky
    factor of H⁻¹ (as `quantize.calibrated` does for rounding). Unstructured: in every block of
    `block_size` columns the lowest-cost weights are pruned, exactly round(`sparsity` x block)
    of them, so a layer ends at exactly round(`sparsity` x weights). With `m` set: `n` of every
    `m` consecutive inputs are kept (N:M; layers whose input size `m` does not divide are skipped,
    see `strict`). Unlike magnitude or Wanda, the kept weights change. Layers processed later
    calibrate on the inputs of the already pruned model (chunks of `max_hessian_mb`). Grouped /
    depthwise convolutions are pruned by magnitude per row. Masks are recorded as for
    `prune.magnitude`; weights pruned earlier stay pruned.
    """
    op = "prune.sparsegpt"
    pattern = _pattern(op, params)
    module = to_device(cm, ctx)
    names = select_weights(op, module, params.get("include"), params.get("exclude"))
    refuse_encoded(op, cm, names, "prune")
    strict = bool(params.get("strict"))
    if pattern is not None:
        names = [n for n in names if _fits_pattern(op, module, n, pattern[1], ctx, strict)]
    batches = calibration_batches(op, ctx.task, params, ctx)
    sparsity = float(params["sparsity"])
    masks: Scores = {}
    solved: list[tuple[str, nn.Module]] = []
    for name in names:
        layer = _hessian_layer(module, name)
        if layer is None:  # magnitude, per row
            p = get_param(module, name)
            axis = output_axis(module, name)
            scores = _rows(p.detach().abs().to(torch.float32), axis)
            old = cm.masks.get(name)
            if old is not None:
                scores.masked_fill_(_rows(old, axis), float("-inf"))
            if pattern is None:
                masks[name] = _from_rows(row_masks(scores, sparsity), tuple(p.shape), axis)
            else:
                _, mod, _ = owner(module, name)
                full = _from_rows(scores, tuple(p.shape), axis)
                masks[name] = nm_mask(p, input_dim(mod, p), pattern[0], pattern[1], full)
        else:
            solved.append((name, layer))
    apply_masks(cm, masks)  # before the calibration passes: later layers see these prunings
    done = 0
    for chunk in _chunks(solved, int(params["max_hessian_mb"]) * 2**20):
        try:
            hessians = _collect_hessians(module, chunk, batches, ctx.task, ctx)
        except OpError as e:
            raise OpError(
                op, "a layer never ran on the calibration batches; exclude it", layer=e.layer
            ) from None
        chunk_masks: Scores = {}
        for name, layer in chunk:
            ctx.check_cancelled()
            weight = get_param(module, name)
            chunk_masks[name] = sparsegpt_layer(
                weight, layer, hessians.pop(name), name, sparsity, pattern, cm.masks.get(name), params
            )
            done += 1
            ctx.progress(done / max(1, len(solved)), f"pruned {name}")
        apply_masks(cm, chunk_masks)
    return cm


def sparsegpt_layer(
    weight: nn.Parameter,
    layer: nn.Module,
    h: torch.Tensor,
    name: str,
    sparsity: float,
    pattern: tuple[int, int] | None,
    old: torch.Tensor | None,
    params: dict[str, Any],
) -> torch.Tensor:
    """Prune one layer in place with the SparseGPT solve; returns its mask (weight's shape)."""
    from .quantize import _conv1d_type

    conv1d = _conv1d_type()
    transposed = conv1d is not None and isinstance(layer, conv1d)
    axis = 1 if transposed else 0
    W = _rows(weight.detach().to(torch.float32), axis).clone(memory_format=torch.contiguous_format)
    rows, cols = W.shape
    prior = _rows(old.to(W.device), axis) if old is not None else torch.zeros_like(W, dtype=torch.bool)
    perm = None
    if pattern is not None and isinstance(layer, nn.Conv2d):
        # N:M groups run over input channels at one kernel position: visit columns position by
        # position, so each group is m consecutive columns (unfold order is channel-major)
        per = int(layer.kernel_size[0] * layer.kernel_size[1])  # type: ignore[index]
        perm = torch.arange(cols, device=W.device).reshape(cols // per, per).t().reshape(-1)
        W, h, prior = W[:, perm], h[perm][:, perm], prior[:, perm]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0  # an input that was always 0: any value of its weights is as good
    h = h + float(params["damp"]) * torch.mean(torch.diag(h)) * torch.eye(cols, device=h.device)
    hinv = _inverse_cholesky(h, name)

    mask = torch.zeros_like(W, dtype=torch.bool)
    block = int(params["block_size"])
    if pattern is not None:
        block = max(pattern[1], block - block % pattern[1])  # N:M groups never straddle blocks
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        err1 = torch.zeros_like(W1)
        hinv1 = hinv[i1:i2, i1:i2]
        d = torch.diag(hinv1)
        m1 = torch.zeros_like(W1, dtype=torch.bool)
        if pattern is None:
            # this block's share of exactly round(sparsity x total) weights, by cumulative rounding
            k = round(sparsity * (rows * i2)) - round(sparsity * (rows * i1))
            cost = (W1.pow(2) / d.pow(2).unsqueeze(0)).masked_fill(prior[:, i1:i2], float("-inf"))
            if k > 0:
                flat = torch.sort(cost.reshape(-1), stable=True).indices[:k]
                m1.view(-1)[flat] = True
            m1 |= prior[:, i1:i2]
        for i in range(i2 - i1):
            if pattern is not None and i % pattern[1] == 0:
                n, m = pattern
                cost = (W1[:, i : i + m].pow(2) / d[i : i + m].pow(2).unsqueeze(0)).masked_fill(
                    prior[:, i1 + i : i1 + i + m], float("-inf")
                )
                drop = torch.sort(cost, dim=1, stable=True).indices[:, : m - n]
                m1[:, i : i + m].scatter_(1, drop, True)
                m1[:, i : i + m] |= prior[:, i1 + i : i1 + i + m]
            w = W1[:, i]
            q = torch.where(m1[:, i], torch.zeros_like(w), w)
            Q1[:, i] = q
            e = (w - q) / d[i]
            W1[:, i:] -= e.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        W[:, i1:i2] = Q1
        mask[:, i1:i2] = m1
        W[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    if perm is not None:
        back = torch.argsort(perm)
        W, mask = W[:, back], mask[:, back]
    shape = tuple(weight.shape)
    with torch.no_grad():
        weight.copy_(_from_rows(W, shape, axis).to(weight.dtype))
    return _from_rows(mask, shape, axis)
