"""drift.py in process: fingerprints as the runner plans them, without ever importing user code."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbonsai.experiment import load_experiment
from modelbonsai.lsp.drift import DriftIndex, Statuses, parsed
from modelbonsai.lsp.protocol import ModelInfo
from modelbonsai.ops import registry
from modelbonsai.runner import evaluation_fingerprint, make_plan
from modelbonsai.store import LineageStore, ModelRecord

from .workspace import EXPERIMENT, make_workspace


def statuses(store: LineageStore, limit: int | None = None) -> Statuses:
    """The statuses of the store's models in one go (a fresh index judging for `limit`), each
    shown as the lineage would show it before the overlay."""
    infos = {m.id: _info(m.id, m.name, m.op, m.params) for m in store.list_models()}
    return DriftIndex(store.workspace, limit).update(_parts(infos), store._query)


def _store(
    store: LineageStore,
    mid: str,
    name: str,
    parent: str | None,
    op: str | None,
    params: dict[str, Any],
    fingerprint: str,
    created: float = 0.0,
    eval_fingerprint: str | None = None,
) -> None:
    """A model as a run of exp.bonsai.yaml records it (an empty artifact: only the row is judged);
    `created` 0: now."""
    store.add_model(
        ModelRecord(
            name,
            id=mid,
            parent_id=parent,
            op=op,
            params=params,
            created=created,
            seed=3,
            experiment_file="exp.bonsai.yaml",
            variant=None if parent is None else name,
            fingerprint=fingerprint,
            eval_fingerprint=eval_fingerprint,
        ),
        lambda folder: None,
    )


USER = (
    EXPERIMENT
    + """\
  - name: custom
    from: prune-50
    ops:
      - user.op: {}
"""
)

# Importing this file leaves a mark: the lineage must never do it.
MARKING_OPS = textwrap.dedent(
    """
    from pathlib import Path
    from modelbonsai.ops.registry import register_op

    Path(__file__).with_name("imported.txt").write_text("user code ran")

    @register_op("user.op", family="test", summary="identity", source="user", params=[])
    def user_op(cm, params, ctx):
        return cm
    """
)


def _info(mid: str, name: str, op: str | None, params: dict) -> ModelInfo:
    return {
        "id": mid,
        "name": name,
        "parent": None,
        "op": op,
        "params": params,
        "status": "ok",
        "metrics": {},
        "created": "2026-01-01T00:00:00+00:00",
    }


def _parts(infos: dict[str, ModelInfo]) -> dict[str, tuple[ModelInfo, str]]:
    return {mid: (info, json.dumps(info)) for mid, info in infos.items()}


@pytest.fixture
def ops_restored() -> Iterator[None]:
    """The op registry as it was before the test: the runner's plans import the workspace's ops
    files, and a later test would see their ops (`user.op` became the near miss a diagnostic in
    test_experiment_errors suggests)."""
    registry._ensure_builtins()
    before = dict(registry._OPS)
    yield
    registry._OPS.clear()
    registry._OPS.update(before)


def test_fingerprints_match_the_runner_and_user_code_is_never_imported(
    tmp_path: Path, ops_restored: None
) -> None:
    exp = make_workspace(tmp_path, USER)
    (tmp_path / "my_ops.py").write_text(MARKING_OPS)
    p = parsed(exp, tmp_path)
    with LineageStore.open(tmp_path) as store:
        # the base as the file defines it, evaluated as a run would: current
        _store(
            store,
            "b",
            "toy",
            None,
            None,
            {},
            p.finals["toy"].fingerprint or "",
            1.0,
            evaluation_fingerprint(p.experiment),
        )
        _store(
            store,
            "p",
            "prune-50",
            "b",
            "prune.magnitude",
            {**p.finals["prune-50"].params, "sparsity": 0.4},
            "old-fp",
            2.0,
        )
        _store(store, "c", "custom", "p", "user.op", {}, "whatever", 3.0)
        run = store.start_run("exp.bonsai.yaml", ["int8", "gone"])  # started after the models above
        store.finish_run(run.id, "failed", failures={"int8": "boom", "gone": "x"})
        found = statuses(store)
        assert not (tmp_path / "imported.txt").exists(), "the lineage imported the workspace's ops_from file"

        # prune-50 was made with sparsity 0.4: stale, saying which parameter; a user op is never judged
        assert set(found.stale) == {"p"}
        assert found.stale["p"].endswith("(parameter sparsity: 0.4 is now 0.5)")
        assert p.finals["custom"].fingerprint is None
        # int8 failed in the latest run and was not made since; "gone" is no longer in the file
        (failed,) = found.failed
        assert failed["id"] == "failed:exp.bonsai.yaml:int8" and failed["status"] == "failed"
        assert (
            failed["statusReason"] == "boom"
            and failed["parent"] == "p"
            and failed["op"] == "quantize.weights"
        )
        assert failed["params"]["bits"] == 8
        # a later model of the variant clears it
        _store(store, "i", "int8", "p", "quantize.weights", {}, "fp")
        assert statuses(store).failed == []

        # The same fingerprints as the runner's own plan (which does import the user ops: last).
        plan = make_plan(load_experiment(exp).experiment, store)
    for name in ("toy", "prune-50", "int8"):
        assert p.finals[name].fingerprint == plan.step(name).fingerprint, name
    assert (tmp_path / "imported.txt").exists(), "the check above was able to see an import"


def test_parse_is_reused_until_the_file_changes(tmp_path: Path) -> None:
    exp = make_workspace(tmp_path)
    first = parsed(exp, tmp_path)
    assert parsed(exp, tmp_path).experiment is first.experiment
    exp.write_text(exp.read_text().replace("{sparsity: 0.5}", "{sparsity: 0.25}"))
    again = parsed(exp, tmp_path)
    assert again.experiment is not first.experiment
    assert again.finals["prune-50"].params["sparsity"] == 0.25
    exp.write_text("variants: [")  # broken YAML: nothing is judged, nothing raises
    broken = parsed(exp, tmp_path)
    assert broken.experiment is None and broken.finals == {}


def test_models_evaluated_with_other_task_settings_are_stale_until_reevaluated(
    tmp_path: Path, ops_restored: None
) -> None:
    from modelbonsai.lsp.drift import REEVALUATE, REEVALUATE_UNKNOWN
    from modelbonsai.runner import Runner

    exp = make_workspace(tmp_path)
    with LineageStore.open(tmp_path) as store:
        Runner(store, device="cpu").run(make_plan(load_experiment(exp).experiment, store, only=["prune-50"]))
        models = {m.name: m for m in store.list_models()}

        def judge(limit: int | None = None) -> dict[str, str]:
            return statuses(store, limit).stale

        assert judge() == {}
        # another instance limit in the file: a run would re-evaluate, so the lineage says so
        exp.write_text(
            exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 5")
        )
        fewer = "evaluated on every instance, a run now evaluates 5 instances: run to re-evaluate"
        assert judge() == {models["toy"].id: fewer, models["prune-50"].id: fewer}
        # ... whatever limit this server's runs use: the file's own wins over the setting
        assert judge(limit=5) == judge(limit=7) == judge()
        Runner(store, device="cpu").run(make_plan(load_experiment(exp).experiment, store, only=["prune-50"]))
        assert judge() == {} and judge(limit=7) == {}
        # another task option: every current model's metrics are of the old settings
        exp.write_text(exp.read_text().replace("max_instances: 5", "hardness: 2"))
        assert judge() == {models["toy"].id: REEVALUATE, models["prune-50"].id: REEVALUATE}
        Runner(store, device="cpu").run(make_plan(load_experiment(exp).experiment, store, only=["prune-50"]))
        assert judge() == {}
        # the file sets no limit now: indexes of two limits judge the same stored models
        # differently (a server's limit is fixed at initialize: one index, one limit), though
        # they share the file's parse; a limit at or above the task's 24 instances is no change
        assert set(judge(limit=7).values()) == {
            "evaluated on every instance, a run now evaluates 7 instances: run to re-evaluate"
        }
        assert judge(limit=24) == judge(limit=512) == judge() == {}
        # a model stored before evaluations were recorded (migrated store): unknown, stale
        store._conn.execute(
            "UPDATE models SET eval_fingerprint = NULL WHERE id = ?", (models["prune-50"].id,)
        )
        assert judge() == {models["prune-50"].id: REEVALUATE_UNKNOWN}
        # a changed parameter says so first (the model is re-made, not re-evaluated)
        exp.write_text(exp.read_text().replace("{sparsity: 0.5}", "{sparsity: 0.25}"))
        assert judge()[models["prune-50"].id].startswith("the experiment file changed")
