"""prune.wanda and prune.sparsegpt: masks from a direct computation, exact sparsity and N:M
patterns, SparseGPT's reconstruction beating magnitude and Wanda, earlier masks kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from conftest import (
    build_tiny_bert,
    build_tiny_cnn,
    build_tiny_gpt2,
    make_bert_task,
    make_cnn_task,
    make_gpt2_task,
)
from modelbonsai.ops.registry import CompressedModel, OpContext, OpError, get_op
from modelbonsai.tasks.base import Batch

DIM = 64


def run(name: str, cm: CompressedModel, task: Any, **params: Any) -> tuple[CompressedModel, OpContext]:
    op = get_op(name)
    assert op is not None
    ctx = OpContext(device=torch.device("cpu"), seed=0, task=task)
    return op.fn(cm, op.resolve(params), ctx), ctx


class CorrelatedTask:
    """x = z·A + small noise (rank-8 structure in 64 dims, features of very different scales)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        self.mix = torch.randn(8, DIM, generator=g) * torch.logspace(0, 1, DIM).unsqueeze(0)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(n, 8, generator=gen) @ self.mix + 0.05 * torch.randn(n, DIM, generator=gen)

    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n):
            yield Batch(ids=[str(i) for i in range(batch_size)], inputs=self.sample(batch_size, gen))

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        yield from self.calibration_batches(10**9, batch_size, seed)

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.forward(model, batch).pow(2).mean()


def linear_model() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 32))


def captured_inputs(model: nn.Module, task: Any, batches: int, batch_size: int) -> dict[str, torch.Tensor]:
    """Each Linear / Conv1D / Conv2d's inputs on the calibration batches, as [rows, columns]."""
    from transformers.pytorch_utils import Conv1D

    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, Conv1D, nn.Conv2d)):

            def hook(m: nn.Module, inp: tuple[Any, ...], name: str = name) -> None:
                x = inp[0].detach()
                if isinstance(m, nn.Conv2d):
                    cols = nn.functional.unfold(x, m.kernel_size, padding=m.padding, stride=m.stride)
                    x = cols.transpose(1, 2).reshape(-1, cols.shape[1])
                seen.setdefault(f"{name}.weight", []).append(x.reshape(-1, x.shape[-1]))

            hooks.append(mod.register_forward_pre_hook(hook))
    with torch.no_grad():
        for b in task.calibration_batches(batches, batch_size, 0):
            task.forward(model, b)
    for h in hooks:
        h.remove()
    return {n: torch.cat(xs) for n, xs in seen.items()}


@pytest.mark.parametrize(
    ("build", "make_task"), [(build_tiny_gpt2, make_gpt2_task), (build_tiny_cnn, make_cnn_task), (build_tiny_bert, make_bert_task)]
)  # fmt: skip
@pytest.mark.parametrize("pattern", [{"sparsity": 0.5}, {"sparsity": 0.3}, {"n": 2, "m": 4}])
def test_wanda_mask_is_the_direct_score_ranking(build: Any, make_task: Any, pattern: dict[str, Any]) -> None:
    from transformers.pytorch_utils import Conv1D

    task = make_task()
    ref = build()
    inputs = captured_inputs(ref, task, 2, 4)
    cm, ctx = run("prune.wanda", CompressedModel(build()), task, batches=2, batch_size=4, **pattern)
    base = dict(ref.named_parameters())
    params = dict(cm.module.named_parameters())
    assert cm.masks
    for name, mask in cm.masks.items():
        owner = cm.module.get_submodule(name.rpartition(".")[0])
        w = base[name].detach()
        wr = w.t() if isinstance(owner, Conv1D) else w.reshape(w.shape[0], -1)  # [out, in-columns]
        score = wr.abs() * inputs[name].pow(2).sum(0).sqrt()
        mr = mask.t() if isinstance(owner, Conv1D) else mask.reshape(mask.shape[0], -1)
        if "m" in pattern:
            # per row, groups of 4 consecutive inputs (for a conv: 4 input channels at one position)
            if isinstance(owner, nn.Conv2d):
                per = owner.kernel_size[0] * owner.kernel_size[1]
                score = score.reshape(score.shape[0], -1, per).transpose(1, 2).reshape(score.shape[0], -1)
                mr = mr.reshape(mr.shape[0], -1, per).transpose(1, 2).reshape(mr.shape[0], -1)
            groups_s, groups_m = score.reshape(-1, 4), mr.reshape(-1, 4)
            assert bool((groups_m.sum(1) == 2).all())
            kept_min = groups_s.masked_fill(groups_m, float("inf")).amin(1)
            pruned_max = groups_s.masked_fill(~groups_m, float("-inf")).amax(1)
            assert bool((kept_min >= pruned_max).all()), name
        else:
            k = round(pattern["sparsity"] * score.shape[1])
            assert bool((mr.sum(1) == k).all()), name
            expect = torch.zeros_like(mr)
            expect.scatter_(1, torch.sort(score, dim=1, stable=True).indices[:, :k], True)
            assert torch.equal(mr, expect), name
        # pruned weights are zero, every other weight is untouched
        assert bool((params[name][mask] == 0).all())
        assert torch.equal(params[name][~mask], w[~mask])
    if "m" in pattern and build is build_tiny_cnn:
        assert set(ctx.skipped) == {"conv1.weight"}  # 3 input channels


def _output_error(ref: nn.Module, pruned: nn.Module, x: torch.Tensor) -> list[float]:
    """Relative output error of each Linear on the reference model's inputs (isolated)."""
    errs, h = [], x
    for r, p in zip(ref, pruned, strict=True):
        if isinstance(r, nn.Linear):
            out = r(h)
            errs.append(float((out - p(h)).pow(2).sum() / out.pow(2).sum()))
        h = r(h)
    return errs


@pytest.mark.parametrize("pattern", [{"sparsity": 0.5}, {"n": 2, "m": 4}, {"sparsity": 0.7}])
def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda(pattern: dict[str, Any]) -> None:
    task = CorrelatedTask()
    x = task.sample(512, torch.Generator().manual_seed(99))
    ref = linear_model()
    calib = {"batches": 8, "batch_size": 64}
    sgpt, _ = run("prune.sparsegpt", CompressedModel(linear_model()), task, **calib, **pattern)
    wanda, _ = run("prune.wanda", CompressedModel(linear_model()), task, **calib, **pattern)
    if "m" in pattern:
        mag, _ = run("prune.nm", CompressedModel(linear_model()), task, n=2, m=4)
    else:
        mag, _ = run(
            "prune.magnitude",
            CompressedModel(linear_model()),
            task,
            sparsity=pattern["sparsity"],
            scope="layer",
        )
    with torch.no_grad():
        e_s, e_w, e_m = (_output_error(ref, cm.module, x) for cm in (sgpt, wanda, mag))
    for s, w, m in zip(e_s, e_w, e_m, strict=True):
        assert s < 0.8 * w and s < 0.8 * m, (e_s, e_w, e_m)
    # the same number of zeros as asked, exactly, in every layer
    for name, mask in sgpt.masks.items():
        p = dict(sgpt.module.named_parameters())[name]
        assert int((p == 0).sum()) == int(mask.sum())
        if "m" in pattern:
            assert bool((mask.reshape(-1, 4).sum(1) == 2).all())
        else:
            assert int(mask.sum()) == round(pattern["sparsity"] * mask.numel())


def test_sparsegpt_conv_nm_groups_run_over_input_channels() -> None:
    cm, ctx = run(
        "prune.sparsegpt",
        CompressedModel(build_tiny_cnn()),
        make_cnn_task(),
        n=2,
        m=4,
        batches=2,
        batch_size=4,
    )
    mask = cm.masks["conv2.weight"]  # [16, 8, 3, 3]
    groups = mask.permute(0, 2, 3, 1).reshape(-1, 4)  # 4 consecutive input channels per position
    assert bool((groups.sum(1) == 2).all())
    assert set(ctx.skipped) == {"conv1.weight"}
    assert int((cm.module.conv2.weight == 0).sum()) == int(mask.sum())


@pytest.mark.parametrize("op", ["prune.wanda", "prune.sparsegpt"])
def test_earlier_masks_stay_and_needs_task(op: str) -> None:
    cm, _ = run("prune.magnitude", CompressedModel(build_tiny_gpt2()), None, sparsity=0.6, scope="layer")
    before = {n: m.clone() for n, m in cm.masks.items()}
    cm, _ = run(op, cm, make_gpt2_task(), sparsity=0.5, batches=2, batch_size=4)
    params = dict(cm.module.named_parameters())
    for name, m in before.items():
        assert bool(cm.masks[name][m].all())
        assert bool((params[name][cm.masks[name]] == 0).all())
    with pytest.raises(OpError, match="needs a task"):
        run(op, CompressedModel(build_tiny_gpt2()), None)
    with pytest.raises(OpError, match="smaller than 'm'"):
        run(op, CompressedModel(build_tiny_gpt2()), make_gpt2_task(), n=4, m=4)


class ResidualDepthwise(nn.Module):
    """A residual CNN block with a depthwise and a grouped convolution (what MobileNet / ResNeXt use)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.grouped = nn.Conv2d(16, 16, 1, groups=4)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + self.grouped(torch.relu(self.dw(h)))
        return self.head(h.mean((2, 3)))


def _residual() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        return ResidualDepthwise().eval()


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("prune.wanda", {"sparsity": 0.5}),
        ("prune.sparsegpt", {"sparsity": 0.5}),
        ("prune.wanda", {"n": 2, "m": 4}),
        ("prune.sparsegpt", {"n": 2, "m": 4}),
        ("palettize", {"n_bits": 2, "weighting": "hessian"}),
    ],
)
def test_residual_cnn_with_depthwise_and_grouped_convs(op: str, params: dict[str, Any]) -> None:
    cm, ctx = run(op, CompressedModel(_residual()), make_cnn_task(), batches=2, batch_size=4, **params)
    weights = dict(cm.module.named_parameters())
    targets = ["stem.weight", "dw.weight", "grouped.weight", "head.weight"]
    if op == "palettize":
        assert sorted(cm.encodings) == sorted(targets)
        for name in targets:
            assert torch.unique(weights[name]).numel() <= 4
        return
    if "m" in params:
        # the stem has 3 inputs, the depthwise conv 1 per group, the grouped conv 4: all but the
        # grouped conv and the head are skipped
        assert set(ctx.skipped) == {"stem.weight", "dw.weight"}
        pruned = ["grouped.weight", "head.weight"]
    else:
        assert not ctx.skipped
        pruned = targets
    for name in pruned:
        mask = cm.masks[name]
        assert int((weights[name] == 0).sum()) == int(mask.sum())
        rows = mask.reshape(mask.shape[0], -1)
        if "m" in params:
            assert int(mask.sum()) * 2 == mask.numel()
        elif op == "prune.sparsegpt" and name in ("stem.weight", "head.weight"):
            assert int(mask.sum()) == round(0.5 * mask.numel())  # exact per layer, chosen per block
        else:  # Wanda, and SparseGPT's magnitude fallback on depthwise / grouped convs: per row
            assert bool((rows.sum(1) == round(0.5 * rows.shape[1])).all()), name
