"""Batch-norm recalibration: re-estimate running statistics after an op changed the weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .registry import CompressedModel, OpContext, OpError, Param, register_op
from .targets import move_batch, need_task, to_device

OP = "bn.recalibrate"


@register_op(
    OP,
    family="repair",
    summary="Re-estimate BatchNorm running mean/variance on training batches.",
    params=[
        Param(
            "batches",
            "int",
            "Training batches to average the statistics over.",
            default=20,
            minimum=1,
            maximum=100000,
        ),
        Param("batch_size", "int", "Instances per batch.", default=32, minimum=2, maximum=4096),
    ],
    needs_task=True,
)
def bn_recalibrate(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Reset every BatchNorm's running statistics and re-estimate them on `batches` batches.

    Pruning and quantization shift the distribution of activations, so the statistics the base
    model learnt no longer match; recomputing them is cheap and often recovers much of the lost
    accuracy of CNNs. The statistics are a plain cumulative average over the batches
    (`momentum=None`), so the result does not depend on an arbitrary momentum. Only the BatchNorm
    layers run in training mode (dropout stays off); weights are not changed, and every module's
    train/eval mode and momentum are restored afterwards.
    """
    task = need_task(OP, ctx, "training batches to measure activations")
    model = to_device(cm, ctx)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise OpError(OP, "the model has no BatchNorm layers to recalibrate")
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch weighs the same
            m.train()
        n = params["batches"]
        it = task.training_batches(params["batch_size"], ctx.seed)
        with torch.no_grad():
            for i in range(n):
                ctx.check_cancelled()
                task.forward(model, move_batch(next(it), ctx.device))
                ctx.progress((i + 1) / n, f"batch {i + 1}/{n}")
    finally:
        for norm, momentum in momenta.items():
            norm.momentum = momentum
        for module, mode in modes.items():
            module.training = mode
    return cm
