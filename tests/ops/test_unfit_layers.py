"""Ops skip the layers whose shape does not fit them (issue 22 item 6), and `strict` fails.

A digits-like CNN has a 1-input-channel stem conv (no 2:4 groups along 1 input) and 3x3 convs
(9 columns per input channel: group_size 32 divides none of them). Such layers are left as they
were, float, and recorded in `OpContext.skipped`; the rest of the model is compressed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from modelbonsai.ops.registry import CompressedModel, OpContext, OpError, get_op
from modelbonsai.tasks.base import Batch


def digits_cnn() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(1, 8, 3, padding=1, bias=False),  # 1 input channel, 9 columns
            relu=nn.ReLU(),
            conv=nn.Conv2d(8, 8, 3, padding=1),  # 72 columns: not a multiple of 32 either
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 32),
            out=nn.Linear(32, 4),
        )
    ).eval()


class ImageTask:
    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(seed)
        for _ in range(n):
            yield Batch(
                ids=[str(i) for i in range(batch_size)], inputs=torch.randn(batch_size, 1, 8, 8, generator=g)
            )

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)


def apply(name: str, m: nn.Module, params: dict, task: object = None) -> tuple[CompressedModel, OpContext]:
    op = get_op(name)
    assert op is not None
    ctx = OpContext(device=torch.device("cpu"), seed=0, task=task)  # type: ignore[arg-type]
    return op.fn(CompressedModel(m), op.resolve(params), ctx), ctx


def test_nm_skips_the_one_channel_stem_and_prunes_the_rest() -> None:
    m = digits_cnn()
    stem = m.stem.weight.detach().clone()
    cm, ctx = apply("prune.nm", m, {})
    assert list(ctx.skipped) == ["stem.weight"] and "input size 1" in ctx.skipped["stem.weight"]
    assert torch.equal(m.stem.weight, stem) and "stem.weight" not in cm.masks  # left dense
    assert set(cm.masks) == {"conv.weight", "fc.weight", "out.weight"}
    assert float((m.fc.weight == 0).float().mean()) == 0.5
    with pytest.raises(OpError) as e:
        apply("prune.nm", digits_cnn(), {"strict": True})
    assert e.value.layer == "stem.weight" and e.value.param == "m" and "strict" in str(e.value)


@pytest.mark.parametrize("op", ["quantize.weights", "quantize.calibrated"])
def test_group_quantization_skips_layers_group_size_does_not_divide(op: str) -> None:
    m = digits_cnn()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    params = {"bits": 4, "granularity": "group", "group_size": 32}
    extra = {"batches": 2, "batch_size": 4} if op == "quantize.calibrated" else {}
    cm, ctx = apply(op, m, {**params, **extra}, ImageTask())
    assert set(ctx.skipped) == {"stem.weight", "conv.weight", "fc.weight"}  # 9, 72 and 8 columns
    assert "group_size 32 does not divide the 9 input columns" in ctx.skipped["stem.weight"]
    assert set(cm.encodings) == {"out.weight"}
    for name in ctx.skipped:  # stay float, untouched: stored as plain floats
        assert torch.equal(dict(m.named_parameters())[name], before[name])
    assert not torch.equal(m.out.weight, before["out.weight"])
    with pytest.raises(OpError) as e:
        apply(op, digits_cnn(), {**params, **extra, "strict": True}, ImageTask())
    assert e.value.layer == "stem.weight" and e.value.param == "group_size"


def test_strict_has_no_default_so_fingerprints_of_older_models_stay() -> None:
    for name in ("prune.nm", "quantize.weights", "quantize.calibrated"):
        op = get_op(name)
        assert op is not None and op.param("strict") is not None
        assert "strict" not in op.resolve({})
