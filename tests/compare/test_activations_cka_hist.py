"""Activation comparison: position-level CKA (exact and sampled), instance CKA, sparsity of ReLU
outputs, activation histograms and their wire contract, and the accelerator sums path."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai import wire
from modelbonsai.compare import activations as A
from modelbonsai.compare import stats as S
from modelbonsai.compare.activations import ActivationOptions, compare_activations
from modelbonsai.compare.cka import linear_cka
from support.tasks import TensorTask as ToyTask


def _perturbed(model: nn.Module, scale: float = 0.2, seed: int = 0) -> nn.Module:
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other


def _ref_cka(b: torch.Tensor, o: torch.Tensor) -> float:
    x, y = b.double().numpy(), o.double().numpy()
    xc, yc = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def test_position_level_cka_exact_over_all_tokens() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 5))
    other = _perturbed(base)
    x = torch.randn(11, 7, 6)  # 11 instances x 7 tokens
    opts = ActivationOptions(instances=11, batch_size=4, cka_rows=None, mode="propagated")
    res = compare_activations(base, {"o": other}, ToyTask(x), options=opts)["o"]
    with torch.no_grad():
        hb, ho = base[:2](x), other[:2](x)
    m = res.module("1").propagated
    assert m is not None
    assert m["cka"] == pytest.approx(_ref_cka(hb.reshape(-1, 10), ho.reshape(-1, 10)), rel=1e-9)
    assert m["cka_n"] == 77 and m["cka_sampled"] is False
    assert m["cka_instances"] == pytest.approx(_ref_cka(hb.mean(1), ho.mean(1)), rel=1e-6)
    assert m["cka"] != pytest.approx(m["cka_instances"], rel=1e-3)  # two different measures
    assert res.options["cka_rows"] == "all"


def test_position_level_cka_of_conv_outputs_uses_pixels_as_rows() -> None:
    torch.manual_seed(1)
    base = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3))
    other = _perturbed(base, 0.1)
    x = torch.randn(6, 3, 5, 5)
    res = compare_activations(
        base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=6, cka_rows=None)
    )["o"]
    with torch.no_grad():
        hb, ho = base[:1](x), other[:1](x)  # [6, 8, 5, 5]
    rows_b = hb.permute(0, 2, 3, 1).reshape(-1, 8)
    rows_o = ho.permute(0, 2, 3, 1).reshape(-1, 8)
    m = res.module("0").propagated
    assert m is not None and m["cka_n"] == 150
    assert m["cka"] == pytest.approx(_ref_cka(rows_b, rows_o), rel=1e-9)
    assert m["cka_instances"] == pytest.approx(_ref_cka(hb.mean((2, 3)), ho.mean((2, 3))), rel=1e-6)
    assert res.module("0").isolated["cka"] == pytest.approx(m["cka"], rel=1e-9)  # type: ignore[index]


def test_sampled_position_cka_is_deterministic_and_close() -> None:
    torch.manual_seed(2)
    base = nn.Sequential(nn.Linear(8, 16), nn.GELU())
    other = _perturbed(base, 0.3)
    x = torch.randn(20, 50, 8)
    exact = compare_activations(
        base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=20, cka_rows=None)
    )
    runs = [
        compare_activations(
            base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=20, cka_rows=200)
        )["o"]
        for _ in range(2)
    ]
    m = runs[0].module("1").propagated
    assert m is not None and m["cka_sampled"] is True and m["cka_n"] == 20 * 10
    assert runs[1].module("1").propagated["cka"] == m["cka"]  # type: ignore[index]  # fixed seed
    assert m["cka"] == pytest.approx(exact["o"].module("1").propagated["cka"], abs=0.05)  # type: ignore[index]
    # a plain [N, C] output has one position per instance: every row, nothing sampled
    small = compare_activations(
        base, {"o": other}, ToyTask(x[:, 0]), options=ActivationOptions(instances=20, cka_rows=8)
    )
    ms = small["o"].module("1").propagated
    assert ms is not None and ms["cka_sampled"] is False and ms["cka_n"] == 20


def test_wide_modules_fall_back_to_a_row_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(A, "GRAM_MAX_CHANNELS", 8)
    monkeypatch.setattr(A, "FALLBACK_ROWS", 30)
    base = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 12))
    other = _perturbed(base)
    x = torch.randn(10, 9, 4)
    res = compare_activations(
        base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=10, cka_rows=None)
    )["o"]
    narrow, wide = res.module("0").propagated, res.module("1").propagated
    assert narrow is not None and narrow["cka_n"] == 90 and not narrow["cka_sampled"]
    assert wide is not None and wide["cka_n"] == 30 and wide["cka_sampled"]
    assert 0.0 < wide["cka"] <= 1.0


def test_relu_sparsity_is_exact() -> None:
    # identity Linear then ReLU: base zeros where x <= 0; the other's bias -0.5 zeros x <= 0.5
    def model(bias: float) -> nn.Sequential:
        m = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        with torch.no_grad():
            m[0].weight.copy_(torch.eye(8))
            m[0].bias.fill_(bias)
        return m

    vals = torch.tensor([-2.0, -1.0, -0.25, 0.25, 0.75, 1.0, 2.0, 3.0])  # 3 <= 0, 4 <= 0.5
    g = torch.Generator().manual_seed(0)
    x = torch.stack([vals[torch.randperm(8, generator=g)] for _ in range(10)])
    res = compare_activations(
        model(0.0), {"o": model(-0.5)}, ToyTask(x), options=ActivationOptions(instances=10, batch_size=3)
    )["o"]
    m = res.module("1").propagated
    assert m is not None
    assert m["sparsity_base"] == pytest.approx(3 / 8) and m["sparsity_other"] == pytest.approx(4 / 8)
    assert (m["zero_both"], m["zero_only_base"], m["zero_only_other"]) == (30, 0, 10)
    iso = res.module("1").isolated  # the other's ReLU on the base's input: the base's zeros
    assert iso is not None and iso["sparsity_base"] == iso["sparsity_other"] == pytest.approx(3 / 8)
    lin = res.module("0").propagated
    assert lin is not None and lin["sparsity_base"] == 0.0 and lin["sparsity_other"] == 0.0


def test_histograms_follow_the_wire_contract() -> None:
    torch.manual_seed(3)
    base = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    other = _perturbed(base, 0.05)
    other.add_module("3", nn.Identity())  # only in the other model: a zero row
    x = torch.randn(24, 16)
    res = compare_activations(
        base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=24, batch_size=10)
    )["o"]
    kind, meta, tensors = res.wire()
    names = [m.get("name", "") for m in meta["modules"]]
    assert kind == "activations" and meta["value_bins"] == S.VALUE_BINS
    assert meta["rel_edges_log10"] == S.REL_EDGES.tolist()
    assert tensors["value_hist_base"].shape == (len(names), S.VALUE_BINS)
    assert tensors["value_hist_other"].shape == (len(names), S.VALUE_BINS)
    assert tensors["rel_hist"].shape == (len(names), S.REL_BINS)
    assert all(t.dtype == np.float32 for t in tensors.values())
    with torch.no_grad():
        hb, ho = base[:2](x), other[:2](x)
    i = names.index("1")
    r = meta["modules"][i]["value_range"]
    assert r == pytest.approx(float(torch.maximum(hb.abs().max(), ho.abs().max())))
    # small enough to be binned whole: exact counts
    want_b = np.histogram(hb.numpy(), bins=S.VALUE_BINS, range=(-r, r))[0]
    np.testing.assert_allclose(tensors["value_hist_base"][i], want_b)
    assert tensors["value_hist_other"][i].sum() == hb.numel()
    m = meta["modules"][i]["propagated"]
    rc = m["rel_change"]
    assert (
        tensors["rel_hist"][i].sum() + rc["unchanged"] + rc["from_zero"] + rc["under"] + rc["over"]
        == hb.numel()
    )
    assert rc["unchanged"] >= m["zero_both"]  # zero on both sides is unchanged
    assert not tensors["value_hist_base"][names.index("3")].any()  # only in the other model
    decoded = wire.decode_result(wire.encode_result(kind, meta, tensors))
    assert decoded.meta["modules"][i]["value_range"] == r
    np.testing.assert_array_equal(decoded.tensors["rel_hist"], tensors["rel_hist"])


def test_histograms_of_large_outputs_are_sampled_and_weighted() -> None:
    torch.manual_seed(4)
    base = nn.Sequential(nn.Linear(32, 64), nn.GELU())
    other = _perturbed(base, 0.05)
    x = torch.randn(32, 40, 32)  # 81,920 elements per module output: sampled per batch
    opts = ActivationOptions(instances=32, batch_size=8, mode="propagated")
    res = compare_activations(base, {"o": other}, ToyTask(x), options=opts)["o"]
    _, meta, tensors = res.wire()
    i = [m.get("name", "") for m in meta["modules"]].index("1")
    mod = meta["modules"][i]
    assert mod["hist_weight"] > 1.0
    total = 32 * 40 * 64
    assert tensors["value_hist_base"][i].sum() == pytest.approx(total, rel=1e-6)
    with torch.no_grad():
        hb = base(x)
    # the sampled histogram has the shape of the exact one
    exact = np.histogram(hb.numpy(), bins=S.VALUE_BINS, range=(-mod["value_range"], mod["value_range"]))[0]
    got = tensors["value_hist_base"][i]
    assert np.abs(got - exact).sum() / total < 0.1


def test_isolated_only_has_no_histograms() -> None:
    base = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    res = compare_activations(
        base,
        {"o": _perturbed(base)},
        ToyTask(torch.randn(5, 4)),
        options=ActivationOptions(instances=5, mode="isolated"),
    )["o"]
    _, meta, tensors = res.wire()
    assert not tensors["value_hist_base"].any() and not tensors["rel_hist"].any()
    assert all("value_range" not in m for m in meta["modules"])
    m = res.module("1").isolated
    assert m is not None and "rel_change" not in m and m["sparsity_base"] > 0


def test_nan_outputs_are_counted_and_left_out_of_histograms() -> None:
    base = nn.Sequential(nn.Linear(6, 6), nn.Tanh())
    other = copy.deepcopy(base)
    with torch.no_grad():
        other[0].bias[2] = float("nan")
    res = compare_activations(
        base, {"o": other}, ToyTask(torch.randn(7, 6)), options=ActivationOptions(instances=7)
    )["o"]
    m = res.module("1").propagated
    assert m is not None and m["nan_other"] == 7 and m["nan_base"] == 0
    _, meta, tensors = res.wire()
    i = [mm.get("name", "") for mm in meta["modules"]].index("1")
    assert tensors["value_hist_base"][i].sum() == 42 and tensors["value_hist_other"][i].sum() == 35
    assert math.isfinite(meta["modules"][i]["value_range"])


def test_accelerator_sums_match_the_cpu_kernel() -> None:
    g = torch.Generator().manual_seed(5)
    b = torch.randn(4, 300, generator=g)
    o = b + 0.1 * torch.randn(4, 300, generator=g)
    b[0, :50] = 0
    o[0, 25:75] = 0
    o[1, 3] = float("nan")
    b[2, 7] = float("inf")
    o[3, 9] = float("-inf")
    c = A._contribution(b, o, 4, 0, chan_first=False)
    f_cpu, i_cpu = c.f, c.i
    f_dev, i_dev = A._row_sums_torch(b, o)
    np.testing.assert_array_equal(i_dev.numpy(), i_cpu)
    np.testing.assert_allclose(f_dev.numpy(), f_cpu, rtol=1e-5)


@pytest.mark.parametrize("cka_rows", [256, 18])  # every position / 2 sampled of 5 per instance
def test_accelerator_path_end_to_end(monkeypatch: pytest.MonkeyPatch, cka_rows: int) -> None:
    # the device reductions and samples, run on the CPU, give the same result as the fused kernel
    torch.manual_seed(6)
    base = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))
    other = _perturbed(base, 0.1)
    task = ToyTask(torch.randn(9, 5, 8))
    opts = ActivationOptions(instances=9, batch_size=4, cka_rows=cka_rows)
    want = compare_activations(base, {"o": other}, task, options=opts)["o"]
    monkeypatch.setattr(A, "_on_accelerator", lambda t: True)
    got = compare_activations(base, {"o": other}, task, options=opts)["o"]
    for name in ("0", "1", "2"):
        for mode in ("propagated", "isolated"):
            w, g = getattr(want.module(name), mode), getattr(got.module(name), mode)
            for k in ("rel_l2", "cosine", "cka", "cka_instances", "sparsity_other", "max_abs_diff"):
                assert g[k] == pytest.approx(w[k], rel=1e-5), (name, mode, k)
            assert g["cka_n"] == w["cka_n"] == (9 * 5 if cka_rows == 256 else 9 * 2)
            assert g["cka_sampled"] == w["cka_sampled"] == (cka_rows == 18)
    np.testing.assert_allclose(got.propagated, want.propagated, rtol=1e-5)


def test_histogram_sample_is_the_same_from_the_kernel_and_the_device_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # outputs larger than the per-batch sample: the CPU kernel takes the block sample itself
    torch.manual_seed(7)
    base = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))
    other = _perturbed(base, 0.1)
    task = ToyTask(torch.randn(9, 400, 8))
    opts = ActivationOptions(instances=9, batch_size=4, mode="propagated")
    assert 4 * 400 * 12 > opts.hist_per_batch(4)
    want = compare_activations(base, {"o": other}, task, options=opts)["o"]
    monkeypatch.setattr(A, "_on_accelerator", lambda t: True)
    got = compare_activations(base, {"o": other}, task, options=opts)["o"]
    for name in ("0", "1", "2"):
        w, g = want.module(name), got.module(name)
        assert w.hists is not None and g.hists is not None
        assert (w.hist_weight > 1) == (name != "2")  # 4 x 400 x 3 fits the sample whole
        assert (g.value_range, g.hist_weight) == (w.value_range, w.hist_weight)
        for side in ("base", "other", "rel"):
            np.testing.assert_array_equal(g.hists[side], w.hists[side])


def test_options_check_cka_rows() -> None:
    with pytest.raises(ValueError, match="cka_rows"):
        ActivationOptions(cka_rows=1).check()
    assert ActivationOptions(cka_rows=None).key()["cka_rows"] == "all"
    assert linear_cka(torch.randn(5, 2), torch.randn(5, 2)) is not None


def test_memory_estimate_counts_exact_cka_sums() -> None:
    base = nn.Sequential(nn.Linear(8, 1500))
    task = ToyTask(torch.randn(4, 3, 8))
    budget = 40 << 20  # exact CKA keeps 3 x 1500² float64 sums (54 MB); a 256-row sample fits
    opts = ActivationOptions(instances=4, cka_rows=None, memory_budget=budget)
    with pytest.raises(A.ActivationMemoryError, match="lower cka_rows"):
        compare_activations(base, {"o": _perturbed(base)}, task, options=opts)
    res = compare_activations(
        base, {"o": _perturbed(base)}, task, options=ActivationOptions(instances=4, memory_budget=budget)
    )
    assert res["o"].module("0").propagated["cka_n"] == 12  # type: ignore[index]


class _Empty(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :0]  # no positions at all


def test_output_without_positions_does_not_break_the_comparison() -> None:
    base = nn.Sequential(nn.Linear(4, 4), _Empty())
    res = compare_activations(
        base, {"o": _perturbed(base)}, ToyTask(torch.randn(5, 3, 4)), options=ActivationOptions(instances=5)
    )["o"]
    empty = res.module("1")
    assert (
        empty.status == "ok" and empty.shape_base == [0, 4] and empty.propagated is None
    )  # nothing to score
    assert res.module("0").propagated["rel_l2"] > 0  # type: ignore[index]
