"""A run's progress tells the truth (issue 16, parts 2 and 4): its fraction is proportional to
the work (a long fine-tune is not "one step of two"), and models it makes or re-evaluates that
the user did not name are said before it starts and in their own progress messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli.workspace import make_workspace
from modelbonsai.experiment import load_experiment
from modelbonsai.runner import Runner, describe_plan, make_plan, unasked
from modelbonsai.store import LineageStore
from support.workspace import experiment_head

FINETUNE = (
    experiment_head("my_ops.py")
    + """\
  - name: ft
    from: base
    ops:
      - finetune: {steps: 300, batch_size: 8}
"""
)


def _exp(path: Path) -> Any:
    parsed = load_experiment(path)
    assert parsed.ok, [str(p) for p in parsed.problems]
    return parsed.experiment


def test_the_fraction_is_proportional_to_work_not_to_steps(tmp_path: Path) -> None:
    exp = make_workspace(tmp_path, FINETUNE)
    seen: list[tuple[float, str]] = []
    with LineageStore.open(tmp_path) as store:
        result = Runner(store, device="cpu", progress=lambda f, m: seen.append((f, m))).run(
            make_plan(_exp(exp), store)
        )
    assert result.made == ["toy", "ft"]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # the base (evaluated on 24 instances) is little next to 300 steps of 8, three passes each:
    # three steps in, hardly any of the run is done (it said 50%: one step of two)
    at_step_3 = next(f for f, m in seen if m.startswith("ft: step 3/300"))
    assert at_step_3 < 0.1
    halfway = next(f for f, m in seen if m.startswith("ft: step 150/300"))
    assert 0.4 < halfway < 0.6


def test_a_run_of_one_variant_says_what_else_it_makes_or_re_evaluates(tmp_path: Path) -> None:
    exp = make_workspace(tmp_path)
    with LineageStore.open(tmp_path) as store:
        Runner(store, device="cpu").run(make_plan(_exp(exp), store, only=["prune-50"]))
        # the task changed: the base and prune-50 need re-evaluating; asking for the chain below
        # prune-50 re-evaluates both without their being named
        exp.write_text(
            exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 10")
        )
        plan = make_plan(_exp(exp), store, only=["prune-50-scaled"])
        assert [s.name for s in unasked(plan)] == ["toy", "prune-50"]
        why = "evaluated on every instance, a run now evaluates 10 instances"
        assert describe_plan(plan) == [
            f"re-evaluate toy ({why}, not asked for)",
            f"re-evaluate prune-50 ({why}, not asked for)",
            "make prune-50-scaled/1 (not stored with this recipe)",
            "make prune-50-scaled (not stored with this recipe)",
        ]
        seen: list[str] = []
        Runner(store, device="cpu", progress=lambda f, m: seen.append(m)).run(plan)
    # before anything runs, then in the messages of those models' own work
    assert (
        seen[0]
        == f"first re-evaluates toy (not asked for: {why}); re-evaluates prune-50 (not asked for: {why})"
    )
    assert any(m.startswith("toy (not asked for): ") for m in seen)
    assert any(m.startswith("prune-50 (not asked for): ") for m in seen)
    assert not any(m.startswith("prune-50-scaled (not asked for)") for m in seen)


def test_a_run_of_the_whole_file_asks_for_everything(tmp_path: Path) -> None:
    exp = make_workspace(tmp_path)
    with LineageStore.open(tmp_path) as store:
        plan = make_plan(_exp(exp), store)
        assert unasked(plan) == []
        assert describe_plan(plan)[0] == "make toy (not stored with this recipe)"
