"""finetune with `distill`: learning from the parent model's outputs, compression held fixed."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from modelbonsai.ops.finetune import _StepLoss
from modelbonsai.ops.registry import CompressedModel, OpError
from modelbonsai.tasks import SentenceEmbeddingTask, TextClassificationTask
from modelbonsai.tasks.base import Batch, distillation_loss
from modelbonsai.tasks.tokenize import CharTokenizer


def _kl_to(teacher: nn.Module, student: nn.Module, task: Any) -> float:
    """Mean KL(teacher || student) at temperature 1 on held-out batches."""
    it = task.training_batches(64, 4242)
    with torch.no_grad():
        return sum(float(distillation_loss(task.forward(student, b), task.forward(teacher, b), 1.0))
                   for b in (next(it), next(it))) / 2  # fmt: skip


def test_distill_brings_a_pruned_model_back_toward_its_parent(tiny_cnn, cnn_task, make_ctx, run_op) -> None:
    teacher = CompressedModel(tiny_cnn)
    student = copy.deepcopy(tiny_cnn)
    ctx = make_ctx(task=cnn_task, parent=teacher)
    cm = run_op("prune.magnitude", CompressedModel(student), {"sparsity": 0.7}, ctx)
    before = _kl_to(tiny_cnn, student, cnn_task)
    tiny_cnn.train()  # as a parent may be: distillation must run it in eval mode, and leave it so
    before_teacher = {k: v.clone() for k, v in tiny_cnn.state_dict().items()}
    run_op("finetune", cm, {"steps": 40, "lr": 1e-2, "distill": 1.0, "temperature": 2.0}, ctx)
    assert tiny_cnn.training and all(m.training for m in tiny_cnn.modules())
    # the teacher is left as it was: weights, buffers (BatchNorm statistics: it ran in eval mode),
    # and no gradients (it ran without autograd)
    assert all(torch.equal(v, before_teacher[k]) for k, v in tiny_cnn.state_dict().items())
    assert all(p.grad is None for p in tiny_cnn.parameters())
    after = _kl_to(tiny_cnn.eval(), student, cnn_task)
    assert after < 0.5 * before, (before, after)
    for name, mask in cm.masks.items():  # the pruning survives
        p = student.get_parameter(name)
        assert int((p == 0).sum()) == int(mask.sum()) and bool((p[mask] == 0).all())


def test_distill_restores_each_module_mode(tiny_cnn_factory, cnn_task, make_ctx, run_op) -> None:
    teacher, student = tiny_cnn_factory(), tiny_cnn_factory()
    teacher.train()
    teacher.bn1.eval()  # a mix of modes comes back as it was, not flattened to the root's
    run_op("finetune", CompressedModel(student), {"steps": 1, "distill": 1.0},
           make_ctx(task=cnn_task, parent=CompressedModel(teacher)))  # fmt: skip
    assert teacher.training and teacher.conv1.training and not teacher.bn1.training


class _Counting:
    """A task that counts forward calls per model; with `loss_of` (one forward serves both losses)
    or without (the task has its loss only through `loss`)."""

    def __init__(self, inner: Any, with_loss_of: bool, labels: bool = True):
        self.inner, self.calls = inner, Counter[int]()
        self.labels = labels
        if with_loss_of:
            self.loss_of = lambda out, batch: F.cross_entropy(out, batch.targets)

    def training_batches(self, batch_size: int, seed: int) -> Any:
        return self.inner.training_batches(batch_size, seed)

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        self.calls[id(model)] += 1
        return self.inner.forward(model, batch)  # type: ignore[no-any-return]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if not self.labels:
            raise AssertionError("distill: 1 must not ask for the task's loss")
        return F.cross_entropy(self.forward(model, batch), batch.targets)


@pytest.mark.parametrize(("distill", "with_loss_of", "student_calls"), [
    (1.0, False, 1),  # the task's loss is not computed
    (0.5, True, 1),   # one forward serves both losses
    (0.5, False, 2),  # the task's own loss() runs the model again
])  # fmt: skip
def test_distill_forward_count(tiny_cnn_factory, cnn_task, make_ctx, run_op, distill: float, with_loss_of: bool,
                               student_calls: int) -> None:  # fmt: skip
    teacher, student = tiny_cnn_factory(), tiny_cnn_factory()
    task = _Counting(cnn_task, with_loss_of, labels=distill < 1)
    run_op("finetune", CompressedModel(student), {"steps": 3, "distill": distill},
           make_ctx(task=task, parent=CompressedModel(teacher)))  # fmt: skip
    assert task.calls[id(student)] == 3 * student_calls and task.calls[id(teacher)] == 3


def test_distill_mixes_the_two_losses(tiny_cnn_factory, cnn_task) -> None:
    teacher, student = tiny_cnn_factory(), tiny_cnn_factory()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1 * torch.randn_like(p))
    teacher.eval()
    student.eval()
    batch = next(cnn_task.training_batches(16, 0))
    with torch.no_grad():  # values only
        for task in (cnn_task, _Counting(cnn_task, with_loss_of=True)):
            step = _StepLoss(task, student, teacher, 0.25, 3.0, torch.device("cpu"))
            own = F.cross_entropy(cnn_task.forward(student, batch), batch.targets)
            kd = distillation_loss(cnn_task.forward(student, batch), cnn_task.forward(teacher, batch), 3.0)
            assert float(step(batch)) == pytest.approx(float(0.75 * own + 0.25 * kd), rel=1e-5)
        plain = _StepLoss(cnn_task, student, None, 0.0, 3.0, torch.device("cpu"))
        assert float(plain(batch)) == pytest.approx(float(F.cross_entropy(cnn_task.forward(student, batch),
                                                                          batch.targets)), rel=1e-6)  # fmt: skip


def test_distill_errors(tiny_cnn, cnn_task, make_ctx, run_op) -> None:
    with pytest.raises(OpError, match="has none") as e:
        run_op("finetune", CompressedModel(tiny_cnn), {"steps": 1, "distill": 1.0}, make_ctx(task=cnn_task))
    assert e.value.param == "distill"
    with pytest.raises(OpError) as e:
        run_op("finetune", CompressedModel(tiny_cnn), {"temperature": 0.0}, make_ctx(task=cnn_task))
    assert e.value.param == "temperature"
    with pytest.raises(OpError) as e:
        run_op("finetune", CompressedModel(tiny_cnn), {"distill": 1.5}, make_ctx(task=cnn_task))
    assert e.value.param == "distill"


class _Encoder(nn.Module):
    """Token embeddings through a linear layer, in the shape of a Hugging Face encoder output."""

    def __init__(self, vocab: int, dim: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"last_hidden_state": self.proj(self.emb(input_ids))}


def _sentences(tmp_path: Path, train: bool) -> SentenceEmbeddingTask:
    tok = CharTokenizer.build("abcdefgh ")
    tok.save(tmp_path)
    g = torch.Generator().manual_seed(0)
    letters = "abcdefgh"

    def lines(n: int) -> str:
        return "\n".join(
            "".join(letters[int(i)] for i in torch.randint(0, 8, (6,), generator=g)) for _ in range(n)
        )

    (tmp_path / "eval.txt").write_text(lines(24))
    (tmp_path / "train.txt").write_text(lines(64))
    options = {"data": "eval.txt", "tokenizer": ".", **({"train": "train.txt"} if train else {})}
    return SentenceEmbeddingTask(options, tmp_path)


def test_distill_trains_a_sentence_encoder_without_labels(tmp_path: Path, make_ctx, run_op) -> None:
    task = _sentences(tmp_path, train=True)
    torch.manual_seed(0)
    teacher = _Encoder(task.tokenizer.vocab_size)
    student = copy.deepcopy(teacher)
    ctx = make_ctx(task=task, parent=CompressedModel(teacher))
    cm = run_op(
        "prune.magnitude",
        CompressedModel(student),
        {"sparsity": 0.6, "scope": "layer", "include": ["*"]},
        ctx,
    )
    ref = task.evaluate(teacher, torch.device("cpu"))

    def agreement() -> float:
        ev = task.evaluate(student, torch.device("cpu"), reference=ref)
        return next(m.value for m in ev.metrics if m.name == "cosine_agreement")

    before = agreement()
    run_op("finetune", cm, {"steps": 150, "lr": 1e-2, "batch_size": 16, "distill": 1.0}, ctx)
    after = agreement()
    assert after > before + 0.5 * (1 - before), (before, after)  # half the lost agreement back at least
    for name, mask in cm.masks.items():
        assert bool((student.get_parameter(name)[mask] == 0).all())


class _SmoothedLabels(TextClassificationTask):
    """A user task that changes only `loss`: the loss_of it inherits is not its loss."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return 100 * F.cross_entropy(self.forward(model, batch), batch.targets, label_smoothing=0.5)


class _FirstChar(nn.Module):
    def __init__(self, vocab: int, classes: int):
        super().__init__()
        self.table = nn.Embedding(vocab, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.table(input_ids[:, 0])


def _text_task(tmp_path: Path, cls: type[TextClassificationTask] = TextClassificationTask,
               train: bool = True) -> TextClassificationTask:  # fmt: skip
    rows = [{"text": t, "label": t[0]} for t in ("ab", "ba", "aa", "bb")]
    for name in ("eval.jsonl", "train.jsonl"):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in rows))
    CharTokenizer.build("ab").save(tmp_path)
    return cls(
        {"data": "eval.jsonl", "tokenizer": ".", **({"train": "train.jsonl"} if train else {})}, tmp_path
    )


def test_distill_mixes_in_a_subclass_own_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    for cls in (TextClassificationTask, _SmoothedLabels):
        task = _text_task(tmp_path, cls)
        teacher, student = _FirstChar(8, 2), _FirstChar(8, 2)
        batch = next(task.training_batches(4, 0))
        step = _StepLoss(task, student, teacher, 0.5, 1.0, torch.device("cpu"))
        with torch.no_grad():
            kd = task.distill_loss(task.forward(student, batch), task.forward(teacher, batch), 1.0)
            own = task.loss(student, batch)
            assert float(step(batch)) == pytest.approx(float(0.5 * own + 0.5 * kd), rel=1e-5)


def test_distill_refuses_a_text_task_without_training_data(tmp_path: Path, make_ctx, run_op) -> None:
    task = _text_task(tmp_path, train=False)
    with pytest.raises(OpError, match="its `train` option") as e:
        run_op("finetune", CompressedModel(_FirstChar(8, 2)), {"steps": 1, "distill": 1.0},
               make_ctx(task=task, parent=CompressedModel(_FirstChar(8, 2))))  # fmt: skip
    assert e.value.param == "distill"


@pytest.mark.parametrize(("train", "distill", "match"), [
    (False, 1.0, "evaluation data"),  # it would fit the sentences it is judged on
    (True, 0.5, "set distill: 1"),  # below 1 the task's own loss is trained too, and it has none
])  # fmt: skip
def test_distill_refuses_a_sentence_task_it_cannot_train_on(tmp_path: Path, make_ctx, run_op, train: bool,
                                                            distill: float, match: str) -> None:  # fmt: skip
    task = _sentences(tmp_path, train=train)
    teacher = _Encoder(task.tokenizer.vocab_size)
    with pytest.raises(OpError, match=match) as e:
        run_op("finetune", CompressedModel(copy.deepcopy(teacher)), {"steps": 1, "distill": distill},
               make_ctx(task=task, parent=CompressedModel(teacher)))  # fmt: skip
    assert e.value.param == "distill"


class _Broken(nn.Module):
    """A parent whose outputs overflowed."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return torch.where(torch.arange(y.shape[1]) == 0, torch.full_like(y, float("inf")), y)


def test_distill_refuses_a_parent_with_overflowing_outputs(
    tiny_cnn_factory, cnn_task, make_ctx, run_op
) -> None:
    teacher = _Broken(tiny_cnn_factory())
    with pytest.raises(OpError, match=r"NaN or \+inf") as e:
        run_op("finetune", CompressedModel(tiny_cnn_factory()), {"steps": 1, "distill": 1.0},
               make_ctx(task=cnn_task, parent=CompressedModel(teacher)))  # fmt: skip
    assert e.value.param == "distill"


def test_distill_needs_float_outputs(tiny_cnn_factory, cnn_task, make_ctx, run_op) -> None:
    class Argmax(_Counting):
        def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
            return self.inner.forward(model, batch).argmax(1)  # type: ignore[no-any-return]

    with pytest.raises(OpError, match="int64 without gradients") as e:
        run_op("finetune", CompressedModel(tiny_cnn_factory()), {"steps": 1, "distill": 1.0},
               make_ctx(task=Argmax(cnn_task, False), parent=CompressedModel(tiny_cnn_factory())))  # fmt: skip
    assert e.value.param == "distill"
