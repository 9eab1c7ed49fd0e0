"""Fine-tuning: a few steps of training to recover accuracy, with compression held fixed; on the
task's loss, on the parent model's outputs (distillation), or a mix of the two."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .targets import move_batch, need_task, to_device

OP = "finetune"


def _lr_factor(schedule: str, warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _optimizer(name: str, params: list[nn.Parameter], p: dict[str, Any]) -> torch.optim.Optimizer:
    lr, wd = p["lr"], p["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=p["momentum"], weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def _training_size(task: Any) -> int | None:
    size = getattr(task, "training_size", None)
    if callable(size):
        size = size()
    return int(size) if isinstance(size, int) and size > 0 else None


def _steps(task: Any, params: dict[str, Any]) -> int:
    epochs = params.get("epochs")
    if epochs is None:
        return int(params["steps"])
    size = _training_size(task)
    if size is None:
        raise OpError(
            OP, "this task does not say how large its training split is; use 'steps'", param="epochs"
        )
    return max(1, math.ceil(epochs * size / params["batch_size"]))


@register_op(
    OP,
    family="training",
    summary="Fine-tune on the task's training split (its labels, the parent model's outputs, or both), "
            "keeping pruning masks and quantization fixed.",
    params=[
        Param("steps", "int", "Optimizer steps (ignored when `epochs` is given).", default=100, minimum=1, maximum=10_000_000),
        Param("epochs", "float", "Passes over the training split (needs a task that knows its size).",
              minimum=0.0, exclusive_minimum=True, maximum=1000.0),
        Param("lr", "float", "Peak learning rate.", default=1e-4, minimum=0.0, exclusive_minimum=True, maximum=10.0),
        Param("optimizer", "enum", "Optimizer.", default="adamw", choices=("adam", "adamw", "sgd")),
        Param("schedule", "enum", "Learning-rate schedule after warm-up.", default="constant",
              choices=("constant", "cosine", "linear")),
        Param("warmup_steps", "int", "Steps of linear learning-rate warm-up.", default=0, minimum=0, maximum=1_000_000),
        Param("batch_size", "int", "Instances per training batch.", default=32, minimum=1, maximum=4096),
        Param("weight_decay", "float", "Weight decay (decoupled for adamw).", default=0.0, minimum=0.0, maximum=1.0),
        Param("momentum", "float", "Momentum (sgd only).", default=0.9, minimum=0.0, maximum=1.0, exclusive_maximum=True),
        Param("max_grad_norm", "float", "Clip the gradient norm to this value; 0 turns clipping off.",
              default=1.0, minimum=0.0, maximum=1e6),
        Param("distill", "float", "Weight of distillation from the parent model (the variant's `from`): the "
              "loss is (1 - distill) x the task's loss + distill x the distance of the model's outputs from "
              "the parent's. 1 learns from the parent alone (no labels needed).",
              default=0.0, minimum=0.0, maximum=1.0, needs_training_data=True),
        Param("temperature", "float", "Softmax temperature of the distillation loss on class or token scores.",
              default=2.0, minimum=0.0, exclusive_minimum=True, maximum=100.0),
        # no default: a default would enter the fingerprint of every finetune made before it existed
        Param("palette", "enum", "Palettized weights: `fixed` (the default) keeps each look-up table as "
              "`palettize` made it and trains which entry a weight takes; `learned` also moves every "
              "entry to the mean of the weights nearest to it after each step (trained centroids).",
              choices=("fixed", "learned")),
    ],
    needs_task=True,
    reads_parent=lambda params: float(params.get("distill") or 0.0) > 0.0,  # the teacher
)  # fmt: skip
def finetune(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Train for `steps` (or `epochs`) on the task's training batches to recover accuracy.

    Compression stays exactly as it was:
    - pruned weights (`cm.masks`) get zero gradients and are set back to zero after every step,
      so sparsity and N:M patterns survive;
    - quantized weights are trained straight-through: the forward pass uses the weights projected
      onto their quantization grid (`encoding.project`), the optimizer updates a float copy, and
      the projection is applied again after every step, so updates smaller than one quantization
      step accumulate instead of being rounded away. The stored model is on the grid.
      Palettized weights (`palettize`) are trained the same way on their look-up table; with
      `palette: learned` each table entry also moves, after every step, to the mean of the float
      weights nearest to it (a k-means step: trained centroids, as in DKM).

    With `distill` > 0 the parent model (the variant's `from`, so `ops: [prune..., finetune]`
    learns from the uncompressed model) teaches: both run on each training batch, and the task's
    `distill_loss` measures how far this model's outputs are from the parent's (KL of the softmax
    at `temperature` for class and token scores, 1 - cosine for sentence embeddings). The task's
    own loss is mixed in with weight 1 - distill; at 1 it is not computed, so a task without labels
    can be trained. Distillation refuses a task whose training batches are its evaluation data.

    Batches come from the task's seeded training stream and dropout draws from the run's seed,
    so a run is reproducible. Progress reports the loss; the job can be cancelled between steps
    (nothing is stored then). The model returns to its previous train/eval mode. The artifact
    stores full tensors (or sparse/packed forms where masks and encodings say so).
    """
    task = need_task(OP, ctx, "training batches and a loss")
    model = to_device(cm, ctx)
    total = _steps(task, params)
    named = dict(model.named_parameters())
    trainable = [p for p in named.values() if p.requires_grad]
    if not trainable:
        raise OpError(OP, "the model has no trainable parameters")
    for name, p in named.items():
        if name in cm.encodings or name in cm.masks:
            if not p.is_floating_point():
                raise OpError(OP, "cannot train a non-floating-point tensor", layer=name)
    masks = {n: m.to(named[n].device) for n, m in cm.masks.items() if n in named}
    quant = {n: (named[n], cm.encodings[n]) for n in cm.encodings if n in named}
    latent = {n: p.detach().clone() for n, (p, _) in quant.items()}
    learn_palette = params.get("palette") == "learned"
    teacher = _teacher(ctx, task) if params["distill"] > 0 else None
    step_loss = _StepLoss(task, model, teacher, params["distill"], params["temperature"], ctx.device)
    opt = _optimizer(params["optimizer"], trainable, params)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_factor(params["schedule"], params["warmup_steps"], total)
    )
    was_training = model.training
    devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _teaching(teacher, ctx.device):
        torch.manual_seed(ctx.seed)
        model.train()
        try:
            batches = task.training_batches(params["batch_size"], ctx.seed)
            running = None
            for step in range(total):
                ctx.check_cancelled()
                with torch.no_grad():  # forward on the quantization grid
                    for n, (p, enc) in quant.items():
                        p.copy_(enc.project(latent[n]))
                loss = step_loss(move_batch(next(batches), ctx.device))
                if not torch.isfinite(loss):
                    raise step_loss.not_finite(float(loss.detach()), step + 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for n, m in masks.items():
                    g = named[n].grad
                    if g is not None:
                        g.masked_fill_(m, 0)
                if params["max_grad_norm"] > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, params["max_grad_norm"])
                with torch.no_grad():  # straight-through: the optimizer moves the float copy
                    for n, (p, _) in quant.items():
                        p.copy_(latent[n])
                opt.step()
                sched.step()
                with torch.no_grad():
                    for n, m in masks.items():
                        named[n].masked_fill_(m, 0)
                    for n, (p, enc) in quant.items():
                        latent[n].copy_(p)
                        if learn_palette and hasattr(enc, "refit"):
                            enc.refit(latent[n])  # type: ignore[attr-defined]
                value = float(loss.detach())
                running = value if running is None else 0.9 * running + 0.1 * value
                ctx.progress((step + 1) / total, f"step {step + 1}/{total} loss {running:.4f}")
        finally:
            opt.zero_grad(set_to_none=True)
            model.train(was_training)
    with torch.no_grad():
        for n, (p, enc) in quant.items():
            p.copy_(enc.project(latent[n]))
        for n, m in masks.items():
            named[n].masked_fill_(m, 0)
    return cm


def _teacher(ctx: OpContext, task: Any) -> nn.Module:
    """The parent model, which distillation learns from."""
    if ctx.parent is None:
        raise OpError(
            OP, "'distill' learns from the parent model, and this variant has none", param="distill"
        )
    if getattr(task, "training_split_is_eval", False):
        raise OpError(OP, "the task's training batches are its evaluation data, so distilling would fit what the "
                          "model is judged on; give the task training data of its own (its `train` option)",
                      param="distill")  # fmt: skip
    return ctx.parent.module


@contextlib.contextmanager
def _teaching(teacher: nn.Module | None, device: torch.device) -> Iterator[None]:
    """The teacher on `device` in eval mode for the run; where and how it was, after, module by
    module (the runner may hand the same parent to the next variant)."""
    if teacher is None:
        yield
        return
    modes = {m: m.training for m in teacher.modules()}
    home = next((p.device for p in teacher.parameters()), device)
    try:
        teacher.to(device).eval()
        yield
    finally:
        teacher.to(home)
        for m, training in modes.items():
            m.training = training


def _own_loss_of(task: Any) -> Callable[[torch.Tensor, Any], torch.Tensor | None] | None:
    """`task.loss_of` where it computes what `task.loss` does: a task class that overrides only
    `loss` (label smoothing, class weights) of a built-in task must train on its own loss, not on
    the loss_of it inherited."""
    fn = getattr(task, "loss_of", None)
    if fn is None:
        return None

    def owner(attr: str) -> type | None:
        return next((c for c in type(task).__mro__ if attr in vars(c)), None)

    of, lo = owner("loss_of"), owner("loss")
    return fn if of is None or lo is None or issubclass(of, lo) else None


class _StepLoss:
    """One training step's loss of a batch (on the device): the task's, or mixed with the
    distance from the teacher's outputs."""

    def __init__(self, task: Any, model: nn.Module, teacher: nn.Module | None, distill: float, temperature: float,
                 device: torch.device) -> None:  # fmt: skip
        self.task, self.model, self.teacher = task, model, teacher
        self.distill, self.temperature, self.device = distill, temperature, device
        from ..tasks.base import distillation_loss  # here: tasks.base imports torch (lazy.py)

        self.distance = (
            getattr(task, "distill_loss", None) or distillation_loss
        )  # duck-typed user tasks: the default
        self.loss_of = _own_loss_of(task)
        self.target: torch.Tensor | None = None  # the teacher's outputs of the last batch

    def __call__(self, batch: Any) -> torch.Tensor:
        if self.teacher is None:
            return self.task.loss(self.model, batch)  # type: ignore[no-any-return]
        out = self.task.forward(self.model, batch)
        if not out.is_floating_point() or (torch.is_grad_enabled() and not out.requires_grad):
            raise OpError(OP, f"the task's outputs are {out.dtype} without gradients, so nothing can be learned "
                              "from them; distillation needs the model's scores", param="distill")  # fmt: skip
        with torch.no_grad():
            try:
                self.target = self.task.forward(self.teacher, batch)
            except (RuntimeError, NotImplementedError) as e:  # e.g. a CPU-only quantized parent on a GPU
                raise OpError(OP, f"the parent model failed to run on {self.device} to teach: {e}",
                              param="distill") from e  # fmt: skip
        kd = self.distance(out, self.target, self.temperature)
        if self.distill >= 1.0:
            return kd  # type: ignore[no-any-return]
        return (1.0 - self.distill) * self._own(out, batch) + self.distill * kd  # type: ignore[no-any-return]

    def _own(self, out: torch.Tensor, batch: Any) -> torch.Tensor:
        from ..tasks.base import TaskError

        try:
            own = self.loss_of(out, batch) if self.loss_of is not None else None
            # without loss_of, the task has its loss only through loss(): a second forward
            return own if own is not None else self.task.loss(self.model, batch)  # type: ignore[no-any-return]
        except TaskError as e:  # e.g. a task without labels
            raise OpError(OP, f"with distill below 1 the task's own loss is trained too, and {e}; set distill: 1 "
                              "to learn from the parent alone", param="distill") from e  # fmt: skip

    def not_finite(self, value: float, step: int) -> OpError:
        """Why the loss became `value`: the teacher's outputs when they overflowed (looked at only
        then, not on every step), else the learning rate."""
        t = self.target
        if t is not None and t.is_floating_point() and bool((torch.isnan(t) | torch.isposinf(t)).any()):
            return OpError(OP, "the parent model's outputs hold NaN or +inf (a float16 parent overflowing?); "
                               "it cannot teach", param="distill")  # fmt: skip
        return OpError(OP, f"the loss became {value} at step {step}; lower 'lr'", param="lr")
