"""Unstructured and N:M pruning: zero individual weights, record which ones in `cm.masks`.

All scoring ops share one exact selection routine: with `k = round(sparsity * n)` weights to
remove, the k lowest scores are pruned, found with `kthvalue` (no full sort) and with ties at the
threshold broken deterministically by position (earlier tensors in module order, then lower flat
index, are pruned first). Weights already masked by an earlier pruning op are scored lowest, so
sparsity never drops and asking again for the same sparsity changes nothing.

`cm.masks[name]` is True where a weight must stay zero; masks accumulate along a lineage.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import torch

from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .targets import (
    EXCLUDE,
    INCLUDE,
    STRICT,
    get_param,
    input_dim,
    move_batch,
    need_task,
    owner,
    refuse_encoded,
    seeded_generator,
    select_weights,
    to_device,
)

SPARSITY = Param(
    "sparsity",
    "float",
    "Fraction of the targeted weights set to zero (exactly: round(sparsity x count)).",
    default=0.5,
    minimum=0.0,
    maximum=1.0,
    exclusive_maximum=True,
)
SCOPE = Param(
    "scope",
    "enum",
    "`global`: one threshold over all targeted tensors together (layers end up with different "
    "sparsities); `layer`: each tensor pruned to `sparsity` on its own.",
    default="global",
    choices=("global", "layer"),
)

Scores = dict[str, "torch.Tensor"]  # a string: torch is imported on first use (lazy.py)


def kth_smallest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The exact k-th smallest value (1-based) of a 1-D tensor.

    `kthvalue` over tens of millions of values is the slow part of global pruning, so for large
    inputs a fixed-seed sample brackets the answer and `kthvalue` runs only inside the bracket
    (a fraction of a percent of the values). If the bracket misses, the full `kthvalue` runs:
    the result is always exact.
    """
    n = flat.numel()
    full = flat.cpu() if flat.device.type == "mps" else flat  # no kthvalue kernel on MPS
    if n <= 1 << 18:
        return torch.kthvalue(full, k).values.to(flat.device)
    size = min(1 << 20, n // 8)
    idx = torch.randint(0, n, (size,), generator=torch.Generator().manual_seed(0)).to(flat.device)
    sample = flat[idx].sort().values
    q = k / n
    margin = 5.0 * math.sqrt(max(q * (1 - q), 1.0 / size) / size)
    lo_pos, hi_pos = math.floor((q - margin) * size), math.ceil((q + margin) * size)
    lo = sample[lo_pos] if lo_pos > 0 else None
    hi = sample[hi_pos] if hi_pos < size else None
    below = int((flat < lo).sum()) if lo is not None else 0
    inside = torch.ones_like(flat, dtype=torch.bool) if lo is None else flat >= lo
    if hi is not None:
        inside &= flat <= hi
    band = flat[inside]
    if below < k <= below + band.numel():
        band = band.cpu() if band.device.type == "mps" else band
        return torch.kthvalue(band, k - below).values.to(flat.device)
    return torch.kthvalue(full, k).values.to(flat.device)


def _lowest_k_masks(scores: Scores, k: int) -> Scores:
    """Masks (True = prune) of exactly the k lowest scores over all tensors together."""
    names = list(scores)
    if k <= 0:
        return {n: torch.zeros_like(scores[n], dtype=torch.bool) for n in names}
    flat = torch.cat([scores[n].reshape(-1) for n in names])
    threshold = kth_smallest(flat, k)
    del flat
    masks = {n: scores[n] < threshold for n in names}
    remaining = k - int(sum(int(m.sum()) for m in masks.values()))
    for n in names:  # ties at the threshold: first come, first pruned
        if remaining <= 0:
            break
        ties = (scores[n] == threshold).reshape(-1).nonzero().squeeze(1)[:remaining]
        masks[n].view(-1)[ties] = True
        remaining -= int(ties.numel())
    return masks


def apply_masks(cm: CompressedModel, masks: Scores) -> None:
    """Zero the masked weights and merge the masks into cm.masks."""
    with torch.no_grad():
        for name, mask in masks.items():
            p = get_param(cm.module, name)
            old = cm.masks.get(name)
            merged = mask if old is None else (mask | old.to(mask.device))
            p.masked_fill_(merged, 0)
            cm.masks[name] = merged


def prune_by_scores(op: str, cm: CompressedModel, scores: Scores, sparsity: float, scope: str) -> None:
    # weights already pruned score lowest, so they are counted first and stay pruned
    for name, s in scores.items():
        old = cm.masks.get(name)
        if old is not None:
            s.masked_fill_(old.to(s.device), float("-inf"))
    if scope == "layer":
        masks: Scores = {}
        for name, s in scores.items():
            masks.update(_lowest_k_masks({name: s}, round(sparsity * s.numel())))
    else:
        total = sum(s.numel() for s in scores.values())
        masks = _lowest_k_masks(scores, round(sparsity * total))
    apply_masks(cm, masks)


def _targets(op: str, cm: CompressedModel, params: dict[str, Any]) -> list[str]:
    names = select_weights(op, cm.module, params.get("include"), params.get("exclude"))
    refuse_encoded(op, cm, names, "prune")
    return names


def _magnitude_scores(cm: CompressedModel, names: list[str]) -> Scores:
    return {n: get_param(cm.module, n).detach().abs().float() for n in names}


@register_op(
    "prune.magnitude",
    family="pruning",
    summary="Unstructured magnitude pruning: zero the smallest |w| (global or per layer).",
    params=[SPARSITY, SCOPE, INCLUDE, EXCLUDE],
)
def prune_magnitude(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Zero the weights of smallest magnitude until exactly `sparsity` of the targets are zero.

    Targets default to every Linear / Conv / transformers Conv1D weight; biases, norms and
    embeddings are only pruned when `include` names them (for example `include: ["*LayerNorm*"]`
    with `scope: layer` prunes LayerNorm weights too, the classic way to break a transformer).

    With `scope: global` one threshold is used for all targets together, so layers with many
    small weights lose more; with `scope: layer` every tensor reaches `sparsity` on its own.
    The zeroed weights are recorded as masks, which `finetune` keeps at zero. The stored artifact
    uses a sparse form (bitmask + values or CSR) wherever it is smaller than dense.
    """
    op = "prune.magnitude"
    to_device(cm, ctx)
    names = _targets(op, cm, params)
    prune_by_scores(op, cm, _magnitude_scores(cm, names), params["sparsity"], params["scope"])
    ctx.progress(1.0, f"pruned {len(names)} tensors")
    return cm


@register_op(
    "prune.random",
    family="pruning",
    summary="Random unstructured pruning (seeded): the baseline for other pruning methods.",
    params=[SPARSITY, SCOPE, INCLUDE, EXCLUDE],
)
def prune_random(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Zero a random `sparsity` fraction of the targeted weights, drawn from the run's seed.

    The draw is made on the CPU, so the same seed prunes the same weights on every device. Use it
    as the baseline a smarter criterion has to beat. Targets, `scope` and masks work as in
    `prune.magnitude`.
    """
    op = "prune.random"
    to_device(cm, ctx)
    names = _targets(op, cm, params)
    gen = seeded_generator(ctx.seed)
    scores = {n: torch.rand(get_param(cm.module, n).shape, generator=gen).to(ctx.device) for n in names}
    prune_by_scores(op, cm, scores, params["sparsity"], params["scope"])
    return cm


@register_op(
    "prune.taylor",
    family="pruning",
    summary="First-order Taylor pruning: zero the weights with the smallest |w x grad|.",
    params=[
        SPARSITY,
        SCOPE,
        INCLUDE,
        EXCLUDE,
        Param(
            "batches",
            "int",
            "Calibration batches over which |w x grad| is accumulated.",
            default=8,
            minimum=1,
            maximum=10000,
        ),
        Param("batch_size", "int", "Instances per calibration batch.", default=16, minimum=1, maximum=4096),
    ],
    needs_task=True,
)
def prune_taylor(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Score each weight by |w x dL/dw| summed over a few calibration batches, prune the lowest.

    This is the first-order Taylor estimate of how much the task loss changes when the weight
    is removed, so it needs the task's loss and calibration data. The model runs in eval mode
    (no dropout) while gradients are gathered; nothing else about it changes. Targets, `scope`
    and masks work as in `prune.magnitude`.
    """
    op = "prune.taylor"
    task = need_task(op, ctx, "gradients of the task loss")
    model = to_device(cm, ctx)
    names = _targets(op, cm, params)
    tensors = {n: get_param(model, n) for n in names}
    scores = {n: torch.zeros_like(t, dtype=torch.float32) for n, t in tensors.items()}
    was_training = model.training
    grad_flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.eval()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for t in tensors.values():
            t.requires_grad_(True)
        n_batches = params["batches"]
        for i, batch in enumerate(task.calibration_batches(n_batches, params["batch_size"], ctx.seed)):
            ctx.check_cancelled()
            for t in tensors.values():
                t.grad = None
            loss = task.loss(model, move_batch(batch, ctx.device))
            loss.backward()
            for n, t in tensors.items():
                if t.grad is not None:
                    scores[n] += (t.detach().float() * t.grad.float()).abs()
            ctx.progress((i + 1) / n_batches, f"gradients: batch {i + 1}/{n_batches}")
    finally:
        for n, p in model.named_parameters():
            p.grad = None
            p.requires_grad_(grad_flags.get(n, True))
        model.train(was_training)
    prune_by_scores(op, cm, scores, params["sparsity"], params["scope"])
    return cm


def nm_mask(
    weight: torch.Tensor, dim: int, n: int, m: int, scores: torch.Tensor | None = None
) -> torch.Tensor:
    """Mask (True = prune) keeping the n largest of every m consecutive entries along `dim`.

    Among equal scores the earlier entry is pruned first, deterministically.
    """
    s = (weight.detach().abs().float() if scores is None else scores).movedim(dim, -1)
    shape = s.shape
    groups = s.reshape(-1, m)
    if m <= 16:
        mask = _group_ranks(groups.t().contiguous()).lt(m - n).t()
    else:
        order = torch.sort(groups, dim=1, stable=True).indices[:, : m - n]
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order, True)
    return mask.reshape(shape).movedim(-1, dim)


def _group_ranks(cols: torch.Tensor) -> torch.Tensor:
    """For [m, G] scores: each entry's position in its group's stable ascending order.

    One comparison per pair of columns instead of a sort: several times faster for small m.
    """
    m = cols.shape[0]
    rank = torch.zeros(cols.shape, dtype=torch.int16, device=cols.device)
    for i in range(m):
        for j in range(i + 1, m):
            j_first = cols[j] < cols[i]  # on a tie the earlier index i comes first
            rank[i] += j_first
            rank[j] += ~j_first
    return rank


@register_op(
    "prune.nm",
    family="pruning",
    summary="N:M semi-structured pruning (2:4 by default) along the input dimension.",
    params=[
        Param(
            "n",
            "int",
            "Weights kept in every group of `m` consecutive inputs.",
            default=2,
            minimum=1,
            maximum=63,
        ),
        Param("m", "int", "Group size along the input dimension.", default=4, minimum=2, maximum=64),
        INCLUDE,
        EXCLUDE,
        STRICT,
    ],
)
def prune_nm(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Keep the `n` largest-magnitude weights in every group of `m` consecutive input weights.

    Groups run along each layer's input dimension (columns of a Linear weight, input channels of
    a Conv kernel at each spatial position, rows of a transformers Conv1D), which is the layout
    sparse tensor cores accelerate for 2:4. A layer whose input size is not divisible by `m`
    (a 1-channel stem conv) is skipped and left dense, with a warning in the run's output and the
    model's `skipped_layers` metric; `strict: true` fails the variant instead. The resulting
    sparsity is exactly 1 - n/m on every other target. Masks are recorded as for
    `prune.magnitude`.
    """
    op = "prune.nm"
    n, m = params["n"], params["m"]
    if n >= m:
        raise OpError(op, f"'n' must be smaller than 'm' (got {n}:{m})", param="n")
    model = to_device(cm, ctx)
    names = _targets(op, cm, params)
    masks: Scores = {}
    for name in names:
        p = get_param(model, name)
        _, module, _ = owner(model, name)
        dim = input_dim(module, p)
        size = p.shape[dim]
        if size % m:
            ctx.skip_layer(
                op,
                name,
                f"input size {size} is not divisible by m={m}",
                strict=bool(params.get("strict")),
                param="m",
            )
            continue
        scores = p.detach().abs().float()
        old = cm.masks.get(name)
        if old is not None:
            scores.masked_fill_(old, float("-inf"))
        masks[name] = nm_mask(p, dim, n, m, scores)
    apply_masks(cm, masks)
    return cm
