"""Linear CKA: both forms against a float64 reference, streaming accumulation, invariances, and
the activation layouts (rows = instance x position, features = channels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelbonsai.compare import kernels as K
from modelbonsai.compare.cka import (
    GramCka,
    RowCka,
    as_rows,
    channels_first,
    linear_cka,
    pool_positions,
    sample_rows,
)


def _reference(x: np.ndarray, y: np.ndarray) -> float:
    xc = x - x.mean(0)
    yc = y - y.mean(0)
    return float(np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def _pair(n: int, p: int, q: int, seed: int = 0, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64) + offset
    y = x @ torch.randn(p, q, generator=g, dtype=torch.float64) + 0.7 * torch.randn(
        n, q, generator=g, dtype=torch.float64
    )
    return x, y + offset


@pytest.mark.parametrize("n", [12, 400])  # sample-space form (n small) and feature-space form (n large)
def test_linear_cka_both_forms_match_reference(n: int) -> None:
    x, y = _pair(n, 20, 9)
    assert linear_cka(x, y) == pytest.approx(_reference(x.numpy(), y.numpy()), rel=1e-10)


def test_gram_cka_over_batches_equals_reference_despite_large_mean() -> None:
    # a mean far above the spread: the shift by the first batch's mean keeps the centring exact
    x, y = _pair(1000, 24, 16, seed=3, offset=1e4)
    acc = GramCka()
    for lo, hi in [(0, 7), (7, 300), (300, 301), (301, 1000)]:
        acc.add(x[lo:hi].float(), y[lo:hi].float())
    assert acc.n == 1000
    want = _reference(x.float().double().numpy(), y.float().double().numpy())
    assert acc.result() == pytest.approx(want, rel=1e-9)


def test_row_cka_is_linear_cka_of_all_rows() -> None:
    x, y = _pair(90, 10, 30, seed=5)
    acc = RowCka()
    for lo in range(0, 90, 25):
        acc.add(x[lo : lo + 25], y[lo : lo + 25])
    assert acc.n == 90
    assert acc.result() == pytest.approx(
        _reference(x.float().double().numpy(), y.float().double().numpy()), rel=1e-5
    )
    for n in (12, 400):  # float32 products, both forms
        xs, ys = _pair(n, 20, 9, seed=n)
        assert linear_cka(xs, ys, fast=True) == pytest.approx(_reference(xs.numpy(), ys.numpy()), rel=1e-5)


@pytest.mark.parametrize("n", [15, 300])
def test_cka_invariant_to_isotropic_scaling_and_orthogonal_transforms(n: int) -> None:
    x, y = _pair(n, 12, 12, seed=7)
    q, _ = torch.linalg.qr(
        torch.randn(12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    )
    base = linear_cka(x, y)
    assert base is not None and 0.0 < base < 1.0
    assert linear_cka(3.5 * x @ q, y) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x, 0.01 * y @ q.T) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x, 2.0 * x @ q) == pytest.approx(1.0, rel=1e-9)
    acc, acc2 = GramCka(), GramCka()
    acc.add(x, y)
    acc2.add(7.0 * x @ q, y @ q)
    assert acc.result() == pytest.approx(base, rel=1e-9)
    assert acc2.result() == pytest.approx(base, rel=1e-9)


def test_cka_undefined_for_constant_side() -> None:
    x = torch.randn(10, 4)
    assert linear_cka(x, torch.ones(10, 3)) is None
    acc = GramCka()
    acc.add(x, torch.ones(10, 3))
    assert acc.result() is None
    assert linear_cka(x[:1], x[:1]) is None
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, x[:5])


def test_rows_layouts() -> None:
    seq = torch.randn(3, 5, 4)  # [N, T, C]
    img = torch.randn(3, 4, 2, 3)  # [N, C, H, W]
    conv1 = torch.randn(3, 4, 6)  # Conv1d output [N, C, L]
    assert not channels_first("Linear", seq) and not channels_first("Conv1D", seq)  # transformers' Conv1D
    assert channels_first("Conv1d", conv1) and channels_first("ReLU", img)
    assert torch.equal(as_rows(seq, False)[1, 2], seq[1, 2])
    assert torch.equal(as_rows(img, True)[2, 4], img[2, :, 1, 1])  # position 4 = (h 1, w 1)
    assert torch.equal(as_rows(conv1, True)[0, 5], conv1[0, :, 5])
    assert as_rows(torch.randn(3, 4), False).shape == (3, 1, 4)
    torch.testing.assert_close(pool_positions(seq, False), seq.mean(1))
    torch.testing.assert_close(pool_positions(img, True), img.mean((2, 3)))
    idx = torch.tensor([[0, 4], [1, 2], [3, 3]])
    for x, cf in (
        (seq, False),
        (img, True),
        (conv1, True),
        (seq.transpose(0, 1).contiguous().transpose(0, 1), False),
    ):
        rows = as_rows(x, cf)
        want = torch.stack([rows[i, idx[i]] for i in range(3)]).reshape(6, -1)
        assert torch.equal(sample_rows(x, cf, idx), want)


def test_center_columns_means_in_float64() -> None:
    # a large mean against a small spread: float32 means over many rows would be off by far more
    g = np.random.default_rng(5)
    x = (g.standard_normal((4000, 3)) * 1e-2 + 1e4).astype(np.float32)
    out = np.empty_like(x)
    K.center_columns(x, out)
    want = x.astype(np.float64) - x.astype(np.float64).mean(0)
    np.testing.assert_allclose(out, want, atol=1e-3)  # float32 spacing at 1e4 is ~1e-3
    assert abs(out.astype(np.float64).mean(0)).max() < 1e-3


@pytest.mark.parametrize("eps", [1e-2, 1e-4])
def test_fast_form_keeps_one_minus_cka_of_near_identical_representations(eps: float) -> None:
    # compression compares nearly identical activations: what matters is 1 - CKA, down to ~1e-10
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 512, generator=g) * 3 + 5
    y = x + eps * torch.randn(64, 512, generator=g)
    exact, fast = linear_cka(x, y), linear_cka(x, y, fast=True)
    assert exact is not None and fast is not None and 0 < 1 - exact < 1e-4
    assert 1 - fast == pytest.approx(1 - exact, rel=5e-3)
