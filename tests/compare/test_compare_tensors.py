"""Heatmap tiles: mean / max-abs pyramid against a numpy reference, windows, differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelbonsai import wire
from modelbonsai.compare.tensors import difference, pyramid_info, tiles, tiles_wire


def _ref_reduce(m: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = -(-m.shape[0] // k), -(-m.shape[1] // k)
    mean = np.zeros((h, w))
    mx = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            blk = m[i * k : (i + 1) * k, j * k : (j + 1) * k].astype(np.float64)
            mean[i, j] = blk.mean()
            mx[i, j] = np.abs(blk).max()
    return mean, mx


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_tiles_match_reference_including_ragged_edges(level: int) -> None:
    t = torch.randn(37, 53)
    info = pyramid_info(t.shape, tile=8)
    assert info["levels"] == 3  # 53 / 8 -> ceil(log2(6.6)) = 3
    got = tiles(t, level, tile=8)
    k = 1 << level
    mean, mx = _ref_reduce(t.numpy(), k)
    span = 8
    for x in got:
        ref_m = mean[x.ty * span : (x.ty + 1) * span, x.tx * span : (x.tx + 1) * span]
        ref_x = mx[x.ty * span : (x.ty + 1) * span, x.tx * span : (x.tx + 1) * span]
        np.testing.assert_allclose(x.mean.numpy(), ref_m, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(x.maxabs.numpy(), ref_x, rtol=1e-6)
    covered = sum(x.mean.numel() for x in got)
    assert covered == mean.size


def test_window_returns_only_intersecting_tiles() -> None:
    t = torch.randn(100, 100)
    got = tiles(t, 0, (10, 70, 20, 90), tile=32)
    assert {(x.ty, x.tx) for x in got} == {(0, 2)}
    got = tiles(t, 1, (0, 0, 100, 100), tile=32)
    assert len(got) == 4  # 50x50 cells -> 2x2 tiles
    with pytest.raises(ValueError, match="level 9"):
        tiles(t, 9, tile=32)


def test_outlier_and_nan_stay_visible() -> None:
    t = torch.zeros(64, 64)
    t[5, 7] = 100.0
    t[40, 40] = float("nan")
    (top,) = tiles(t, 3, tile=8)
    assert float(top.maxabs[0, 0]) == 100.0
    assert torch.isnan(top.mean[5, 5]) and torch.isnan(top.maxabs[5, 5])


def test_difference_with_kept_indices_and_wire() -> None:
    base = torch.randn(10, 4, 3, 3)
    keep = [0, 3, 4]
    other = base[keep] + 1.0
    d = difference(base, other, {0: keep})
    assert d.shape == (3, 4, 3, 3) and torch.allclose(d, torch.ones_like(d))
    kind, meta, tensors = tiles_wire(d, 0, tile=16)
    res = wire.decode_result(wire.encode_result(kind, meta, tensors))
    assert res.meta["rows"] == 3 and res.meta["cols"] == 36 and res.meta["tiles"][0]["key"] == "L0_0_0"
    assert res.tensors["L0_0_0_mean"].shape == (3, 16) or res.tensors["L0_0_0_mean"].shape == (3, 36)
    with pytest.raises(ValueError, match="shapes"):
        difference(base, other)
