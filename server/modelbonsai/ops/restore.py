"""Restore chosen tensors from the parent model: undo an op where it hurt most."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import torch

from .registry import CompressedModel, OpContext, OpError, Param, match_names, register_op
from .targets import as_patterns, to_device

OP = "restore"


def _tensors(cm: CompressedModel) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name (each shared tensor once)."""
    out: dict[str, torch.Tensor] = dict(cm.module.named_parameters())
    out.update(dict(cm.module.named_buffers()))
    return out


@register_op(
    OP,
    family="repair",
    summary="Copy chosen parameters (glob patterns) back from the parent model.",
    params=[
        Param(
            "patterns",
            "patterns",
            "Glob patterns over parameter and buffer names to copy back from the parent "
            "(e.g. `*LayerNorm*`).",
            required=True,
            sweepable=False,
        ),
        Param("exclude", "patterns", "Glob patterns over names not to restore.", sweepable=False),
    ],
    reads_parent=True,
)
def restore(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Copy the tensors matching `patterns` from the parent model into this one.

    This is the fix from the language-model case study: after pruning with LayerNorm weights
    included, `restore: {patterns: ["*LayerNorm*"]}` brings the norms back and recovers most of
    the accuracy. Everything the parent records about a restored tensor comes back with it: its
    pruning mask (or none), its quantization encoding (or none) and its kept indices.

    Each pattern must match at least one tensor, and each restored tensor must exist in the
    parent with the same shape (a layer shrunk by structured pruning or factorised after the
    parent cannot be restored; the error names it). Values are cast to this model's dtype.
    """
    parent = ctx.parent
    if parent is None:
        raise OpError(OP, "needs a parent model to copy from; this variant has none")
    to_device(cm, ctx)
    mine, theirs = _tensors(cm), _tensors(parent)
    names = list(mine)
    chosen: list[str] = []
    for p in as_patterns(params["patterns"]):
        hit = match_names(names, [p])
        if not hit:
            raise OpError(OP, f"pattern '{p}' matches no parameter of the model", param="patterns")
        chosen += [n for n in hit if n not in chosen]
    excl = as_patterns(params.get("exclude"))
    for p in excl:
        if not match_names(names, [p]):
            raise OpError(OP, f"pattern '{p}' matches no parameter of the model", param="exclude")
    if excl:
        dropped = set(match_names(chosen, excl))
        chosen = [n for n in chosen if n not in dropped]
    if not chosen:
        raise OpError(OP, "nothing left to restore after 'exclude'", param="exclude")
    for name in chosen:
        src = theirs.get(name)
        if src is None:
            raise OpError(OP, "the parent has no tensor of this name", param="patterns", layer=name)
        dst = mine[name]
        if src.shape != dst.shape:
            raise OpError(
                OP,
                f"shape {tuple(dst.shape)} here but {tuple(src.shape)} in the parent "
                "(the layer was restructured since)",
                param="patterns",
                layer=name,
            )
    with torch.no_grad():
        for name in chosen:
            mine[name].copy_(theirs[name].detach().to(device=mine[name].device, dtype=mine[name].dtype))
            cm.masks.pop(name, None)
            cm.encodings.pop(name, None)
            cm.kept_indices.pop(name, None)
            if name in parent.masks:
                cm.masks[name] = parent.masks[name].clone().to(mine[name].device)
            if name in parent.encodings:
                cm.encodings[name] = parent.encodings[name]
            if name in parent.kept_indices:
                cm.kept_indices[name] = {d: list(ix) for d, ix in parent.kept_indices[name].items()}
    ctx.progress(1.0, f"restored {len(chosen)} tensors from the parent")
    return cm
