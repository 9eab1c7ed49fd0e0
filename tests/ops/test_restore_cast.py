"""restore (copy tensors back from the parent) and cast (fp16 / bf16)."""

from __future__ import annotations

import copy

import pytest
import torch

from modelbonsai.ops.registry import CompressedModel, OpError, replay_edits


def test_restore_layernorm_after_pruning(tiny_bert, make_ctx, run_op) -> None:
    parent = CompressedModel(copy.deepcopy(tiny_bert))
    cm = run_op("prune.magnitude", CompressedModel(tiny_bert),
                {"sparsity": 0.5, "scope": "layer", "include": ["*LayerNorm.weight", "*dense.weight"]}, make_ctx())  # fmt: skip
    run_op("restore", cm, {"patterns": ["*LayerNorm*"]}, make_ctx(parent=parent))
    mine, theirs = dict(tiny_bert.named_parameters()), dict(parent.module.named_parameters())
    for name in mine:
        if "LayerNorm" in name:
            assert torch.equal(mine[name], theirs[name]) and name not in cm.masks
    dense = "bert.encoder.layer.0.output.dense.weight"
    assert dense in cm.masks and not torch.equal(mine[dense], theirs[dense])
    assert int((theirs["bert.embeddings.LayerNorm.weight"] == 0).sum()) == 0  # parent untouched


def test_restore_brings_parent_records(tiny_cnn, make_ctx, run_op) -> None:
    parent = run_op(
        "prune.magnitude", CompressedModel(copy.deepcopy(tiny_cnn)), {"sparsity": 0.5}, make_ctx()
    )
    cm = run_op("prune.magnitude", CompressedModel(tiny_cnn), {"sparsity": 0.9}, make_ctx())
    run_op("restore", cm, {"patterns": "fc1.*", "exclude": "*.bias"}, make_ctx(parent=parent))
    assert torch.equal(cm.masks["fc1.weight"], parent.masks["fc1.weight"])
    assert torch.equal(tiny_cnn.fc1.weight, parent.module.fc1.weight)
    assert int(cm.masks["conv1.weight"].sum()) > int(parent.masks["conv1.weight"].sum())


def test_restore_errors(tiny_cnn, tiny_cnn_factory, make_ctx, run_op) -> None:
    parent = CompressedModel(tiny_cnn_factory())
    with pytest.raises(OpError, match="needs a parent"):
        run_op("restore", CompressedModel(tiny_cnn), {"patterns": "*"}, make_ctx())
    with pytest.raises(OpError) as e:
        run_op(
            "restore",
            CompressedModel(tiny_cnn),
            {"patterns": ["fc1.*", "*LayerNorm*"]},
            make_ctx(parent=parent),
        )
    assert e.value.param == "patterns" and "*LayerNorm*" in str(e.value)
    with pytest.raises(OpError, match="needs parameter 'patterns'"):
        run_op("restore", CompressedModel(tiny_cnn), {}, make_ctx(parent=parent))
    shrunk = run_op("prune.structured", CompressedModel(tiny_cnn), {"amount": 0.5}, make_ctx())
    with pytest.raises(OpError) as e:
        run_op("restore", shrunk, {"patterns": "conv2.weight"}, make_ctx(parent=parent))
    assert e.value.layer == "conv2.weight" and "shape" in str(e.value)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_cast_runs_and_replays(dtype, tiny_gpt2, tiny_gpt2_factory, gpt2_input, ctx, run_op) -> None:
    cm = run_op("cast", CompressedModel(tiny_gpt2), {"dtype": dtype}, ctx)
    want = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert all(p.dtype == want for p in tiny_gpt2.parameters())
    assert all(not b.is_floating_point() or b.dtype == want for b in tiny_gpt2.buffers())
    out = tiny_gpt2(gpt2_input).logits
    assert out.dtype == want and torch.isfinite(out.float()).all()
    ref = tiny_gpt2_factory()(gpt2_input).logits
    assert torch.allclose(out.float(), ref, atol=0.1)
    fresh = tiny_gpt2_factory()
    replay_edits(fresh, cm.edits)
    fresh.load_state_dict(tiny_gpt2.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), tiny_gpt2.parameters(), strict=True))
    assert fresh.transformer.wte.weight.dtype == want


def test_cast_cnn_keeps_masks(tiny_cnn, cnn_input, ctx, run_op) -> None:
    cm = run_op("prune.magnitude", CompressedModel(tiny_cnn), {"sparsity": 0.5}, ctx)
    run_op("cast", cm, {"dtype": "bf16"}, ctx)
    assert tiny_cnn(cnn_input.bfloat16()).shape == (4, 4)
    assert bool((tiny_cnn.fc1.weight[cm.masks["fc1.weight"]] == 0).all())
    with pytest.raises(OpError) as e:
        run_op("cast", cm, {"dtype": "int8"}, ctx)
    assert e.value.param == "dtype"
