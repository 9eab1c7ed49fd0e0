"""The digits sample's model: a small CNN with BatchNorm for 16x16 grey images, 10 classes.

`build()` is the factory the experiment file names (`factory: model.py:build`); the weights come
from `model/model.safetensors`, written by `prepare.py`.
"""

from __future__ import annotations

from torch import nn


def build() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        nn.MaxPool2d(2),  # 8x8
        *block(32, 64),
        nn.MaxPool2d(2),  # 4x4
        *block(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
