"""The smallest task the comparison engine accepts: plain input tensors [N, ...], instances
named i0, i1, ... in order, forward = model(inputs)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from modelbonsai.tasks.base import Batch, Task


class TensorTask:
    def __init__(self, x: torch.Tensor):
        self.x = x

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for i in range(0, len(self.x), batch_size):
            xs = self.x[i : i + batch_size]
            yield Batch(ids=[f"i{j}" for j in range(i, i + len(xs))], inputs=xs)

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)

    to_device = staticmethod(Task.to_device)
