"""Choosing which parameters an op works on, and small helpers every op shares.

Default targets of weight ops (see CONTRIBUTING): the `.weight` of every ``nn.Linear``,
``nn.Conv1d``, ``nn.Conv2d`` and transformers ``Conv1D``. Biases, norms and embeddings are left
alone, and so is a Linear whose weight is tied to an embedding (a tied ``lm_head``): pruning it
would silently prune the embedding too.

``include`` patterns *replace* the defaults: they select among every parameter of the model, so a
user can target what the defaults leave out (``include: ["*LayerNorm*"]``). ``exclude`` patterns
then remove names from the selection. Each pattern must match at least one parameter of the model,
otherwise it is almost certainly a typo and the op fails naming the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .registry import CompressedModel, OpContext, OpError, Param, match_names

# Parameter schema pieces reused by many ops.
INCLUDE = Param(
    "include",
    "patterns",
    "Glob patterns over parameter names (`*` crosses dots) selecting the tensors to work on. "
    "When given, they replace the default targets, so biases, norms or embeddings can be "
    "included explicitly.",
    sweepable=False,
)
EXCLUDE = Param(
    "exclude",
    "patterns",
    "Glob patterns over parameter names removed from the targets (applied after `include`).",
    sweepable=False,
)

# No default on purpose: a default would enter every resolved parameter dict, and with it the
# fingerprint of every model these ops made before the parameter existed (they would be made again).
STRICT = Param(
    "strict",
    "bool",
    "`true`: a targeted layer whose shape does not fit the op (an input size `m` or `group_size` "
    "does not divide) fails the variant. Otherwise (the default) such a layer is skipped and left "
    "as it was, and the run lists it as a warning, stored with the model (metric `skipped_layers`).",
    sweepable=False,
)


def _conv1d_hf() -> type[nn.Module] | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except Exception:  # transformers is optional for plain PyTorch models
        return None
    return Conv1D


def weight_module_types() -> tuple[type[nn.Module], ...]:
    hf = _conv1d_hf()
    base: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
    return base + ((hf,) if hf is not None else ())


def is_hf_conv1d(module: nn.Module) -> bool:
    hf = _conv1d_hf()
    return hf is not None and isinstance(module, hf)


def param_names(model: nn.Module) -> list[str]:
    """Every parameter name, each shared tensor once (its first name), in module order."""
    return [n for n, _ in model.named_parameters()]


def default_weight_names(model: nn.Module) -> list[str]:
    """The default targets of weight ops (see the module docstring)."""
    types = weight_module_types()
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    canonical = {id(p): n for n, p in model.named_parameters()}
    out: list[str] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        if not isinstance(module, types):
            continue
        w = getattr(module, "weight", None)
        if not isinstance(w, nn.Parameter) or id(w) in embedded or id(w) in seen:
            continue
        seen.add(id(w))
        out.append(canonical.get(id(w), f"{mod_name}.weight" if mod_name else "weight"))
    return out


def as_patterns(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def select_names(
    op: str,
    universe: Sequence[str],
    defaults: Sequence[str],
    include: str | Sequence[str] | None,
    exclude: str | Sequence[str] | None,
) -> list[str]:
    """Apply include/exclude to `universe` (every name the op could touch).

    Raises OpError for a pattern that matches nothing and for an empty selection.
    """
    inc, exc = as_patterns(include), as_patterns(exclude)
    for param, pats in (("include", inc), ("exclude", exc)):
        for p in pats:
            if not match_names(universe, [p]):
                raise OpError(op, f"pattern '{p}' matches no parameter of the model", param=param)
    chosen = match_names(universe, inc) if inc else list(defaults)
    if exc:
        dropped = set(match_names(chosen, exc))
        chosen = [n for n in chosen if n not in dropped]
    if not chosen:
        raise OpError(
            op,
            "no parameter is left to work on" + (" after 'exclude'" if exc else ""),
            param="exclude" if exc else ("include" if inc else None),
        )
    return chosen


def select_weights(
    op: str, model: nn.Module, include: str | Sequence[str] | None, exclude: str | Sequence[str] | None
) -> list[str]:
    """The weight-op targets: default weights, or `include` over all parameters, minus `exclude`."""
    return select_names(op, param_names(model), default_weight_names(model), include, exclude)


def get_param(model: nn.Module, name: str) -> nn.Parameter:
    p = model.get_parameter(name)
    return p


def owner(model: nn.Module, name: str) -> tuple[str, nn.Module, str]:
    """(module name, module, attribute) holding the parameter or buffer `name`."""
    mod_name, _, attr = name.rpartition(".")
    return mod_name, (model.get_submodule(mod_name) if mod_name else model), attr


def input_dim(module: nn.Module, tensor: torch.Tensor) -> int:
    """The dimension of a weight that runs over the layer's inputs.

    Linear/Conv weights are [out, in, ...]; transformers Conv1D stores [in, out]; anything else
    (e.g. a norm weight included on purpose) is treated along its last dimension.
    """
    if is_hf_conv1d(module):
        return 0
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return 1
    return tensor.dim() - 1


def refuse_encoded(op: str, cm: CompressedModel, names: Iterable[str], what: str) -> None:
    """Ops that rewrite weights cannot run after quantization of those weights."""
    for n in names:
        if n in cm.encodings:
            raise OpError(
                op,
                f"this tensor is already quantized ({cm.encodings[n].kind}); {what} before quantizing",
                layer=n,
            )


def to_device(cm: CompressedModel, ctx: OpContext) -> nn.Module:
    """Ops run on ctx.device: the model (a copy owned by this op) moves there."""
    cm.module.to(ctx.device)
    for name, mask in list(cm.masks.items()):
        cm.masks[name] = mask.to(ctx.device)
    return cm.module


def move_batch(batch: Any, device: torch.device) -> Any:
    """A task batch (tasks.base.Batch, tensor, dict or list of them) on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(v, device) for v in batch)
    if hasattr(batch, "inputs") and hasattr(batch, "ids"):
        from ..tasks.base import Task as TaskBase

        return TaskBase.to_device(batch, device)
    return batch


def need_task(op: str, ctx: OpContext, why: str) -> Any:
    if ctx.task is None:
        raise OpError(op, f"needs a task with training data ({why}); add a `task:` section to the experiment")
    return ctx.task


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator: random draws are identical whatever the device the op runs on."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def replace_param(module: nn.Module, attr: str, value: torch.Tensor) -> None:
    """Swap a parameter for a tensor of a (possibly) new shape, keeping requires_grad."""
    old = getattr(module, attr)
    if isinstance(old, nn.Parameter):
        setattr(module, attr, nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))
    else:  # a buffer
        module.register_buffer(
            attr, value.contiguous(), persistent=attr not in module._non_persistent_buffers_set
        )


def progress_steps(ctx: OpContext, total: int) -> Callable[[int, str], None]:
    """ctx.progress with a cancellation check, for loops over `total` items."""

    def step(i: int, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(min(1.0, i / max(total, 1)), message)

    return step
