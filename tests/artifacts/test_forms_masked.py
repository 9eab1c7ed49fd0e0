"""The fast gather of the non-zero values the sparse forms store, and the non-zero count, equal torch's."""

from __future__ import annotations

import pytest
import torch

from modelbonsai.artifacts.forms import _masked, count_nonzero


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8,
                                   torch.uint8, torch.int32])  # fmt: skip
def test_masked_equals_boolean_indexing(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(37, 53, generator=g) * 50).to(dtype)
    t[torch.rand(37, 53, generator=g) < 0.4] = 0
    if dtype.is_floating_point:
        t[0, :3] = torch.tensor([-0.0, float("nan"), float("inf")]).to(dtype)  # -0.0 is a zero, NaN is not
    nz = t != 0
    got = _masked(t, nz)
    want = t[nz]
    assert got.dtype == dtype and got.shape == want.shape
    assert torch.equal(got.view(torch.uint8), want.contiguous().view(torch.uint8))  # the same bytes


def test_masked_of_a_non_contiguous_tensor() -> None:
    t = torch.arange(60, dtype=torch.float32).reshape(6, 10).T  # a transposed view
    mask = t % 3 == 0
    assert torch.equal(_masked(t, mask), t[mask])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8,
                                   torch.bool])  # fmt: skip
def test_count_nonzero_equals_torch(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    t = (torch.randn(41, 29, generator=g) * 9).to(dtype)
    if dtype.is_floating_point:
        t[0, :4] = torch.tensor([-0.0, 0.0, float("nan"), float("-inf")]).to(dtype)
    for x in (t, t.T, t[::2]):  # strided views too
        assert count_nonzero(x) == int(torch.count_nonzero(x))
