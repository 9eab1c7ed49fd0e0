"""The task contract: how Bonsai evaluates a model and what it knows about each instance.

A task loads its evaluation data (and training data, for `finetune`), runs a model on a batch,
scores it, groups instances, and renders an instance for the UI. Comparisons and the runner only
talk to tasks through this class.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import F, nn, torch

from ..errors import UserError

T = TypeVar("T")


def no_grad(fn: Callable[..., T]) -> Callable[..., T]:
    """`@torch.no_grad()` that imports torch when the function runs, not when it is defined (a
    decorator runs at import: the task classes are read by the experiment file's validation,
    which must not import torch)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


class TaskError(UserError, ValueError):
    """A user-facing problem with a task or its data: names the task and what it expected."""


def check_teacher_shape(student: torch.Tensor, teacher: torch.Tensor, what: str = "outputs") -> None:
    """Distillation compares like with like: the same output shape on both sides."""
    if student.shape != teacher.shape:
        raise TaskError(f"the model's {what} {tuple(student.shape)} do not match its teacher's "
                        f"{tuple(teacher.shape)}; distillation needs the same output shape")  # fmt: skip


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """How far a student's class (or token) scores are from a teacher's: KL(teacher || student) of
    their softmax at `temperature` over the last dim, averaged over every other position, times
    temperature² (so the gradient's scale does not shrink as the temperature rises). Outputs with
    no class dim, or a single column ([batch] or [batch, 1] scores: a softmax over one value is
    always 1), are compared by mean squared error."""
    check_teacher_shape(student, teacher)
    s, t = student.float(), teacher.float()
    if s.dim() < 2 or s.shape[-1] == 1:
        return F.mse_loss(s, t)
    log_s = F.log_softmax(s / temperature, dim=-1).flatten(0, -2)
    # probabilities, not log-probabilities, as the target: a class the teacher rules out (a score
    # of -inf, probability 0) then adds 0, where the log form gives 0 * -inf = NaN
    p = F.softmax(t / temperature, dim=-1).flatten(0, -2)
    return F.kl_div(log_s, p, reduction="batchmean") * (temperature * temperature)


@dataclass
class Batch:
    """A batch of instances. `ids` are stable instance ids (strings) across runs."""

    ids: list[str]
    inputs: Any  # tensor or dict of tensors, moved to the device by `Task.to_device`
    targets: torch.Tensor | None = None


@dataclass
class Metric:
    name: str
    value: float
    unit: str = ""
    higher_is_better: bool = True
    headline: bool = False  # shown in CodeLens / tree descriptions
    detail: str = ""  # how it was measured (e.g. "median of 20 runs, batch 32, cuda events")


@dataclass
class Evaluation:
    """The result of evaluating one model on the task's evaluation split.

    `outputs` holds per-instance model outputs aligned with `ids` (e.g. class probabilities
    [N, C], embeddings [N, D], or per-token log-probs); `predictions` holds the discrete
    prediction per instance where the task has one (class index, or -1).
    """

    metrics: list[Metric]
    ids: list[str]
    outputs: torch.Tensor
    predictions: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. generations for causal LMs


@dataclass
class RenderedInstance:
    id: str
    kind: Literal["image", "text", "tokens"]
    label: str | None = None
    png: bytes | None = None
    text: str | None = None
    tokens: list[str] | None = None


class Task(ABC):
    """Base class of every task. Subclasses set `kind` and implement the abstract methods."""

    kind: str = ""
    #: On the class: option name -> (type, doc) for the experiment file's `task:` section
    #: (validation, completion). On an instance: the option values from the experiment file.
    options: Mapping[str, Any] = {}
    #: How many evaluation instances the data holds before `max_instances` cuts it (None: the
    #: task does not say). Known once the evaluation split is loaded; the runner stores it so a
    #: limit at or above it counts as "every instance" (runner.evaluated_fingerprint).
    total_instances: int | None = None

    def __init__(
        self,
        options: Mapping[str, Any],
        root: Path,
        *,
        max_instances: int | None = None,
        model_path: Path | None = None,
    ):
        # `root` is the experiment file's folder: relative paths in `options` resolve against it.
        # `model_path` is where the base model was loaded from (a Hugging Face folder or a weights
        # file); text tasks fall back to the tokenizer stored there when `tokenizer` is not given.
        self.options = dict(options)
        self.root = root
        self.max_instances = max_instances
        self.model_path = model_path

    @property
    def training_split_is_eval(self) -> bool:
        """Whether `training_batches` are the evaluation instances (no training data of its own):
        fine for calibration, refused by distillation, which would fit what it is judged on."""
        return self.trains_on_evaluation(self.options)

    @classmethod
    def trains_on_evaluation(cls, options: Mapping[str, Any]) -> bool:
        """Whether, with these options, `training_batches` would be the evaluation instances
        (the experiment file is checked with it before anything is loaded)."""
        return False

    # -- data ---------------------------------------------------------------------------------
    @abstractmethod
    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """The evaluation split, in a fixed order, at most `max_instances` instances."""

    @abstractmethod
    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        """An endless, seeded shuffle of the training split (for finetune and BN recalibration)."""

    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Batch]:
        it = self.training_batches(batch_size, seed)
        for _ in range(n):
            yield next(it)

    @abstractmethod
    def example_batch(self, batch_size: int) -> Batch:
        """A representative batch for latency and memory measurement."""

    # -- running ------------------------------------------------------------------------------
    @abstractmethod
    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Run the model on a batch (already on the device); returns the per-instance outputs."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Training loss on a batch, for finetune."""

    def loss_of(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        """The training loss of the outputs `forward` already gave for `batch`, or None when the
        task has its loss only through `loss` (finetune's distillation then runs the model twice
        per step: once for each loss)."""
        return None

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """How far the outputs `forward` gave for a batch are from a teacher model's, for
        finetune's `distill` (default: :func:`distillation_loss`, for class or token scores)."""
        return distillation_loss(student, teacher, temperature)

    @abstractmethod
    def evaluate(
        self, model: nn.Module, device: torch.device, reference: Evaluation | None = None
    ) -> Evaluation:
        """Score the model. `reference` is the base model's evaluation, for agreement metrics."""

    # -- instances ----------------------------------------------------------------------------
    def groupings(self) -> dict[str, dict[str, str]]:
        """Grouping name -> (instance id -> group label). The default groups by target label."""
        return {}

    def class_names(self) -> list[str] | None:
        return None

    @abstractmethod
    def render(self, instance_id: str) -> RenderedInstance:
        """How the UI shows an instance."""

    def render_prediction(self, value: Any) -> list[str] | None:
        """A stored prediction or target as the UI shows it beside a rendered instance: the text of
        each token for a token sequence (causal LM), None to show the value itself (a class index,
        shown by its class name)."""
        return None

    @staticmethod
    def to_device(batch: Batch, device: torch.device) -> Batch:
        def move(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.to(device)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            return x

        return Batch(ids=batch.ids, inputs=move(batch.inputs), targets=move(batch.targets))
