"""One fingerprint, one model: what an op reads besides its input is part of its fingerprint,
identical steps are made once per run, and every name that ran or was matched finds its model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modelbonsai.experiment import load_experiment
from modelbonsai.ops.registry import get_op
from modelbonsai.runner import Runner, make_plan, step_fingerprint
from modelbonsai.store import LineageStore
from support.workspace import experiment_head, write_workspace

PRUNE = "prune.magnitude: {scope: layer, sparsity: 0.5}"
# A prunes every layer; B (from A) restores the last layer from A, which is pruned: nothing comes
# back. C does both in one variant, so its restore copies the last layer from the base.
A = f"""\
  - name: A
    from: base
    ops:
      - {PRUNE}
"""
B = """\
  - name: B
    from: A
    ops:
      - restore: {patterns: ["2.*"]}
"""
C = f"""\
  - name: C
    from: base
    ops:
      - {PRUNE}
      - restore: {{patterns: ["2.*"]}}
"""


def _exp(path: Path):  # type: ignore[no-untyped-def]
    parsed = load_experiment(path)
    assert parsed.ok, [str(p) for p in parsed.problems]
    return parsed.experiment


def _run(path: Path, store: LineageStore):  # type: ignore[no-untyped-def]
    return Runner(store, device="cpu").run(make_plan(_exp(path), store))


def _weights(store: LineageStore, name: str) -> dict[str, torch.Tensor]:
    from modelbonsai.artifacts import load_artifact

    rec = store.get_model(name)
    if rec.parent_id is None:
        return load_file(str(store.workspace / "model.safetensors"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("arch_for_test", store.workspace / "arch.py")
    assert spec is not None and spec.loader is not None
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    cm = load_artifact(store.artifact_path(rec), arch.build)
    return {k: v.detach() for k, v in cm.module.state_dict().items()}


def test_restore_in_a_chain_is_not_matched_to_a_restore_from_the_pruned_model(tmp_path: Path) -> None:
    exp = write_workspace(tmp_path, experiment_head() + A + B, user_ops="")
    with LineageStore.open(tmp_path) as store:
        first = _run(exp, store)
        assert first.ok and first.made == ["toy", "A", "B"]
        exp.write_text(experiment_head() + A + B + C)
        second = _run(exp, store)
        assert second.ok, second.failed
        # C/1 is A (same parent, op, params, seed): found, not made; C itself is new
        assert second.made == ["C"]
        assert store.get_model("C").id not in (store.get_model("B").id, store.get_model("A").id)
        assert store.get_model("C/1").id == store.get_model("A").id
        base, b, c = _weights(store, "toy"), _weights(store, "B"), _weights(store, "C")
        assert torch.equal(c["2.weight"], base["2.weight"])  # restored from the base
        assert not torch.equal(b["2.weight"], base["2.weight"])  # B restored A's pruned layer
        assert float((c["0.weight"] == 0).float().mean()) == pytest.approx(0.5, abs=0.05)
        # run again: everything up to date, nothing made, no second model of any fingerprint
        third = _run(exp, store)
        assert third.made == [] and set(third.up_to_date) == {"toy", "A", "B", "C"}
        fps = [m.fingerprint for m in store.list_models()]
        assert len(fps) == len(set(fps)) == 4


def test_identical_steps_are_made_once_per_run_and_every_name_resolves(tmp_path: Path) -> None:
    # D starts with the same prune as A, then restores from its start (the base), like C
    d = C.replace("name: C", "name: D")
    exp = write_workspace(tmp_path, experiment_head() + A + C + d, user_ops="")
    with LineageStore.open(tmp_path) as store:
        plan = make_plan(_exp(exp), store)
        assert [s.name for s in plan.stale()] == ["toy", "A", "C"]
        assert (
            plan.step("C/1").same_as == "A"
            and plan.step("D/1").same_as == "A"
            and plan.step("D").same_as == "C"
        )
        result = Runner(store, device="cpu").run(plan)
        assert result.ok and result.made == ["toy", "A", "C"]
        assert "D" in result.up_to_date
        models = store.list_models()
        assert sorted(m.name for m in models) == ["A", "C", "toy"]
        assert len({m.fingerprint for m in models}) == 3
        by_name = {m.name: m for m in models}
        assert store.get_model("D").id == by_name["C"].id
        assert store.get_model("D/1").id == store.get_model("C/1").id == by_name["A"].id
        assert by_name["C"].aliases == ["D"] and set(by_name["A"].aliases) == {"C/1", "D/1"}


def test_a_model_made_under_its_own_name_takes_back_an_alias(tmp_path: Path) -> None:
    d = C.replace("name: C", "name: D")
    exp = write_workspace(tmp_path, experiment_head() + A + C + d, user_ops="")
    with LineageStore.open(tmp_path) as store:
        _run(exp, store)
        assert store.get_model("D").name == "C"
        # D changes: now its own model, and "D" means that one
        exp.write_text(experiment_head() + A + C + d.replace("sparsity: 0.5", "sparsity: 0.6"))
        result = _run(exp, store)
        assert "D" in result.made
        assert store.get_model("D").name == "D" and store.get_model("C").aliases == []


def test_fingerprint_covers_the_model_an_op_reads_besides_its_input() -> None:
    restore, finetune, prune = get_op("restore"), get_op("finetune"), get_op("prune.magnitude")
    assert restore is not None and finetune is not None and prune is not None
    params = restore.resolve({"patterns": ["*"]})
    # a variant's first op: the origin is its input, so nothing changes
    assert step_fingerprint("p", restore, params, 0, None, "p") == step_fingerprint(
        "p", restore, params, 0, None
    )
    assert step_fingerprint("p", restore, params, 0, None, "o1") != step_fingerprint(
        "p", restore, params, 0, None, "o2"
    )
    # distillation's teacher counts only when it teaches
    plain = finetune.resolve({"steps": 1})
    taught = finetune.resolve({"steps": 1, "distill": 0.5})
    assert step_fingerprint("p", finetune, plain, 0, None, "o1") == step_fingerprint(
        "p", finetune, plain, 0, None, "o2"
    )
    assert step_fingerprint("p", finetune, taught, 0, None, "o1") != step_fingerprint(
        "p", finetune, taught, 0, None, "o2"
    )
    # an op that reads only its input ignores the origin
    pp = prune.resolve({"sparsity": 0.5})
    assert step_fingerprint("p", prune, pp, 0, None, "o1") == step_fingerprint("p", prune, pp, 0, None, "o2")


def test_a_user_op_is_assumed_to_read_the_parent_unless_it_says_otherwise(tmp_path: Path) -> None:
    from modelbonsai.ops.registry import OpDef

    op = get_op("prune.magnitude")
    assert op is not None
    user = OpDef(
        name="mine.x", family="t", summary="", doc="", params=(), fn=op.fn, source=str(tmp_path / "u.py")
    )
    assert user.reads_parent_for({})
    import dataclasses

    assert not dataclasses.replace(user, reads_parent=False).reads_parent_for({})


# -- concurrency -----------------------------------------------------------------------------------


def _bonsai(*args: str, cwd: Path) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "bonsai"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "modelbonsai"]
    env = {**os.environ, "COLUMNS": "200", "BONSAI_DEBUG": ""}
    return subprocess.Popen(
        [*cmd, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_two_runs_racing_on_one_workspace_store_each_fingerprint_once(tmp_path: Path) -> None:
    variants = (
        A
        + C
        + """\
  - name: E
    from: A
    ops:
      - prune.magnitude: {sparsity: 0.8}
"""
    )
    write_workspace(tmp_path, experiment_head() + variants, user_ops="")
    procs = [_bonsai("run", "exp.bonsai.yaml", "--device", "cpu", cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    with LineageStore.open(tmp_path) as store:
        models = store.list_models()
        assert sorted(m.name for m in models) == ["A", "C", "E", "toy"]
        assert len({m.fingerprint for m in models}) == len(models)
        assert {p.name for p in (store.root / "artifacts").iterdir()} == {m.id for m in models}
        assert store._query("SELECT count(*) FROM claims") == [(0,)]
    # the matched step's name finds its model from the CLI too
    shown = _bonsai("show", "C/1", cwd=tmp_path).communicate(timeout=120)[0]
    assert shown.splitlines()[0].split()[:2] == ["model", "A"] and "also       C/1" in shown
    # a step's name is left to `show` (the table's name column stays narrow)
    listed = _bonsai("ls", cwd=tmp_path).communicate(timeout=120)[0]
    assert "C/1" not in listed and " A " in listed


def test_the_table_names_matched_variants_but_not_steps() -> None:
    from modelbonsai.cli import model_label

    assert model_label("int8", []) == "int8"
    assert model_label("A", ["C/1", "D/1"]) == "A"
    assert model_label("int8", ["twin", "twin/2"]) == "int8 (= twin)"
    assert model_label("x", ["a", "b", "c", "d/1", "e"]) == "x (= a, b, +2)"
