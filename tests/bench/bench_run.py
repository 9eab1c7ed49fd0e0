"""Where a `bonsai run` spends its time, per variant: op, evaluation, measurement, write.

Runs a representative subset of the MiniLM sample's variants (samples/minilm/minilm.bonsai.yaml,
200 sentences, on the CPU) in a fresh store: the base; `layer-all-0.1` (per-layer magnitude
pruning of every tensor); `layer-all-0.1-restore-ln` (that model, then LayerNorm restored: a
second step on a stored parent); `layer-nonorm-0.1`; `global-all-0.1` (global ranking). The
sweep's other sparsities repeat these steps with another number, and the `-kd` variants add 60
fine-tuning steps to the op, which only lowers the overhead's share, so they are left out to
keep the bench a few minutes long on two cores.

Each step's wall time is split by timing the runner's parts where they are (wrappers around
the class's methods, exclusive of what they call of each other):

- ``op``: the op's function (the registry's `OpDef.fn`);
- ``evaluation``: the task's evaluation (`Runner._evaluate`) and the reference it is compared
  with (`Runner._reference`);
- ``measurement``: efficiency metrics, latency and memory (`Runner._efficiency`);
- ``write``: the artifact, the outputs and the row (`LineageStore.add_model`, less the
  measurement it calls for the stored size);
- ``load``: a stored parent read back (`Runner._load`) or the base loaded;
- ``other``: the rest of the step (copying the parent, bookkeeping).

Target: per variant and in total, total <= 1.3 x (op + evaluation). The base's step has no op:
loading it is what makes it, so its `load` counts as its op (a variant's parent comes from
memory, or its `load` is overhead). Prints one JSON object as
its last line (`figures`: name, value, target, ok) and exits 1 when a target is missed.

Usage: python tests/bench/bench_run.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "minilm"
TARGET = 1.3
VARIANTS = ("layer-all-0.1", "layer-all-0.1-restore-ln", "layer-nonorm-0.1", "global-all-0.1")
PHASES = ("op", "evaluation", "measurement", "write", "load", "other")
BASE = "all-MiniLM-L6-v2"

EXPERIMENT = """\
seed: 0
base:
  name: all-MiniLM-L6-v2
  load: {root}/model
task:
  kind: sentence-embedding
  data: {root}/data/sentences.jsonl
  tokenizer: {root}/model
  max_instances: 200
variants:
  - name: layer-all-0.1
    ops:
      - prune.magnitude: {{sparsity: 0.1, scope: layer, include: ["*"]}}
  - name: layer-all-0.1-restore-ln
    ops:
      - prune.magnitude: {{sparsity: 0.1, scope: layer, include: ["*"]}}
      - restore: {{patterns: ["*LayerNorm*"]}}
  - name: layer-nonorm-0.1
    ops:
      - prune.magnitude: {{sparsity: 0.1, scope: layer, include: ["*"], exclude: ["*LayerNorm*"]}}
  - name: global-all-0.1
    ops:
      - prune.magnitude: {{sparsity: 0.1, scope: global, include: ["*"]}}
"""


class Phases:
    """Exclusive wall time per phase and step: a phase timed inside another is taken out of the
    outer one (the stored-size measurement inside the write)."""

    def __init__(self) -> None:
        self.step = ""
        self.times: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._stack: list[list[Any]] = []  # [phase, start, time of inner phases]
        self._thread = threading.get_ident()

    def wrap(self, phase: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self._thread:
                return fn(*args, **kwargs)
            frame = [phase, time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                spent = time.perf_counter() - frame[1]
                self.times[self.step][phase] += spent - frame[2]
                if self._stack:
                    self._stack[-1][2] += spent

        return timed


def instrument(ph: Phases) -> None:
    from modelbonsai import runner
    from modelbonsai.ops import registry
    from modelbonsai.store import LineageStore

    R = runner.Runner
    R._evaluate = ph.wrap("evaluation", R._evaluate)  # type: ignore[method-assign]
    R._reference = ph.wrap("evaluation", R._reference)  # type: ignore[method-assign]
    R._efficiency = ph.wrap("measurement", R._efficiency)  # type: ignore[method-assign]
    R._load = ph.wrap("load", R._load)  # type: ignore[method-assign]
    runner.load_base = ph.wrap("load", runner.load_base)
    LineageStore.add_model = ph.wrap("write", LineageStore.add_model)  # type: ignore[method-assign]
    make = R._make

    def step(self: Any, plan: Any, st: Any, *args: Any, **kwargs: Any) -> Any:
        ph.step = st.name
        t = time.perf_counter()
        try:
            return make(self, plan, st, *args, **kwargs)
        finally:
            ph.times[st.name]["total"] += time.perf_counter() - t

    R._make = step  # type: ignore[method-assign]
    import modelbonsai.ops.builtin  # noqa: F401  (every op registered before wrapping)

    for op in registry.all_ops():
        object.__setattr__(op, "fn", ph.wrap("op", op.fn))


def sample_folder(tmp: Path) -> Path:
    """The MiniLM sample's folder (model/ and data/): the repository's once prepared (`make demo`),
    else made here by its prepare.py (from the installed package: nothing is downloaded)."""
    if (SAMPLE / "model" / "model.safetensors").is_file() and (SAMPLE / "data" / "sentences.jsonl").is_file():
        return SAMPLE
    out = tmp / "minilm"
    subprocess.run(
        [sys.executable, str(SAMPLE / "prepare.py"), "--out", str(out)], check=True, capture_output=True
    )
    return out


def main() -> int:
    ph = Phases()
    instrument(ph)
    import torch

    from modelbonsai.experiment import load_experiment
    from modelbonsai.runner import Runner, make_plan
    from modelbonsai.store import LineageStore

    with tempfile.TemporaryDirectory(
        prefix="bonsai-bench-run-", dir=os.environ.get("BONSAI_BENCH_TMP")
    ) as tmp:
        ws = Path(tmp)
        exp_file = ws / "minilm.bonsai.yaml"
        exp_file.write_text(EXPERIMENT.format(root=sample_folder(ws).as_posix()))
        parsed = load_experiment(exp_file)
        assert parsed.experiment is not None, [p.message for p in parsed.errors]
        store = LineageStore.open(ws)
        plan = make_plan(parsed.experiment, store)
        t0 = time.perf_counter()
        result = Runner(store, device="cpu").run(plan)
        run_s = time.perf_counter() - t0
        store.close()
        shutil.rmtree(ws / ".bonsai", ignore_errors=True)
    if result.status != "done" or result.failed:
        print(f"the run failed: {result.status} {result.failed}", file=sys.stderr)
        return 1

    steps: dict[str, dict[str, float]] = {}
    for name, t in ph.times.items():
        row = {p: round(t.get(p, 0.0), 3) for p in PHASES if p != "other"}
        row["other"] = round(t["total"] - sum(row.values()), 3)
        row["total"] = round(t["total"], 3)
        core = row["op"] + row["evaluation"] + (row["load"] if name == BASE else 0.0)
        row["ratio_to_op_eval"] = round(row["total"] / core, 3) if core > 0 else None  # type: ignore[assignment]
        steps[name] = row
        print(f"{name}: {json.dumps(row)}", file=sys.stderr)
    total = sum(r["total"] for r in steps.values())
    core = sum(r["op"] + r["evaluation"] + (r["load"] if name == BASE else 0.0) for name, r in steps.items())
    figures = [
        {"name": f"{name} total / (op + evaluation)", "value": r["ratio_to_op_eval"], "target": TARGET,
         "ok": r["ratio_to_op_eval"] is not None and r["ratio_to_op_eval"] <= TARGET}
        for name, r in steps.items()
    ]  # fmt: skip
    overall = round(total / core, 3) if core > 0 else None
    figures.append(
        {"name": "run total / (op + evaluation)", "value": overall, "target": TARGET,
         "ok": overall is not None and overall <= TARGET}
    )  # fmt: skip
    missed = [f["name"] for f in figures if not f["ok"]]
    for name in missed:
        print(f"MISSED: {name}", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "run",
                "load_average": os.getloadavg()[0],
                "torch_threads": torch.get_num_threads(),
                "variants": list(VARIANTS),
                "run_s": round(run_s, 2),
                "steps": steps,
                "figures": figures,
                "missed": missed,
                "ok": not missed,
            }
        )
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
