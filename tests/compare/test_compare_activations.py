"""Activation comparison: propagated vs isolated on a corrupted layer, the divergence matrix,
CKA, architecture mismatches, structured alignment and the memory check."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai.compare.activations import (
    ActivationMemoryError,
    ActivationOptions,
    compare_activations,
)
from modelbonsai.compare.cka import linear_cka
from modelbonsai.compare.control import Cancelled, Control
from support.tasks import TensorTask as ToyTask


def _mlp(width: int = 16, depth: int = 5) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers)


def test_isolated_high_only_at_corrupted_layer_propagated_from_it_onward() -> None:
    base = _mlp()
    other = copy.deepcopy(base)
    with torch.no_grad():
        other[4].weight.add_(0.5 * torch.randn_like(other[4].weight))  # the third Linear
    task = ToyTask(torch.randn(40, 16))
    res = compare_activations(
        base, {"o": other}, task, options=ActivationOptions(instances=40, batch_size=16)
    )["o"]
    linears = ["0", "2", "4", "6", "8"]
    iso = {n: res.module(n).isolated["rel_l2"] for n in linears}  # type: ignore[index]
    prop = {n: res.module(n).propagated["rel_l2"] for n in linears}  # type: ignore[index]
    assert iso["4"] > 0.1
    assert all(iso[n] < 1e-6 for n in ("0", "2", "6", "8"))
    assert prop["0"] < 1e-6 and prop["2"] < 1e-6
    assert all(prop[n] > 0.02 for n in ("4", "6", "8"))
    assert res.module("5").isolated["rel_l2"] < 1e-6  # type: ignore[index]  # the Tanh after it is fine
    assert res.module("5").propagated["rel_l2"] > 0.02  # type: ignore[index]
    # isolated scope "leaves": the container (the whole model, "") has no isolated score
    assert res.module("").isolated is None and res.module("").propagated is not None
    assert len(res.ids) == 40 and res.propagated.shape == (len(res.modules), 40)
    assert res.module("4").propagated["cka"] < 1.0 and res.module("0").propagated["cka"] == pytest.approx(1.0)  # type: ignore[index]
    # per-instance matrix agrees with a direct computation for one instance
    with torch.no_grad():
        h_b = base[:5](task.x[7:8])
        h_o = other[:5](task.x[7:8])
    want = float((h_o - h_b).norm() / h_b.norm())
    assert res.propagated[[m.name for m in res.modules].index("4"), 7] == pytest.approx(want, rel=1e-4)


def test_rankings_point_at_the_hurt_instance_and_layer() -> None:
    base = _mlp(depth=3)
    other = copy.deepcopy(base)
    with torch.no_grad():
        other[2].weight[:, 0] += 3.0  # only inputs with a large feature 0 at layer "2" are hurt
    x = torch.randn(12, 16) * 0.1
    x[5] += 5.0
    res = compare_activations(
        base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=12, batch_size=5)
    )["o"]
    assert res.top_instances("2", k=1, mode="isolated")[0][0] == "i5"
    top = res.top_layers("i5", k=3, mode="isolated")
    assert top[0][0] == "2"
    with pytest.raises(ValueError, match="not in this comparison"):
        res.top_layers("nope")


def test_linear_cka_matches_feature_space_formula() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 8, generator=g)
    y = x @ torch.randn(8, 5, generator=g) + 0.3 * torch.randn(30, 5, generator=g)
    xc = (x - x.mean(0)).double().numpy()
    yc = (y - y.mean(0)).double().numpy()
    ref = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(ref, rel=1e-6)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0, rel=1e-9)  # invariant to rotation+scale


def test_architecture_mismatch_and_structured_alignment() -> None:
    base = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 4))
    keep = [1, 2, 5, 7, 8, 9]
    pruned = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.Identity())
    with torch.no_grad():
        pruned[0].weight.copy_(base[0].weight[keep])
        pruned[0].bias.copy_(base[0].bias[keep])
        pruned[2].weight.copy_(base[2].weight[:, keep])
        pruned[2].bias.copy_(base[2].bias)
    task = ToyTask(torch.randn(10, 8))
    opts = ActivationOptions(instances=10, batch_size=4)
    kept = {"p": {"0.weight": {0: keep}, "2.weight": {1: keep}}}
    res = compare_activations(base, {"p": pruned}, task, options=opts, kept_indices=kept)["p"]
    # compared in the base's layout: the 4 removed outputs are zeros there (error and sparsity)
    x = task.x
    with torch.no_grad():
        full = base[0](x).double()
    drop = [i for i in range(10) if i not in keep]
    expect = float(full[:, drop].norm() / full.norm())
    m0 = res.module("0").propagated
    assert res.module("0").status == "ok" and m0["rel_l2"] == pytest.approx(expect, rel=1e-5)  # type: ignore[index]
    assert m0["sparsity_other"] >= 0.4 - 1e-9  # type: ignore[index]
    assert res.module("0").shape_other == [6]
    # the layer after it lost the removed channels' contribution, and says exactly that much
    with torch.no_grad():
        out_b = base(x).double()
        lost = (torch.relu(full[:, drop]) @ base[2].weight.double()[:, drop].T).norm()
    assert res.module("2").propagated["rel_l2"] == pytest.approx(float(lost / out_b.norm()), rel=1e-4)  # type: ignore[index]
    assert res.module("3").status == "only_in_other"
    # without kept indices the pruned layer is reported, the rest is still compared
    res2 = compare_activations(base, {"p": pruned}, task, options=opts)["p"]
    assert res2.module("0").status == "mismatch" and "shapes differ" in res2.module("0").message
    assert res2.module("2").status == "ok" and res2.module("2").propagated is not None
    assert res2.module("2").isolated is None and "base model's input" in res2.module("2").message


def test_memory_budget_error_names_instance_count() -> None:
    base = _mlp(width=64)
    task = ToyTask(torch.randn(64, 64))
    with pytest.raises(ActivationMemoryError, match=r"lower the instance count to \d+"):
        compare_activations(
            base,
            {"o": copy.deepcopy(base)},
            task,
            options=ActivationOptions(instances=64, memory_budget=60_000),
        )
    with pytest.raises(ActivationMemoryError, match="single instance"):
        compare_activations(
            base, {"o": copy.deepcopy(base)}, task, options=ActivationOptions(instances=64, memory_budget=500)
        )


def test_nan_is_counted_and_cancel_works() -> None:
    base = _mlp(depth=2)
    other = copy.deepcopy(base)
    with torch.no_grad():
        other[0].weight[0, 0] = float("nan")
    res = compare_activations(
        base, {"o": other}, ToyTask(torch.randn(8, 16)), options=ActivationOptions(instances=8)
    )["o"]
    m = res.module("0").propagated
    assert m is not None and m["nan_other"] == 8 and m["nan_base"] == 0
    with pytest.raises(Cancelled):
        compare_activations(
            base, {"o": other}, ToyTask(torch.randn(8, 16)), control=Control(cancelled=lambda: True)
        )


def test_inplace_relu_does_not_corrupt_captured_outputs() -> None:
    base = nn.Sequential(nn.Linear(8, 8), nn.ReLU(inplace=True), nn.Linear(8, 8))
    other = copy.deepcopy(base)
    with torch.no_grad():
        other[0].bias.add_(0.3)
    x = torch.randn(12, 8)
    res = compare_activations(
        base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=12, mode="isolated")
    )["o"]
    with torch.no_grad():
        pre_b, pre_o = base[0](x), other[0](x)  # before the in-place ReLU
    want = float((pre_o - pre_b).norm() / pre_b.norm())
    assert res.module("0").isolated["rel_l2"] == pytest.approx(want, rel=1e-5)  # type: ignore[index]
    assert res.module("0").propagated is None  # isolated mode only
    assert res.module("2").isolated["rel_l2"] < 1e-6  # type: ignore[index]


@pytest.mark.parametrize("seq", [1, 64])  # 64 x 80 = 5120 features per instance: the row-wise path
def test_activation_metrics_against_float64_reference(seq: int) -> None:
    base = nn.Sequential(nn.Linear(80, 80), nn.GELU(), nn.Linear(80, 80))
    other = copy.deepcopy(base)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(9, seq, 80) if seq > 1 else torch.randn(9, 80)
    res = compare_activations(
        base, {"o": other}, ToyTask(x), options=ActivationOptions(instances=9, batch_size=4)
    )["o"]
    with torch.no_grad():
        hb, ho = base[:1](x).double(), other[:1](x).double()
    b, o = hb.reshape(9, -1), ho.reshape(9, -1)
    d = o - b
    m = res.module("0").propagated
    assert m is not None
    assert m["rel_l2"] == pytest.approx(float(d.norm() / b.norm()), rel=1e-5)
    assert m["sqnr_db"] == pytest.approx(float(10 * torch.log10(b.pow(2).sum() / d.pow(2).sum())), rel=1e-5)
    assert m["cosine"] == pytest.approx(float((b * o).sum() / (b.norm() * o.norm())), rel=1e-6)
    assert m["max_abs_diff"] == pytest.approx(float(d.abs().max()), rel=1e-5)
    per = (d.norm(dim=1) / b.norm(dim=1)).numpy()
    row = [mm.name for mm in res.modules].index("0")
    np.testing.assert_allclose(res.propagated[row], per, rtol=1e-4)
    pooled_b = hb.mean(1) if seq > 1 else hb
    pooled_o = ho.mean(1) if seq > 1 else ho
    assert m["cka_instances"] == pytest.approx(linear_cka(pooled_b, pooled_o), rel=1e-5)


def test_progress_counts_the_instances_the_task_has() -> None:
    """Asked for 64 of a task of 10 (its own limit, or all it holds): "n/10", ending at 1.0
    (a progress line said "96/512 instances" of a task of 200)."""
    base = _mlp(depth=2)
    other = copy.deepcopy(base)
    for attr in ("total_instances", "max_instances"):
        task = ToyTask(torch.randn(10, 16))
        setattr(task, attr, 10)  # the task says how many it has, or that it is cut to 10
        seen: list[tuple[float, str]] = []
        res = compare_activations(
            base,
            {"o": other},
            task,
            options=ActivationOptions(instances=64, batch_size=4),
            control=Control(progress=lambda f, m, seen=seen: seen.append((f, m))),
        )["o"]
        assert len(res.ids) == 10
        counted = [m for _, m in seen if m.startswith("activations: ")]
        assert counted[-1] == "activations: 10/10 instances", (attr, counted)
        assert seen[0][1].startswith("comparing activations: 10 instances")
        assert max(f for f, _ in seen) == pytest.approx(1.0)
