"""Every non-quantization op runs on the tiny CNN and the tiny transformers, and is documented."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from modelbonsai.ops.registry import CompressedModel, OpError, get_op

OPS: dict[str, dict[str, Any]] = {
    "prune.magnitude": {"sparsity": 0.5},
    "prune.random": {"sparsity": 0.5},
    "prune.taylor": {"sparsity": 0.5, "batches": 2, "batch_size": 4},
    "prune.nm": {},
    "prune.structured": {"amount": 0.25},
    "lowrank": {"rank": 2},
    "restore": {"patterns": ["*.bias"]},
    "cast": {"dtype": "bf16"},
    "bn.recalibrate": {"batches": 2, "batch_size": 4},
    "finetune": {"steps": 2, "batch_size": 4},
}


@pytest.mark.parametrize("which", ["cnn", "gpt2", "bert"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_runs(name, which, request, make_ctx, run_op) -> None:
    model = request.getfixturevalue(f"tiny_{which}")
    task = request.getfixturevalue(f"{which}_task")
    parent = CompressedModel(copy.deepcopy(model))
    ctx = make_ctx(task=task, parent=parent)
    params = dict(OPS[name])
    if name == "prune.nm" and which == "cnn":
        params["exclude"] = "conv1.weight"  # 3 input channels: not divisible by 4
    if name == "bn.recalibrate" and which != "cnn":
        with pytest.raises(OpError, match="no BatchNorm"):
            run_op(name, CompressedModel(model), params, ctx)
        return
    cm = run_op(name, CompressedModel(model), params, ctx)
    batch = next(task.training_batches(2, 0))
    with torch.no_grad():
        if name == "cast":
            batch.inputs = batch.inputs.bfloat16() if which == "cnn" else batch.inputs
        out = task.forward(cm.module, batch)
    assert torch.isfinite(out).all()


def test_parent_is_never_touched(tiny_cnn, cnn_task, make_ctx, run_op) -> None:
    parent = CompressedModel(copy.deepcopy(tiny_cnn))
    snapshot = {k: v.clone() for k, v in parent.module.state_dict().items()}
    ctx = make_ctx(task=cnn_task, parent=parent)
    cm = CompressedModel(tiny_cnn)
    for name in ("prune.magnitude", "prune.structured", "restore", "finetune"):
        run_op(name, cm, {**OPS[name], **({"patterns": "fc2.bias"} if name == "restore" else {})}, ctx)
    assert all(torch.equal(v, snapshot[k]) for k, v in parent.module.state_dict().items())


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_is_documented(name) -> None:
    op = get_op(name)
    assert op is not None and len(op.doc) > 150 and op.summary
    for p in op.params:
        assert p.doc, f"{name}.{p.name} has no doc"
        if p.type in ("int", "float"):
            assert p.minimum is not None and p.maximum is not None, f"{name}.{p.name} has no range"
    md = op.markdown()
    # Markdown: no paragraph indented into a code block, every parameter on its own line
    assert not [line for line in md.splitlines() if line.startswith("    ")], md
    assert all(f"- `{p.name}` (" in md for p in op.params)
