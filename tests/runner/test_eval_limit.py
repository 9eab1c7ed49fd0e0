"""The evaluation limit (how many instances a run evaluates) is set in one place: make_plan.

The Runner evaluates with the plan's limit (it takes none of its own); the CLI's --max-instances
and the language server's setting both reach the plan, where the file's own `max_instances` wins
over them. A limit at or above the task's instance count is "every instance".
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
    evaluated_fingerprint,
    evaluation_fingerprint,
    evaluation_limit,
    load_evaluation,
    make_plan,
    same_evaluation,
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


def test_the_files_own_limit_wins_over_the_one_given(ws: tuple[Path, LineageStore]) -> None:
    exp, store = ws
    exp.write_text(
        exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 9")
    )
    e = _exp(exp)
    # one rule for the CLI, the server and the extension: the file's max_instances wins; a
    # limit given to the run (--max-instances, the bonsai.maxInstances setting) only fills in
    assert evaluation_limit(e) == 9 and evaluation_limit(e, 4) == 9
    assert make_plan(e, store).max_instances == 9
    assert make_plan(e, store, max_instances=4).max_instances == 9
    assert evaluation_fingerprint(e) == evaluation_fingerprint(e, 9) == evaluation_fingerprint(e, 4)
    Runner(store, device="cpu").run(make_plan(e, store, only=["prune-50"], max_instances=4))
    assert _outputs(store, "prune-50") == 9
    assert make_plan(e, store, only=["prune-50"], max_instances=512).reevaluations() == []


# The toy task as a real task is: at most its 24 instances, however high the limit.
CAPPED = "n = min(self.max_instances or $instances, $instances)"


def _capped(folder: Path, says_total: bool) -> None:
    tasks = folder / "tasks.py"
    text = tasks.read_text().replace("n = self.max_instances or 24", CAPPED.replace("$instances", "24"))
    if says_total:
        text = text.replace('kind = "toy"', 'kind = "toy"\n    total_instances = 24')
    assert text != tasks.read_text()
    tasks.write_text(text)


@pytest.mark.parametrize("says_total", [True, False], ids=["task-says-total", "total-inferred"])
def test_a_limit_at_or_above_the_task_size_is_every_instance(
    ws: tuple[Path, LineageStore], says_total: bool
) -> None:
    exp, store = ws
    _capped(exp.parent, says_total)
    e = _exp(exp)
    Runner(store, device="cpu").run(make_plan(e, store, only=["prune-50"], max_instances=512))
    assert _outputs(store, "prune-50") == 24
    stored = {m.eval_fingerprint for m in store.list_models()}
    assert {fp.split(":")[1] for fp in stored if fp} == {"24/24"}, "the counts evaluated, not the limit"
    # "every instance", a limit above the task's size, and one just at it: the same evaluation
    for limit in (None, 512, 25, 24):
        plan = make_plan(e, store, only=["prune-50"], max_instances=limit)
        assert plan.reevaluations() == [] and plan.stale() == [], limit
    assert [s.name for s in make_plan(e, store, only=["prune-50"], max_instances=23).reevaluations()] == [
        "toy",
        "prune-50",
    ]


def test_evaluated_at_exactly_the_limit_of_a_task_that_does_not_say_its_size(
    ws: tuple[Path, LineageStore],
) -> None:
    exp, store = ws
    _capped(exp.parent, says_total=False)
    e = _exp(exp)
    Runner(store, device="cpu").run(make_plan(e, store, only=["prune-50"], max_instances=24))
    # 24 of at least 24: the same limit is the same evaluation, "all" may not be
    assert {fp.split(":")[1] for fp in (m.eval_fingerprint for m in store.list_models()) if fp} == {"24/?"}
    assert make_plan(e, store, only=["prune-50"], max_instances=24).reevaluations() == []
    assert len(make_plan(e, store, only=["prune-50"]).reevaluations()) == 2


def test_same_evaluation_rule() -> None:
    assert same_evaluation("t:200/200", "t:all") and same_evaluation("t:200/200", "t:512")
    assert same_evaluation("t:200/200", "t:200") and not same_evaluation("t:200/200", "t:199")
    assert same_evaluation("t:100/200", "t:100") and not same_evaluation("t:100/200", "t:all")
    assert not same_evaluation("u:200/200", "t:all") and not same_evaluation(None, "t:all")
    # stored before counts were recorded: only the very same limit
    assert same_evaluation("t:all", "t:all") and not same_evaluation("t:all", "t:512")
    assert evaluated_fingerprint("t:512", 200, None) == "t:200/200"
    assert evaluated_fingerprint("t:all", 7, None) == "t:7/7"
    assert evaluated_fingerprint("t:7", 7, None) == "t:7/?"
    assert evaluated_fingerprint("t:7", 7, 9) == "t:7/9"


def test_cli_max_instances_still_limits_the_run(tmp_path: Path) -> None:
    from modelbonsai.cli import main

    make_workspace(tmp_path)
    code = main(
        [
            "run",
            str(tmp_path / "exp.bonsai.yaml"),
            "--only",
            "prune-50",
            "--device",
            "cpu",
            "--max-instances",
            "7",
        ]
    )
    assert code == 0
    with LineageStore.open(tmp_path) as store:
        assert _outputs(store, "prune-50") == 7
