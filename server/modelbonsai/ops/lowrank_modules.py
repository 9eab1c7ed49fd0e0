"""The factorised layers `lowrank` puts in place of a Linear / 1x1 Conv2d (and the artifact
loader rebuilds). Apart from lowrank.py because a module-level class needs torch at import, and
registering the op must not (lazy.py); lowrank.py re-exports both names."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class LowRankLinear(nn.Module):
    """A Linear layer factorised as `second(first(x))`, with `first`: in -> rank (no bias)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class LowRankConv2d(nn.Module):
    """A 1x1 Conv2d factorised as two 1x1 convs; `first` keeps the stride and padding.

    Zero padding stays exact: padded positions give 0 after `first` and then the bias after
    `second`, as the original conv gives its bias there.
    """

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.rank = conv.in_channels, conv.out_channels, rank
        stride = (int(conv.stride[0]), int(conv.stride[1]))
        padding: Any = (
            conv.padding if isinstance(conv.padding, str) else (int(conv.padding[0]), int(conv.padding[1]))
        )
        self.first = nn.Conv2d(conv.in_channels, rank, 1, stride=stride, padding=padding, bias=False)
        self.second = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))
