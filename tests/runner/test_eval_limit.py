"""The evaluation limit (how many instances a run evaluates) is set in one place: make_plan.

The Runner evaluates with the plan's limit (it takes none of its own); the CLI's --max-instances
and the language server's setting both reach the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.workspace import make_workspace
from modelbonsai.experiment import load_experiment
from modelbonsai.runner import (
    Runner,
    evaluation_fingerprint,
    evaluation_limit,
    load_evaluation,
    make_plan,
)
from modelbonsai.store import LineageStore


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[tuple[Path, LineageStore]]:
    exp = make_workspace(tmp_path)
    store = LineageStore.open(tmp_path)
    yield exp, store
    store.close()


def _exp(path: Path) -> Any:
    parsed = load_experiment(path)
    assert parsed.ok, [str(p) for p in parsed.problems]
    return parsed.experiment


def _outputs(store: LineageStore, name: str) -> int:
    model = next(m for m in store.list_models() if m.name == name)
    return int(load_evaluation(store, model).outputs.shape[0])


def test_the_plan_decides_the_limit_the_runner_evaluates_with(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    plan = make_plan(_exp(exp), store, only=["prune-50"], max_instances=6)
    assert plan.max_instances == 6
    assert {s.eval_fingerprint for s in plan.steps} == {evaluation_fingerprint(_exp(exp), 6)}
    result = Runner(store, device="cpu").run(plan)
    assert result.made == ["toy", "prune-50"]
    assert _outputs(store, "toy") == 6 and _outputs(store, "prune-50") == 6
    # stored with the fingerprint the plan judged by: the same limit is up to date
    again = make_plan(_exp(exp), store, only=["prune-50"], max_instances=6)
    assert again.reevaluations() == [] and again.stale() == []
    # no limit given: the task's own (the toy task evaluates 24 without one)
    plain = make_plan(_exp(exp), store, only=["prune-50"])
    assert plain.max_instances is None
    assert [s.name for s in plain.reevaluations()] == ["toy", "prune-50"]
    Runner(store, device="cpu").run(plain)
    assert _outputs(store, "prune-50") == 24


def test_the_files_own_limit_is_the_plans_unless_one_is_given(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    exp.write_text(exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 9"))
    e = _exp(exp)
    assert evaluation_limit(e) == 9 and evaluation_limit(e, 4) == 4
    assert make_plan(e, store).max_instances == 9
    assert make_plan(e, store, max_instances=4).max_instances == 4
    # the fingerprint of "the file says 9" is that of "9 given": the same evaluation
    assert evaluation_fingerprint(e) == evaluation_fingerprint(e, 9)
    Runner(store, device="cpu").run(make_plan(e, store, only=["prune-50"]))
    assert _outputs(store, "prune-50") == 9


def test_cli_max_instances_still_limits_the_run(tmp_path: Path) -> None:
    from modelbonsai.cli import main

    make_workspace(tmp_path)
    code = main(["run", str(tmp_path / "exp.bonsai.yaml"), "--only", "prune-50", "--device", "cpu",
                 "--max-instances", "7"])
    assert code == 0
    with LineageStore.open(tmp_path) as store:
        assert _outputs(store, "prune-50") == 7
