from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli.workspace import EXPERIMENT, make_workspace
from modelbonsai.experiment import load_experiment
from modelbonsai.runner import OUTPUTS_FILE, PlanError, RunEvent, Runner, load_evaluation, make_plan, summary
from modelbonsai.store import LineageStore


def _exp(path: Path):  # type: ignore[no-untyped-def]
    parsed = load_experiment(path)
    assert parsed.ok, [str(p) for p in parsed.problems]
    return parsed.experiment


@pytest.fixture
def ws(tmp_path: Path) -> tuple[Path, LineageStore]:
    exp = make_workspace(tmp_path)
    store = LineageStore.open(tmp_path)
    yield exp, store
    store.close()


def test_plan_names_intermediates_and_orders_parents_first(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    plan = make_plan(_exp(exp), store)
    assert [(s.name, s.parent, s.step) for s in plan.steps] == [
        ("toy", None, 0),
        ("prune-50", "toy", 0),
        ("prune-50-scaled/1", "prune-50", 0),
        ("prune-50-scaled", "prune-50-scaled/1", 1),
        ("bad", "toy", 0),
        ("after-bad", "bad", 0),
    ]
    assert len({s.fingerprint for s in plan.steps}) == len(plan.steps)
    # parameters are recorded resolved: as written, plus the op's defaults
    assert plan.step("prune-50").params["sparsity"] == 0.5 and "scope" in plan.step("prune-50").params
    # deterministic
    assert [s.fingerprint for s in make_plan(_exp(exp), store).steps] == [s.fingerprint for s in plan.steps]
    with pytest.raises(PlanError, match="no variant named nope"):
        make_plan(_exp(exp), store, only=["nope"])


def test_run_stores_models_isolates_failures_and_skips_up_to_date(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    overall: list[float] = []
    events: list[RunEvent] = []
    result = Runner(store, device="cpu", progress=lambda f, m: overall.append(f), events=events.append).run(
        make_plan(_exp(exp), store)
    )
    assert result.status == "failed"
    assert result.made == ["toy", "prune-50", "prune-50-scaled/1", "prune-50-scaled"]
    assert result.failed == {"bad": "op mine.explode: it went wrong"}
    assert result.skipped == {"after-bad": "not run: bad failed"}
    models = {m.name: m for m in store.list_models()}
    assert set(models) == {"toy", "prune-50", "prune-50-scaled/1", "prune-50-scaled"}
    assert models["prune-50-scaled"].parent_id == models["prune-50-scaled/1"].id
    assert models["prune-50-scaled/1"].parent_id == models["prune-50"].id
    assert models["prune-50"].op == "prune.magnitude" and models["prune-50"].params["sparsity"] == 0.5
    assert models["toy"].base_spec == {"name": "toy", "load": "model.safetensors", "factory": "arch.py:build"}
    assert models["toy"].versions["torch"] == torch.__version__
    assert models["prune-50"].seed == 3 and models["prune-50"].experiment_file == "exp.bonsai.yaml"
    # no partial model of the failed variant anywhere
    assert {p.name for p in (store.root / "artifacts").iterdir()} == {m.id for m in models.values()}
    run = store.list_runs()[0]
    assert run.status == "failed" and run.failures == {"bad": "op mine.explode: it went wrong"}
    # metrics: task + efficiency + stored size against the base
    met = {m.name: m for m in store.metrics(models["prune-50"].id)}
    assert {
        "accuracy",
        "agreement",
        "parameters",
        "nonzero_parameters",
        "stored_size",
        "compression_ratio",
    } <= set(met)
    assert met["nonzero_parameters"].value < met["parameters"].value
    assert met["stored_size"].value == sum(
        (store.artifact_path(models["prune-50"]) / f).stat().st_size
        for f in ("manifest.json", "tensors.safetensors")
    )
    assert {m.name: m.value for m in store.metrics(models["toy"].id)}["compression_ratio"] == 1.0
    # progress only moves forward and ends complete
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)
    assert events[0].kind == "plan" and events[-1].kind == "done"

    # second run: everything stored is up to date; only the failed branch is tried again
    again = Runner(store, device="cpu").run(make_plan(_exp(exp), store))
    assert again.made == [] and set(again.up_to_date) == {"toy", "prune-50", "prune-50-scaled"}
    assert again.failed == {"bad": "op mine.explode: it went wrong"}
    assert len(store.list_models()) == 4


def test_outputs_stored_beside_the_artifact(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50"]))
    m = store.get_model("prune-50")
    assert (store.artifact_path(m) / OUTPUTS_FILE).is_file()
    ev = load_evaluation(store, m)
    assert ev.ids == [f"i{j}" for j in range(24)]
    assert ev.outputs.shape == (24, 3) and ev.predictions.shape == (24,)
    acc = {x.name: x.value for x in ev.metrics}["accuracy"]
    assert acc == pytest.approx(float((ev.predictions == ev.targets).float().mean()))


def test_only_runs_the_selection_and_needed_ancestors(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    plan = make_plan(_exp(exp), store, only=["prune-50-scaled"])
    assert [s.name for s in plan.steps] == ["toy", "prune-50", "prune-50-scaled/1", "prune-50-scaled"]
    result = Runner(store, device="cpu").run(plan)
    assert result.status == "done" and not result.failed


def test_changed_parameter_makes_the_variant_and_its_descendants_stale(tmp_path: Path) -> None:
    exp = make_workspace(tmp_path)
    store = LineageStore.open(tmp_path)
    Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    exp.write_text(EXPERIMENT.replace("sparsity: 0.5", "sparsity: 0.6"))
    plan = make_plan(_exp(exp), store, only=["prune-50-scaled"])
    assert [s.name for s in plan.stale()] == ["prune-50", "prune-50-scaled/1", "prune-50-scaled"]
    result = Runner(store, device="cpu").run(plan)
    assert result.status == "done"
    # the old models stay in the lineage (history); the name resolves to the newest
    assert len(store.list_models()) == 7
    assert store.get_model("prune-50").params["sparsity"] == 0.6
    store.close()


def test_force_replaces_and_keeps_children_attached(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    before = {m.name: m for m in store.list_models()}
    plan = make_plan(_exp(exp), store, only=["prune-50"], force=True)
    assert [s.name for s in plan.stale()] == ["prune-50"]
    result = Runner(store, device="cpu").run(plan)
    assert result.made == ["prune-50"]
    after = {m.name: m for m in store.list_models()}
    assert len(after) == len(before)
    assert after["prune-50"].id != before["prune-50"].id
    assert after["prune-50-scaled/1"].parent_id == after["prune-50"].id
    assert not store.artifact_path(before["prune-50"]).exists()


def test_child_of_a_stored_model_is_rebuilt_from_its_artifact(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    exp.write_text(
        EXPERIMENT
        + "  - name: deeper\n    from: prune-50-scaled\n    ops:\n      - mine.scale: {factor: 2.0}\n"
    )
    plan = make_plan(_exp(exp), store, only=["deeper"])
    assert [s.name for s in plan.stale()] == ["deeper"]
    result = Runner(store, device="cpu").run(plan)  # a new Runner: nothing in memory
    assert result.status == "done"
    parent = {x.name: x.value for x in store.metrics(store.get_model("prune-50-scaled").id)}
    child = {x.name: x.value for x in store.metrics(store.get_model("deeper").id)}
    # the sparsity of the parent survived the artifact round trip, and the op ran on top of it
    assert child["nonzero_parameters"] == parent["nonzero_parameters"]


def test_failing_intermediate_step_fails_its_variant_once(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    exp.write_text(
        EXPERIMENT + "  - name: two-step\n    ops:\n      - mine.explode: {}\n      - mine.scale: {}\n"
    )
    result = Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["two-step"]))
    assert result.failed == {"two-step": "op mine.explode: boom"} and result.skipped == {}
    assert [m.name for m in store.list_models()] == ["toy"]


def test_memory_keeps_only_the_base_and_the_latest_model(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    runner = Runner(store, device="cpu")
    sizes: list[int] = []
    runner._events = lambda e: sizes.append(len(runner._memo)) if e.kind == "stored" else None
    runner.run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    assert max(sizes) == 2


def test_cancel_stops_cleanly(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    stored: list[str] = []

    def on_event(e: RunEvent) -> None:
        if e.kind == "stored":
            stored.append(e.model)

    result = Runner(store, device="cpu", events=on_event, cancelled=lambda: bool(stored)).run(
        make_plan(_exp(exp), store)
    )
    assert result.status == "cancelled"
    assert [m.name for m in store.list_models()] == ["toy"]
    assert store.list_runs()[0].status == "cancelled"
    assert [p for p in (store.root / "tmp").iterdir()] == []


def test_hugging_face_base_round_trips_through_artifacts(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, n_positions=16)).save_pretrained(
        tmp_path / "gpt"
    )
    exp = tmp_path / "lm.bonsai.yaml"
    exp.write_text(
        "base:\n  name: tiny-gpt\n  load: gpt\nvariants:\n"
        "  - name: p30\n    ops:\n      - prune.magnitude: {sparsity: 0.3}\n"
    )
    store = LineageStore.open(tmp_path)
    assert Runner(store, device="cpu").run(make_plan(_exp(exp), store)).status == "done"
    exp.write_text(
        exp.read_text() + "  - name: p60\n    from: p30\n    ops:\n      - prune.magnitude: {sparsity: 0.6}\n"
    )
    result = Runner(store, device="cpu").run(make_plan(_exp(exp), store))  # p30 rebuilt from its artifact
    assert result.status == "done" and result.made == ["p60"], result.failed
    nz = {
        m.name: {x.name: x.value for x in store.metrics(m.id)}["nonzero_parameters"]
        for m in store.list_models()
    }
    assert nz["tiny-gpt"] > nz["p30"] > nz["p60"]
    store.close()


def test_ctrl_c_is_recorded_and_propagates(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws

    def interrupt() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Runner(store, device="cpu", cancelled=interrupt).run(make_plan(_exp(exp), store))
    run = store.list_runs()[0]
    assert run.status == "cancelled" and "Ctrl-C" in run.message
    assert store.list_models() == []


def test_restore_inside_a_variant_copies_from_the_model_the_variant_starts_from(tmp_path: Path) -> None:
    # `[prune, restore]` in one variant: restore must bring back the unpruned tensors of the
    # variant's `from` model, not the pruned ones of the step just before it.
    exp = make_workspace(tmp_path)
    exp.write_text(
        EXPERIMENT.split("variants:")[0]
        + (
            "variants:\n"
            "  - name: prune-restore\n"
            "    ops:\n"
            "      - prune.magnitude: {sparsity: 0.5, scope: layer}\n"
            "      - restore: {patterns: ['2.weight']}\n"
        )
    )
    store = LineageStore.open(tmp_path)
    result = Runner(store, device="cpu").run(make_plan(_exp(exp), store))
    assert result.status == "done", result.failed
    from modelbonsai.artifacts import read_tensor

    base = store.get_model("toy")
    base_w = load_file_tensor(tmp_path, "2.weight")
    pruned = read_tensor(store.artifact_path(store.get_model("prune-restore/1")), "2.weight")
    restored = read_tensor(store.artifact_path(store.get_model("prune-restore")), "2.weight")
    assert (pruned == 0).float().mean().item() == pytest.approx(0.5)
    assert torch.equal(restored, base_w), "restore copied from the pruned step instead of the base"
    assert base.parent_id is None
    store.close()


def load_file_tensor(folder: Path, name: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))[name]


@pytest.mark.parametrize(
    "error",
    [
        "torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')",
        'RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can\'t allocate memory")',
        "RuntimeError('Input type (torch.FloatTensor) and weight type (MPSFloatType) should be the same')",
    ],
)
def test_a_model_that_cannot_run_fails_alone_with_its_reason(tmp_path: Path, error: str) -> None:
    """A variant whose model runs out of memory (or cannot run on the device) while it is evaluated
    is marked failed with a readable reason; its siblings are still made and stored."""
    from cli.workspace import USER_OPS
    from support.workspace import write_workspace

    ops = USER_OPS + (
        "\n@register_op('mine.hog', family='test', summary='a model that cannot run', source='user')\n"
        "def hog(cm, params, ctx):\n"
        "    import torch\n"
        "    def forward(*a, **k):\n"
        f"        raise {error}\n"
        "    cm.module.forward = forward\n"
        "    return cm\n"
    )
    text = EXPERIMENT.split("variants:")[0] + (
        "variants:\n"
        "  - {name: hog, ops: [mine.hog: {}]}\n"
        "  - {name: fine, ops: [prune.magnitude: {sparsity: 0.5}]}\n"
    )
    exp = write_workspace(tmp_path, text, ops)
    store = LineageStore.open(tmp_path)
    try:
        result = Runner(store, device="cpu").run(make_plan(_exp(exp), store))
        assert result.made == ["toy", "fine"]
        reason = result.failed["hog"]
        if "allocate" in error:
            assert reason.startswith("out of memory on the device (") and "batch_size" in reason
        else:
            assert reason.startswith("RuntimeError: Input type")
        assert "Traceback" not in reason
        assert {m.name for m in store.list_models()} == {"toy", "fine"}
        assert store.list_runs()[0].failures == {"hog": reason}
    finally:
        store.close()


# -- re-evaluation: a changed task re-evaluates stored models in place ---------------------------

SMALLER_TASK = EXPERIMENT.replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 12")
KEPT = ["toy", "prune-50", "prune-50-scaled/1", "prune-50-scaled"]


def _state(store: LineageStore) -> dict[str, tuple[str, str | None, dict[str, float], int]]:
    """name -> (id, evaluation fingerprint, metrics, rows of stored outputs)"""
    out = {}
    for m in store.list_models():
        ev = load_evaluation(store, m)
        out[m.name] = (
            m.id,
            m.eval_fingerprint,
            {x.name: x.value for x in store.metrics(m.id)},
            ev.outputs.shape[0],
        )
    return out


def test_changed_task_reevaluates_every_stored_model_in_place(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    Runner(store, device="cpu").run(make_plan(_exp(exp), store))
    before = _state(store)
    assert {v[3] for v in before.values()} == {24}
    exp.write_text(SMALLER_TASK)
    plan = make_plan(_exp(exp), store)
    # the weights do not depend on the task: nothing to make but the failing branch
    assert [s.name for s in plan.stale()] == ["bad", "after-bad"]
    assert [s.name for s in plan.reevaluations()] == KEPT
    events: list[RunEvent] = []
    overall: list[float] = []
    result = Runner(store, device="cpu", events=events.append, progress=lambda f, m: overall.append(f)).run(
        plan
    )
    assert result.made == [] and result.reevaluated == KEPT and result.up_to_date == []
    assert [e.model for e in events if e.kind == "re-evaluated"] == KEPT
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)
    after = _state(store)
    assert set(after) == set(before) and len(store.list_models()) == 4
    for name in KEPT:
        assert after[name][0] == before[name][0], "same model, same id"
        assert after[name][3] == 12, "outputs of the new settings"
        assert after[name][1] != before[name][1]
        assert set(after[name][2]) == set(before[name][2])
    # children stay attached; agreement is against the base's *new* outputs (12 of them)
    models = {m.name: m for m in store.list_models()}
    assert models["prune-50-scaled"].parent_id == models["prune-50-scaled/1"].id
    base_ev, pruned_ev = load_evaluation(store, models["toy"]), load_evaluation(store, models["prune-50"])
    agreement = float((pruned_ev.predictions == base_ev.predictions).float().mean())
    assert after["prune-50"][2]["agreement"] == pytest.approx(agreement)
    assert after["prune-50"][2]["accuracy"] == pytest.approx(
        float((pruned_ev.predictions == pruned_ev.targets).float().mean())
    )
    assert after["prune-50"][2]["stored_size"] == before["prune-50"][2]["stored_size"]
    assert not list((store.root / "tmp").iterdir()), "no temporary outputs left"
    assert summary(result) == "0 models made, 4 re-evaluated, 0 up to date"
    # third run: everything is up to date
    third = Runner(store, device="cpu").run(make_plan(_exp(exp), store))
    assert third.reevaluated == [] and third.made == []
    assert set(third.up_to_date) == {"toy", "prune-50", "prune-50-scaled"}
    # an unknown evaluation (a store from before it was recorded) is re-evaluated once
    store._conn.execute("UPDATE models SET eval_fingerprint = NULL WHERE name = 'prune-50'")
    assert [s.name for s in make_plan(_exp(exp), store).reevaluations()] == ["prune-50"]


def test_evaluation_fingerprint_covers_task_options_and_the_instance_limit(
    ws: tuple[Path, LineageStore],
) -> None:
    from modelbonsai.runner import evaluation_fingerprint

    exp, _store = ws
    e = _exp(exp)
    fp = evaluation_fingerprint(e)
    assert fp.endswith(":all") and evaluation_fingerprint(e, 12).endswith(":12")
    assert evaluation_fingerprint(e, 12).split(":")[0] == fp.split(":")[0]
    e.task.options = {**e.task.options, "num_prompts": 16}
    assert evaluation_fingerprint(e).split(":")[0] != fp.split(":")[0]


def test_runner_limit_decides_the_evaluation(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50"]))
    # the same file, run with a limit (bonsai run --max-instances, the server's setting)
    result = Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50"], max_instances=6))
    assert result.reevaluated == ["toy", "prune-50"]
    assert load_evaluation(store, store.get_model("prune-50")).outputs.shape[0] == 6


def test_failed_reevaluation_keeps_the_model_and_its_old_metrics(
    ws: tuple[Path, LineageStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelbonsai.runner as runner_mod

    exp, store = ws
    Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    before = _state(store)
    victim = before["prune-50"][0]
    real = runner_mod.save_outputs

    def failing(evaluation, path: Path) -> None:  # type: ignore[no-untyped-def]
        if path.name.startswith(victim):
            path.write_bytes(b"half")  # a partial write, then the failure
            raise OSError("disk full")
        real(evaluation, path)

    monkeypatch.setattr(runner_mod, "save_outputs", failing)
    exp.write_text(SMALLER_TASK)
    result = Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    assert result.status == "failed"
    assert result.failed == {"prune-50": "re-evaluating prune-50: OSError: disk full"}
    assert result.reevaluated == ["toy", "prune-50-scaled/1", "prune-50-scaled"]
    after = _state(store)
    assert after["prune-50"] == before["prune-50"], "old metrics, outputs and evaluation fingerprint kept"
    assert after["prune-50-scaled"][3] == 12
    assert not list((store.root / "tmp").iterdir())
    monkeypatch.setattr(runner_mod, "save_outputs", real)
    again = Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    assert again.status == "done" and again.reevaluated == ["prune-50"]


def test_cancel_during_reevaluation_leaves_a_consistent_store(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    before = _state(store)
    exp.write_text(SMALLER_TASK)
    done: list[str] = []

    def on_event(e: RunEvent) -> None:
        if e.kind == "re-evaluated":
            done.append(e.model)

    result = Runner(store, device="cpu", events=on_event, cancelled=lambda: len(done) >= 2).run(
        make_plan(_exp(exp), store, only=["prune-50-scaled"])
    )
    assert result.status == "cancelled" and result.reevaluated == ["toy", "prune-50"]
    after = _state(store)
    assert all(m.status == "ok" for m in store.list_models())
    for name in ("toy", "prune-50"):
        assert after[name][3] == 12 and after[name][1] != before[name][1]
    for name in ("prune-50-scaled/1", "prune-50-scaled"):
        assert after[name] == before[name], "untouched: old metrics with the old fingerprint"
    assert not list((store.root / "tmp").iterdir())
    rest = Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50-scaled"]))
    assert rest.reevaluated == ["prune-50-scaled/1", "prune-50-scaled"]
