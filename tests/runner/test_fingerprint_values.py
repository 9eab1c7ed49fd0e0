"""Fingerprints never change value (a changed value makes every stored model stale), and
computing them the way the language server's stale marks do imports no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

from modelbonsai import fingerprints, load, runner
from modelbonsai.ops.registry import get_op

# Computed on the code before fingerprints.py existed (runner.py and load.py held them).
PINNED_BASE = "bf8e7b421e2d936ff0bdcc2515816a1e"
PINNED_PLAN = "09cb3b3550ae1adef94575319ae06067"
PINNED_STEPS = [
    ("prune.magnitude", {"sparsity": 0.5}, "778f02e9f4a8ddb7121f45434cab9add"),
    (
        "quantize.weights",
        {"bits": 4, "granularity": "group", "group_size": 16},
        "ed7759a07980ee55db2e92132ebc0a81",
    ),
    ("lowrank", {"rank": 8}, "a0ac4fc0fea1a18db4fed2a194778c0f"),
    ("finetune", {"steps": 10}, "2aaeb4c10512cfc1eb79dfadab376006"),  # needs_task: the task is in the key
    ("restore", {"patterns": ["*.0.weight"]}, "30d288c5859bf44ed9f5cd6ab8dd8b60"),  # reads the origin
    ("cast", {"dtype": "fp16"}, "bb2e057ead0f22c8f181d0c893f89fe2"),
]
PINNED_EVAL = "fbb28c13b403ae0bf68b47b31dbb0044"


def _experiment(ws: Path) -> Any:
    # The weight files do not exist, so the base fingerprint depends on the spec alone.
    return NS(
        path=ws / "exp.bonsai.yaml",
        root=ws,
        seed=0,
        base=NS(name="toy", load="missing.safetensors", factory="arch.py:build", args=None, dtype=None),
        task=NS(
            kind="text-classification", options={"dataset": "x.csv", "batch_size": 8}, max_instances=None
        ),
    )


def test_fingerprints_keep_their_values() -> None:
    ws = Path("/nonexistent-bonsai-ws")
    exp = _experiment(ws)
    assert (
        fingerprints.base_fingerprint({"load": "missing.safetensors", "factory": "arch.py:build"}, ws)
        == PINNED_BASE
    )
    base = fingerprints.base_plan_fingerprint(exp, ws)
    assert base == PINNED_PLAN
    task = fingerprints.task_key(exp)
    fp = base
    for name, params, expected in PINNED_STEPS:
        op = get_op(name)
        assert op is not None
        fp = fingerprints.step_fingerprint(fp, op, op.resolve(dict(params)), 0, task, base)
        assert fp == expected, name
    assert fingerprints.evaluation_fingerprint(exp) == f"{PINNED_EVAL}:all"
    assert fingerprints.evaluation_fingerprint(exp, 64) == f"{PINNED_EVAL}:64"


def test_runner_and_load_reexport_the_same_functions() -> None:
    for name in (
        "BASE",
        "base_plan_fingerprint",
        "step_fingerprint",
        "task_key",
        "evaluation_fingerprint",
        "same_evaluation",
        "evaluation_change",
        "evaluated_fingerprint",
        "evaluation_limit",
    ):
        assert getattr(runner, name) is getattr(fingerprints, name), name
    assert load.base_fingerprint is fingerprints.base_fingerprint


EXPERIMENT = textwrap.dedent(
    """
    base:
      name: toy
      load: model.safetensors
      factory: arch.py:build
    variants:
      - name: prune-50
        ops:
          - prune.magnitude: {sparsity: 0.5}
      - name: int4
        from: prune-50
        ops:
          - quantize.weights: {bits: 4}
          - lowrank: {rank: 4}
          - prune.structured: {amount: 0.25}
          - cast: {dtype: fp16}
          - restore: {patterns: ["*.bias"]}
          - quantize.dynamic: {}
    """
)


def test_stale_marks_parse_and_fingerprint_without_torch(tmp_path: Path) -> None:
    """What lsp/drift.py does for a lineage reply (parse, resolve every built-in op's params,
    fingerprint each step) in a fresh process: torch is never imported, and the fingerprints are
    those of the runner in this (torch-importing) process. No `task:` (so no op that needs one):
    validating a task still asks the tasks package (experiment/taskinfo.py), which imports torch;
    registering those ops does not (checked here too)."""
    (tmp_path / "exp.bonsai.yaml").write_text(EXPERIMENT)
    (tmp_path / "arch.py").write_text("def build(): ...\n")  # parsing checks it exists; nothing runs it
    (tmp_path / "model.safetensors").write_bytes(b"")
    code = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from modelbonsai.lsp import drift
        ws = Path(sys.argv[1])
        p = drift.parsed(ws / "exp.bonsai.yaml", ws)
        from modelbonsai.ops.registry import all_ops  # every built-in op registered, task ops too
        assert {"finetune", "bn.recalibrate", "quantize.calibrated"} <= {op.name for op in all_ops()}
        out = {"finals": {k: f.fingerprint for k, f in p.finals.items()}, "base": p.base_fp,
               "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}
        print(json.dumps(out))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BONSAI_DEBUG": ""},
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["torch"] == [], out["torch"]
    assert out["base"] is not None and set(out["finals"]) == {"toy", "prune-50", "int4"}
    assert all(fp is not None for fp in out["finals"].values()), out["finals"]

    from modelbonsai.experiment import load_experiment

    exp = load_experiment(tmp_path / "exp.bonsai.yaml").experiment
    base = runner.base_plan_fingerprint(exp, tmp_path)
    assert out["base"] == base
    fp = base
    prune = get_op("prune.magnitude")
    assert prune is not None
    fp = runner.step_fingerprint(
        base, prune, prune.resolve({"sparsity": 0.5}), int(exp.seed), runner.task_key(exp)
    )
    assert out["finals"]["prune-50"] == fp
