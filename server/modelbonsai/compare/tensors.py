"""Heatmap tiles of one tensor (a weight, an activation, or the difference of two).

The tensor is seen as a matrix: 0-D -> [1, 1], 1-D -> [1, n], 2-D as is, N-D -> [d0, d1*...*dn]
(a conv weight becomes out_channels x (in_channels*kh*kw)). A level-of-detail pyramid reduces it
2x2 per level: a cell at level L summarises a 2^L x 2^L block of elements by its **mean** and its
**max |value|** (so a single large outlier stays visible when zoomed out; NaN propagates into
both, it is never hidden). Cells are served in square tiles of `tile` cells; a request names a
level and a window in element coordinates and gets back only the tiles that intersect it,
computed directly from the elements they cover (no whole pyramid is built).

`levels` is the level at which the whole matrix fits in one tile; a negative level counts down
from it (-1 is the coarsest), so a client that does not know the shape yet (an activation) can
ask for the overview first and read `rows`, `cols` and `levels` from its meta.

Activations: :func:`activation_tensors` stacks one module's output for a set of instances into
[instances, ...] (so the heatmap's rows are instances); :func:`align_channels` brings a base
activation to a structured-pruned model's channels before a difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .activations import _first_tensor
from .control import CompareError

KIND = "tiles"
TILE = 256
MAX_TILES = 64  # per request: a view never shows more; protects the server from huge windows
MAX_INSTANCES = 256  # activation rows per request: one heatmap, not a dataset dump


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(1, -1)
    return t.reshape(t.shape[0], -1)


def difference(
    base: torch.Tensor, other: torch.Tensor, kept: Mapping[int, Sequence[int]] | None = None
) -> torch.Tensor:
    """other - base in the other's layout (the base indexed by structured-pruning kept indices)."""
    for dim, idx in sorted((kept or {}).items()):
        base = base.index_select(int(dim), torch.as_tensor(list(idx), dtype=torch.long, device=base.device))
    if base.shape != other.shape:
        raise CompareError(f"cannot subtract tensors of shapes {list(base.shape)} and {list(other.shape)}")
    return other.float() - base.float()


@dataclass
class Tile:
    level: int
    ty: int
    tx: int
    mean: torch.Tensor  # [h, w] cells (h, w <= tile)
    maxabs: torch.Tensor


def pyramid_info(shape: Sequence[int], tile: int = TILE) -> dict[str, int]:
    rows, cols = (
        (1, 1)
        if len(shape) == 0
        else (1, int(shape[0]))
        if len(shape) == 1
        else (int(shape[0]), math.prod(shape[1:]))
    )
    big = max(rows, cols, 1)
    levels = max(0, math.ceil(math.log2(big / tile))) if big > tile else 0
    return {"rows": rows, "cols": cols, "tile": tile, "levels": levels}


def resolve_level(shape: Sequence[int], level: int, tile: int = TILE) -> int:
    """`level` as a pyramid level of a tensor of `shape` (negative: counted from the coarsest)."""
    top = pyramid_info(shape, tile)["levels"]
    lv = top + 1 + level if level < 0 else level
    if not 0 <= lv <= top:
        raise CompareError(
            f"level {level} is outside 0..{top} (or -{top + 1}..-1) for a tensor shaped {list(shape)}"
        )
    return lv


def _reduce(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max-abs over k x k cells (edge cells cover what is left)."""
    x = block.float()[None, None]
    if k == 1:
        return x[0, 0], x[0, 0].abs()
    sums = F.avg_pool2d(x, k, k, ceil_mode=True, divisor_override=1)
    counts = F.avg_pool2d(torch.ones_like(x), k, k, ceil_mode=True, divisor_override=1)
    maxabs = F.max_pool2d(x.abs(), k, k, ceil_mode=True)
    return (sums / counts)[0, 0], maxabs[0, 0]


def tiles(
    t: torch.Tensor,
    level: int,
    window: tuple[int, int, int, int] | None = None,
    *,
    tile: int = TILE,
) -> list[Tile]:
    """The tiles of `level` that intersect `window` = (row0, col0, row1, col1) in element
    coordinates (end-exclusive; default: everything)."""
    m = as_matrix(t)
    rows, cols = m.shape
    level = resolve_level(t.shape, level, tile)
    r0, c0, r1, c1 = window or (0, 0, rows, cols)
    r0, c0 = max(0, r0), max(0, c0)
    r1, c1 = min(rows, r1), min(cols, c1)
    if r0 >= r1 or c0 >= c1:
        return []
    k = 1 << level
    span = tile * k  # elements per tile side at this level
    tys = range(r0 // span, (r1 - 1) // span + 1)
    txs = range(c0 // span, (c1 - 1) // span + 1)
    if len(tys) * len(txs) > MAX_TILES:
        raise CompareError(
            f"the window needs {len(tys) * len(txs)} tiles at level {level}; ask for a coarser level "
            f"or a smaller window (at most {MAX_TILES} tiles)"
        )
    out = []
    for ty in tys:
        for tx in txs:
            block = m[ty * span : (ty + 1) * span, tx * span : (tx + 1) * span]
            mean, maxabs = _reduce(block, k)
            out.append(Tile(level, ty, tx, mean, maxabs))
    return out


def tiles_wire(
    t: torch.Tensor, level: int, window: tuple[int, int, int, int] | None = None, *, tile: int = TILE,
    meta: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:  # fmt: skip
    """(kind, meta, tensors) for the wire: tensors `L{level}_{ty}_{tx}_mean` / `_maxabs`, and in
    meta the pyramid info, the tile list and the tensor's finite range (for a stable colour scale)."""
    level = resolve_level(t.shape, level, tile)
    ts = tiles(t, level, window, tile=tile)
    m = as_matrix(t).float()
    finite = m[torch.isfinite(m)]
    rng = {
        "min": float(finite.min()) if finite.numel() else None,
        "max": float(finite.max()) if finite.numel() else None,
        "nonfinite": int(m.numel() - finite.numel()),
    }
    tensors: dict[str, np.ndarray] = {}
    listing = []
    for x in ts:
        key = f"L{x.level}_{x.ty}_{x.tx}"
        tensors[f"{key}_mean"] = x.mean.cpu().numpy()
        tensors[f"{key}_maxabs"] = x.maxabs.cpu().numpy()
        listing.append(
            {
                "key": key,
                "level": x.level,
                "ty": x.ty,
                "tx": x.tx,
                "rows": x.mean.shape[0],
                "cols": x.mean.shape[1],
            }
        )
    out_meta = {**dict(meta or {}), **pyramid_info(t.shape, tile), "shape": list(t.shape), "level": level,
                "window": list(window) if window else None, "tiles": listing, "range": rng}  # fmt: skip
    return KIND, out_meta, tensors


def activation_tensor(
    model: nn.Module,
    task: Any,
    instance_id: str,
    module: str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> torch.Tensor:
    """The output of `module` for one instance (the batch dim removed), found by id in the task's
    evaluation batches."""
    return activation_tensors(model, task, [instance_id], module, device=device, batch_size=batch_size)[0]


def _rows_of(
    task: Any, instance_ids: Sequence[str], batch_size: int
) -> list[tuple[Any, list[int], list[int]]]:
    """(batch, rows in the batch, positions in `instance_ids`) for the batches holding the ids;
    stops reading the task's data as soon as every id is found."""
    want = {i: k for k, i in enumerate(instance_ids)}
    found: list[tuple[Any, list[int], list[int]]] = []
    left = set(want)
    for b in task.eval_batches(batch_size):
        ids = [str(i) for i in b.ids]
        rows = [r for r, i in enumerate(ids) if i in left]
        if rows:
            found.append((b, rows, [want[ids[r]] for r in rows]))
            left -= {ids[r] for r in rows}
        if not left:
            break
    if left:
        missing = [i for i in instance_ids if i in left]
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CompareError(f"instance '{missing[0]}' is not in the task's evaluation data" if len(missing) == 1
                           else f"instances {', '.join(repr(i) for i in missing[:5])}{more} are not in the task's evaluation data")  # fmt: skip
    return found


@torch.no_grad()
def activation_tensors(
    model: nn.Module,
    task: Any,
    instance_ids: Sequence[str],
    module: str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    lengths_out: list[int] | None = None,
) -> torch.Tensor:
    """The outputs of `module` for `instance_ids`, stacked in that order: [len(ids), ...]
    (zero-padded to the longest when their lengths differ; `lengths_out` receives each one's)."""
    ids = [str(i) for i in instance_ids]
    if not ids:
        raise CompareError("no instances given: name at least one instance id")
    if len(set(ids)) != len(ids):
        raise CompareError("the instance ids repeat; name each instance once")
    if len(ids) > MAX_INSTANCES:
        raise CompareError(
            f"{len(ids)} instances asked for; an activation heatmap takes at most {MAX_INSTANCES}"
        )
    mods = dict(model.named_modules())
    if module not in mods:
        raise CompareError(f"the model has no module '{module}'")
    out: list[torch.Tensor | None] = [None] * len(ids)
    got: list[torch.Tensor] = []

    def hook(m: nn.Module, args: Any, output: Any) -> None:
        o = _first_tensor(output)
        if o is not None and not got:  # the first call: a module reused later keeps its first output
            got.append(o.detach().clone())

    h = mods[module].register_forward_hook(hook)
    was = model.training
    model.eval()
    try:
        for batch, rows, pos in _rows_of(task, ids, batch_size):
            got.clear()
            task.forward(model, task.to_device(batch, torch.device(device)))
            if not got:
                raise CompareError(f"module '{module}' produced no tensor")
            o = got[0]
            if not o.dim() or o.shape[0] != len(batch.ids):
                raise CompareError(f"module '{module}' output {list(o.shape)} has no batch dim of {len(batch.ids)}; "
                                   "its activation cannot be split by instance")  # fmt: skip
            for r, p in zip(rows, pos, strict=True):
                out[p] = o[r].cpu()
    finally:
        h.remove()
        model.train(was)
    outs = [x for x in out if x is not None]
    if lengths_out is not None:
        lengths_out[:] = [int(x.shape[0]) if x.dim() else 1 for x in outs]
    return stack_padded(outs, module)


def stack_padded(outs: Sequence[torch.Tensor], module: str = "") -> torch.Tensor:
    """Stack per-instance outputs; outputs that differ only in length (text batched with
    different padding: [T, C] with T varying) are zero-padded at the end to the longest. Other
    shape differences are an error."""
    shapes = {tuple(x.shape) for x in outs}
    if len(shapes) == 1:
        return torch.stack(list(outs))
    ranks = {len(sh) for sh in shapes}
    if len(ranks) != 1 or not ranks.pop() or len({sh[1:] for sh in shapes}) != 1:
        raise CompareError(f"module '{module}' gives outputs of different shapes for these instances "
                           f"({sorted(list(s) for s in shapes)}); ask for instances of one shape")  # fmt: skip
    longest = max(int(x.shape[0]) for x in outs)
    return torch.stack([torch.nn.functional.pad(x, (0, 0) * (x.dim() - 1) + (0, longest - int(x.shape[0])))
                        for x in outs])  # fmt: skip


def align_channels(base: torch.Tensor, kept: Sequence[int], *, stacked: bool) -> torch.Tensor:
    """A base activation indexed by a structured-pruned module's kept output channels: the
    channel dim is the first of a per-instance output of 3+ dims (conv: C, H, W), else the last
    (linear: ..., features); `stacked` outputs have an instance dim in front."""
    per = base.dim() - (1 if stacked else 0)
    dim = (1 if stacked else 0) if per >= 3 else base.dim() - 1
    idx = torch.as_tensor(list(kept), dtype=torch.long)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= base.shape[dim]):
        raise CompareError(f"kept channel indices fall outside the base's {base.shape[dim]} channels")
    return base.index_select(dim, idx)
