"""`palettize`: weight clustering into a look-up table (Core ML palettization, DKM's stored form).

Every weight of a target tensor is replaced by one of 2**n_bits values of a look-up table (LUT);
the artifact stores the `n_bits`-bit index of each weight, packed, plus the LUT (and, optionally,
one scale per output channel). The LUT is found by 1-D k-means: Lloyd iterations, started from
two seeds (weighted quantiles and an even spread over the range) of which the lower weighted
squared error wins, run for every LUT group at once.

Layout conventions (shared with the artifact's `palette` form and its ranged reader):

- a tensor is viewed as rows x columns as in `quantize.py`: rows are the output channels (`axis`
  0 for Linear / Conv weights, 1 for transformers' Conv1D), columns everything else;
- `granularity: tensor`: one LUT for the tensor; `grouped-channel`: one LUT per `group_size`
  consecutive output channels (LUT g serves rows g*group_size .. (g+1)*group_size - 1);
- value of flat element i (natural memory order) = lut[g, code_i] (x scale[row] with a
  per-channel scale), computed in float32 and then cast to the tensor's dtype, where
  row = (i // prod(shape[axis+1:])) % shape[axis] and g = row // group_size;
- each LUT is sorted ascending, so the nearest entry is found by a binary search.

The sensitivity-weighted variant (SqueezeLLM, Core ML's sensitive k-means) weights each element's
squared error by a diagonal estimate of the loss curvature from calibration batches: `hessian`,
the layer-wise Hessian diagonal 2·E[x_j²] of the weight's input column (the calibrated ops'
machinery), or `fisher`, the squared gradients of the task's loss summed over the batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .quantize import check_finite, output_axis, select_targets
from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .targets import EXCLUDE, INCLUDE, STRICT, move_batch, refuse_encoded, to_device

OP = "palettize"
GRANULARITIES = ("tensor", "grouped-channel")
_FP16_MAX = 65504.0


# -- the encoding ----------------------------------------------------------------------------------
@dataclass
class PaletteEncoding:
    """How one palettized tensor is stored: packed LUT indices, the LUTs, optional row scales.

    `lut` is float32 [groups, 2**bits] (float16-exact values when `lut_dtype` is "float16"),
    sorted along its last dim; `scales` float32 [rows] or None.
    """

    bits: int
    granularity: str
    group_size: int | None
    axis: int
    shape: tuple[int, ...]
    lut: torch.Tensor
    scales: torch.Tensor | None = None
    lut_dtype: str = "float32"
    scale_dtype: str = "float32"
    kind: str = "palette"

    @property
    def rows(self) -> int:
        return 1 if len(self.shape) < 2 else int(self.shape[self.axis])

    def to_rows(self, t: torch.Tensor) -> torch.Tensor:
        """t as [rows, columns] (output channels first)."""
        if len(self.shape) < 2:
            return t.reshape(1, -1)
        return t.movedim(self.axis, 0).reshape(self.rows, -1)

    def from_rows(self, r: torch.Tensor) -> torch.Tensor:
        if len(self.shape) < 2:
            return r.reshape(self.shape)
        moved = list(self.shape)
        moved.insert(0, moved.pop(self.axis))
        return r.reshape(moved).movedim(0, self.axis).contiguous()

    def row_values(self, device: torch.device | None = None) -> torch.Tensor:
        """float32 [rows, 2**bits]: the values each row's codes stand for (sorted ascending)."""
        lut = self.lut.to(device, torch.float32)
        if self.granularity == "tensor":
            v = lut[0].unsqueeze(0).expand(self.rows, -1)
        else:
            group = torch.arange(self.rows, device=lut.device) // int(self.group_size or 1)
            v = lut[group]
        if self.scales is not None:
            v = v * self.scales.to(lut.device, torch.float32).unsqueeze(1)
        return v.contiguous()

    def encode(self, t: torch.Tensor) -> torch.Tensor:
        """Codes (uint8, t's shape) of the nearest LUT value of each element."""
        if tuple(t.shape) != tuple(self.shape):
            raise ValueError(f"tensor shape {tuple(t.shape)} does not match the encoding's {self.shape}")
        if self.granularity == "tensor" and self.scales is None:
            values = self.lut[:1].to(t.device, torch.float32)  # shared by every row
        else:
            values = self.row_values(t.device)
        return self.from_rows(nearest(self.to_rows(t.detach().to(torch.float32)), values).to(torch.uint8))

    def dequantize(self, codes: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Float values of codes: the one formula every path (op, project, artifact) uses."""
        if dtype is None:  # not a default argument: that would import torch on registering
            dtype = torch.float32
        values = self.row_values(codes.device)
        rows = self.to_rows(codes).to(torch.int64)
        return self.from_rows(torch.gather(values, 1, rows)).to(dtype)

    def project(self, tensor: torch.Tensor) -> torch.Tensor:
        """Each element moved to its nearest LUT value (finetune keeps weights on the palette)."""
        return self.dequantize(self.encode(tensor), tensor.dtype)

    def refit(self, t: torch.Tensor) -> None:
        """Move every LUT entry to the mean of t's elements nearest to it (one k-means step):
        `finetune` with `palette: learned` calls it after each step with its float copy of the
        weights, so the centroids are trained along with the assignments. An entry nobody is
        nearest to, and an exact 0 entry (pruned weights), stay."""
        with torch.no_grad():
            lut = self.lut.to(t.device, torch.float32)
            codes = self.to_rows(self.encode(t)).to(torch.int64)
            r = self.to_rows(t.detach().to(torch.float32))
            if self.scales is not None:
                r = r / self.scales.to(t.device, torch.float32).unsqueeze(1)
            rows, k = r.shape[0], lut.shape[1]
            per = rows if self.granularity == "tensor" else int(self.group_size or 1)
            slot = ((torch.arange(rows, device=t.device) // per).unsqueeze(1) * k + codes).reshape(-1)
            sums = torch.zeros(lut.numel(), dtype=torch.float64, device=t.device)
            sums.index_add_(0, slot, r.reshape(-1).to(torch.float64))
            counts = torch.bincount(slot, minlength=lut.numel()).to(torch.float64)
            mean = (sums / counts.clamp_min(1)).to(torch.float32).reshape(lut.shape)
            new = torch.where((counts.reshape(lut.shape) > 0) & (lut != 0), mean, lut)
            new, self.lut_dtype = _storage_values(new)
            self.lut = torch.sort(new, dim=1).values.to(self.lut.device)

    def to_cpu(self) -> None:
        self.lut = self.lut.detach().cpu()
        if self.scales is not None:
            self.scales = self.scales.detach().cpu()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bits": self.bits,
            "granularity": self.granularity,
            "group_size": self.group_size,
            "axis": self.axis,
            "shape": list(self.shape),
            "lut_dtype": self.lut_dtype,
            "lut_shape": list(self.lut.shape),
            "per_channel_scale": self.scales is not None,
            "scale_dtype": self.scale_dtype,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], lut: torch.Tensor, scales: torch.Tensor | None) -> PaletteEncoding:
        return cls(
            bits=int(d["bits"]),
            granularity=str(d["granularity"]),
            group_size=None if d.get("group_size") is None else int(d["group_size"]),
            axis=int(d["axis"]),
            shape=tuple(int(x) for x in d["shape"]),
            lut=lut.to(torch.float32),
            scales=None if scales is None else scales.to(torch.float32),
            lut_dtype=str(d.get("lut_dtype", "float32")),
            scale_dtype=str(d.get("scale_dtype", "float32")),
        )


def nearest(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of each row's sorted `values` [rows, K] for x [rows, n] (int64);
    `values` of one row serves every row of x.

    A binary search over the midpoints, then one look at the next value: a midpoint rounded in
    float32 can fall on the upper of two adjacent LUT values, and the search would then send that
    value to the entry below (a value on the LUT always comes back to its own entry)."""
    k = values.shape[1]
    if k == 1:
        return torch.zeros(x.shape, dtype=torch.int64, device=x.device)
    mids = (values[:, :-1] + values[:, 1:]) * 0.5
    if values.shape[0] == 1:  # one table for all rows: a flat search, no per-row gathers
        flat = values[0]
        idx = torch.searchsorted(mids[0].contiguous(), x.contiguous())
        up = (idx + 1).clamp_(max=k - 1)
        better = (x - flat[up]).abs() < (x - flat[idx]).abs()
        return torch.where(better, up, idx)
    idx = torch.searchsorted(mids.contiguous(), x.contiguous())
    up = (idx + 1).clamp_(max=k - 1)
    better = (x - torch.gather(values, 1, up)).abs() < (x - torch.gather(values, 1, idx)).abs()
    return torch.where(better, up, idx)


# -- k-means ---------------------------------------------------------------------------------------
def kmeans_1d(
    x: torch.Tensor, w: torch.Tensor | None, k: int, iterations: int, fixed_zero: bool = False
) -> torch.Tensor:
    """Sorted centroids [G, k] of the weighted 1-D k-means of each row of x [G, n].

    Lloyd's iterations from two seeds (weighted quantiles, and k points spread evenly over the
    range); per row the seed whose result has the lower weighted squared error wins. An empty
    cluster keeps its centroid. `fixed_zero`: the first centroid is pinned at 0.0 (pruned weights
    keep an exact zero) and the others cluster the non-zero elements.

    Each row is sorted once: in one dimension a cluster is a run of the sorted values between
    two midpoints, so an iteration needs only k binary searches and prefix sums (float64) per
    row, not a pass over every element.
    """
    x = x.to(torch.float32)
    w = torch.ones_like(x) if w is None else w.to(torch.float32).clamp_min(0)
    # a row whose weights are all zero (a weight that never mattered on the calibration data)
    # falls back to plain k-means rather than to an arbitrary LUT
    w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
    if fixed_zero:
        w = torch.where(x == 0, torch.zeros_like(w), w)
        free = kmeans_1d(x, w, k - 1, iterations) if k > 1 else x.new_zeros(x.shape[0], 0)
        return torch.sort(torch.cat([x.new_zeros(x.shape[0], 1), free], 1), dim=1).values
    xs, order = torch.sort(x, dim=1)
    ws = torch.gather(w, 1, order).to(torch.float64)
    x64 = xs.to(torch.float64)
    zero = torch.zeros(x.shape[0], 1, dtype=torch.float64, device=x.device)
    sums = [torch.cat([zero, torch.cumsum(v, 1)], 1) for v in (ws, ws * x64, ws * x64 * x64)]
    # several seeds, the best result per row kept: the density estimate of the companding seed
    # is best at a resolution that depends on the weights (coarse for 6-8 bits on a small tensor)
    seeds = [_quantile_seed(xs, sums[0], k), _range_seed(xs, k)]
    seeds += [_companding_seed(xs, ws, k, bins) for bins in (64, 256, 1024)]
    if k > 8:  # k-means++ draws (seeded): where many entries meet a shape the quantiles miss
        gen = torch.Generator().manual_seed(0)
        seeds += [_kmeanspp_seed(xs, ws, k, gen) for _ in range(3)]
    best_c, best_err = None, None
    for c in seeds:
        c, err = _lloyd(xs, sums, c, iterations)
        if best_c is None or best_err is None:
            best_c, best_err = c, err
        else:
            better = (err < best_err).unsqueeze(1)
            best_c = torch.where(better, c, best_c)
            best_err = torch.minimum(err, best_err)
    assert best_c is not None
    return best_c


def _quantile_seed(xs: torch.Tensor, cum_w: torch.Tensor, k: int) -> torch.Tensor:
    total = cum_w[:, -1:].clamp_min(1e-300)
    targets = (torch.arange(k, device=xs.device, dtype=torch.float64) + 0.5) / k * total
    pos = torch.searchsorted(cum_w[:, 1:].contiguous(), targets.contiguous()).clamp_(max=xs.shape[1] - 1)
    return torch.gather(xs, 1, pos)


def _companding_seed(xs: torch.Tensor, ws: torch.Tensor, k: int, bins: int) -> torch.Tensor:
    """Centroids at the quantiles of the (weighted) density to the power 1/3: the point density
    of the mean-squared-error optimal quantizer at high resolution (Panter & Dite), so Lloyd's
    iterations start close to the optimum where the many-entry LUTs (6-8 bits) would otherwise
    crawl there from the plain quantiles."""
    lo, hi = xs[:, :1], xs[:, -1:]
    width = (hi - lo).clamp_min(1e-30) / bins
    b = ((xs - lo) / width).floor().clamp_(0, bins - 1).to(torch.int64)
    g = torch.arange(xs.shape[0], device=xs.device).unsqueeze(1) * bins
    hist = torch.bincount((g + b).reshape(-1), weights=ws.reshape(-1), minlength=xs.shape[0] * bins)
    dens = hist.reshape(xs.shape[0], bins).clamp_min(0).pow(1.0 / 3.0)
    cdf = torch.cumsum(dens, 1)
    cdf = cdf / cdf[:, -1:].clamp_min(1e-300)
    targets = (torch.arange(k, device=xs.device, dtype=cdf.dtype) + 0.5) / k
    pos = torch.searchsorted(cdf.contiguous(), targets.expand(xs.shape[0], -1).contiguous())
    return (lo + (pos.clamp_(max=bins - 1).to(torch.float32) + 0.5) * width).to(torch.float32)


def _kmeanspp_seed(
    xs: torch.Tensor, ws: torch.Tensor, k: int, gen: torch.Generator, bins: int = 4096
) -> torch.Tensor:
    """k-means++ (each next centroid drawn with probability ∝ weight x squared distance to the
    nearest centroid so far) over a fine equal-width histogram of each row: bin means and masses
    stand for the weights, so a draw costs a pass over the bins, not over every weight."""
    rows = xs.shape[0]
    bins = max(1, min(bins, xs.shape[1]))  # a small group (a LUT per channel) needs few bins
    lo, hi = xs[:, :1], xs[:, -1:]
    width = (hi - lo).clamp_min(1e-30) / bins
    b = ((xs - lo) / width).floor().clamp_(0, bins - 1).to(torch.int64)
    slot = (torch.arange(rows, device=xs.device).unsqueeze(1) * bins + b).reshape(-1)
    mass = torch.bincount(slot, weights=ws.reshape(-1), minlength=rows * bins).reshape(rows, bins)
    tot = torch.bincount(slot, weights=(ws * xs.to(torch.float64)).reshape(-1), minlength=rows * bins)
    mean = (tot.reshape(rows, bins) / mass.clamp_min(1e-300)).cpu()
    mass = mass.cpu()
    out = torch.empty(rows, k, dtype=torch.float64)
    d2 = torch.ones_like(mass)
    for j in range(k):
        p = mass * d2
        p = torch.where(p.sum(1, keepdim=True) > 0, p, mass + 1e-300)
        pick = torch.multinomial(p, 1, generator=gen)
        c = torch.gather(mean, 1, pick)
        out[:, j] = c[:, 0]
        d2 = (mean - c).pow(2) if j == 0 else torch.minimum(d2, (mean - c).pow(2))
    return out.to(xs.device, torch.float32)


def _range_seed(xs: torch.Tensor, k: int) -> torch.Tensor:
    lo, hi = xs[:, :1], xs[:, -1:]
    t = (torch.arange(k, device=xs.device, dtype=torch.float32) + 0.5) / k
    return lo + (hi - lo) * t


def _lloyd(
    xs: torch.Tensor, sums: list[torch.Tensor], c: torch.Tensor, iterations: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted centroids, weighted squared error per row) after Lloyd's iterations from c, on
    rows xs sorted ascending with prefix sums [Σw, Σwx, Σwx²] ([G, n + 1], float64)."""
    s0, s1, _ = sums
    n = xs.shape[1]
    c = torch.sort(c, dim=1).values
    prev = None
    edges = None
    for _ in range(iterations + 1):
        # cluster j holds the sorted values in (mid[j-1], mid[j]], as `nearest` assigns ties down
        mids = (c[:, :-1] + c[:, 1:]) * 0.5
        inner = torch.searchsorted(xs, mids.contiguous(), right=True)
        edges = torch.cat([torch.zeros_like(inner[:, :1]), inner, torch.full_like(inner[:, :1], n)], dim=1)
        if prev is not None and torch.equal(edges, prev):
            break  # same clusters: the centroids are their means already
        if _ == iterations:
            break
        prev = edges
        mass = torch.gather(s0, 1, edges[:, 1:]) - torch.gather(s0, 1, edges[:, :-1])
        tot = torch.gather(s1, 1, edges[:, 1:]) - torch.gather(s1, 1, edges[:, :-1])
        mean = (tot / mass.clamp_min(1e-300)).to(torch.float32)
        c = torch.sort(torch.where(mass > 0, mean, c), dim=1).values
    assert edges is not None
    m0, m1, m2 = (torch.gather(v, 1, edges[:, 1:]) - torch.gather(v, 1, edges[:, :-1]) for v in sums)
    c64 = c.to(torch.float64)
    err = (m2 - 2 * c64 * m1 + c64 * c64 * m0).sum(1)
    return c, err


def _storage_values(t: torch.Tensor) -> tuple[torch.Tensor, str]:
    """t rounded to float16 when every value fits (LUTs and scales are stored in half then: the
    k-means result moves by < 2**-11 relative, and the indices are assigned after the rounding)."""
    if bool((t.abs() <= _FP16_MAX).all()):
        return t.to(torch.float16).to(torch.float32), "float16"
    return t, "float32"


# -- the op ----------------------------------------------------------------------------------------
@register_op(
    OP,
    family="quantize",
    summary="Palettization: weights clustered (k-means) into a 2^n-entry look-up table per tensor "
    "or channel group, stored as packed indices + LUT.",
    params=[
        Param("n_bits", "int", "Bits per index: the LUT has 2^n_bits entries (1–8).", default=4, minimum=1,
              maximum=8),
        Param("granularity", "enum", "One LUT per tensor, or one per group of `group_size` output channels.",
              default="tensor", choices=GRANULARITIES),
        Param("group_size", "int", "Output channels sharing one LUT when granularity is grouped-channel "
              "(1: a LUT per channel); a layer whose channels it does not divide is skipped (see `strict`).",
              default=16, minimum=1),
        Param("per_channel_scale", "bool", "Divide each output channel by its largest magnitude before "
              "clustering, and store that scale (one float16 per channel).", default=False),
        Param("weighting", "enum", "`none`: plain k-means; `hessian`: each weight's error weighted by "
              "its input's mean square on calibration batches (diagonal of the layer Hessian); `fisher`: "
              "by the squared gradients of the task's loss (sensitive k-means).",
              default="none", choices=("none", "hessian", "fisher")),
        Param("batches", "int", "Calibration batches (weighting only).", default=8, minimum=1),
        Param("batch_size", "int", "Instances per calibration batch (weighting only).", default=8, minimum=1),
        Param("iterations", "int", "Most k-means (Lloyd) iterations per seed.", default=50, minimum=1,
              maximum=1000),
        INCLUDE,
        EXCLUDE,
        STRICT,
    ],
)  # fmt: skip
def palettize(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Cluster each target tensor's weights into a look-up table of 2^`n_bits` values (k-means).

    Every weight becomes the nearest of its LUT's values; the LUT is the 1-D k-means of the
    weights it serves (one per tensor, or one per `group_size` output channels with
    `granularity: grouped-channel`). With `per_channel_scale` each output channel is first divided
    by its largest magnitude, so one LUT fits channels of different ranges. `weighting` makes it
    sensitivity-aware: each weight's squared error counts in proportion to a diagonal estimate of
    the loss curvature from the task's calibration batches (`hessian`: the mean square of the
    input it multiplies, from the layer's inputs; `fisher`: the squared gradient of the loss), so
    the LUT spends its entries where errors cost most. Weights already pruned stay exactly zero
    (the LUT keeps a 0 entry). The artifact stores the indices bit-packed at `n_bits` bits, each
    LUT in float16 (float32 when a value does not fit) and the per-channel scales; the model runs
    on the looked-up floats, and `finetune` afterwards trains with the weights kept on their LUT
    (straight-through). Layers whose output channels `group_size` does not divide are skipped.
    """
    bits, gran = int(params["n_bits"]), str(params["granularity"])
    group_size = int(params["group_size"]) if gran == "grouped-channel" else None
    module = to_device(cm, ctx)
    names = select_targets(module, params.get("include"), params.get("exclude"), op=OP)
    refuse_encoded(OP, cm, names, "palettize")
    lookup = dict(module.named_parameters())
    fitting = []
    for name in names:
        p = lookup[name]
        check_finite(p, op=OP, layer=name)
        rows = 1 if p.dim() < 2 else int(p.shape[output_axis(module, name)])
        if group_size is not None and rows % group_size:
            ctx.skip_layer(OP, name, f"group_size {group_size} does not divide its {rows} output channels",
                           strict=bool(params.get("strict")), param="group_size")  # fmt: skip
            continue
        fitting.append(name)
    weighting = str(params["weighting"])
    sens = _sensitivities(module, fitting, weighting, params, ctx) if weighting != "none" else {}
    for i, name in enumerate(fitting):
        ctx.check_cancelled()
        p = lookup[name]
        enc = palettize_tensor(
            p.detach(),
            bits,
            gran,
            group_size,
            output_axis(module, name),
            per_channel_scale=bool(params["per_channel_scale"]),
            sensitivity=sens.pop(name, None),
            keep_zeros=name in cm.masks,
            iterations=int(params["iterations"]),
        )
        with torch.no_grad():
            p.copy_(enc.project(p))
        enc.to_cpu()
        cm.encodings[name] = enc
        ctx.progress((i + 1) / max(1, len(fitting)), f"palettized {name}")
    return cm


def palettize_tensor(
    t: torch.Tensor,
    bits: int,
    granularity: str,
    group_size: int | None,
    axis: int,
    *,
    per_channel_scale: bool = False,
    sensitivity: torch.Tensor | None = None,
    keep_zeros: bool = False,
    iterations: int = 50,
) -> PaletteEncoding:
    """The palette (LUT, scales) of t; `sensitivity` (t's shape) weights each element's error."""
    shape = tuple(t.shape)
    enc = PaletteEncoding(bits, granularity, group_size, axis, shape, lut=torch.zeros(1, 1))
    r = enc.to_rows(t.to(torch.float32))
    rows = r.shape[0]
    s = None
    if per_channel_scale:
        amax = r.abs().amax(1)
        s, enc.scale_dtype = _storage_values(torch.where(amax > 0, amax, torch.ones_like(amax)))
        r = r / s.unsqueeze(1)
    w = None if sensitivity is None else enc.to_rows(sensitivity.to(t.device, torch.float32))
    per = rows if granularity == "tensor" else int(group_size or 1)
    x = r.reshape(rows // per, -1)  # one row per LUT group (its output channels are consecutive)
    wg = None if w is None else w.reshape(rows // per, -1)
    lut = kmeans_1d(x, wg, 1 << bits, iterations, fixed_zero=keep_zeros and bool((x == 0).any()))
    lut, enc.lut_dtype = _storage_values(lut)
    enc.lut = torch.sort(lut, dim=1).values
    enc.scales = s
    return enc


def _sensitivities(
    module: nn.Module, names: list[str], weighting: str, params: dict[str, Any], ctx: OpContext
) -> dict[str, torch.Tensor]:
    """Per-element weights (each tensor's shape) of the sensitive k-means."""
    task = ctx.task
    if task is None:
        raise OpError(OP, f"weighting '{weighting}' needs a task with calibration data (add a task: section)",
                      param="weighting")  # fmt: skip
    batches = [
        move_batch(b, ctx.device)
        for b in task.calibration_batches(int(params["batches"]), int(params["batch_size"]), ctx.seed)
    ]
    if not batches:
        raise OpError(OP, "the task produced no calibration batches", param="batches")
    lookup = dict(module.named_parameters())
    if weighting == "fisher":
        return _fisher(module, names, batches, task, ctx)
    from .prune_calibrated import input_square_norms

    sq = input_square_norms(module, names, batches, task, ctx, op=OP)
    out: dict[str, torch.Tensor] = {}
    for name in names:
        p = lookup[name]
        col = sq.get(name)
        if col is None:  # not a layer whose inputs map onto its columns: plain k-means
            continue
        axis = output_axis(module, name)
        rows = int(p.shape[axis])
        grid = col.unsqueeze(0).expand(rows, -1)  # [rows, columns], as PaletteEncoding.to_rows
        moved = list(p.shape)
        moved.insert(0, moved.pop(axis))
        out[name] = grid.reshape(moved).movedim(0, axis).contiguous()
    return out


def _fisher(
    module: nn.Module, names: list[str], batches: list[Any], task: Any, ctx: OpContext
) -> dict[str, torch.Tensor]:
    """Sum over the batches of the squared gradient of the task's loss (the empirical Fisher
    diagonal), per target element. Gradients are taken in eval mode (no dropout)."""
    lookup = dict(module.named_parameters())
    flags = {n: p.requires_grad for n, p in lookup.items()}
    acc = {n: torch.zeros_like(lookup[n], dtype=torch.float32) for n in names}
    was_training = module.training
    module.eval()
    try:
        for n, p in lookup.items():
            p.requires_grad_(n in acc)
            p.grad = None
        for batch in batches:
            ctx.check_cancelled()
            with torch.enable_grad():
                loss = task.loss(module, batch)
                if not bool(torch.isfinite(loss)):
                    raise OpError(
                        OP, "the task's loss is not finite on a calibration batch", param="weighting"
                    )
                loss.backward()
            for n in names:
                g = lookup[n].grad
                if g is not None:
                    acc[n].add_(g.detach().to(torch.float32).pow(2))
                    lookup[n].grad = None
    finally:
        for n, p in lookup.items():
            p.grad = None
            p.requires_grad_(flags[n])
        module.train(was_training)
    return acc


def palette_nbytes(enc: PaletteEncoding) -> int:
    """Bytes of the stored components: packed indices + LUT (+ scales)."""
    numel = math.prod(enc.shape)
    lut = enc.lut.numel() * (2 if enc.lut_dtype == "float16" else 4)
    scales = 0 if enc.scales is None else enc.scales.numel() * (2 if enc.scale_dtype == "float16" else 4)
    return (numel * enc.bits + 7) // 8 + lut + scales
