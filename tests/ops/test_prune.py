"""Unstructured and N:M pruning: exact sparsity, deterministic ties, masks, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelbonsai.ops.prune import kth_smallest, nm_mask
from modelbonsai.ops.registry import CompressedModel, OpError
from modelbonsai.ops.targets import default_weight_names


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def test_magnitude_global_is_exact_and_prunes_smallest(tiny_cnn, ctx, run_op) -> None:
    cm = CompressedModel(tiny_cnn)
    names = default_weight_names(tiny_cnn)
    before = {n: tiny_cnn.get_parameter(n).detach().clone() for n in names}
    total = sum(t.numel() for t in before.values())
    run_op("prune.magnitude", cm, {"sparsity": 0.37}, ctx)
    after = {n: tiny_cnn.get_parameter(n) for n in names}
    assert sum(_zeros(t) for t in after.values()) == round(0.37 * total)
    # every kept weight is at least as large as every pruned one
    kept = torch.cat([before[n][after[n] != 0].abs() for n in names])
    pruned = torch.cat([before[n][after[n] == 0].abs() for n in names])
    assert kept.min() >= pruned.max()
    assert set(cm.masks) == set(names)
    for n in names:
        assert torch.equal(cm.masks[n], after[n] == 0)
    # biases and norms untouched
    assert _zeros(tiny_cnn.bn1.weight) == 0 and _zeros(tiny_cnn.conv1.bias) == 0


def test_magnitude_layer_scope_is_exact_per_tensor(tiny_gpt2, ctx, run_op) -> None:
    cm = run_op("prune.magnitude", CompressedModel(tiny_gpt2), {"sparsity": 0.5, "scope": "layer"}, ctx)
    names = default_weight_names(tiny_gpt2)
    assert "lm_head.weight" not in names and "transformer.wte.weight" not in names  # tied to embedding
    for n in names:
        t = tiny_gpt2.get_parameter(n)
        assert _zeros(t) == round(0.5 * t.numel()), n
    assert _zeros(tiny_gpt2.transformer.wte.weight) == 0
    assert set(cm.masks) == set(names)


def test_magnitude_ties_are_deterministic(ctx, run_op) -> None:
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 2.0], [1.0, 3.0, 1.0, 1.0]]))
    run_op("prune.magnitude", CompressedModel(lin), {"sparsity": 0.25}, ctx)  # 2 of 6 tied ones
    assert torch.equal(
        lin.weight == 0, torch.tensor([[True, True, False, False], [False, False, False, False]])
    )


def test_include_layernorm_with_layer_scope_prunes_norms(tiny_bert, ctx, run_op) -> None:
    run_op(
        "prune.magnitude",
        CompressedModel(tiny_bert),
        {"sparsity": 0.5, "scope": "layer", "include": ["*LayerNorm.weight"]},
        ctx,
    )
    ln = tiny_bert.bert.encoder.layer[0].output.LayerNorm.weight
    assert _zeros(ln) == 16
    assert _zeros(tiny_bert.bert.encoder.layer[0].output.dense.weight) == 0  # include replaces defaults


def test_exclude_and_repeated_pruning_accumulates(tiny_cnn, ctx, run_op) -> None:
    cm = CompressedModel(tiny_cnn)
    run_op("prune.magnitude", cm, {"sparsity": 0.5, "exclude": ["fc*"]}, ctx)
    assert _zeros(tiny_cnn.fc1.weight) == 0
    first = cm.masks["conv1.weight"].clone()
    run_op("prune.magnitude", cm, {"sparsity": 0.75, "scope": "layer", "include": "conv1.weight"}, ctx)
    assert bool((cm.masks["conv1.weight"] | ~first).all())  # old zeros stay zero
    assert _zeros(tiny_cnn.conv1.weight) == round(0.75 * tiny_cnn.conv1.weight.numel())


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": -0.1}, "sparsity"),
        ({"include": ["*nothing*"]}, "include"),
        ({"exclude": "nope.*"}, "exclude"),
        ({"exclude": ["*"]}, "exclude"),
        ({"scope": "block"}, "scope"),
    ],
)
def test_magnitude_bad_input(tiny_cnn, ctx, run_op, params, param) -> None:
    with pytest.raises(OpError) as e:
        run_op("prune.magnitude", CompressedModel(tiny_cnn), params, ctx)
    assert e.value.param == param and "prune.magnitude" in str(e.value)


def test_random_is_seeded_and_exact(tiny_cnn_factory, make_ctx, run_op) -> None:
    def masks(seed: int) -> dict[str, torch.Tensor]:
        return run_op(
            "prune.random",
            CompressedModel(tiny_cnn_factory()),
            {"sparsity": 0.3, "scope": "layer"},
            make_ctx(seed=seed),
        ).masks

    a, b, c = masks(1), masks(1), masks(2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)
    for m in a.values():
        assert int(m.sum()) == round(0.3 * m.numel())


def test_taylor_needs_task_and_prunes_exactly(tiny_cnn, cnn_task, ctx, make_ctx, run_op) -> None:
    with pytest.raises(OpError, match="needs a task"):
        run_op("prune.taylor", CompressedModel(tiny_cnn), {"sparsity": 0.5}, ctx)
    grads_before = [p.requires_grad for p in tiny_cnn.parameters()]
    cm = run_op(
        "prune.taylor",
        CompressedModel(tiny_cnn),
        {"sparsity": 0.5, "batches": 2, "batch_size": 8},
        make_ctx(task=cnn_task),
    )
    total = sum(m.numel() for m in cm.masks.values())
    assert sum(int(m.sum()) for m in cm.masks.values()) == round(0.5 * total)
    assert [p.requires_grad for p in tiny_cnn.parameters()] == grads_before
    assert all(p.grad is None for p in tiny_cnn.parameters())


def test_taylor_differs_from_magnitude(tiny_cnn_factory, cnn_task, make_ctx, run_op) -> None:
    t = run_op(
        "prune.taylor",
        CompressedModel(tiny_cnn_factory()),
        {"sparsity": 0.5, "batches": 2},
        make_ctx(task=cnn_task),
    )
    m = run_op("prune.magnitude", CompressedModel(tiny_cnn_factory()), {"sparsity": 0.5}, make_ctx())
    assert not torch.equal(t.masks["fc1.weight"], m.masks["fc1.weight"])


def test_nm_pattern_holds_on_linear_conv_and_hf_conv1d(tiny_cnn, tiny_gpt2, ctx, run_op) -> None:
    run_op("prune.nm", CompressedModel(tiny_cnn), {"include": ["conv2.weight", "fc1.weight"]}, ctx)
    g = tiny_cnn.fc1.weight.reshape(32, -1, 4)
    assert bool(((g != 0).sum(-1) == 2).all())
    c = tiny_cnn.conv2.weight.permute(0, 2, 3, 1).reshape(-1, 2, 4)  # groups along input channels
    assert bool(((c != 0).sum(-1) == 2).all())
    run_op("prune.nm", CompressedModel(tiny_gpt2), {"n": 1, "m": 4}, ctx)
    w = tiny_gpt2.transformer.h[0].attn.c_attn.weight  # Conv1D: [in, out], inputs along dim 0
    assert bool(((w.t().reshape(w.shape[1], -1, 4) != 0).sum(-1) == 1).all())


def test_nm_keeps_largest_in_each_group() -> None:
    w = torch.tensor([[0.1, -5.0, 0.3, 2.0, 1.0, 1.0, 1.0, 1.0]])
    mask = nm_mask(w, 1, 2, 4)
    assert mask.tolist() == [[True, False, True, False, True, True, False, False]]


def test_nm_errors_name_layer(tiny_cnn, ctx, run_op) -> None:
    with pytest.raises(OpError) as e:  # conv1 has 3 inputs: strict fails on it
        run_op("prune.nm", CompressedModel(tiny_cnn), {"n": 2, "m": 16, "strict": True}, ctx)
    assert e.value.layer == "conv1.weight" and e.value.param == "m"
    with pytest.raises(OpError, match="smaller than"):
        run_op("prune.nm", CompressedModel(tiny_cnn), {"n": 4, "m": 4}, ctx)


def test_pruning_refuses_quantized_tensors(tiny_cnn, ctx, run_op) -> None:
    class Enc:
        kind = "int4"

        def project(self, t: torch.Tensor) -> torch.Tensor:
            return t

        def to_json(self) -> dict[str, str]:
            return {}

    cm = CompressedModel(tiny_cnn, encodings={"fc1.weight": Enc()})
    with pytest.raises(OpError, match="before quantizing"):
        run_op("prune.magnitude", cm, {"sparsity": 0.5}, ctx)


def test_kth_smallest_is_exact_on_large_inputs_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 1000, (600_000,), generator=gen).float()
    x[:1000] = float("-inf")  # already-pruned weights score -inf
    for k in (1, 1000, 1001, 12345, 300_000, 599_999, 600_000):
        assert kth_smallest(x, k) == torch.kthvalue(x, k).values, k


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 8), (5, 32)])
def test_nm_mask_matches_stable_sort_with_ties(n: int, m: int) -> None:
    w = torch.randint(-3, 4, (64, 4 * m), generator=torch.Generator().manual_seed(1)).float()
    groups = w.abs().reshape(-1, m)
    order = torch.sort(groups, dim=1, stable=True).indices[:, : m - n]
    expected = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order, True).reshape(w.shape)
    assert torch.equal(nm_mask(w, 1, n, m), expected)
