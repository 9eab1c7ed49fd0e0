"""Weight comparisons of factorised (lowrank) models (issue 22 item 7): the base weight against
the product of the factors, each factorised tensor marked with its rank, and no roll-up says
identical while a tensor was not compared."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbonsai.artifacts import save_artifact
from modelbonsai.compare.sources import ModuleSource, artifact_source
from modelbonsai.compare.weights import compare_weights
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

CTX = OpContext(device=torch.device("cpu"), seed=0)


def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return BertForSequenceClassification(config).eval()


def apply(cm: CompressedModel, name: str, **params: Any) -> CompressedModel:
    op = get_op(name)
    assert op is not None
    return op.fn(cm, op.resolve(params), CTX)


def svd_error(w: torch.Tensor, rank: int) -> float:
    """||W - W_r|| / ||W||: what a rank-r truncated SVD really loses."""
    s = torch.linalg.svdvals(w.double())
    return math.sqrt(float((s[rank:] ** 2).sum() / (s**2).sum()))


def test_a_factorised_bert_is_compared_through_the_product_of_its_factors(tmp_path: Path) -> None:
    base = tiny_bert()
    query = base.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    save_artifact(CompressedModel(base), tmp_path / "base")
    save_artifact(apply(CompressedModel(tiny_bert()), "lowrank", rank=8), tmp_path / "lowrank")
    res = compare_weights(artifact_source(tmp_path / "base"), {"r8": artifact_source(tmp_path / "lowrank")})[
        "r8"
    ]
    q = res.tensor("bert.encoder.layer.0.attention.self.query.weight")
    assert q.status == "ok" and q.factorised == 8 and q.stats is not None
    assert q.to_json()["factorised"] == 8
    assert abs(q.stats.rel_l2 - svd_error(query, 8)) < 1e-3  # the real error, not 0
    bias = res.tensor("bert.encoder.layer.0.attention.self.query.bias")
    assert bias.status == "ok" and bias.stats is not None and bias.stats.rel_l2 == 0.0  # moved, unchanged
    # the factors were compared under the base's names: not listed as extra
    assert not [t.name for t in res.tensors if t.status == "extra_in_other"]
    root = res.node("").to_json()
    assert root["metrics"]["identical"] is False and root["metrics"]["rel_l2"] > 0.01
    factorised = [t.name for t in res.tensors if t.factorised]
    # per layer query, key, value, attention output, intermediate, output; and the pooler
    assert len(factorised) == 2 * 6 + 1


def test_identical_only_when_every_tensor_was_compared() -> None:
    a = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
    b = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
    b.load_state_dict(a.state_dict())
    same = compare_weights(
        ModuleSource(a, include_buffers=True), {"b": ModuleSource(b, include_buffers=True)}
    )["b"]
    root = same.node("").to_json()
    # num_batches_tracked (int64) is compared for equality: the copy is identical
    assert root["not_compared"] == 0 and root["metrics"]["identical"] is True, root
    smaller = nn.Sequential(nn.Linear(8, 8))
    smaller.load_state_dict({k: v for k, v in a.state_dict().items() if k.startswith("0.")})
    part = compare_weights(ModuleSource(a), {"s": ModuleSource(smaller)})["s"].node("").to_json()
    # what was compared is equal, but BatchNorm's tensors are missing: not identical
    assert (
        part["not_compared"] == 2
        and part["metrics"]["rel_l2"] == 0.0
        and part["metrics"]["identical"] is False
    )


def test_gpt2_conv1d_and_a_1x1_conv_factorised_compare_in_the_base_layout(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            return GPT2LMHeadModel(
                GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=64, n_positions=16)
            ).eval()

    base = gpt2()
    res = compare_weights(
        ModuleSource(base), {"r": ModuleSource(apply(CompressedModel(gpt2()), "lowrank", rank=4).module)}
    )["r"]
    for name in (
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_proj.weight",
    ):  # [32, 96], [32, 32]
        t = res.tensor(name)
        w = base.get_parameter(name).detach().t()  # Conv1D stores [in, out]
        assert t.status == "ok" and t.factorised == 4 and t.stats is not None, t
        assert abs(t.stats.rel_l2 - svd_error(w, 4)) < 1e-3, name

    def convnet() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(6)
            return nn.Sequential(nn.Conv2d(16, 24, 1), nn.ReLU(), nn.Conv2d(24, 16, 1)).eval()

    conv = convnet()
    r = compare_weights(
        ModuleSource(conv), {"r": ModuleSource(apply(CompressedModel(convnet()), "lowrank", rank=2).module)}
    )["r"]
    t = r.tensor("0.weight")
    assert t.factorised == 2 and t.stats is not None
    assert abs(t.stats.rel_l2 - svd_error(conv[0].weight.detach().reshape(24, 16), 2)) < 1e-3


def test_bonsai_compare_reports_the_factorised_tensors(tmp_path: Path, capsys: Any) -> None:
    import json

    from modelbonsai.cli import main
    from support.workspace import experiment_head, write_workspace

    exp = write_workspace(
        tmp_path, experiment_head() + "  - name: lr\n    ops:\n      - lowrank: {rank: 2}\n", "", hidden=(64,)
    )
    assert main(["run", str(exp), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["compare", "toy", "lr", "--json", "--workspace", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)["others"]["lr"]
    assert out["factorised"] == {"0.weight": 2, "2.weight": 2}
    assert out["not_compared"] == [] and out["weights"]["not_compared"] == 0
    assert out["weights"]["metrics"]["identical"] is False and out["weights"]["metrics"]["rel_l2"] > 0.01
    assert main(["compare", "toy", "lr", "--workspace", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert (
        "lr: 2 tensor(s) factorised (rank 2), compared as the product of their factors: 0.weight, 2.weight"
        in text
    )
