"""Distillation losses of the task contract, and the sentence-embedding task's training sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelbonsai.tasks import (
    CausalLMTask,
    ImageClassificationTask,
    SentenceEmbeddingTask,
    TaskError,
    TextClassificationTask,
)
from modelbonsai.tasks.base import Batch, distillation_loss
from modelbonsai.tasks.tokenize import CharTokenizer


def _kl64(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    """KL(teacher || student) of the softmax at t, per row, averaged over rows, times t² (float64)."""
    s = torch.softmax(student.double().reshape(-1, student.shape[-1]) / t, -1)
    p = torch.softmax(teacher.double().reshape(-1, teacher.shape[-1]) / t, -1)
    return float((p * (p.log() - s.log())).sum(-1).mean()) * t * t


@pytest.mark.parametrize("shape", [(8, 5), (3, 4, 7)])  # class scores; token scores [batch, tokens, vocab]
@pytest.mark.parametrize("t", [1.0, 2.0, 4.5])
def test_distillation_loss_is_kl_at_temperature(shape: tuple[int, ...], t: float) -> None:
    g = torch.Generator().manual_seed(0)
    s, p = torch.randn(shape, generator=g) * 3, torch.randn(shape, generator=g) * 3
    assert float(distillation_loss(s, p, t)) == pytest.approx(_kl64(s, p, t), rel=1e-5)
    assert float(distillation_loss(p, p, t)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_loss_of_scores_and_mismatched_shapes() -> None:
    s, p = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 0.0, 4.0])
    assert float(distillation_loss(s, p, 2.0)) == pytest.approx(4.0 / 3)  # [batch] scores: MSE
    # one column ([batch, 1]: a single logit, a regression head): a softmax over it is always 1,
    # so the KL would be 0 whatever the model does; compared as scores too
    assert float(distillation_loss(s[:, None], p[:, None], 2.0)) == pytest.approx(4.0 / 3)
    with pytest.raises(TaskError, match="do not match its teacher's"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)


def test_distillation_loss_with_classes_the_teacher_rules_out() -> None:
    """A teacher score of -inf (a masked class: probability 0) adds nothing, instead of NaN."""
    s = torch.tensor([[1.0, 2.0, 0.5]])
    p = torch.tensor([[2.0, float("-inf"), 0.0]])
    q = torch.softmax(p.double(), -1)[0, [0, 2]]
    ls = torch.log_softmax(s.double(), -1)[0, [0, 2]]
    want = float((q * (q.log() - ls)).sum())
    assert float(distillation_loss(s, p, 1.0)) == pytest.approx(want, rel=1e-5)


def test_distillation_loss_has_gradients_toward_the_teacher() -> None:
    s = torch.zeros(4, 3, requires_grad=True)
    p = torch.tensor([[5.0, 0, 0]] * 4)
    distillation_loss(s, p, 2.0).backward()
    assert s.grad is not None and bool((s.grad[:, 0] < 0).all())  # a descent step raises class 0


def _embedding_task(tmp_path: Path, **options: str) -> SentenceEmbeddingTask:
    tok = CharTokenizer.build("abcd ")
    tok.save(tmp_path)
    (tmp_path / "s.txt").write_text("ab\nba\ncd\ndc\n")
    (tmp_path / "train.jsonl").write_text('{"text": "aa"}\n{"text": "bb"}\n{"text": "cc"}\n')
    return SentenceEmbeddingTask({"data": "s.txt", "tokenizer": ".", **options}, tmp_path)


def test_sentence_embedding_trains_on_its_train_file(tmp_path: Path) -> None:
    task = _embedding_task(tmp_path, train="train.jsonl")
    assert not task.training_split_is_eval
    batch = next(task.training_batches(3, 0))
    assert sorted(batch.ids) == ["train/0", "train/1", "train/2"]
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"].bool()
    texts = {task.tokenizer.decode(row[m].tolist()) for row, m in zip(ids, mask, strict=True)}
    assert texts == {"aa", "bb", "cc"}
    # the evaluation sentences are untouched
    assert [b.ids for b in task.eval_batches(8)] == [["0", "1", "2", "3"]]


def test_sentence_embedding_without_a_train_file_trains_on_the_evaluation(tmp_path: Path) -> None:
    task = _embedding_task(tmp_path)
    assert task.training_split_is_eval
    assert sorted(next(task.training_batches(4, 0)).ids) == ["0", "1", "2", "3"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(TaskError, match="`train` file holds no sentences"):
        _embedding_task(tmp_path, train="empty.txt")
    with pytest.raises(TaskError, match="train"):
        _embedding_task(tmp_path, train="missing.txt")


def test_sentence_embedding_distill_loss_is_one_minus_cosine(tmp_path: Path) -> None:
    task = _embedding_task(tmp_path)
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    want = ((1 - 2**-0.5) + 0.0) / 2
    assert float(task.distill_loss(s, p, 7.0)) == pytest.approx(want)
    with pytest.raises(TaskError, match="embeddings"):
        task.distill_loss(s, p[:, :1], 1.0)


def test_classification_distills_and_trains_on_its_classes_only(tmp_path: Path) -> None:
    """Spare output columns (a head wider than the task's classes) are left out of both losses."""
    save_file({"images": torch.zeros(4, 1, 1, 3), "labels": torch.tensor([0, 1, 2, 1])},
              str(tmp_path / "eval.safetensors"))  # fmt: skip
    task = ImageClassificationTask({"data": "."}, tmp_path)
    g = torch.Generator().manual_seed(1)
    s, p = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    assert float(task.distill_loss(s, p, 2.0)) == pytest.approx(_kl64(s[:, :3], p[:, :3], 2.0), rel=1e-5)
    batch = Batch(["0", "1", "2", "3"], torch.zeros(4, 1, 1, 3), torch.tensor([0, 1, 2, 1]))
    want = float(torch.nn.functional.cross_entropy(s[:, :3], batch.targets))
    assert float(task.loss_of(s, batch)) == pytest.approx(want)
    assert task.training_split_is_eval is False  # images train on train.safetensors or not at all


def test_text_classification_without_a_train_file_trains_on_its_evaluation(tmp_path: Path) -> None:
    rows = [{"text": "ab", "label": "x"}, {"text": "ba", "label": "y"}]
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    CharTokenizer.build("ab").save(tmp_path)
    assert TextClassificationTask({"data": "eval.jsonl", "tokenizer": "."}, tmp_path).training_split_is_eval
    given = TextClassificationTask({"data": "eval.jsonl", "train": "train.jsonl", "tokenizer": "."}, tmp_path)
    assert not given.training_split_is_eval


def test_causal_lm_loss_of_is_its_loss(tmp_path: Path) -> None:
    tok = CharTokenizer.build("ab")
    tok.save(tmp_path)
    (tmp_path / "t.txt").write_text("abba" * 30)
    task = CausalLMTask({"data": "t.txt", "tokenizer": ".", "context": 8}, tmp_path)
    assert not task.training_split_is_eval  # it holds out the tail of the text
    batch = next(task.training_batches(4, 0))
    model = torch.nn.Embedding(tok.vocab_size, tok.vocab_size)
    with torch.no_grad():
        out = task.forward(model, batch)
        assert float(task.loss_of(out, batch)) == pytest.approx(float(task.loss(model, batch)))
