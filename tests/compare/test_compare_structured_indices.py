"""Structured-pruned tensors in the weights result name the kept and removed base indices."""

from __future__ import annotations

import torch
from torch import nn

from modelbonsai import wire
from modelbonsai.compare.sources import ModuleSource
from modelbonsai.compare.weights import compare_weights


def test_kept_and_removed_indices_per_dim_on_the_wire() -> None:
    base = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))
    keep = [0, 2, 3, 7, 9]
    pruned = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    with torch.no_grad():
        pruned[0].weight.copy_(base[0].weight[keep])
        pruned[0].bias.copy_(base[0].bias[keep])
        pruned[2].weight.copy_(base[2].weight[:, keep])
        pruned[2].bias.copy_(base[2].bias)
    kept = {"0.weight": {0: keep}, "0.bias": {0: keep}, "2.weight": {1: keep}}
    res = compare_weights(ModuleSource(base), {"p": ModuleSource(pruned)}, kept_indices={"p": kept})["p"]
    kind, meta, tensors = res.wire()
    back = wire.decode_result(wire.encode_result(kind, meta, tensors))
    by_name = {t["name"]: t for t in back.meta["tensors"]}
    assert by_name["0.weight"]["removed"] == {"0": 5}
    assert by_name["0.weight"]["kept_indices"] == {"0": [0, 2, 3, 7, 9]}
    assert by_name["0.weight"]["removed_indices"] == {"0": [1, 4, 5, 6, 8]}
    assert by_name["0.bias"]["removed_indices"] == {"0": [1, 4, 5, 6, 8]}
    assert by_name["2.weight"]["removed"] == {"1": 5}
    assert by_name["2.weight"]["removed_indices"] == {"1": [1, 4, 5, 6, 8]}
    # an unpruned tensor carries none of these fields
    assert "removed_indices" not in by_name["2.bias"] and "kept_indices" not in by_name["2.bias"]
