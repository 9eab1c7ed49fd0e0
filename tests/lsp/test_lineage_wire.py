"""The `bonsai/lineage` reply carries each metric's definition once (a top-level `metrics` table)
and per model only values by key: smaller, and lossless (expanding it gives every model's
metrics with their definitions back)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.bench_lineage_bytes import measure
from modelbonsai.lsp import protocol as P
from modelbonsai.lsp.lineage import LineageCache, MetricTable
from modelbonsai.store import LineageStore, MetricRecord, ModelRecord
from modelbonsai.tasks.base import Metric


def test_reply_is_under_half_the_bytes_per_model_of_repeating_definitions(tmp_path: Path) -> None:
    out = measure(tmp_path, 30)
    assert out["models"] == 30 and out["metrics_per_model"] >= 10  # what a real run records
    assert out["bytes_per_model_after"] <= 0.5 * out["bytes_per_model_before"], out


def test_reply_expands_to_every_models_metrics_with_definitions(tmp_path: Path) -> None:
    store = LineageStore.open(tmp_path)

    def write(folder: Path) -> None:
        (folder / "manifest.json").write_text('{"tensors": {}}')

    def add(name: str, parent: str | None, metrics: list[Metric]) -> str:
        return store.add_model(ModelRecord(name=name, parent_id=parent), write, metrics=metrics).id

    base = add(
        "base", None, [Metric("accuracy", 0.9, "", True, True), Metric("stored_size", 1000, "B", False, True)]
    )
    # another task's "score" means something else: both definitions survive under their own keys
    a = add(
        "a",
        base,
        [
            Metric("score", 2.0, "ms", False, False),
            Metric("accuracy", 0.8, "", True, True),
            Metric("latency", float("nan"), "ms", False, True),
        ],
    )
    b = add("b", base, [Metric("score", 0.5, "", True, True)])
    cache = LineageCache(lambda folder: store)
    try:
        reply = json.loads(cache.get(tmp_path).data)
        P.check(reply, P.LineageResult, "result")
        assert reply["metrics"]["accuracy"] == {
            "name": "accuracy",
            "unit": "",
            "higherIsBetter": True,
            "headline": True,
        }
        models = {m["id"]: m for m in reply["models"]}
        assert models[base]["metrics"] == {"accuracy": 0.9, "stored_size": 1000.0}
        assert models[a]["metrics"] == {"score": 2.0, "accuracy": 0.8}, "NaN left out (JSON has none)"
        assert models[b]["metrics"] == {"score#2": 0.5}
        for mid in (base, a, b):
            expanded = [
                (m["name"], m["value"], m["unit"], m["higherIsBetter"], m["headline"])
                for m in P.model_metrics(models[mid], reply["metrics"])
            ]
            stored = [
                (m.name, m.value, m.unit, m.higher_is_better, m.headline)
                for m in store.metrics(mid)
                if m.value == m.value
            ]
            assert expanded == stored, mid

        # keys stay valid as the store changes: an unchanged model's fragment is reused as is
        before = cache.get(tmp_path)
        add("c", a, [Metric("score", 3.0, "ms", False, False)])
        after = cache.get(tmp_path)
        assert after.parts[a] is before.parts[a]
        assert {m["name"]: m["metrics"] for m in after.models}["c"] == {"score": 3.0}
    finally:
        cache.close()
        store.close()


def test_metric_table_keys_are_stable_and_unique() -> None:
    table = MetricTable()
    score = MetricRecord("score", 1.0, "", True, True)
    assert table.key(score) == "score"
    assert table.key(MetricRecord("score", 1.0, "ms", False, False)) == "score#2"
    assert (
        table.key(MetricRecord("score#2", 1.0, "", True, False)) == "score#2#2"
    )  # a name that looks like a key
    assert table.key(score) == "score"
    defs, text = table.snapshot()
    assert json.loads(text) == defs and set(defs) == {"score", "score#2", "score#2#2"}
