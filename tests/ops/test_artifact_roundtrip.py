"""Every structural op's result survives save_artifact / load_artifact onto a fresh base model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from modelbonsai.artifacts.artifact import load_artifact, save_artifact
from modelbonsai.ops.registry import CompressedModel

CHAINS: list[list[tuple[str, dict[str, Any]]]] = [
    [("prune.structured", {"amount": 0.5})],
    [
        ("prune.magnitude", {"sparsity": 0.5}),
        ("prune.structured", {"amount": 0.25}),
        ("lowrank", {"rank": 2}),
    ],
    [
        ("lowrank", {"rank": 2}),
        ("prune.nm", {"exclude": ["conv1.weight", "*.second.weight"]}),
        ("cast", {"dtype": "bf16"}),
    ],
]


@pytest.mark.parametrize("which", ["cnn", "gpt2", "bert"])
@pytest.mark.parametrize("chain", range(len(CHAINS)))
def test_roundtrip(chain: int, which: str, request, tmp_path: Path, make_ctx, run_op) -> None:
    model = request.getfixturevalue(f"tiny_{which}")
    factory = request.getfixturevalue(f"tiny_{which}_factory")
    task = request.getfixturevalue(f"{which}_task")
    cm = CompressedModel(model)
    for name, params in CHAINS[chain]:
        if name == "prune.nm" and which != "cnn":
            params = {"exclude": "*.second.weight"}  # rank-2 factors have 2 inputs
        cm = run_op(name, cm, params, make_ctx(task=task))
    save_artifact(cm, tmp_path / "a")
    loaded = load_artifact(tmp_path / "a", factory)
    batch = next(task.training_batches(2, 0))
    if which == "cnn" and chain == 2:
        batch.inputs = batch.inputs.bfloat16()
    with torch.no_grad():
        assert torch.equal(task.forward(loaded.module.eval(), batch), task.forward(cm.module, batch))
    assert loaded.kept_indices == cm.kept_indices
    assert set(loaded.masks) == set(cm.masks)
    for n, m in cm.masks.items():
        assert torch.equal(loaded.masks[n].cpu(), m.cpu()), n
