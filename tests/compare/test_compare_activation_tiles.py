"""Activation tiles through the one tiles entry point: instance sets, differences, alignment."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai.compare import api
from modelbonsai.compare.cache import MemoryCache
from modelbonsai.compare.control import CompareError
from modelbonsai.compare.sources import ModuleSource
from modelbonsai.compare.tensors import activation_tensors, align_channels, resolve_level, tiles
from modelbonsai.tasks.base import Batch
from support.tasks import TensorTask as _Task


def _models() -> tuple[nn.Module, nn.Module, _Task]:
    """base: y = [x0, x1, x0 + x1]; pruned keeps channels 0 and 2, channel 0 doubled."""
    base = nn.Sequential(nn.Linear(2, 3, bias=False))
    pruned = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        base[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        pruned[0].weight.copy_(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    return base, pruned, _Task(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]))


def test_activation_tensors_stack_instances_in_the_order_given_across_batches() -> None:
    base, _, task = _models()
    t = activation_tensors(base, task, ["i3", "i0"], "0", batch_size=2)
    assert torch.equal(t, torch.tensor([[7.0, 8.0, 15.0], [1.0, 2.0, 3.0]]))
    with pytest.raises(CompareError, match="'i9' is not in the task"):
        activation_tensors(base, task, ["i0", "i9"], "0")
    with pytest.raises(CompareError, match="repeat"):
        activation_tensors(base, task, ["i0", "i0"], "0")
    with pytest.raises(CompareError, match="no module 'nope'"):
        activation_tensors(base, task, ["i0"], "nope")


def test_tensor_tiles_activation_source_with_difference_and_kept_channels() -> None:
    base, pruned, task = _models()
    cache = MemoryCache()
    out = api.tensor_tiles(cache, "p", "0", 0, source="activation", model=pruned, task=task, task_key={"t": 1},
                           instances=["i3", "i0"], minus=("b", base), kept_indices={0: [0, 2]}, tile=8)  # fmt: skip
    np.testing.assert_array_equal(out.result.tensors["L0_0_0_mean"], [[7.0, 0.0], [1.0, 0.0]])
    meta = out.result.meta
    assert meta["source"] == "activation" and meta["instances"] == ["i3", "i0"] and meta["shape"] == [2, 2]
    assert meta["models"] == {"model": "p", "minus": "b"} and meta["range"]["max"] == 7.0
    # the same pyramid as weights: at tile 1 the 2x2 matrix has a level 1, the coarsest (-1)
    top = api.tensor_tiles(None, "p", "0", -1, source="activation", model=pruned, task=task, task_key={"t": 1},
                           instances=["i3", "i0"], minus=("b", base), kept_indices={0: [0, 2]}, tile=1)  # fmt: skip
    assert top.result.meta["level"] == 1 and top.result.meta["levels"] == 1
    assert top.result.tensors["L1_0_0_mean"].tolist() == [[2.0]] and top.result.tensors[
        "L1_0_0_maxabs"
    ].tolist() == [[7.0]]
    # cached by instance set: a hit loads nothing
    fail = lambda: pytest.fail("loaded")  # noqa: E731
    hit = api.tensor_tiles(cache, "p", "0", 0, source="activation", model=fail, task=fail, task_key={"t": 1},
                           instances=["i3", "i0"], minus=("b", fail), kept_indices={0: [0, 2]}, tile=8)  # fmt: skip
    assert hit.cache_hit
    # one instance (a string) keeps the old layout: the batch dim removed
    one = api.tensor_tiles(
        None, "b", "0", 0, source="activation", model=base, task=task, task_key={}, instances="i1", tile=8
    )
    assert one.result.meta["instance"] == "i1" and one.result.tensors["L0_0_0_mean"].tolist() == [
        [3.0, 4.0, 7.0]
    ]


def test_tensor_tiles_weight_source_and_user_mistakes() -> None:
    base, _, task = _models()
    w = api.tensor_tiles(None, "b", "0.weight", 0, source="weight", weights=ModuleSource(base), tile=8)
    assert (
        w.result.meta["name"] == "0.weight" and "source" not in w.result.meta
    )  # weight tiles keep their meta
    np.testing.assert_array_equal(w.result.tensors["L0_0_0_mean"], base[0].weight.detach().numpy())
    with pytest.raises(CompareError, match="unknown tiles source 'grad'"):
        api.tensor_tiles(None, "b", "0", 0, source="grad")
    with pytest.raises(CompareError, match="instances"):
        api.tensor_tiles(None, "b", "0", 0, source="activation", model=base, task=task, instances=[])
    with pytest.raises(CompareError, match="model and its task"):
        api.tensor_tiles(None, "b", "0", 0, source="activation", instances=["i0"])
    with pytest.raises(CompareError, match="weights="):
        api.tensor_tiles(None, "b", "0.weight", 0)


def test_negative_levels_count_from_the_coarsest() -> None:
    shape = (37, 53)  # tile 8: levels 0..3
    assert [resolve_level(shape, lv, 8) for lv in (-1, -2, -4, 0, 3)] == [3, 2, 0, 0, 3]
    with pytest.raises(CompareError, match="level -5"):
        resolve_level(shape, -5, 8)
    (only,) = tiles(torch.ones(37, 53), -1, tile=8)
    assert only.level == 3 and only.mean.shape == (5, 7)


def test_align_channels_picks_the_channel_dim() -> None:
    conv = torch.arange(2 * 4 * 1 * 1, dtype=torch.float32).reshape(2, 4, 1, 1)  # [instances, C, H, W]
    assert align_channels(conv, [1, 3], stacked=True).flatten().tolist() == [1.0, 3.0, 5.0, 7.0]
    assert align_channels(conv[0], [0, 2], stacked=False).flatten().tolist() == [0.0, 2.0]
    seq = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # [instances, tokens, features]
    assert align_channels(seq, [3], stacked=True).shape == (2, 3, 1)
    assert align_channels(seq[0], [3], stacked=False).flatten().tolist() == [3.0, 7.0, 11.0]
    with pytest.raises(CompareError, match="outside"):
        align_channels(seq, [4], stacked=True)


def test_instances_of_different_lengths_are_zero_padded_to_the_longest() -> None:
    from modelbonsai.compare.tensors import stack_padded

    a, b = torch.ones(3, 2), 2 * torch.ones(5, 2)
    t = stack_padded([a, b], "enc")
    assert t.shape == (2, 5, 2)
    assert torch.equal(t[0, :3], a) and torch.equal(t[0, 3:], torch.zeros(2, 2)) and torch.equal(t[1], b)
    with pytest.raises(CompareError, match="different shapes"):
        stack_padded([torch.ones(3, 2), torch.ones(3, 4)], "enc")


class _Ragged(_Task):
    """Text-like batches: each batch padded to its own length ([B, T, 2], T = 2 then 3)."""

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        yield Batch(ids=["i0", "i1"], inputs=torch.ones(2, 2, 2))
        yield Batch(ids=["i2"], inputs=torch.ones(1, 3, 2))


def test_activation_tiles_of_instances_padded_differently_say_their_lengths() -> None:
    base, _, _ = _models()
    task = _Ragged(torch.zeros(0))
    out = api.tensor_tiles(None, "b", "0", 0, source="activation", model=base, task=task, task_key={},
                           instances=["i2", "i0"], tile=16)  # fmt: skip
    assert out.result.meta["shape"] == [2, 3, 3] and out.result.meta["lengths"] == [3, 2]
    row0, row1 = out.result.tensors["L0_0_0_mean"].tolist()
    assert row0 == [1.0, 1.0, 2.0] * 3 and row1 == [1.0, 1.0, 2.0] * 2 + [0.0, 0.0, 0.0]
