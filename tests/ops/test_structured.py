"""Structured pruning: shapes shrink, the model runs, kept indices are right, edits replay."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from modelbonsai.ops.registry import CompressedModel, OpError, replay_edits
from modelbonsai.ops.structured import find_units


def _removed(kept: list[int], size: int) -> list[int]:
    return [i for i in range(size) if i not in set(kept)]


def _logits(out: object) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits  # type: ignore[attr-defined]


def test_cnn_shapes_shrink_and_outputs_match_masked_base(
    tiny_cnn, tiny_cnn_factory, cnn_input, ctx, run_op
) -> None:
    base = tiny_cnn_factory()
    cm = run_op("prune.structured", CompressedModel(tiny_cnn), {"amount": 0.5}, ctx)
    m = cm.module
    assert m.conv1.weight.shape == (4, 3, 3, 3) and m.bn1.running_mean.shape == (4,)
    assert m.conv2.weight.shape == (8, 4, 3, 3) and m.bn2.num_features == 8
    assert m.fc1.weight.shape == (16, 128) and m.fc1.in_features == 128
    assert m.fc2.weight.shape == (4, 16)  # the output layer keeps its outputs
    # kept channels are the largest by L2 norm, and values are the base's
    k1 = cm.kept_indices["conv1.weight"][0]
    norms = base.conv1.weight.detach().flatten(1).norm(dim=1)
    assert k1 == sorted(norms.argsort(descending=True)[:4].tolist())
    assert torch.equal(m.conv1.weight, base.conv1.weight[k1])
    k2 = cm.kept_indices["conv2.weight"][0]
    assert cm.kept_indices["conv2.weight"][1] == k1
    assert cm.kept_indices["fc1.weight"][1] == [
        c * 16 + j for c in k2 for j in range(16)
    ]  # flatten: 4x4 per channel
    assert cm.kept_indices["bn2.running_var"][0] == k2
    # removing units equals cutting their outgoing connections in the base model
    k3 = cm.kept_indices["fc1.weight"][0]
    with torch.no_grad():
        base.conv2.weight[:, _removed(k1, 8)] = 0
        base.fc1.weight.view(32, 16, 16)[:, _removed(k2, 16)] = 0
        base.fc2.weight[:, _removed(k3, 32)] = 0
    assert torch.allclose(m(cnn_input), base(cnn_input), atol=1e-5)


def test_edits_replay_on_fresh_model(tiny_cnn, tiny_cnn_factory, cnn_input, ctx, run_op) -> None:
    cm = run_op("prune.structured", CompressedModel(tiny_cnn), {"amount": 0.3, "criterion": "l1"}, ctx)
    fresh = tiny_cnn_factory()
    replay_edits(fresh, cm.edits)
    fresh.load_state_dict(cm.module.state_dict())  # strict: every shape must match
    assert torch.equal(fresh(cnn_input), cm.module(cnn_input))
    assert all(e["kind"] == "structured.slice" for e in cm.edits)


@pytest.mark.parametrize("which", ["gpt2", "bert"])
def test_transformer_heads_and_neurons(which, request, ctx, run_op) -> None:
    model = request.getfixturevalue(f"tiny_{which}")
    base = request.getfixturevalue(f"tiny_{which}_factory")()
    x = request.getfixturevalue(f"{which}_input")
    cm = run_op("prune.structured", CompressedModel(model), {"amount": 0.5}, ctx)
    if which == "gpt2":
        attn, mlp = model.transformer.h[0].attn, model.transformer.h[0].mlp
        assert attn.c_attn.weight.shape == (32, 48) and attn.c_proj.weight.shape == (16, 32)
        assert attn.num_heads == 2 and attn.split_size == 16
        assert mlp.c_fc.weight.shape == (32, 64) and mlp.c_proj.weight.shape == (64, 32)
        heads = cm.kept_indices["transformer.h.0.attn.c_proj.weight"][0]
        neurons = cm.kept_indices["transformer.h.0.mlp.c_proj.weight"][0]
        assert cm.kept_indices["transformer.h.0.attn.c_attn.weight"][1][:16] == heads  # q block
        battn, bmlp = base.transformer.h[0].attn, base.transformer.h[0].mlp
        cut_heads, cut_neurons = battn.c_proj.weight, bmlp.c_proj.weight
        other = [(base.transformer.h[1].attn.c_proj.weight, "transformer.h.1.attn.c_proj.weight", 0),
                 (base.transformer.h[1].mlp.c_proj.weight, "transformer.h.1.mlp.c_proj.weight", 0)]  # fmt: skip
        dim = 0
    else:
        layer = model.bert.encoder.layer[0]
        assert (
            layer.attention.self.query.weight.shape == (16, 32)
            and layer.attention.self.num_attention_heads == 2
        )
        assert layer.attention.output.dense.weight.shape == (32, 16)
        assert layer.intermediate.dense.weight.shape == (32, 32) and layer.output.dense.weight.shape == (
            32,
            32,
        )
        p = "bert.encoder.layer.0."
        heads = cm.kept_indices[p + "attention.output.dense.weight"][1]
        neurons = cm.kept_indices[p + "output.dense.weight"][1]
        assert cm.kept_indices[p + "attention.self.key.weight"][0] == heads
        bl = base.bert.encoder.layer
        cut_heads, cut_neurons = bl[0].attention.output.dense.weight, bl[0].output.dense.weight
        other = [(bl[1].attention.output.dense.weight, "bert.encoder.layer.1.attention.output.dense.weight", 1),
                 (bl[1].output.dense.weight, "bert.encoder.layer.1.output.dense.weight", 1)]  # fmt: skip
        dim = 1
    with torch.no_grad():
        cut_heads.index_fill_(dim, torch.tensor(_removed(heads, 32)), 0)
        cut_neurons.index_fill_(dim, torch.tensor(_removed(neurons, cut_neurons.shape[dim])), 0)
        for w, name, d in other:
            w.index_fill_(d, torch.tensor(_removed(cm.kept_indices[name][d], w.shape[d])), 0)
    assert torch.allclose(_logits(model(x)), _logits(base(x)), atol=1e-4)
    fresh = request.getfixturevalue(f"tiny_{which}_factory")()
    replay_edits(fresh, cm.edits)
    fresh.load_state_dict(model.state_dict())
    assert torch.allclose(_logits(fresh(x)), _logits(model(x)), atol=1e-6)


def test_heads_only_and_include(tiny_bert, ctx, run_op) -> None:
    cm = run_op("prune.structured", CompressedModel(tiny_bert),
                {"amount": 0.25, "structures": "heads", "include": "*layer.1.attention.self.query.weight"}, ctx)  # fmt: skip
    enc = tiny_bert.bert.encoder.layer
    assert enc[1].attention.self.num_attention_heads == 3 and enc[0].attention.self.num_attention_heads == 4
    assert enc[1].intermediate.dense.out_features == 64
    assert {e["module"] for e in cm.edits} == {
        f"bert.encoder.layer.1.attention.{m}"
        for m in ("self.query", "self.key", "self.value", "output.dense", "self")
    }


def test_repeated_pruning_composes_kept_indices_and_slices_masks(
    tiny_cnn, tiny_cnn_factory, cnn_input, ctx, run_op
) -> None:
    base = tiny_cnn_factory()
    cm = run_op("prune.magnitude", CompressedModel(tiny_cnn), {"sparsity": 0.3}, ctx)
    run_op("prune.structured", cm, {"amount": 0.25}, ctx)
    run_op("prune.structured", cm, {"amount": 0.5}, ctx)
    m = cm.module
    assert m.conv1.out_channels == 3  # 8 -> 6 -> 3
    k = cm.kept_indices["conv1.weight"][0]
    assert len(k) == 3 and torch.equal(m.conv1.weight, base.conv1.weight[k] * ~cm.masks["conv1.weight"])
    for name, mask in cm.masks.items():
        assert mask.shape == m.get_parameter(name).shape
        assert bool((m.get_parameter(name)[mask] == 0).all())
    fresh = tiny_cnn_factory()
    replay_edits(fresh, cm.edits)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh(cnn_input), m(cnn_input))


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 8, 1)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = h + torch.relu(self.body(h))
        return self.out(self.head(h).mean((2, 3)))


def test_residual_layers_are_pruned_together(ctx, run_op) -> None:
    """The residual add couples stem and body (tests/ops/test_structured_depgraph.py has more);
    mean() over the spatial dims keeps head's channels for the Linear; the output layer stays."""
    found = find_units(_Residual())
    assert set(found.units) == {"stem", "head"}
    assert {s.module for s in found.units["stem"].slices} == {"stem", "body", "head"}
    assert "output of the model" in found.problems["out"]
    model = _Residual().eval()
    cm = run_op("prune.structured", CompressedModel(model), {"include": "body.weight", "amount": 0.5}, ctx)
    assert cm.kept_indices["stem.weight"][0] == cm.kept_indices["body.weight"][0]
    assert model.body.weight.shape == (4, 4, 3, 3) and model.head.in_channels == 4
    assert model(torch.randn(1, 3, 6, 6)).shape == (1, 2)


def test_errors(tiny_cnn, ctx, run_op) -> None:
    with pytest.raises(OpError) as e:
        run_op("prune.structured", CompressedModel(tiny_cnn), {"include": "fc2.weight"}, ctx)
    assert e.value.layer == "fc2" and "output of the model" in str(e.value)
    with pytest.raises(OpError, match="no prunable layer"):
        run_op("prune.structured", CompressedModel(tiny_cnn), {"include": "bn1.*"}, ctx)
    with pytest.raises(OpError, match="removes nothing") as e:
        run_op("prune.structured", CompressedModel(tiny_cnn), {"amount": 0.01}, ctx)
    assert e.value.param == "amount"
    with pytest.raises(OpError) as e:
        run_op("prune.structured", CompressedModel(tiny_cnn), {"amount": 1.0}, ctx)
    assert e.value.param == "amount"


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 1e9:  # data-dependent control flow: torch.fx cannot trace this
            return x
        return self.features(x)


def test_sequential_fallback_when_fx_fails(ctx, run_op) -> None:
    model = _Untraceable().eval()
    x = torch.randn(2, 3, 6, 6)
    run_op("prune.structured", CompressedModel(model), {"amount": 0.5}, ctx)
    assert model.features[0].out_channels == 3 and model.features[1].num_features == 3
    assert model.features[4].in_features == 48
    assert model(x).shape == (2, 5)


def test_gated_mlp_of_llama_style_model(ctx, run_op) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    base = copy.deepcopy(model)
    x = torch.randint(0, 64, (2, 8))
    cm = run_op("prune.structured", CompressedModel(model), {"amount": 0.5, "structures": "neurons"}, ctx)
    mlp = model.model.layers[0].mlp
    assert mlp.gate_proj.weight.shape == (24, 32) and mlp.down_proj.weight.shape == (32, 24)
    kept = cm.kept_indices["model.layers.0.mlp.down_proj.weight"][1]
    assert cm.kept_indices["model.layers.0.mlp.gate_proj.weight"][0] == kept
    with torch.no_grad():
        base.model.layers[0].mlp.down_proj.weight[:, _removed(kept, 48)] = 0
    assert torch.allclose(model(x).logits, base(x).logits, atol=1e-5)


class _FunctionalCNN(nn.Module):
    """Not a Sequential: found through torch.fx (functional relu, view-flatten, shape reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.out = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        h = h.view(h.size(0), -1)
        return self.out(nn.functional.relu(self.fc(h)))


def test_fx_rules_on_functional_model(ctx, run_op) -> None:
    model = _FunctionalCNN().eval()
    base = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 8)
    cm = run_op("prune.structured", CompressedModel(model), {"amount": 0.5}, ctx)
    assert model.conv.out_channels == 4 and model.bn.num_features == 4 and model.fc.in_features == 64
    assert model.fc.out_features == 5 and model.out.in_features == 5
    kept = cm.kept_indices["conv.weight"][0]
    kept_fc = cm.kept_indices["fc.weight"][0]
    with torch.no_grad():
        base.fc.weight.view(10, 8, 16)[:, _removed(kept, 8)] = 0
        base.out.weight[:, _removed(kept_fc, 10)] = 0
    assert torch.allclose(model(x), base(x), atol=1e-5)
