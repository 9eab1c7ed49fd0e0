"""Cached entry points: hits after a restart with the real store, artifacts streamed and
dequantized, structured kept indices read from the manifest, progress and cancellation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbonsai.artifacts import save_artifact
from modelbonsai.compare import api
from modelbonsai.compare import stats as S
from modelbonsai.compare.cache import MemoryCache, result_key
from modelbonsai.compare.control import Cancelled
from modelbonsai.compare.sources import ModuleSource
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op
from modelbonsai.store import LineageStore
from modelbonsai.store.records import ModelRecord


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def _apply(op: str, cm: CompressedModel, **params: object) -> CompressedModel:
    d = get_op(op)
    assert d is not None
    return d.fn(
        CompressedModel(copy.deepcopy(cm.module)), d.resolve(dict(params)), OpContext(torch.device("cpu"), 0)
    )


def _add(store: LineageStore, name: str, cm: CompressedModel, parent: str | None = None) -> str:
    rec = store.add_model(ModelRecord(name=name, parent_id=parent, op=None if parent is None else "op"),
                          lambda folder: save_artifact(cm, folder))  # fmt: skip
    return rec.id


def test_weights_cache_hit_after_restart_with_real_store(tmp_path: Path) -> None:
    base = CompressedModel(_net())
    quant = _apply("quantize.weights", base, bits=4)
    store = LineageStore.open(tmp_path)
    b_id = _add(store, "base", base)
    q_id = _add(store, "q4", quant, b_id)
    first = api.store_weights(store, b_id, q_id)
    assert not first.cache_hit
    m = {t["name"]: t for t in first.result.meta["tensors"]}
    assert m["0.weight"]["status"] == "ok" and 10 < m["0.weight"]["metrics"]["sqnr_db"] < 40  # 4-bit error
    assert m["0.bias"]["metrics"]["identical"]
    store.close()

    store2 = LineageStore.open(tmp_path)  # a restart: new connection, same .bonsai folder
    calls: list[float] = []
    again = api.store_weights(store2, b_id, q_id, progress=lambda f, msg: calls.append(f))
    assert again.cache_hit and again.data == first.data and calls == []  # nothing recomputed
    assert again.result.meta["tree"] == first.result.meta["tree"]
    store2.close()


def test_structured_kept_indices_come_from_the_artifact(tmp_path: Path) -> None:
    base = CompressedModel(_net())
    pruned = _apply("prune.structured", base, amount=0.5)
    assert pruned.kept_indices, "the structured op records kept indices"
    store = LineageStore.open(tmp_path)
    b_id = _add(store, "base", base)
    p_id = _add(store, "p50", pruned, b_id)
    res = api.store_weights(store, b_id, p_id).result
    rows = {t["name"]: t for t in res.meta["tensors"]}
    shrunk = [n for n, t in rows.items() if t.get("removed")]
    assert shrunk and all(rows[n]["status"] == "ok" for n in shrunk)
    assert all(rows[n]["kept_metrics"]["rel_l2"] < 1e-6 for n in shrunk)  # kept channels unchanged
    assert all(
        rows[n]["metrics"]["rel_l2"] > 0.1 for n in shrunk
    )  # removed ones are zeros in the base layout
    store.close()


def test_options_are_part_of_the_key_and_cancel_is_honoured() -> None:
    cache = MemoryCache()
    a, b = _net(), _net()
    one = api.weights(cache, "a", "b", ModuleSource(a), ModuleSource(b))
    two = api.weights(cache, "a", "b", ModuleSource(a), ModuleSource(b), include="0.*")
    assert not one.cache_hit and not two.cache_hit and len(cache.entries) == 2
    assert api.weights(cache, "a", "b", lambda: pytest.fail("loaded on a hit"), ModuleSource(b)).cache_hit
    with pytest.raises(Cancelled):
        api.weights(cache, "a", "c", ModuleSource(a), ModuleSource(b), cancelled=lambda: True)
    assert result_key({"base": "a"}, {"x": (1, 2)}) == result_key({"base": "a"}, {"x": [1, 2]})


def test_tiles_of_a_difference() -> None:
    a, b = _net(), _net()
    out = api.weight_tiles(
        MemoryCache(), "b", ModuleSource(b), "0.weight", 0, minus=("a", ModuleSource(a)), tile=16
    )
    want = (b[0].weight - a[0].weight).detach()
    got = out.result.tensors["L0_0_0_mean"]
    assert got.shape == (16, 16) and torch.allclose(torch.from_numpy(got.copy()), want[:16, :16])


class _Task:
    """Plain inputs; forward = model(inputs)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def eval_batches(self, batch_size: int):  # type: ignore[no-untyped-def]
        from modelbonsai.tasks.base import Batch

        for i in range(0, len(self.x), batch_size):
            yield Batch(
                ids=[f"i{j}" for j in range(i, min(i + batch_size, len(self.x)))],
                inputs=self.x[i : i + batch_size],
            )

    def forward(self, model: nn.Module, batch) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return model(batch.inputs)

    @staticmethod
    def to_device(batch, device):  # type: ignore[no-untyped-def]
        return batch


def test_activation_and_behavior_results_are_cached(tmp_path: Path) -> None:
    from modelbonsai.compare.activations import ActivationOptions
    from modelbonsai.tasks.base import Evaluation

    a, b = _net(), _net()
    task = _Task(torch.randn(10, 16))
    store = LineageStore.open(tmp_path)
    opts = ActivationOptions(instances=10, batch_size=4)
    one = api.activations(store, "a", "b", a, lambda: b, task, task_key={"t": 1}, options=opts)
    assert not one.cache_hit and one.result.kind == "activations"
    assert one.result.tensors["propagated"].shape == (len(one.result.meta["modules"]), 10)
    two = api.activations(
        store, "a", "b", a, lambda: pytest.fail("loaded"), task, task_key={"t": 1}, options=opts
    )
    assert two.cache_hit
    assert not api.activations(store, "a", "b", a, b, task, task_key={"t": 2}, options=opts).cache_hit

    probs = torch.softmax(torch.randn(10, 3), 1)
    ev = Evaluation([], [f"i{k}" for k in range(10)], probs, probs.argmax(1), probs.argmax(1))
    first = api.behavior(store, "a", "b", ev, lambda: ev, task_key={"t": 1}, bootstrap=50)
    assert first.result.meta["summary"]["agreement"]["value"] == 1.0
    assert api.behavior(
        store, "a", "b", ev, lambda: pytest.fail("loaded"), task_key={"t": 1}, bootstrap=50
    ).cache_hit
    store.close()


def test_activation_tiles_of_a_difference() -> None:
    a, b = _net(), _net()
    task = _Task(torch.randn(6, 16))
    out = api.activation_tiles(MemoryCache(), "b", b, task, "i4", "0", 0, task_key={}, minus=("a", a), tile=8)
    with torch.no_grad():
        want = b[0](task.x[4]) - a[0](task.x[4])
    got = torch.cat([torch.from_numpy(out.result.tensors[f"L0_0_{k}_mean"].copy()) for k in range(4)], 1)[0]
    assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="not in the task"):
        api.activation_tiles(None, "b", b, task, "nope", "0", 0, task_key={})


def test_pruned_attention_heads_name_their_head_size(tmp_path: Path) -> None:
    """Heads go as blocks of head-size channels: the result says how many channels make a head
    (from the structured edits in the manifest), so a view groups them without guessing."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=1, intermediate_size=64,
                     vocab_size=50, max_position_embeddings=16)  # fmt: skip
    base = CompressedModel(BertModel(cfg).eval())
    pruned = _apply("prune.structured", base, amount=0.5, structures="heads")
    store = LineageStore.open(tmp_path)
    b_id = _add(store, "base", base)
    p_id = _add(store, "heads-0.5", pruned, b_id)
    rows = {t["name"]: t for t in api.store_weights(store, b_id, p_id).result.meta["tensors"]}
    p = "encoder.layer.0.attention."
    for name, dim in (
        (p + "self.query.weight", "0"),
        (p + "self.value.bias", "0"),
        (p + "output.dense.weight", "1"),
    ):
        assert rows[name]["group_size"] == {dim: 8}, name  # 32 wide / 4 heads
        assert len(rows[name]["removed_indices"][dim]) == 16  # 2 of 4 heads
    assert all("group_size" not in t for n, t in rows.items() if "intermediate" in n or "embeddings" in n)
    store.close()


def test_a_misspelt_keyword_is_a_type_error_not_a_default() -> None:
    # the entry points take their run and statistics options as **kwargs: a typo must not pass
    never = lambda: pytest.fail("loaded")  # noqa: E731
    with pytest.raises(TypeError, match="devcie"):
        api.activations(None, "a", "b", never, never, never, task_key={}, devcie="cpu")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="hist_sampel"):
        S.pair_stats(torch.ones(3), torch.ones(3), hist_sampel=2)  # type: ignore[call-arg]
