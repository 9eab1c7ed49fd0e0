"""User tasks named "file.py:ClassName" in the experiment file."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbonsai.tasks import TASK_KINDS, Task, TaskError, get_task_class

GOOD = """
from modelbonsai.tasks import Task, Evaluation, Metric, Batch, RenderedInstance
import torch

class MyTask(Task):
    def eval_batches(self, batch_size): yield Batch(["0"], torch.zeros(1, 2))
    def training_batches(self, batch_size, seed): yield Batch(["0"], torch.zeros(1, 2))
    def example_batch(self, batch_size): return Batch(["0"], torch.zeros(1, 2))
    def forward(self, model, batch): return model(batch.inputs)
    def loss(self, model, batch): return self.forward(model, batch).sum()
    def evaluate(self, model, device, reference=None):
        return Evaluation([Metric("m", 1.0)], ["0"], torch.zeros(1))
    def render(self, instance_id): return RenderedInstance(instance_id, "text", text="x")
"""

MISSING = """
from modelbonsai.tasks import Task

class Half(Task):
    def eval_batches(self, batch_size): return iter(())
    def forward(self, model, batch): return model(batch.inputs)
"""


def test_builtin_kinds() -> None:
    assert set(TASK_KINDS) == {
        "image-classification",
        "text-classification",
        "causal-lm",
        "sentence-embedding",
    }
    assert get_task_class("causal-lm", Path(".")).kind == "causal-lm"
    with pytest.raises(TaskError, match="did you mean 'causal-lm'"):
        get_task_class("causal_lm", Path("."))


def test_user_task_loads(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(GOOD)
    cls = get_task_class("mine.py:MyTask", tmp_path)
    assert issubclass(cls, Task) and cls.kind == "mine.py:MyTask"
    task = cls({}, tmp_path)
    assert task.example_batch(1).ids == ["0"]


def test_user_task_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"file 'nope\.py' does not exist"):
        get_task_class("nope.py:X", tmp_path)
    (tmp_path / "mine.py").write_text(GOOD)
    with pytest.raises(TaskError, match="defines no class 'Other' \\(it defines: MyTask\\)"):
        get_task_class("mine.py:Other", tmp_path)
    (tmp_path / "half.py").write_text(MISSING)
    with pytest.raises(TaskError) as e:
        get_task_class("half.py:Half", tmp_path)
    msg = str(e.value)
    assert "task 'half.py:Half'" in msg
    assert "lacks method(s) evaluate, example_batch, loss, render, training_batches" in msg
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    with pytest.raises(TaskError, match=r"importing broken\.py failed: ModuleNotFoundError"):
        get_task_class("broken.py:X", tmp_path)
    (tmp_path / "plain.py").write_text(GOOD.replace("(Task)", ""))
    with pytest.raises(TaskError, match=r"must subclass modelbonsai\.tasks\.Task"):
        get_task_class("plain.py:MyTask", tmp_path)
