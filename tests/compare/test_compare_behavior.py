"""Behaviour comparison: agreement, transitions, group deltas with intervals, KL, LM tokens."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai.compare.behavior import bootstrap_mean, compare_behavior, lm_token_divergence, wilson
from modelbonsai.tasks.base import Batch, Evaluation, Task


def _ev(probs: torch.Tensor, targets: torch.Tensor | None, ids: list[str] | None = None) -> Evaluation:
    return Evaluation(metrics=[], ids=ids or [f"x{i}" for i in range(len(probs))], outputs=probs,
                      predictions=probs.argmax(1), targets=targets)  # fmt: skip


def test_wilson_matches_known_values() -> None:
    lo, hi = wilson(8, 10)  # type: ignore[misc]
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson(0, 5)  # type: ignore[misc]
    assert lo == 0.0 and hi == pytest.approx(0.4345, abs=1e-4)
    assert wilson(0, 0) is None


def test_bootstrap_interval_covers_mean_and_shrinks() -> None:
    rng = np.random.default_rng(0)
    small, big = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    lo_s, hi_s = bootstrap_mean(small)  # type: ignore[misc]
    lo_b, hi_b = bootstrap_mean(big)  # type: ignore[misc]
    assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 5
    assert (hi_b - lo_b) == pytest.approx(2 * 1.96 * big.std() / np.sqrt(2000), rel=0.15)


def test_classification_agreement_transitions_groups_kl() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 3, generator=g) * 2
    pb = logits.softmax(1)
    po_logits = logits.clone()
    po_logits[:10] = po_logits[:10].flip(1)  # change some predictions
    po = po_logits.softmax(1)
    targets = pb.argmax(1).clone()
    targets[50:] = (targets[50:] + 1) % 3
    names = ["cat", "dog", "eel"]
    res = compare_behavior(_ev(pb, targets), {"o": _ev(po, targets)}, class_names=names, bootstrap=300)["o"]
    agree = (pb.argmax(1) == po.argmax(1)).numpy()
    assert res.summary["agreement"]["value"] == pytest.approx(agree.mean())
    lo, hi = res.summary["agreement"]["ci"]
    assert lo < agree.mean() < hi
    # transition table: counts add up, ids point at the right instances
    assert sum(t["count"] for t in res.transitions) == 60
    for t in res.transitions:
        for i in t["ids"]:
            k = int(i[1:])
            assert (int(pb[k].argmax()), int(po[k].argmax())) == (t["base_index"], t["other_index"])
            assert t["base"] == names[t["base_index"]]
    # KL against a float64 reference
    p, q = pb.double().numpy(), po.double().numpy()
    ref = (p * (np.log(p) - np.log(q))).sum(1)
    np.testing.assert_allclose(res.per_instance["kl"], ref, rtol=1e-5, atol=1e-7)
    mb = np.sort(p, 1)[:, -1] - np.sort(p, 1)[:, -2]
    mo = np.sort(q, 1)[:, -1] - np.sort(q, 1)[:, -2]
    np.testing.assert_allclose(res.per_instance["margin_change"], mo - mb, rtol=1e-5, atol=1e-6)
    # per-group deltas by label (default grouping), counts and intervals
    by_group = {gr["group"]: gr for gr in res.groups}
    assert set(by_group) <= set(names) and sum(gr["count"] for gr in res.groups) == 60
    for label, gr in by_group.items():
        mask = np.array([names[int(t)] == label for t in targets])
        cb = (pb.argmax(1) == targets).numpy()[mask]
        co = (po.argmax(1) == targets).numpy()[mask]
        assert gr["accuracy_delta"]["value"] == pytest.approx(co.mean() - cb.mean())
        assert gr["accuracy_base"]["ci"][0] <= cb.mean() <= gr["accuracy_base"]["ci"][1]


def test_ids_are_matched_not_positions() -> None:
    pb = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    base = _ev(pb, None, ["a", "b", "c"])
    other = _ev(pb[[2, 0]], None, ["c", "a"])  # reordered, one missing
    res = compare_behavior(base, {"o": other})["o"]
    assert res.ids == ["a", "c"] and res.summary["agreement"]["value"] == 1.0
    assert res.missing["only_in_base"] == ["b"]
    np.testing.assert_allclose(res.per_instance["kl"], 0.0, atol=1e-12)


def test_causal_lm_tokens_and_generations() -> None:
    g = torch.Generator().manual_seed(1)
    n, t = 6, 5
    pred_b = torch.randint(0, 9, (n, t), generator=g)
    pred_o = pred_b.clone()
    pred_o[0, :2] = (pred_o[0, :2] + 1) % 9
    logp_b = -torch.rand(n, t, generator=g)
    logp_o = logp_b - 0.1
    gens_b = [{"prompt": "Hi", "text": " there you", "tokens": [1, 2, 3]}]
    gens_o = [{"prompt": "Hi", "text": " there me", "tokens": [1, 2, 4]}]
    eb = Evaluation([], [str(i) for i in range(n)], logp_b, pred_b, pred_b, {"generations": gens_b})
    eo = Evaluation([], [str(i) for i in range(n)], logp_o, pred_o, None, {"generations": gens_o})
    res = compare_behavior(
        eb, {"o": eo}, groupings={"half": {str(i): "a" if i < 3 else "b" for i in range(n)}}, bootstrap=200
    )["o"]
    assert res.task_kind == "causal_lm"
    assert res.summary["token_agreement"]["value"] == pytest.approx(1 - 2 / (n * t))
    assert res.summary["logp_change"]["value"] == pytest.approx(-0.1, abs=1e-6)
    assert res.per_instance["token_agree"].shape == (n, t)
    assert [gr["group"] for gr in res.groups] == ["a", "b"] and res.groups[1]["token_agreement"][
        "value"
    ] == 1.0
    assert res.generations[0]["base"] == " there you" and res.generations[0]["first_difference"] == 2


class _LMTask:
    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for i in range(0, len(self.tokens), batch_size):
            yield Batch(
                ids=[str(j) for j in range(i, min(i + batch_size, len(self.tokens)))],
                inputs=self.tokens[i : i + batch_size],
            )

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)

    to_device = staticmethod(Task.to_device)


def test_lm_token_divergence_against_reference() -> None:
    base = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    other = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    other.load_state_dict(base.state_dict())
    with torch.no_grad():
        other[1].weight.mul_(1.5)
    tokens = torch.randint(0, 11, (10, 7))
    out = lm_token_divergence(base, {"o": other}, _LMTask(tokens), instances=9, batch_size=4)["o"]
    assert out["kl"].shape == (9, 7) and out["ids"][-1] == "8"
    with torch.no_grad():
        lp = base(tokens[:9]).double().log_softmax(-1)
        lq = other(tokens[:9]).double().log_softmax(-1)
    ref = (lp.exp() * (lp - lq)).sum(-1).numpy()
    np.testing.assert_allclose(out["kl"], ref, rtol=1e-4, atol=1e-6)
    assert out["top1_agreement"] == pytest.approx(float((lp.argmax(-1) == lq.argmax(-1)).double().mean()))


def test_embeddings_compare_by_cosine() -> None:
    e = torch.randn(20, 8)
    o = e.clone()
    o[3] = -o[3]
    res = compare_behavior(
        Evaluation([], [str(i) for i in range(20)], e),
        {"o": Evaluation([], [str(i) for i in range(20)], o)},
        bootstrap=100,
    )["o"]
    assert res.task_kind == "embedding"
    assert res.per_instance["cosine"][3] == pytest.approx(-1.0) and res.per_instance["cosine"][
        0
    ] == pytest.approx(1.0)
    assert res.summary["cosine"]["value"] == pytest.approx(18 / 20, abs=1e-6)


def test_lm_tokens_entry_point_is_cached() -> None:
    from modelbonsai.compare import api
    from modelbonsai.compare.cache import MemoryCache

    base = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    other = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    task = _LMTask(torch.randint(0, 11, (5, 6)))
    cache = MemoryCache()
    first = api.lm_tokens(cache, "a", "b", base, other, task, task_key={}, instances=5)
    assert first.result.tensors["kl"].shape == (5, 6) and first.result.tensors["top1_agree"].dtype == np.bool_
    assert (first.result.tensors["kl"] >= 0).all() and first.result.meta["mean_kl"] > 0
    assert api.lm_tokens(
        cache, "a", "b", base, lambda: pytest.fail("loaded"), task, task_key={}, instances=5
    ).cache_hit
