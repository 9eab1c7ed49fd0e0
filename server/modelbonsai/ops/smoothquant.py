"""`smoothquant`, and the per-input-channel scaling it shares with `quantize.awq`.

Both methods multiply the input columns of a Linear's weight by a per-channel factor s and divide
the layer's input by the same s, so the product x·Wᵀ is unchanged in exact arithmetic while the
weight (AWQ) or the activation (SmoothQuant) becomes easier to quantize. Where the division can
be folded into the module that produced the input, it is: a LayerNorm/RMSNorm whose output is read
by nothing but Linear layers (Pre-LN transformers: GPT-2's ln_1 feeding c_attn, Llama's norms
feeding q/k/v and gate/up) divides its weight and bias by s, and every Linear reading it scales
its columns. Whether a fold is exact is *checked*, not assumed from names: the fold is tried with
random factors on one calibration batch and kept only when the model's output does not move (a
norm whose output also feeds a residual addition, as in BERT's Post-LN blocks, fails the check).

Where no fold is exact, the layer keeps an explicit per-channel multiplier, the buffer
`<layer>.input_scale` (= 1/s), applied to its input by a forward pre-hook (AWQ does the same with
its ScaledActivation). The buffer is stored with the model (a few bytes per input channel) and
the `input.transform` edit re-attaches the hook when an artifact is loaded. The same hook also
fake-quantizes the input when `quantize.static` gave the layer activation scales
(`<layer>.act_scale`, `<layer>.act_zero_point`), after the scaling — the order an int8 kernel
would see.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .registry import CompressedModel, OpContext, OpError, Param, register_edit, register_op
from .targets import EXCLUDE, INCLUDE, is_hf_conv1d, move_batch, refuse_encoded, select_weights, to_device

OP = "smoothquant"
EDIT = "input.transform"
SCALE = "input_scale"
ACT_SCALE = "act_scale"
ACT_ZERO = "act_zero_point"
#: relative change of the model's output above which a trial fold is not exact (float noise of a
#: scale-and-unscale is ~1e-7; a fold that also rescales a residual moves the output by O(1))
FOLD_TOLERANCE = 1e-4

CALIBRATION_PARAMS = [
    Param("batches", "int", "Calibration batches from the task's training split.", default=8, minimum=1),
    Param("batch_size", "int", "Instances per calibration batch.", default=16, minimum=1),
]


# -- the input transform (hook + buffers) -----------------------------------------------------------
def is_linear_like(module: nn.Module) -> bool:
    """nn.Linear or transformers' Conv1D: layers whose input's last dim is the weight's columns."""
    return isinstance(module, nn.Linear) or is_hf_conv1d(module)


def in_features(module: nn.Module) -> int:
    w = module.weight
    assert isinstance(w, torch.Tensor)
    return int(w.shape[0] if is_hf_conv1d(module) else w.shape[1])


def weight_of(module: nn.Module) -> torch.Tensor:
    w = module.weight
    assert isinstance(w, torch.Tensor)
    return w


def column_view(module: nn.Module) -> torch.Tensor:
    """The weight as [out, in] (a view: transformers' Conv1D stores [in, out])."""
    w = module.weight
    assert isinstance(w, torch.Tensor)
    return w.t() if is_hf_conv1d(module) else w


def fake_quant(
    x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """Round x onto the int grid (q - zero)·scale, q in [qmin, qmax] (computed in float32)."""
    s = scale.to(torch.float32)
    z = zero.to(torch.float32)
    q = torch.clamp(torch.round(x.to(torch.float32) / s) + z, qmin, qmax)
    return ((q - z) * s).to(x.dtype)


def act_range(zero: torch.Tensor) -> tuple[int, int]:
    """The integer range of a layer's activation codes, told by its zero point's dtype as in
    ONNX QuantizeLinear: uint8 (asymmetric) or int8 (symmetric)."""
    return (0, 255) if zero.dtype == torch.uint8 else (-128, 127)


def input_transform(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook: scale the input per channel (`input_scale`), then fake-quantize it
    (`act_scale`/`act_zero_point`). A module-level function, so models keep pickling."""
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    s = module._buffers.get(SCALE)
    if s is not None:
        shape = [1] * x.dim()
        shape[1 if isinstance(module, nn.Conv2d) else -1] = -1
        x = x * s.to(x.dtype).reshape(shape)
    a = module._buffers.get(ACT_SCALE)
    if a is not None:
        z = module._buffers.get(ACT_ZERO)
        assert z is not None
        qmin, qmax = act_range(z)
        q = fake_quant(x, a, z, qmin, qmax)
        # straight-through when training (finetune after W8A8): the rounding passes gradients on
        x = x + (q - x).detach() if x.requires_grad else q
    return (x, *args[1:])


def attach_hook(module: nn.Module) -> None:
    """Register the pre-hook once (a second op on the same layer shares it)."""
    if not any(h is input_transform for h in module._forward_pre_hooks.values()):
        module.register_forward_pre_hook(input_transform)


def set_input_scale(module: nn.Module, inv: torch.Tensor) -> None:
    """Give the layer the explicit multiplier `inv` (composed with one it already has)."""
    old = module._buffers.get(SCALE)
    value = inv.detach().to(weight_of(module).dtype)
    if old is not None:
        value = old * value
    module.register_buffer(SCALE, value.contiguous())
    attach_hook(module)


@register_edit(EDIT)
def _replay(model: nn.Module, edit: dict[str, Any]) -> None:
    """Re-create the buffers (filled by the stored tensors afterwards) and the hook."""
    for name in edit.get("scaled", []):
        mod = model.get_submodule(name)
        if SCALE not in mod._buffers:
            mod.register_buffer(SCALE, torch.ones(in_features_any(mod), dtype=weight_of(mod).dtype))
        attach_hook(mod)
    zero_dtype = torch.uint8 if edit.get("act_dtype") == "uint8" else torch.int8
    for name in edit.get("quantized", []):
        mod = model.get_submodule(name)
        mod.register_buffer(ACT_SCALE, torch.ones(1))
        mod.register_buffer(ACT_ZERO, torch.zeros(1, dtype=zero_dtype))
        attach_hook(mod)


def in_features_any(module: nn.Module) -> int:
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return int(module.in_channels)
    return in_features(module)


# -- which layers read the same input, and who produced it ----------------------------------------
@dataclass
class Group:
    """Linear layers reading one and the same input tensor, and the norm that produced it."""

    consumers: list[str]
    producer: str | None = None
    foldable: bool = False


def _is_norm(module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 1:
        return False
    if isinstance(module, nn.LayerNorm):
        return True
    name = type(module).__name__
    return name.endswith("RMSNorm") or (name.endswith("LayerNorm") and not name.startswith("Batch"))


def find_groups(model: nn.Module, batch: Any, task: Any) -> list[Group]:
    """Group the model's Linear/Conv1D layers by the identity of the input tensor they read on
    one forward, noting the norm module whose output it is (None: made by a function)."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    readers: dict[int, list[str]] = {}
    keep: list[torch.Tensor] = []  # holds every seen tensor, so no id is reused during the pass
    handles = []
    for name, mod in model.named_modules():
        if _is_norm(mod):

            def fwd(_m: nn.Module, _a: Any, out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    produced[id(out)] = (name, out)

            handles.append(mod.register_forward_hook(fwd))
        elif is_linear_like(mod):

            def pre(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    keep.append(args[0])
                    readers.setdefault(id(args[0]), []).append(name)

            handles.append(mod.register_forward_pre_hook(pre, prepend=True))
    try:
        with torch.no_grad():
            task.forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    groups = []
    seen: set[str] = set()
    for key, names in readers.items():
        names = [n for n in dict.fromkeys(names) if n not in seen]  # a layer called twice: first use
        if not names:
            continue
        seen.update(names)
        prod = produced.get(key)
        groups.append(Group(names, prod[0] if prod is not None else None))
    keep.clear()
    return groups


def _fold(model: nn.Module, group: Group, s: torch.Tensor) -> None:
    """Divide the producer's affine parameters by s and multiply every consumer's columns by s."""
    assert group.producer is not None
    norm = model.get_submodule(group.producer)
    with torch.no_grad():
        for attr in ("weight", "bias"):
            t = getattr(norm, attr, None)
            if isinstance(t, torch.Tensor):
                t.div_(s.to(t.dtype))
        for name in group.consumers:
            scale_columns(model.get_submodule(name), s)


def scale_columns(layer: nn.Module, s: torch.Tensor) -> None:
    with torch.no_grad():
        w = column_view(layer)
        w.mul_(s.to(w.dtype).unsqueeze(0))


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_folds(model: nn.Module, groups: list[Group], batch: Any, task: Any, seed: int) -> None:
    """Set `foldable` on each group whose norm fold leaves the model's output unchanged: tried
    with random factors in [0.5, 2], then undone (weights restored bit for bit)."""
    candidates = [g for g in groups if g.producer is not None]
    if not candidates:
        return
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ref = task.forward(model, batch)
        for g in candidates:
            assert g.producer is not None
            norm = model.get_submodule(g.producer)
            nw = norm.weight
            assert isinstance(nw, torch.Tensor)
            n = int(nw.shape[0])
            if any(in_features(model.get_submodule(c)) != n for c in g.consumers):
                continue
            tensors = [
                getattr(norm, a)
                for a in ("weight", "bias")
                if isinstance(getattr(norm, a, None), torch.Tensor)
            ]
            tensors += [column_view(model.get_submodule(c)) for c in g.consumers]
            saved = [t.detach().clone() for t in tensors]
            s = (2.0 ** (torch.rand(n, generator=gen) * 2 - 1)).to(nw.device)
            _fold(model, g, s)
            out = task.forward(model, batch)
            for t, old in zip(tensors, saved, strict=True):
                t.copy_(old)
            g.foldable = bool(torch.isfinite(out).all()) and _relative_change(out, ref) <= FOLD_TOLERANCE


def apply_scale(model: nn.Module, group: Group, s: torch.Tensor, targets: Iterable[str]) -> list[str]:
    """Migrate s into the group: a fold when it is exact, else an explicit multiplier on each
    target layer. Returns the layers given an explicit `input_scale`."""
    if group.foldable:
        _fold(model, group, s)
        return []
    explicit = []
    for name in group.consumers:
        if name not in targets:
            continue
        layer = model.get_submodule(name)
        scale_columns(layer, s)
        set_input_scale(layer, 1.0 / s)
        explicit.append(name)
    return explicit


def record_scaled(cm: CompressedModel, scaled: list[str]) -> None:
    """One `input.transform` edit for layers that gained an explicit input scale."""
    if scaled:
        cm.edits.append({"kind": EDIT, "scaled": sorted(set(scaled)), "quantized": []})


# -- calibration statistics ------------------------------------------------------------------------
@dataclass
class InputStats:
    """Per input channel statistics of a layer's input over calibration batches."""

    absmax: torch.Tensor
    abssum: torch.Tensor
    count: int = 0
    rows: list[torch.Tensor] = field(default_factory=list)
    hessian: torch.Tensor | None = None

    @property
    def absmean(self) -> torch.Tensor:
        return self.abssum / max(1, self.count)


def calibration_batches(op: str, task: Any, params: dict[str, Any], ctx: OpContext) -> list[Any]:
    if task is None:
        raise OpError(op, "needs a task with calibration data (add a task: section)")
    out = [
        move_batch(b, ctx.device)
        for b in task.calibration_batches(int(params["batches"]), int(params["batch_size"]), ctx.seed)
    ]
    if not out:
        raise OpError(op, "the task produced no calibration batches", param="batches")
    return out


def collect_inputs(
    model: nn.Module,
    names: list[str],
    batches: list[Any],
    task: Any,
    ctx: OpContext,
    *,
    op: str,
    max_rows: int = 0,
    hessian: bool = False,
) -> dict[str, InputStats]:
    """Run the calibration batches with pre-hooks on `names`: per-channel max and mean of |x|,
    up to `max_rows` input rows (a seeded subsample, for error estimates) and, with `hessian`,
    H = 2·XᵀX/n as GPTQ needs it."""
    stats: dict[str, InputStats] = {}
    gen = torch.Generator().manual_seed(ctx.seed)
    per_batch = max(1, math.ceil(max_rows / len(batches))) if max_rows else 0

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            x = x.reshape(-1, x.shape[-1]).to(torch.float32)
            st = stats.get(name)
            if st is None:
                zeros = torch.zeros(x.shape[1], device=x.device)
                st = stats[name] = InputStats(zeros.clone(), zeros.clone())
            a = x.abs()
            torch.maximum(st.absmax, a.amax(0), out=st.absmax)
            st.abssum += a.sum(0)
            n_old = st.count
            st.count += x.shape[0]
            if per_batch:
                pick = torch.randperm(x.shape[0], generator=gen)[:per_batch].to(x.device)
                st.rows.append(x.index_select(0, pick))
            if hessian:
                h = (
                    st.hessian
                    if st.hessian is not None
                    else torch.zeros(x.shape[1], x.shape[1], device=x.device)
                )
                h.mul_(n_old / st.count)
                xs = x * math.sqrt(2.0 / st.count)
                h.addmm_(xs.t(), xs)
                st.hessian = h

        return hook

    # appended: a layer's own input transform (an earlier smoothing) runs first, so the statistics
    # are of the input its weight really multiplies
    handles = [model.get_submodule(n).register_forward_pre_hook(hook_for(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                ctx.check_cancelled()
                task.forward(model, batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for n in names:
        if n not in stats:
            raise OpError(
                op, "this layer never ran on the calibration batches; exclude it", layer=f"{n}.weight"
            )
    return stats


def linear_targets(op: str, model: nn.Module, params: dict[str, Any]) -> list[str]:
    """Module names of the Linear/Conv1D layers whose weights `include`/`exclude` select."""
    out = []
    for w in select_weights(op, model, params.get("include"), params.get("exclude")):
        mod_name, _, leaf = w.rpartition(".")
        if leaf == "weight" and is_linear_like(model.get_submodule(mod_name)):
            out.append(mod_name)
    if not out:
        raise OpError(op, "no Linear or Conv1D layer is selected; this op applies to those", param="include")
    return out


# -- the op -------------------------------------------------------------------------------------------
@register_op(
    OP,
    family="quantize",
    summary="SmoothQuant: migrate activation outliers into the weights before W8A8 (function unchanged).",
    params=[
        Param(
            "alpha",
            "float",
            "Migration strength: s = max|x|^alpha / max|w|^(1-alpha) per input channel.",
            default=0.5,
            minimum=0.0,
            maximum=1.0,
        ),
        *CALIBRATION_PARAMS,
        INCLUDE,
        EXCLUDE,
    ],
    needs_task=True,
)
def smoothquant(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Divide each Linear's input channels by s and multiply its weight columns by s, so that
    activation outliers become easier to quantize (Xiao et al., 2023). Place it before
    `quantize.static`; on its own it changes no output.

    s_j = max|x_j|^alpha / max|w_j|^(1-alpha), with max|x_j| over the calibration batches and
    max|w_j| over every layer reading that input (GPT-2's q/k/v share one s). Where the input
    comes from a LayerNorm/RMSNorm that nothing else reads (Pre-LN blocks), s is folded into the
    norm's weight and bias; otherwise (BERT's Post-LN blocks, attention outputs, MLP
    down-projections) the layer keeps an explicit per-channel multiplier `input_scale` (stored,
    a few bytes per channel). Either way the model computes the same function in float. Each fold
    is checked on a calibration batch before it is used.
    """
    task = ctx.task
    model = to_device(cm, ctx)
    targets = linear_targets(OP, model, params)
    refuse_encoded(OP, cm, [f"{n}.weight" for n in targets], "smooth")
    batches = calibration_batches(OP, task, params, ctx)
    model.eval()
    groups = [g for g in find_groups(model, batches[0], task) if any(c in targets for c in g.consumers)]
    check_folds(model, groups, batches[0], task, ctx.seed)
    stats = collect_inputs(model, targets, batches, task, ctx, op=OP)
    alpha = float(params["alpha"])
    scaled: list[str] = []
    for i, g in enumerate(groups):
        ctx.check_cancelled()
        chosen = [c for c in g.consumers if c in targets]
        xmax = stats[chosen[0]].absmax.clamp_min(1e-5)
        readers = g.consumers if g.foldable else chosen
        wmax = torch.stack(
            [column_view(model.get_submodule(c)).detach().abs().amax(0).float() for c in readers]
        )
        wmax = wmax.amax(0).clamp_min(1e-5)
        s = (xmax.pow(alpha) / wmax.pow(1.0 - alpha)).clamp_min(1e-5)
        scaled += apply_scale(model, g, s, set(chosen))
        ctx.progress(
            (i + 1) / len(groups), f"smoothed {', '.join(chosen)}" + (" (folded)" if g.foldable else "")
        )
    record_scaled(cm, scaled)
    return cm
