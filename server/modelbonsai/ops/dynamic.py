"""`quantize.dynamic`: int8 dynamic quantization of Linear layers (PyTorch's quantized CPU kernels).

Weights become int8 (per output channel or per tensor, symmetric) and activations are quantized
on the fly at each call, so matrix multiplies run in int8 on the CPU. transformers' Conv1D (GPT-2)
is turned into an equivalent nn.Linear first so it benefits too. The change of module types is a
structural edit ("quantize.dynamic"), replayed on a fresh base skeleton when an artifact is
loaded; the artifact stores the int8 weights and their scales.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .quantize import _conv1d_type, select_targets
from .registry import CompressedModel, OpContext, OpError, Param, register_edit, register_op

OP = "quantize.dynamic"
EDIT = "quantize.dynamic"


def dynamic_linear_type() -> type:
    with warnings.catch_warnings():  # torch.ao prints a migration notice on import
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear
    return Linear


def _qconfig(granularity: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig
    return per_channel_dynamic_qconfig if granularity == "channel" else default_dynamic_qconfig


def apply_dynamic(module: nn.Module, modules: list[str], conv1d: list[str], granularity: str) -> None:
    """Convert the named Conv1D layers to Linear, then the named Linear layers to dynamic int8."""
    for name in conv1d:
        _replace(module, name, _linear_from_conv1d(module.get_submodule(name)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        qc = _qconfig(granularity)
        quantize_dynamic(module, qconfig_spec={n: qc for n in modules}, dtype=torch.qint8, inplace=True)


def _need_float32(cm: CompressedModel, names: list[str]) -> None:
    """PyTorch's dynamic int8 layers take float32 weights only: say where other ones came from."""
    dtypes = {n: cm.module.get_submodule(n).weight.dtype for n in names}
    wrong = next(((n, d) for n, d in dtypes.items() if d != torch.float32), None)
    if wrong is None:
        return
    layer, dtype = wrong
    shown = str(dtype).removeprefix("torch.")
    cast = next((e for e in reversed(cm.edits) if e.get("kind") == "cast.dtype"), None)
    if cast is not None:
        why = (
            f"an earlier `cast` op made the weights {shown}; apply quantize.dynamic before the cast "
            "(in the variant it starts from)"
        )
    else:
        why = (
            f"the model's weights are {shown} as loaded (the base's `dtype:`), not float32; load the base "
            "with `dtype: float32` for dynamic int8, or use quantize.weights, which works in any float dtype"
        )
    raise OpError(OP, f"dynamic int8 quantization needs float32 layers: {why}", layer=f"{layer}.weight")


def _linear_from_conv1d(conv: nn.Module) -> nn.Linear:
    w = conv.weight  # [in, out]
    assert isinstance(w, torch.Tensor)
    bias = getattr(conv, "bias", None)
    lin = nn.Linear(int(w.shape[0]), int(w.shape[1]), bias=bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w.t())
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, leaf, new)


@register_edit(EDIT)
def _replay(module: nn.Module, edit: dict[str, Any]) -> None:
    apply_dynamic(
        module, list(edit["modules"]), list(edit.get("conv1d", [])), str(edit.get("granularity", "channel"))
    )


@register_op(
    OP,
    family="quantize",
    summary="int8 dynamic quantization of Linear layers for real CPU speed-ups (runs on CPU only).",
    params=[
        Param(
            "granularity",
            "enum",
            "int8 weight scales per output channel or one per tensor.",
            default="channel",
            choices=("channel", "tensor"),
        ),
        Param(
            "include", "patterns", "Weight-name globs of the Linear/Conv1D layers to convert. Default: all."
        ),
        Param("exclude", "patterns", "Weight-name globs of layers to keep in floating point.", default=[]),
    ],
    changes_structure=True,
)
def quantize_dynamic_op(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Replace Linear layers by int8 dynamically quantized ones (PyTorch `quantize_dynamic`).

    Weights are stored as int8 with one symmetric scale per output channel (or per tensor);
    activations are quantized per batch at run time, so the matrix multiplies run in int8 on the
    CPU — a real speed-up there. transformers' Conv1D layers (GPT-2) are converted to Linear first.
    The model is moved to the CPU: PyTorch's quantized kernels run only there. The artifact stores
    the int8 weights and their float32 scales; zeros from pruning stay zero. Fine-tuning a
    dynamically quantized layer is not possible, so pruning masks and quantization encodings of
    the converted layers are dropped from the model (the int8 weights keep their zeros).
    """
    module = cm.module
    conv1d_type = _conv1d_type()
    kinds: tuple[type, ...] = (nn.Linear,) if conv1d_type is None else (nn.Linear, conv1d_type)
    candidates = {f"{n}.weight": n for n, m in module.named_modules() if isinstance(m, kinds) and n}
    chosen = select_targets(module, params.get("include"), params.get("exclude"), op=OP)
    names = [candidates[w] for w in chosen if w in candidates]
    if not names:
        raise OpError(
            OP,
            "no Linear or Conv1D layer matches; dynamic quantization only applies to those",
            param="include",
        )
    _need_float32(cm, names)
    conv1d = [
        n for n in names if conv1d_type is not None and isinstance(module.get_submodule(n), conv1d_type)
    ]
    granularity = str(params["granularity"])
    ctx.progress(0.1, f"quantizing {len(names)} layers to int8")
    module.to("cpu")
    cm.masks = {n: m.to("cpu") for n, m in cm.masks.items()}
    with torch.no_grad():
        apply_dynamic(module, names, conv1d, granularity)
    for n in names:
        for key in (f"{n}.weight", f"{n}.bias"):
            cm.encodings.pop(key, None)
            cm.masks.pop(key, None)
    cm.edits.append({"kind": EDIT, "modules": names, "conv1d": conv1d, "granularity": granularity})
    ctx.progress(1.0, "done")
    return cm
