"""Every weight metric against a float64 numpy reference on random (non-zero) tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modelbonsai.compare import stats as S


def _reference(b: np.ndarray, o: np.ndarray) -> dict[str, float]:
    b = b.astype(np.float64).ravel()
    o = o.astype(np.float64).ravel()
    keep = np.isfinite(b) & np.isfinite(o)
    bf, of = b[keep], o[keep]
    d = of - bf
    return {
        "rel_l2": float(np.linalg.norm(d) / np.linalg.norm(bf)),
        "sqnr_db": float(10 * np.log10(np.sum(bf**2) / np.sum(d**2))),
        "cosine": float(bf @ of / (np.linalg.norm(bf) * np.linalg.norm(of))),
        "max_abs_diff": float(np.abs(d).max()),
        "sparsity_base": float(np.mean(b == 0)),
        "sparsity_other": float(np.mean(o == 0)),
    }


@pytest.mark.parametrize("chunk", [S.CHUNK, 1000])
def test_metrics_match_float64_reference(chunk: int) -> None:
    g = torch.Generator().manual_seed(3)
    b = torch.randn(300, 170, generator=g)
    o = b + 0.05 * torch.randn(300, 170, generator=g)
    b[b.abs() < 0.1] = 0.0  # some exact zeros on each side
    o[o.abs() < 0.2] = 0.0
    st = S.pair_stats(b, o, chunk=chunk)
    m = st.metrics()
    ref = _reference(b.numpy(), o.numpy())
    for key, want in ref.items():
        assert m[key] == pytest.approx(want, rel=1e-5, abs=1e-9), key
    zb, zo = b.numpy() == 0, o.numpy() == 0
    assert m["zero_both"] == int((zb & zo).sum())
    assert m["zero_only_base"] == int((zb & ~zo).sum())
    assert m["zero_only_other"] == int((~zb & zo).sum())
    assert m["n"] == b.numel() and not m["identical"]


def test_rollup_is_exact_not_an_average() -> None:
    g = torch.Generator().manual_seed(5)
    b1, b2 = torch.randn(1000, generator=g), 100 * torch.randn(50, generator=g)
    o1, o2 = b1 + 0.5 * torch.randn(1000, generator=g), b2 + 0.01 * torch.randn(50, generator=g)
    merged = S.pair_stats(b1, o1).merge(S.pair_stats(b2, o2))
    ref = _reference(np.concatenate([b1.numpy(), b2.numpy()]), np.concatenate([o1.numpy(), o2.numpy()]))
    assert merged.rel_l2 == pytest.approx(ref["rel_l2"], rel=1e-6)
    assert merged.cosine == pytest.approx(ref["cosine"], rel=1e-6)
    assert merged.sqnr_db == pytest.approx(ref["sqnr_db"], rel=1e-6)
    avg = (S.pair_stats(b1, o1).rel_l2 + S.pair_stats(b2, o2).rel_l2) / 2  # type: ignore[operator]
    assert abs(merged.rel_l2 - avg) > 0.05  # type: ignore[operator]


def test_relative_change_histogram_matches_reference() -> None:
    g = torch.Generator().manual_seed(7)
    b = torch.randn(5000, generator=g)
    scale = torch.pow(10.0, torch.empty(5000).uniform_(-9, 3, generator=g))
    o = b + b * scale * torch.sign(torch.randn(5000, generator=g))
    o[:100] = b[:100]  # unchanged
    b[100:150] = 0.0  # changed from zero
    st = S.pair_stats(b, o, hist_sample=None)
    bd, od = b.double().numpy(), o.double().numpy()
    d = od - bd
    changed, nzb = d != 0, bd != 0
    r = np.log10(np.abs(d[changed & nzb]) / np.abs(bd[changed & nzb]))
    hist, _ = np.histogram(r[(r >= S.REL_LO) & (r < S.REL_HI)], bins=S.REL_EDGES)
    # float32 binning may move values that sit on an edge by one bin: compare cumulatively
    assert np.abs(np.cumsum(st.rel_hist) - np.cumsum(hist)).max() <= 3
    assert st.rel_unchanged == int((~changed).sum())
    assert st.rel_from_zero == int((changed & ~nzb).sum()) == 50
    assert st.rel_under == pytest.approx(int((r < S.REL_LO).sum()), abs=3)
    assert st.rel_over == pytest.approx(int((r >= S.REL_HI).sum()), abs=3)
    total = st.rel_hist.sum() + st.rel_unchanged + st.rel_from_zero + st.rel_under + st.rel_over
    assert total == b.numel()


def test_sampled_histograms_estimate_counts() -> None:
    b = torch.randn(100_000)
    o = b * 1.01
    st = S.pair_stats(b, o, hist_sample=1024, values=True)
    sample, weight = S.sample_elements(b, 1024)
    assert sample.numel() <= 1024 and weight == pytest.approx(100_000 / sample.numel())
    assert sample.is_contiguous() and torch.equal(sample[:64], b[:64])  # whole 64-element blocks
    est = st.rel_hist.sum() + st.rel_unchanged + st.rel_over + st.rel_under + st.rel_from_zero
    assert est == pytest.approx(100_000, rel=1e-9)
    # relative change is 1% everywhere: all mass in the bins around log10(0.01) = -2
    k = int(np.searchsorted(S.REL_EDGES, -2.0, side="right")) - 1
    assert st.rel_hist[k - 1 : k + 1].sum() == pytest.approx(est, rel=1e-6)
    assert st.values is not None and st.values["base"].sum() == pytest.approx(100_000, rel=1e-9)


def test_value_histograms_against_numpy() -> None:
    b, o = torch.randn(4000), torch.randn(4000) * 2
    h = S.pair_stats(b, o, hist_sample=None, values=True).values
    assert h is not None
    r = h["range"]
    assert r == pytest.approx(float(max(b.abs().max(), o.abs().max())))
    for side, x in (("base", b), ("other", o)):
        ref, _ = np.histogram(x.double().numpy(), bins=S.VALUE_BINS, range=(-r, r))
        assert np.abs(h[side] - ref).max() <= 2 and h[side].sum() == 4000


def test_nan_and_inf_are_counted_not_zeroed() -> None:
    b = torch.randn(2000)
    o = b + 0.1 * torch.randn(2000)
    o[[3, 500, 1999]] = float("nan")
    o[7] = float("inf")
    b[11] = float("-inf")
    st = S.pair_stats(b, o, chunk=256)
    assert (st.nan_other, st.inf_other, st.nan_base, st.inf_base) == (3, 1, 0, 1)
    assert st.finite == 2000 - 5 and st.n == 2000
    ref = _reference(b.numpy(), o.numpy())  # reference also over finite pairs only
    assert st.rel_l2 == pytest.approx(ref["rel_l2"], rel=1e-5)
    assert math.isfinite(st.max_abs_diff)
    m = st.metrics()
    assert m["nan_other"] == 3 and not m["identical"]


def test_identical_and_zero_base() -> None:
    b = torch.randn(10)
    m = S.pair_stats(b, b.clone()).metrics()
    assert (
        m["identical"] and m["rel_l2"] == 0.0 and m["sqnr_db"] is None and m["cosine"] == pytest.approx(1.0)
    )
    z = S.pair_stats(torch.zeros(4), torch.ones(4))
    assert z.rel_l2 is None and z.cosine is None and z.metrics()["sparsity_base"] == 1.0
