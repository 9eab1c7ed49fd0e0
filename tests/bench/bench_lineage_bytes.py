"""Bytes per model of a `bonsai/lineage` reply on a 30-model store: the reply as sent (metric
definitions once per reply, values per model) against the shape sent before (every metric's
name, unit, direction and headline flag repeated in every model).

The store is made by a real run (the toy workspace of the tests: an MLP, a synthetic task, 29
variants), so each model carries the metrics a run records (task metrics, latency, memory,
sizes). "Before" is the same reply with each model's metrics expanded back to the old per-model
list. The last line printed is one JSON object.

    .venv/bin/python tests/bench/bench_lineage_bytes.py [--models 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared toy workspace

from modelbonsai.experiment import load_experiment
from modelbonsai.lsp.lineage import LineageCache
from modelbonsai.lsp.protocol import model_metrics
from modelbonsai.runner import Runner, make_plan
from modelbonsai.store import LineageStore
from support.workspace import EXPERIMENT_HEAD, write_workspace


def experiment(n_variants: int) -> str:
    out = [EXPERIMENT_HEAD]
    for i in range(n_variants):
        out.append(
            f"  - name: prune-{i}\n    from: base\n    ops:\n"
            f"      - prune.magnitude: {{sparsity: {0.02 + 0.03 * i:.2f}}}\n"
        )
    return "".join(out)


def old_shape(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply as the server sent it before: per model, a list of full metric records."""
    models = [{**m, "metrics": model_metrics(m, reply["metrics"])} for m in reply["models"]]
    return {"folder": reply["folder"], "models": models}


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def measure(folder: Path, n_models: int) -> dict[str, Any]:
    write_workspace(folder, experiment(n_models - 1), "")
    with LineageStore.open(folder) as store:
        exp = load_experiment(folder / "exp.bonsai.yaml").experiment
        result = Runner(store, device="cpu").run(make_plan(exp, store))
        assert result.ok, result.failed
        cache = LineageCache(lambda _folder: store)
        try:
            data = cache.get(folder).data  # the reply's bytes, exactly as the server writes them
        finally:
            cache.close()
    reply = json.loads(data)
    n = len(reply["models"])
    before = len(compact(old_shape(reply)))
    return {
        "bench": "lineage_reply_bytes",
        "models": n,
        "metrics_per_model": round(sum(len(m["metrics"]) for m in reply["models"]) / n, 1),
        "bytes_per_model_before": round(before / n),
        "bytes_per_model_after": round(len(data) / n),
        "reply_bytes_before": before,
        "reply_bytes_after": len(data),
        "ratio": round(len(data) / before, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=30, help="models in the store (base included)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bonsai-lineage-bytes-") as tmp:
        print(json.dumps(measure(Path(tmp), args.models)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
