"""The README's own text-classification experiment, as written there, on a tiny Hugging Face model
saved in the test with its tokenizer beside it: no `tokenizer:` option, so the task must find the
tokenizer in the base model's folder, in a run (the runner) and in the language server's
comparison and instances work (the service's task_of)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelbonsai.experiment import load_experiment
from modelbonsai.runner import Runner, make_plan
from modelbonsai.service.models import task_of
from modelbonsai.store import LineageStore
from support.hf import save_text_classifier, write_text_data

ROOT = Path(__file__).resolve().parents[2]


def readme_experiment() -> str:
    """The README's YAML block that uses the text-classification task (as the user copies it)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if "kind: text-classification" in b]
    assert found, "the README no longer shows a text-classification experiment"
    return found[0]


def test_the_readme_text_classification_example_runs_with_the_models_own_tokenizer(tmp_path: Path) -> None:
    text = readme_experiment()
    assert "tokenizer:" not in text  # what this test is about: the documented default
    # The README's settings, scaled down to a 32-wide model and a short run; nothing else changes.
    text = text.replace("group_size: 128", "group_size: 16").replace("steps: 200", "steps: 2")
    save_text_classifier(tmp_path / "my_model")
    write_text_data(tmp_path / "data")
    file = tmp_path / "my.bonsai.yaml"
    file.write_text(text)
    parsed = load_experiment(file)
    assert parsed.experiment is not None and not parsed.errors, [p.message for p in parsed.errors]

    with LineageStore.open(tmp_path) as store:
        plan = make_plan(parsed.experiment, store)
        result = Runner(store, device="cpu").run(plan)
        assert not result.failed, result.failed
        metrics = store.all_metrics()
        made = {m.name: m for m in store.list_models()}
        for name in ("my-model", "prune-0.3", "prune-0.5-kd", "int4"):
            model = next(m for n, m in made.items() if n == name or n.startswith(name))
            assert "accuracy" in {x.name for x in metrics[model.id]}, name

        # the comparison and instances views build the task the same way
        task, _key = task_of(store, made["my-model"], None)
        assert task.render("0").text == "the good movie"
        assert task.example_batch(2).inputs["input_ids"].shape[0] == 2


def test_a_user_task_with_the_older_constructor_still_builds(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from modelbonsai.tasks import REQUIRED_METHODS, make_task

    (tmp_path / "old.py").write_text(
        "from modelbonsai.tasks.base import Task\n"
        "class Old(Task):\n"
        "    def __init__(self, options, root, *, max_instances=None):\n"
        "        super().__init__(options, root, max_instances=max_instances)\n"
        + "".join(f"    def {m}(self, *a, **k): pass\n" for m in REQUIRED_METHODS)
    )
    exp = SimpleNamespace(
        task=SimpleNamespace(kind="old.py:Old", options={}),
        root=tmp_path,
        base=SimpleNamespace(load_path=tmp_path / "model"),
    )
    try:
        task = make_task(exp)
    except TypeError as e:  # pragma: no cover - the failure this test guards against
        pytest.fail(f"make_task passed model_path to a constructor without it: {e}")
    assert task is not None and task.model_path is None
