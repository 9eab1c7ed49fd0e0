"""What image and text classification share: metrics on class probabilities, labels, groupings."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import F, nn, torch

from .base import Batch, Evaluation, Metric, Task, distillation_loss, no_grad
from .common import fail, logits_of, option


def classification_metrics(
    probs: torch.Tensor,
    targets: torch.Tensor,
    class_names: Sequence[str],
    *,
    top_k: int = 5,
    reference: Evaluation | None = None,
) -> list[Metric]:
    """Accuracy, top-k accuracy, per-class accuracy, cross-entropy and agreement with the base.

    `probs` [N, C] are softmax outputs; `targets` [N] class indices. Accuracies are in percent.
    Agreement is the share of instances whose predicted class equals the reference's; without a
    reference the model is its own reference (the base model), so agreement is 100%.
    """
    n, c = probs.shape
    pred = probs.argmax(dim=1)
    correct = pred == targets
    metrics = [Metric("accuracy", _pct(correct), "%", True, headline=True)]
    k = min(top_k, c)
    if k > 1:
        topk = probs.topk(k, dim=1).indices
        hit = (topk == targets[:, None]).any(dim=1)
        metrics.append(Metric(f"top{k}_accuracy", _pct(hit), "%", True))
    p_true = probs[torch.arange(n), targets].clamp_min(1e-12)
    metrics.append(Metric("cross_entropy", float(-p_true.log().mean()) if n else math.nan, "nats", False))
    ref_pred = reference.predictions if reference is not None and reference.predictions is not None else pred
    if ref_pred.shape != pred.shape:
        raise ValueError(f"reference has {tuple(ref_pred.shape)} predictions, this model {tuple(pred.shape)}")
    metrics.append(
        Metric(
            "agreement",
            _pct(pred == ref_pred.to(pred.device)),
            "%",
            True,
            headline=True,
            detail="share of instances with the same predicted class as the base model",
        )
    )
    for ci, name in enumerate(class_names):
        in_class = targets == ci
        if int(in_class.sum()) == 0:
            continue
        metrics.append(
            Metric(
                f"class_accuracy/{name}",
                _pct(correct[in_class]),
                "%",
                True,
                detail=f"{int(in_class.sum())} instances",
            )
        )
    return metrics


def confusion(pred: torch.Tensor, targets: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Confusion matrix [true][predicted] as nested lists (JSON-friendly)."""
    m = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    m.index_put_((targets.long(), pred.long()), torch.ones_like(targets, dtype=torch.int64), accumulate=True)
    return m.tolist()


def _pct(mask: torch.Tensor) -> float:
    # exact counts, so 4 of 5 is 80.0 and not a float32 rounding of it
    return 100.0 * int(mask.sum()) / mask.numel() if mask.numel() else math.nan


class ClassificationTask(Task):
    """Evaluation shared by classification tasks; subclasses provide data and rendering."""

    #: how many instances the default batch size feeds the model at once
    eval_batch_size = 64

    @property
    @abstractmethod
    def num_classes(self) -> int: ...

    @abstractmethod
    def eval_targets(self) -> torch.Tensor: ...

    @abstractmethod
    def eval_ids(self) -> list[str]: ...

    def class_names(self) -> list[str]:
        return [str(i) for i in range(self.num_classes)]

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs = batch.inputs
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
        return logits_of(out)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.loss_of(self.forward(model, batch), batch)

    def loss_of(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        if batch.targets is None:
            raise fail(self.kind, "a training batch has no labels")
        return F.cross_entropy(self._checked_logits(outputs), batch.targets)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        # the task's classes only: a model with spare output columns is scored on the first ones
        return distillation_loss(self._checked_logits(student), self._checked_logits(teacher), temperature)

    def _checked_logits(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[1] < self.num_classes:
            raise fail(
                self.kind,
                f"the model outputs shape {tuple(logits.shape)}; expected "
                f"[batch, {self.num_classes}] class scores for {self.num_classes} classes",
            )
        return logits[:, : self.num_classes] if logits.shape[1] > self.num_classes else logits

    @no_grad
    def evaluate(
        self, model: nn.Module, device: torch.device, reference: Evaluation | None = None
    ) -> Evaluation:
        was_training = model.training
        model.eval()
        try:
            probs = torch.cat(list(self._probs(model, device)))
        finally:
            model.train(was_training)
        targets = self.eval_targets()
        names = self.class_names()
        top_k = option(self.kind, self.options, "top_k", int, 5)
        metrics = classification_metrics(probs, targets, names, top_k=top_k, reference=reference)
        pred = probs.argmax(dim=1)
        extras: dict[str, Any] = {
            "confusion": confusion(pred, targets, self.num_classes),
            "class_names": names,
        }
        return Evaluation(
            metrics=metrics,
            ids=self.eval_ids(),
            outputs=probs,
            predictions=pred,
            targets=targets,
            extras=extras,
        )

    def _probs(self, model: nn.Module, device: torch.device) -> Iterator[torch.Tensor]:
        for batch in self.eval_batches(self.eval_batch_size):
            logits = self._checked_logits(self.forward(model, self.to_device(batch, device)))
            yield logits.float().softmax(dim=1).cpu()

    def groupings(self) -> dict[str, dict[str, str]]:
        names = self.class_names()
        labels = self.eval_targets().tolist()
        return {"label": {i: names[t] for i, t in zip(self.eval_ids(), labels, strict=True)}}
