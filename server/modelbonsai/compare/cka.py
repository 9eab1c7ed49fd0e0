"""Linear CKA (centered kernel alignment) between two representations of the same samples.

CKA(X, Y) = ||Ycᵀ Xc||_F² / (||Xcᵀ Xc||_F · ||Ycᵀ Yc||_F) for X [n, p], Y [n, q] with rows =
samples and column-centred Xc, Yc. It is invariant to isotropic scaling and orthogonal
transforms of either side's features, and 1 for identical representations.

Three ways to compute it, all in float64:

- :func:`linear_cka`: the sample-space form through the n x n Gram matrices (cheap when n is
  small: instance-level CKA, sampled rows).
- :class:`GramCka`: the feature-space form, accumulated over batches: running XᵀX, YᵀY, YᵀX,
  column sums and n. Exact over every row that was added, memory 3·C² float64 (C = channels), so
  it suits many rows of narrow features. Each side is shifted by its first batch's column mean
  before accumulating (any shift leaves the centred sums unchanged), so the centring subtraction
  does not cancel catastrophically when the mean is large against the spread.
- :class:`RowCka`: keeps a sample of rows of both sides and applies :func:`linear_cka` at the end
  (memory rows x C float32 per side).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import kernels as K


def linear_cka(x: torch.Tensor, y: torch.Tensor, *, fast: bool = False) -> float | None:
    """Linear CKA of x [n, p] and y [n, q] (rows are samples): through the n x n Gram matrices
    or the feature-space sums, whichever costs fewer multiplications, in float64; with `fast`
    centred and multiplied in float32 around float64 column means, the products summed in
    float64 (used for sampled rows and for instance features; measured against the float64
    form, 1 - CKA stays within 1e-3 relative down to 1 - CKA = 1e-11). None when either side is
    constant over samples (the ratio is undefined)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples on both sides ({x.shape[0]} vs {y.shape[0]})")
    if x.shape[0] < 2:
        return None
    n = x.shape[0]
    xs, ys = x.reshape(n, -1), y.reshape(n, -1)
    if fast and xs.device.type == "cpu" and ys.device.type == "cpu":
        return _fast_cka(xs.float(), ys.float())
    dt = torch.float32 if fast else torch.float64
    # column means in float64 either way (the centring is where precision is lost)
    xc = xs.to(dt) - xs.mean(0, keepdim=True, dtype=torch.float64).to(dt)
    yc = ys.to(dt) - ys.mean(0, keepdim=True, dtype=torch.float64).to(dt)
    p, q = xc.shape[1], yc.shape[1]
    if n * (p + q) <= p * p + q * q + p * q:
        kx = (xc @ xc.T).double()
        ky = (yc @ yc.T).double()
        return _ratio(float((kx * ky).sum()), float(kx.norm()), float(ky.norm()))
    cyx = (yc.T @ xc).double()
    return _ratio(
        float(cyx.square().sum()), float((xc.T @ xc).double().norm()), float((yc.T @ yc).double().norm())
    )


def _fast_cka(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """:func:`linear_cka`'s `fast` form on the host: centring and reductions in kernels (torch's
    per-op overhead dominates at these sizes), the products through torch (so they use the
    threads torch is allowed, as the model does)."""
    xc, yc = _centred(x), _centred(y)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if n * (p + q) <= p * p + q * q + p * q:
        hsic, kxx, kyy = _dots64(xc @ xc.T, yc @ yc.T)
        return _ratio(hsic, math.sqrt(kxx), math.sqrt(kyy))
    cyx, cxx, cyy = (_flat(m) for m in (yc.T @ xc, xc.T @ xc, yc.T @ yc))  # p x p and q x q differ
    return _ratio(K.dots64(cyx, cyx)[0], math.sqrt(K.dots64(cxx, cxx)[0]), math.sqrt(K.dots64(cyy, cyy)[0]))


def _centred(x: torch.Tensor) -> torch.Tensor:
    """x [n, p] float32 on the host minus its column means (a new tensor; one kernel call)."""
    xn = np.ascontiguousarray(x.detach().numpy())
    out = np.empty_like(xn)
    K.center_columns(xn, out)
    return torch.from_numpy(out)


def _flat(t: torch.Tensor) -> np.ndarray:
    return t.numpy().reshape(-1)


def _dots64(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """(Σ a∘b, Σ a², Σ b²) of two float32 host tensors of one shape in float64 (one kernel pass,
    no float64 copies; not a BLAS dot: numpy's BLAS may start threads of its own beside torch's)."""
    ab, aa, bb = K.dots64(_flat(a), _flat(b))
    return float(ab), float(aa), float(bb)


def _ratio(hsic: float, nx: float, ny: float) -> float | None:
    den = nx * ny
    if den == 0.0 or not math.isfinite(den) or not math.isfinite(hsic):
        return None
    # rounding can put identical representations a hair above 1
    return min(1.0, max(0.0, hsic / den))


class GramCka:
    """Feature-space linear CKA accumulated over batches of rows (exact; memory 3·C² float64).

    `add(x, y)` takes x [r, p] and y [r, q] (the same r samples on both sides), on any device;
    the sums stay on that device in float64, so adding needs no host synchronisation."""

    def __init__(self) -> None:
        self.n = 0
        self.shift_x: torch.Tensor | None = None
        self.shift_y: torch.Tensor | None = None
        self.sxx: torch.Tensor | None = None
        self.syy: torch.Tensor | None = None
        self.syx: torch.Tensor | None = None
        self.sx: torch.Tensor | None = None
        self.sy: torch.Tensor | None = None

    @staticmethod
    def nbytes(p: int, q: int) -> int:
        """Bytes held for p and q features."""
        return 8 * (p * p + q * q + p * q + 2 * (p + q))

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"CKA needs the same samples on both sides ({x.shape[0]} vs {y.shape[0]})")
        if x.shape[0] == 0:
            return
        x = x.reshape(x.shape[0], -1).double()
        y = y.reshape(y.shape[0], -1).double()
        if self.shift_x is None or self.shift_y is None:
            self.shift_x, self.shift_y = x.mean(0), y.mean(0)
            p, q = x.shape[1], y.shape[1]
            self.sxx = x.new_zeros(p, p)
            self.syy = x.new_zeros(q, q)
            self.syx = x.new_zeros(q, p)
            self.sx, self.sy = x.new_zeros(p), x.new_zeros(q)
        assert self.sxx is not None and self.syy is not None and self.syx is not None
        assert self.sx is not None and self.sy is not None
        if x.shape[1] != self.sx.shape[0] or y.shape[1] != self.sy.shape[0]:
            raise ValueError("CKA rows changed width between batches")
        x = x - self.shift_x
        y = y - self.shift_y
        self.sxx.addmm_(x.T, x)
        self.syy.addmm_(y.T, y)
        self.syx.addmm_(y.T, x)
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.n += x.shape[0]

    def result(self) -> float | None:
        if self.n < 2 or self.sxx is None:
            return None
        assert self.syy is not None and self.syx is not None and self.sx is not None and self.sy is not None
        n = float(self.n)
        cxx = self.sxx - torch.outer(self.sx, self.sx) / n
        cyy = self.syy - torch.outer(self.sy, self.sy) / n
        cyx = self.syx - torch.outer(self.sy, self.sx) / n
        return _ratio(float((cyx * cyx).sum()), float(cxx.norm()), float(cyy.norm()))


class RowCka:
    """Linear CKA over rows kept as they are added (float32 on the host); for sampled rows, so
    the products run in float32 (``linear_cka(fast=True)``)."""

    def __init__(self) -> None:
        self.xs: list[torch.Tensor] = []
        self.ys: list[torch.Tensor] = []
        self.n = 0

    @staticmethod
    def nbytes(rows: int, p: int, q: int) -> int:
        return 4 * rows * (p + q)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"CKA needs the same samples on both sides ({x.shape[0]} vs {y.shape[0]})")
        self.xs.append(_host_rows(x))
        self.ys.append(_host_rows(y))
        self.n += x.shape[0]

    def result(self) -> float | None:
        if not self.xs:
            return None
        return linear_cka(torch.cat(self.xs), torch.cat(self.ys), fast=True)


def _host_rows(x: torch.Tensor) -> torch.Tensor:
    """x as [n, features] float32 on the host; the same object when it already is (callers
    recognise rows they added to several accumulators by identity)."""
    if x.dim() == 2 and x.dtype == torch.float32 and x.device.type == "cpu":
        return x
    return x.reshape(x.shape[0], -1).float().cpu()


# -- activations as rows (samples x channels) ---------------------------------------------------


def channels_first(module_type: str, x: torch.Tensor) -> bool:
    """Where an activation's channels are: dim 1 for 4-D and wider outputs (N, C, H, W, ...) and
    for 3-D outputs of 1-d convolution / norm / pooling modules (class name ending in "1d", e.g.
    Conv1d, BatchNorm1d); otherwise the last dim (sequence outputs [N, T, C], and
    transformers' Conv1D, which is a linear layer)."""
    return x.dim() >= 4 or (x.dim() == 3 and module_type.endswith("1d"))


def as_rows(x: torch.Tensor, chan_first: bool) -> torch.Tensor:
    """[N, P, C] view of an activation [N, ...]: P positions (tokens, pixels) of C channels."""
    if x.dim() == 1:
        return x.reshape(-1, 1, 1)
    if x.dim() == 2:
        return x.unsqueeze(1)
    if chan_first:
        return x.flatten(2).transpose(1, 2)
    return x.flatten(1, -2)


def pool_positions(x: torch.Tensor, chan_first: bool) -> torch.Tensor:
    """[N, C] float32 (a new tensor): each instance's channels averaged over its positions."""
    if x.dim() <= 2:
        return x.reshape(x.shape[0], -1).to(torch.float32, copy=True)
    if as_rows(x, chan_first).shape[1] == 0:  # no positions: nothing to average
        return x.new_zeros(x.shape[0], as_rows(x, chan_first).shape[2], dtype=torch.float32)
    x = x.float()
    if chan_first:
        v = x.flatten(2)  # [N, C, P]
        return torch.matmul(v, v.new_full((v.shape[2], 1), 1.0 / v.shape[2])).squeeze(2)
    v = x.flatten(1, -2)  # [N, P, C]: a (BLAS) product with the averaging vector beats mean(1)
    return torch.matmul(v.new_full((1, v.shape[1]), 1.0 / v.shape[1]), v).squeeze(1)


def sample_rows(x: torch.Tensor, chan_first: bool, idx: torch.Tensor) -> torch.Tensor:
    """[N * k, C]: the rows of positions `idx` [N, k] of every instance (a copy)."""
    rows = as_rows(x, chan_first)
    n, p, c = rows.shape
    k = idx.shape[1]
    if not chan_first and x.is_contiguous():  # whole rows: a row copy per sampled position
        flat = (idx + torch.arange(n, device=idx.device)[:, None] * p).reshape(-1)
        return rows.reshape(n * p, c).index_select(0, flat)
    return rows.gather(1, idx[:, :, None].expand(n, k, c)).reshape(n * k, c)
