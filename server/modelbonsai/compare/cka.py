"""Linear CKA (centered kernel alignment) between two representations of the same instances."""

from __future__ import annotations

import torch


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Linear CKA of x [n, p] and y [n, q] (rows are instances), in float64.

    CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred Xc, Yc, computed
    through the n x n Gram matrices (n is the instance count, usually far below p and q).
    None when either side is constant over instances (the ratio is undefined)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same instances on both sides ({x.shape[0]} vs {y.shape[0]})")
    if x.shape[0] < 2:
        return None
    xc = x.double().reshape(x.shape[0], -1)
    yc = y.double().reshape(y.shape[0], -1)
    xc = xc - xc.mean(0, keepdim=True)
    yc = yc - yc.mean(0, keepdim=True)
    kx = xc @ xc.T
    ky = yc @ yc.T
    hsic = float((kx * ky).sum())
    den = float(kx.norm() * ky.norm())
    if den == 0.0 or not torch.isfinite(torch.tensor(den)):
        return None
    return hsic / den
