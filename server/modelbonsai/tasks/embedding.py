"""`sentence-embedding`: mean-pooled, normalised embeddings compared with the base model's."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import F, nn, torch

from .base import Batch, Evaluation, Metric, RenderedInstance, Task, TaskError, check_teacher_shape, no_grad
from .common import endless_shuffle, fail, hidden_states_of, limit, option, read_jsonl, resolve_path
from .tokenize import TextTokenizer, resolve_tokenizer

KIND = "sentence-embedding"


class SentenceEmbeddingTask(Task):
    """Sentences from a text file (one per line) or a JSONL of {"text", ...attributes}.

    The model is an encoder (e.g. a Hugging Face BertModel); its token states are mean-pooled over
    the attention mask and L2-normalised. There are no labels: the model is judged by how well its
    embeddings agree with the base model's (cosine per sentence, and nearest neighbours).
    """

    kind = KIND
    options = {  # noqa: RUF012  (class-level option schema; instances hold the values)
        "data": ("path", 'sentences: a text file with one per line, or a JSONL of {"text", ...}'),
        "train": (
            "path",
            "sentences to train on (finetune's `distill`, calibration), in the same formats "
            "(default: the evaluation sentences, which distillation refuses)",
        ),
        "tokenizer": ("path", "tokenizer folder (default: the base model's folder)"),
        "max_length": ("int", "longest input in tokens (default 128)"),
        "k": ("int", "neighbours compared by the overlap@k metric (default 5)"),
    }

    @classmethod
    def trains_on_evaluation(cls, options: Mapping[str, Any]) -> bool:
        return options.get("train") is None  # without `train`, training batches are the evaluation rows

    def __init__(
        self,
        options: Mapping[str, Any],
        root: Path,
        *,
        max_instances: int | None = None,
        model_path: Path | None = None,
    ) -> None:
        super().__init__(options, root, max_instances=max_instances, model_path=model_path)
        path = resolve_path(KIND, root, option(KIND, self.options, "data", str, required=True), "data")
        self.max_length = option(KIND, self.options, "max_length", int, 128)
        self.k = option(KIND, self.options, "k", int, 5)
        if self.k < 1:
            raise fail(KIND, f"option 'k' must be at least 1, got {self.k}")
        rows = _read_sentences(path)
        if len(rows) < 2:
            raise fail(KIND, f"{path.name} holds {len(rows)} sentence(s); expected at least 2")
        self.total_instances = len(rows)
        rows = rows[: limit(len(rows), max_instances)]
        self.ids = [str(r.get("id", i)) for i, r in enumerate(rows)]
        self.texts = [str(r["text"]) for r in rows]
        self.attrs = [
            {k: str(v) for k, v in r.items() if k not in ("text", "id") and isinstance(v, (str, int))}
            for r in rows
        ]
        train = option(KIND, self.options, "train", str)
        self.train_texts = self.texts
        if train is not None:
            rows = _read_sentences(resolve_path(KIND, root, train, "train"))
            if not rows:
                raise fail(KIND, "the `train` file holds no sentences")
            self.train_texts = [str(r["text"]) for r in rows]
        self._tok: TextTokenizer | None = None

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tok is None:
            self._tok = resolve_tokenizer(KIND, self.options, self.root, self.model_path)
        return self._tok

    def _batch(self, idx: list[int]) -> Batch:
        return Batch(
            [self.ids[i] for i in idx], self.tokenizer.batch([self.texts[i] for i in idx], self.max_length)
        )

    def _train_batch(self, idx: list[int]) -> Batch:
        if self.training_split_is_eval:
            return self._batch(idx)
        texts = [self.train_texts[i] for i in idx]
        return Batch([f"train/{i}" for i in idx], self.tokenizer.batch(texts, self.max_length))

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.ids), batch_size):
            yield self._batch(list(range(start, min(len(self.ids), start + batch_size))))

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        # unlabelled: for calibration, BN statistics and distillation; `loss` explains why not for
        # plain finetune
        for idx in endless_shuffle(len(self.train_texts), batch_size, seed):
            yield self._train_batch(idx)

    def example_batch(self, batch_size: int) -> Batch:
        return self._batch(list(range(min(batch_size, len(self.ids)))))

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs = batch.inputs
        states = hidden_states_of(model(**inputs))
        return mean_pool(states, inputs["attention_mask"])

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """1 - cosine of each sentence's embedding with the teacher's, averaged: the agreement the
        task scores (embeddings are compared by direction; `temperature` has no part here)."""
        check_teacher_shape(student, teacher, "embeddings")
        return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise TaskError(
            f"task {KIND}: has no labels, so it has no training loss for finetune; distil "
            "from the parent instead (finetune: {distill: 1}, with the task's `train` sentences), or use "
            "a labelled task or a user task that defines loss()"
        )

    @no_grad
    def evaluate(
        self, model: nn.Module, device: torch.device, reference: Evaluation | None = None
    ) -> Evaluation:
        was_training = model.training
        model.eval()
        try:
            parts = [
                self.forward(model, self.to_device(b, device)).float().cpu() for b in self.eval_batches(32)
            ]
        finally:
            model.train(was_training)
        emb = torch.cat(parts)
        ref = reference.outputs if reference is not None else emb
        if ref.shape != emb.shape:
            raise fail(
                KIND,
                f"the base model's embeddings are {tuple(ref.shape)}, this model's "
                f"{tuple(emb.shape)}; expected the same sentences and dimension",
            )
        return Evaluation(metrics=embedding_metrics(emb, ref, self.k), ids=list(self.ids), outputs=emb)

    def groupings(self) -> dict[str, dict[str, str]]:
        keys = sorted({k for a in self.attrs for k in a})
        return {key: {i: a.get(key, "") for i, a in zip(self.ids, self.attrs, strict=True)} for key in keys}

    def render(self, instance_id: str) -> RenderedInstance:
        try:
            i = self.ids.index(instance_id)
        except ValueError:
            raise TaskError(f"task {KIND}: no instance '{instance_id}' in the evaluation data") from None
        return RenderedInstance(id=instance_id, kind="text", text=self.texts[i])


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states where mask is 1, L2-normalised (as sentence-transformers does)."""
    m = mask.to(states.dtype)[..., None]
    pooled = (states * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def neighbours(emb: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [N, k] of each row's k most cosine-similar other rows (itself excluded)."""
    e = torch.nn.functional.normalize(emb.double(), dim=-1)
    sim = e @ e.T
    sim.fill_diagonal_(-math.inf)
    return sim.topk(min(k, len(e) - 1), dim=1).indices


def embedding_metrics(emb: torch.Tensor, ref: torch.Tensor, k: int) -> list[Metric]:
    """Cosine agreement with the reference (mean and min) and nearest-neighbour overlap@k."""
    cos = torch.nn.functional.cosine_similarity(emb.double(), ref.double(), dim=-1)
    mine, theirs = neighbours(emb, k), neighbours(ref, k)
    kk = mine.shape[1]
    overlap = [len(set(a) & set(b)) / kk for a, b in zip(mine.tolist(), theirs.tolist(), strict=True)]
    return [
        Metric(
            "cosine_agreement",
            float(cos.mean()),
            "",
            True,
            headline=True,
            detail="mean cosine between this model's and the base model's embedding of each sentence",
        ),
        Metric("cosine_agreement_min", float(cos.min()), "", True, detail="worst sentence"),
        Metric(
            f"neighbour_overlap@{kk}",
            100.0 * sum(overlap) / len(overlap),
            "%",
            True,
            headline=True,
            detail=f"share of each sentence's {kk} nearest neighbours that are also the base model's",
        ),
    ]


def _read_sentences(path: Path) -> list[dict[str, Any]]:
    """Rows of {"text", ...attributes}: a JSONL file, or a text file with one sentence per line."""
    if path.suffix == ".jsonl":
        rows = read_jsonl(KIND, path)
        bad = next((i for i, r in enumerate(rows, 1) if not isinstance(r.get("text"), str)), None)
        if bad is not None:
            raise fail(KIND, f"{path.name} line {bad}: expected a string 'text' field")
        return rows
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{"text": line.strip()} for line in lines if line.strip()]
