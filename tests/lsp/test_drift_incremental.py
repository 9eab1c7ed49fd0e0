"""The drift pass (stale models, failed variants) is incremental: a run that stores N models,
each followed by a lineage request (what lineageChanged makes the client do), costs O(N) drift
work, not a pass over every model per stored model. Counted, and checked against a fresh pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbonsai.experiment import load_experiment
from modelbonsai.lsp.lineage import LineageCache
from modelbonsai.runner import RunEvent, Runner, make_plan
from modelbonsai.store import LineageStore
from support.workspace import experiment_head

from .workspace import make_workspace

N = 16  # variants: O(N²) would be ~N²/2 = 128 judgements, far over the bound below


def _experiment(n: int, ops_from: str | None = None) -> str:
    # a chain and a fan: each variant's parent is stored before it, children follow parents
    lines = [experiment_head(ops_from)]
    for i in range(n):
        parent = "base" if i % 2 == 0 else f"v{i - 1}"
        lines.append(
            f"  - name: v{i}\n    from: {parent}\n    ops:\n"
            f"      - prune.magnitude: {{sparsity: {0.05 + i * 0.05:.2f}}}\n"
        )
    return "".join(lines)


def _statuses(data: bytes) -> dict[str, tuple[str, str]]:
    return {m["id"]: (m["status"], m.get("statusReason", "")) for m in json.loads(data)["models"]}


def _run_watching(
    folder: Path, store: LineageStore, cache: LineageCache, ok: bool = True
) -> list[dict[str, tuple[str, str]]]:
    """Run the experiment, asking the cache for the lineage after every stored model."""
    seen: list[dict[str, tuple[str, str]]] = []

    def on_event(e: RunEvent) -> None:
        if e.kind in ("stored", "re-evaluated"):
            seen.append(_statuses(cache.get(folder).data))

    exp = load_experiment(folder / "exp.bonsai.yaml").experiment
    result = Runner(store, device="cpu", events=on_event).run(make_plan(exp, store))
    assert result.ok == ok, result.failed
    return seen


def _work(cache: LineageCache, folder: Path) -> int:
    return cache._drift[folder].judged + cache.overlay_dumps


def test_a_run_of_n_variants_costs_linear_drift_work(tmp_path: Path) -> None:
    make_workspace(tmp_path, _experiment(N))
    store = LineageStore.open(tmp_path)
    cache = LineageCache(lambda folder: store)
    try:
        cache.get(tmp_path)  # before the run: an empty store
        seen = _run_watching(tmp_path, store, cache)
        assert len(seen) == N + 1 and len(seen[-1]) == N + 1
        made = _work(cache, tmp_path)
        assert made <= 2 * (N + 1), f"{made} judgements for {N + 1} stored models"
        assert all(status == ("ok", "") for status in seen[-1].values())

        # the periodic full re-read (every 30 s while serving) finds nothing changed: no model is
        # judged or serialized again
        before = _work(cache, tmp_path)
        cache.refresh(tmp_path, full=True)
        cache.get(tmp_path)
        assert _work(cache, tmp_path) == before

        # Every model stale (another task option), then re-evaluated one by one: the
        # stale overlay of the others is kept, not judged and serialized again per change.
        exp = tmp_path / "exp.bonsai.yaml"
        exp.write_text(
            exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  hardness: 2")
        )
        before = _work(cache, tmp_path)
        stale = _statuses(cache.get(tmp_path).data)
        assert {s for s, _ in stale.values()} == {"stale"}
        seen = _run_watching(tmp_path, store, cache)
        assert [sum(s == "stale" for s, _ in step.values()) for step in seen] == list(range(N, -1, -1))
        spent = _work(cache, tmp_path) - before
        # each model: judged stale (file edit) and serialized once, judged again when re-evaluated
        assert spent <= 3 * (N + 1), f"{spent} judgements and serializations for {N + 1} re-evaluations"

        # the same answer as a fresh pass over the store
        fresh = LineageCache(lambda folder: store)
        assert fresh.get(tmp_path).data == cache.get(tmp_path).data
        fresh.close()
    finally:
        cache.close()
        store.close()


def test_incremental_statuses_match_a_fresh_pass_through_edits(tmp_path: Path) -> None:
    """A failed variant, stale by a changed parameter, a model with the new fingerprint, a deleted
    one: after each change the kept index answers what a fresh one does."""
    boom = "  - name: boom\n    from: v0\n    ops:\n      - test.explode: {why: fuse}\n"
    make_workspace(tmp_path, _experiment(4, ops_from="my_ops.py") + boom)
    store = LineageStore.open(tmp_path)
    cache = LineageCache(lambda folder: store)

    def check() -> dict[str, Any]:
        fresh = LineageCache(lambda folder: store)
        try:
            kept, new = _statuses(cache.get(tmp_path).data), _statuses(fresh.get(tmp_path).data)
        finally:
            fresh.close()
        assert kept == new
        return {m: s for m, (s, _) in kept.items()}

    try:
        _run_watching(tmp_path, store, cache, ok=False)
        assert check()["failed:exp.bonsai.yaml:boom"] == "failed"
        names = {m.id: m.name for m in store.list_models()}
        exp = tmp_path / "exp.bonsai.yaml"
        exp.write_text(
            exp.read_text().replace("test.explode: {why: fuse}", "prune.magnitude: {sparsity: 0.9}")
        )
        _run_watching(tmp_path, store, cache)  # makes boom: no longer failed
        assert set(check().values()) == {"ok"}
        names = {m.id: m.name for m in store.list_models()}
        exp.write_text(exp.read_text().replace("{sparsity: 0.10}", "{sparsity: 0.12}"))
        status = check()
        assert sorted(names[m] for m, s in status.items() if s == "stale") == ["v1"]
        _run_watching(tmp_path, store, cache)  # makes the new v1: the old one is no longer stale
        assert set(check().values()) == {"ok"}
        newest = max(store.list_models(), key=lambda m: m.created)
        store.delete_model(newest.id)  # gone again: the old v1 is stale again
        status = check()
        assert sorted(names[m] for m, s in status.items() if s == "stale") == ["v1"]
    finally:
        cache.close()
        store.close()
