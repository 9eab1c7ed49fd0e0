"""Behaviour result extras: instance ids per group, and the true per-token KL of causal LMs."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai import wire
from modelbonsai.compare import api
from modelbonsai.compare.behavior import compare_behavior
from modelbonsai.compare.cache import MemoryCache
from modelbonsai.compare.control import CompareError
from modelbonsai.tasks.base import Batch, Evaluation, Task

K = 0.5 * math.log(4 / 3)  # KL(uniform over 2 ‖ [0.75, 0.25]) in nats


def test_groups_carry_their_instance_ids_in_every_task_kind() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    ids = ["a", "b", "c", "d", "e"]
    targets = torch.tensor([0, 1, 1, 1, 0])
    ev = Evaluation([], ids, probs, probs.argmax(1), targets)
    res = compare_behavior(ev, {"o": ev}, bootstrap=20)["o"]  # default grouping: the target label
    assert [(g["group"], g["count"], g["ids"]) for g in res.groups] == [
        ("0", 2, ["a", "e"]),
        ("1", 3, ["b", "c", "d"]),
    ]
    grouping = {"by": {"a": "x", "b": "y", "c": "x", "d": "y", "e": "z"}}
    res = compare_behavior(ev, {"o": ev}, groupings=grouping, bootstrap=20)["o"]
    assert {g["group"]: g["ids"] for g in res.groups} == {"x": ["a", "c"], "y": ["b", "d"], "z": ["e"]}

    lm = Evaluation([], ["p", "q", "r"], -torch.ones(3, 2), torch.zeros(3, 2, dtype=torch.long))
    res = compare_behavior(lm, {"o": lm}, groupings={"h": {"p": "1", "q": "2", "r": "1"}}, bootstrap=20)["o"]
    assert [(g["group"], g["ids"]) for g in res.groups] == [("1", ["p", "r"]), ("2", ["q"])]

    emb = Evaluation([], ["u", "v"], torch.eye(2))
    res = compare_behavior(emb, {"o": emb}, groupings={"h": {"u": "k", "v": "k"}}, bootstrap=20)["o"]
    assert res.groups[0]["ids"] == ["u", "v"]
    # on the wire, beside the counts
    kind, meta, tensors = res.wire()
    assert wire.decode_result(wire.encode_result(kind, meta, tensors)).meta["groups"][0]["ids"] == ["u", "v"]


def _lm_eval(n: int, t: int) -> Evaluation:
    return Evaluation([], [f"s{i}" for i in range(n)], -torch.ones(n, t), torch.zeros(n, t, dtype=torch.long),
                      torch.zeros(n, t, dtype=torch.long))  # fmt: skip


def test_token_kl_is_joined_by_id_with_nan_for_uncovered_instances() -> None:
    ev = _lm_eval(3, 2)
    # the divergence run covered s2 and s0 (in that order), not s1
    div = {"o": {"ids": ["s2", "s0"], "kl": np.array([[0.5, 1.5], [0.25, 0.75]], np.float32)}}
    grouping = {"g": {"s0": "a", "s1": "a", "s2": "b"}}
    res = compare_behavior(ev, {"o": ev}, groupings=grouping, bootstrap=20, token_divergence=div)["o"]
    tk = res.per_instance["token_kl"]
    np.testing.assert_array_equal(tk[0], [0.25, 0.75])
    assert np.isnan(tk[1]).all()
    np.testing.assert_array_equal(tk[2], [0.5, 1.5])
    np.testing.assert_array_equal(res.per_instance["kl"][[0, 2]], [0.5, 1.0])
    assert np.isnan(res.per_instance["kl"][1])
    assert res.summary["mean_kl"] == pytest.approx(0.75) and res.summary["token_kl_instances"] == 2
    assert [(g["group"], g["mean_kl"]) for g in res.groups] == [("a", 0.5), ("b", 1.0)]
    # Δ log-prob is still there
    assert res.per_instance["token_logp_change"].shape == (3, 2) and "logp_change" in res.summary
    bad = {"o": {"ids": ["s0"], "kl": np.zeros((1, 5), np.float32)}}
    with pytest.raises(CompareError, match="5"):
        compare_behavior(ev, {"o": ev}, token_divergence=bad, bootstrap=20)


class _LMTask:
    """Fixed token windows; forward = model(inputs) (logits [B, T, V])."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for i in range(0, len(self.tokens), batch_size):
            j = min(i + batch_size, len(self.tokens))
            yield Batch(ids=[f"s{k}" for k in range(i, j)], inputs=self.tokens[i:j])

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)

    to_device = staticmethod(Task.to_device)


def _two_token_lms() -> tuple[nn.Module, nn.Module]:
    """Bigram LMs over a vocabulary of 2: the base predicts uniform after either token; the
    other predicts [0.75, 0.25] after token 0 and uniform after token 1."""
    base, other = nn.Embedding(2, 2), nn.Embedding(2, 2)
    with torch.no_grad():
        base.weight.zero_()
        other.weight.copy_(torch.tensor([[math.log(0.75), math.log(0.25)], [0.0, 0.0]]))
    return base, other


def test_behavior_entry_point_adds_true_token_kl_and_caches() -> None:
    base, other = _two_token_lms()
    tokens = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1]])
    task = _LMTask(tokens)
    ev = _lm_eval(3, 4)
    grouping = {"g": {"s0": "a", "s1": "a", "s2": "b"}}
    cache = MemoryCache()
    out = api.behavior(cache, "A", "B", ev, ev, task_key={"t": 1}, groupings=grouping, bootstrap=20,
                       models=(base, lambda: other), task=task, batch_size=2)  # fmt: skip
    tk = out.result.tensors["token_kl"]
    np.testing.assert_allclose(tk, [[K, K, 0, 0], [0, 0, 0, 0], [K, 0, K, 0]], atol=1e-6)
    np.testing.assert_allclose(out.result.tensors["kl"], [K / 2, 0, K / 2], atol=1e-6)
    meta = out.result.meta
    assert meta["summary"]["mean_kl"] == pytest.approx(K / 3, abs=1e-6)
    assert [g["mean_kl"] for g in meta["groups"]] == [
        pytest.approx(K / 4, abs=1e-6),
        pytest.approx(K / 2, abs=1e-6),
    ]
    assert [g["ids"] for g in meta["groups"]] == [["s0", "s1"], ["s2"]]
    # cached: nothing is loaded again; without models the result (and key) is the old one
    fail = lambda: pytest.fail("loaded")  # noqa: E731
    again = api.behavior(cache, "A", "B", ev, fail, task_key={"t": 1}, groupings=grouping, bootstrap=20,
                         models=(base, fail), task=task, batch_size=2)  # fmt: skip
    assert again.cache_hit
    plain = api.behavior(cache, "A", "B", ev, ev, task_key={"t": 1}, groupings=grouping, bootstrap=20)
    assert not plain.cache_hit and "token_kl" not in plain.result.tensors
    # a sample of the instances: the rest are NaN, not zero
    part = api.behavior(None, "A", "B", ev, ev, task_key={"t": 1}, groupings=grouping, bootstrap=20,
                        models=(base, other), task=task, token_instances=2)  # fmt: skip
    assert np.isnan(part.result.tensors["token_kl"][2]).all()
    assert part.result.meta["summary"]["mean_kl"] == pytest.approx(K / 4, abs=1e-6)
    assert part.result.meta["groups"][1]["mean_kl"] is None
