"""palettize: at most 2^n values per LUT group, k-means fixed points, sensitivity weighting, the
stored `palette` form (bytes = the computed size, bit-exact round trip, ranged reads), finetune."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from conftest import build_tiny_cnn, build_tiny_gpt2, make_bert_task, make_gpt2_task
from modelbonsai.artifacts import load_artifact, save_artifact
from modelbonsai.artifacts.ranged import open_stored
from modelbonsai.ops.palettize import PaletteEncoding, kmeans_1d, palette_nbytes
from modelbonsai.ops.registry import CompressedModel, OpContext, OpError, get_op
from modelbonsai.tasks.base import Batch


def run(name: str, cm: CompressedModel, task: Any = None, **params: Any) -> CompressedModel:
    op = get_op(name)
    assert op is not None
    ctx = OpContext(device=torch.device("cpu"), seed=0, task=task)
    return op.fn(cm, op.resolve(params), ctx)


def _groups(enc: PaletteEncoding, t: torch.Tensor) -> torch.Tensor:
    """t (divided by its row scales) as [LUT groups, elements of the group]."""
    r = enc.to_rows(t.detach().float())
    if enc.scales is not None:
        r = r / enc.scales.unsqueeze(1)
    per = r.shape[0] if enc.granularity == "tensor" else int(enc.group_size or 1)
    return r.reshape(r.shape[0] // per, -1)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize(
    "extra",
    [{}, {"granularity": "grouped-channel", "group_size": 4}, {"granularity": "grouped-channel", "group_size": 1, "per_channel_scale": True}],
)  # fmt: skip
def test_at_most_2n_values_per_group_on_the_lut(bits: int, extra: dict[str, Any]) -> None:
    base = build_tiny_gpt2()
    cm = run("palettize", CompressedModel(build_tiny_gpt2()), n_bits=bits, **extra)
    params = dict(cm.module.named_parameters())
    assert len(cm.encodings) == 8  # c_attn, c_proj, c_fc, mlp.c_proj of 2 blocks (lm_head is tied)
    for name, enc in cm.encodings.items():
        assert isinstance(enc, PaletteEncoding)
        assert enc.axis == 1  # Conv1D: output channels on dim 1
        assert tuple(enc.lut.shape) == (
            1 if enc.granularity == "tensor" else params[name].shape[1] // int(enc.group_size or 1),
            2**bits,
        )
        assert bool((enc.lut[:, 1:] >= enc.lut[:, :-1]).all())  # sorted
        groups = _groups(enc, params[name])
        for g in range(groups.shape[0]):
            distinct = torch.unique(groups[g])
            assert distinct.numel() <= 2**bits
            # every value is an entry of the group's LUT
            assert bool(torch.isin(distinct, enc.lut[g]).all())
        # the nearest LUT value of the original weight, not just any
        orig = dict(base.named_parameters())[name].detach()
        assert torch.equal(enc.project(orig), params[name].detach())


def test_tensor_with_2n_distinct_values_is_reproduced_exactly() -> None:
    levels = torch.tensor([-0.75, -0.25, 0.125, 0.5])
    idx = torch.randint(0, 4, (16, 24), generator=torch.Generator().manual_seed(0))
    layer = nn.Linear(24, 16, bias=False)
    with torch.no_grad():
        layer.weight.copy_(levels[idx])
    cm = run("palettize", CompressedModel(nn.Sequential(layer)), n_bits=2)
    enc = cm.encodings["0.weight"]
    assert isinstance(enc, PaletteEncoding)
    assert torch.equal(enc.lut[0], levels)
    assert torch.equal(cm.module[0].weight.detach(), levels[idx])


def test_kmeans_is_a_weighted_lloyd_fixed_point() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 500, generator=g)
    w = torch.rand(3, 500, generator=g)
    c = kmeans_1d(x, w, 8, iterations=200)
    assign = (x.unsqueeze(-1) - c.unsqueeze(1)).abs().argmin(-1)
    for r in range(3):
        for j in range(8):
            sel = assign[r] == j
            assert bool(sel.any())
            mean = (w[r][sel] * x[r][sel]).sum() / w[r][sel].sum()
            assert float(c[r, j]) == pytest.approx(float(mean), abs=1e-5)


class WideInputTask:
    """Inputs whose first 4 of 32 features are 30x larger than the rest: their weights matter most."""

    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Any:
        gen = torch.Generator().manual_seed(seed)
        for _ in range(n):
            yield Batch(ids=[str(i) for i in range(batch_size)], inputs=self.sample(batch_size, gen))

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        x = torch.randn(n, 32, generator=gen)
        x[:, :4] *= 30
        return x

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch.inputs).pow(2).mean()


def _wide_model() -> nn.Module:
    """Weights of the 4 loud inputs are small (±0.02), the others spread over ±1: plain k-means
    spends its 4 entries on the spread and rounds the small, loud-input weights coarsely."""
    g = torch.Generator().manual_seed(5)
    layer = nn.Linear(32, 16, bias=False)
    with torch.no_grad():
        layer.weight.uniform_(-1, 1, generator=g)
        layer.weight[:, :4] = 0.02 * torch.randn(16, 4, generator=g)
    return nn.Sequential(layer)


def test_hessian_weighting_uses_input_mean_squares_and_lowers_output_error() -> None:
    task = WideInputTask()
    x = task.sample(512, torch.Generator().manual_seed(99))
    ref = _wide_model()
    y = ref(x)
    errs = {}
    for weighting in ("none", "hessian", "fisher"):
        # the Fisher estimate is a sum of per-sample squared gradients: batches of one
        size = {"batches": 64, "batch_size": 1} if weighting == "fisher" else {"batches": 4, "batch_size": 64}
        cm = run("palettize", CompressedModel(_wide_model()), task, n_bits=2, weighting=weighting, **size)
        with torch.no_grad():
            errs[weighting] = float((cm.module(x) - y).pow(2).mean())
    assert errs["hessian"] < 0.5 * errs["none"], errs
    assert errs["fisher"] < 0.5 * errs["none"], errs

    # the weights of the hessian k-means are Σx_j² of each input column over the batches
    from modelbonsai.ops import palettize as P

    batches = list(task.calibration_batches(4, 64, 0))
    sens = P._sensitivities(_wide_model(), ["0.weight"], "hessian", {"batches": 4, "batch_size": 64},
                            OpContext(device=torch.device("cpu"), seed=0, task=task))  # fmt: skip
    direct = torch.cat([b.inputs for b in batches]).pow(2).sum(0)
    assert torch.allclose(sens["0.weight"], direct.expand(16, -1), rtol=1e-5)


def test_weighting_needs_a_task() -> None:
    with pytest.raises(OpError, match="weighting 'hessian' needs a task"):
        run("palettize", CompressedModel(_wide_model()), weighting="hessian")


def test_pruned_weights_stay_exactly_zero() -> None:
    cm = run("prune.magnitude", CompressedModel(build_tiny_cnn()), sparsity=0.6, scope="layer")
    masks = {n: m.clone() for n, m in cm.masks.items()}
    cm = run("palettize", cm, n_bits=2)
    params = dict(cm.module.named_parameters())
    for name, mask in masks.items():
        assert bool((params[name][mask] == 0).all())
        enc = cm.encodings[name]
        assert isinstance(enc, PaletteEncoding) and 0.0 in enc.lut[0].tolist()


def test_group_size_that_does_not_divide_the_channels_is_skipped() -> None:
    op = get_op("palettize")
    assert op is not None
    ctx = OpContext(device=torch.device("cpu"), seed=0)
    cm = op.fn(
        CompressedModel(build_tiny_cnn()),
        op.resolve({"granularity": "grouped-channel", "group_size": 16}),
        ctx,
    )
    # conv1 (8 channels) and fc2 (4 outputs) do not split into groups of 16
    assert set(ctx.skipped) == {"conv1.weight", "fc2.weight"}
    assert set(cm.encodings) == {"conv2.weight", "fc1.weight"}
    with pytest.raises(OpError, match="strict"):
        op.fn(CompressedModel(build_tiny_cnn()), op.resolve({"granularity": "grouped-channel", "group_size": 16, "strict": True}), ctx)  # fmt: skip


# -- the stored form -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "params"),
    [
        (build_tiny_gpt2, {"n_bits": 3}),
        (build_tiny_gpt2, {"n_bits": 4, "granularity": "grouped-channel", "group_size": 8, "per_channel_scale": True}),
        (build_tiny_cnn, {"n_bits": 5, "granularity": "grouped-channel", "group_size": 4}),
        (build_tiny_cnn, {"n_bits": 1, "per_channel_scale": True}),
    ],
)  # fmt: skip
def test_stored_bytes_round_trip_and_ranged_reads(build: Any, params: dict[str, Any], tmp_path: Path) -> None:
    cm = run("palettize", CompressedModel(build()), **params)
    size = save_artifact(cm, tmp_path)
    state = cm.module.state_dict()
    for name, enc in cm.encodings.items():
        assert isinstance(enc, PaletteEncoding)
        assert size.forms[name] == "palette"
        numel = math.prod(enc.shape)
        rows = enc.shape[enc.axis]
        groups = 1 if enc.granularity == "tensor" else rows // int(params["group_size"])
        expected = (numel * params["n_bits"] + 7) // 8 + groups * 2 ** params["n_bits"] * 2
        if params.get("per_channel_scale"):
            expected += rows * 2  # float16 scales
        assert size.per_tensor[name] == expected == palette_nbytes(enc)
    # the file holds exactly these bytes: every component's payload is counted
    assert (
        size.bytes_total
        == (tmp_path / "manifest.json").stat().st_size + (tmp_path / "tensors.safetensors").stat().st_size
    )

    back = load_artifact(tmp_path, build)
    for name, t in back.module.state_dict().items():
        assert torch.equal(t, state[name]), name
    for name, enc in cm.encodings.items():
        enc2 = back.encodings[name]
        assert isinstance(enc2, PaletteEncoding)
        assert torch.equal(enc2.lut, enc.lut)
        assert enc2.to_json() == enc.to_json()

    stored = open_stored(tmp_path)
    g = np.random.default_rng(0)
    for name in cm.encodings:
        read = stored.range_reader(name)
        assert read is not None
        flat = state[name].reshape(-1).numpy()
        n = flat.size
        spans = [(0, n), (1, 2), (n - 3, n)] + [tuple(sorted(g.integers(0, n + 1, 2))) for _ in range(8)]
        for a, b in spans:
            assert np.array_equal(read(int(a), int(b)), flat[a:b]), (name, a, b)


def test_half_tensor_palette_round_trips(tmp_path: Path) -> None:
    model = build_tiny_cnn().half()
    cm = run("palettize", CompressedModel(model), n_bits=3, per_channel_scale=True)
    save_artifact(cm, tmp_path)
    stored = open_stored(tmp_path)
    for name in cm.encodings:
        flat = cm.module.state_dict()[name].reshape(-1).float().numpy()
        read = stored.range_reader(name)
        assert read is not None
        assert np.array_equal(read(0, flat.size), flat)


def test_weights_moved_after_palettize_are_stored_plain(tmp_path: Path) -> None:
    cm = run("palettize", CompressedModel(build_tiny_cnn()), n_bits=2)
    with torch.no_grad():
        cm.module.fc1.weight.add_(1e-3)
    size = save_artifact(cm, tmp_path)
    assert size.forms["fc1.weight"] == "dense"
    assert size.forms["fc2.weight"] == "palette"


def test_finetune_keeps_weights_on_the_palette(tmp_path: Path) -> None:
    cm = run(
        "palettize", CompressedModel(build_tiny_gpt2()), n_bits=2, granularity="grouped-channel", group_size=8
    )
    before = {n: p.detach().clone() for n, p in cm.module.named_parameters()}
    cm = run("finetune", cm, make_gpt2_task(), steps=5, lr=0.05, batch_size=4)
    params = dict(cm.module.named_parameters())
    moved = 0
    for name, enc in cm.encodings.items():
        assert isinstance(enc, PaletteEncoding)
        assert torch.equal(enc.project(params[name]), params[name].detach())
        moved += int((params[name] != before[name]).sum())
    assert moved > 0  # straight-through: weights did change their LUT entry
    assert set(save_artifact(cm, tmp_path).forms[n] for n in cm.encodings) == {"palette"}


def test_fisher_weighting_on_bert() -> None:
    cm = run(
        "palettize",
        CompressedModel(_bert()),
        make_bert_task(),
        n_bits=3,
        weighting="fisher",
        batches=2,
        batch_size=4,
    )
    assert len(cm.encodings) == 14  # 2 x (q, k, v, attn out, intermediate, out) + pooler + classifier


def _bert() -> nn.Module:
    from conftest import build_tiny_bert

    return build_tiny_bert()


def test_finetune_learned_palette_moves_the_lut_and_stays_on_it(tmp_path: Path) -> None:
    cm = run(
        "palettize", CompressedModel(build_tiny_gpt2()), n_bits=2, granularity="grouped-channel", group_size=8
    )
    luts = {n: e.lut.clone() for n, e in cm.encodings.items() if isinstance(e, PaletteEncoding)}
    cm = run("finetune", cm, make_gpt2_task(), steps=5, lr=0.05, batch_size=4, palette="learned")
    params = dict(cm.module.named_parameters())
    changed = 0
    for name, enc in cm.encodings.items():
        assert isinstance(enc, PaletteEncoding)
        assert bool((enc.lut[:, 1:] >= enc.lut[:, :-1]).all())
        changed += int((enc.lut != luts[name]).sum())
        groups = _groups(enc, params[name])
        for g in range(groups.shape[0]):
            assert bool(torch.isin(torch.unique(groups[g]), enc.lut[g]).all())
    assert changed > 0
    save_artifact(cm, tmp_path)
    back = load_artifact(tmp_path, build_tiny_gpt2)
    for name, t in back.module.state_dict().items():
        assert torch.equal(t, cm.module.state_dict()[name]), name


def test_refit_is_the_mean_of_each_entrys_weights() -> None:
    t = torch.tensor([[0.0, 0.1, 0.2, 0.9, 1.1, 1.0]])
    enc = PaletteEncoding(1, "tensor", None, 0, (1, 6), lut=torch.tensor([[0.0, 1.0]]))
    enc.refit(t)  # 0.0 is pinned (pruned weights stay exact); 1.0 becomes mean(0.9, 1.1, 1.0)
    assert enc.lut.tolist() == [[0.0, torch.tensor(1.0, dtype=torch.float16).item()]]
    enc = PaletteEncoding(1, "tensor", None, 0, (1, 5), lut=torch.tensor([[0.5, 1.5]]))
    enc.refit(torch.tensor([[0.0, 0.2, 0.4, 1.6, 1.8]]))
    expect = torch.tensor([(0.0 + 0.2 + 0.4) / 3, (1.6 + 1.8) / 2]).to(torch.float16).float()
    assert torch.equal(enc.lut[0], expect)
