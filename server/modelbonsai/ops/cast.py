"""Cast a model's floating-point tensors to half precision (fp16 or bf16)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .registry import CompressedModel, OpContext, OpError, Param, register_edit, register_op
from .targets import to_device

OP = "cast"
EDIT = "cast.dtype"
DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}


def cast_floats(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast floating parameters and buffers only (integer buffers such as position ids stay)."""
    module.to(dtype=dtype)  # nn.Module.to(dtype) leaves integer tensors alone by design


@register_edit(EDIT)
def _replay(model: nn.Module, edit: dict[str, Any]) -> None:
    # the artifact loader loads the stored half-precision tensors into this skeleton; without the
    # cast, load_state_dict would silently upcast them back to fp32
    cast_floats(model, DTYPES[edit["dtype"]])


@register_op(
    OP,
    family="precision",
    summary="Cast every floating-point tensor to fp16 or bf16 (half the stored size).",
    params=[Param("dtype", "enum", "Target precision.", default="bf16", choices=tuple(DTYPES))],
)
def cast(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Cast all floating-point parameters and buffers to `fp16` or `bf16`.

    The artifact stores the tensors in that dtype, so the stored size halves. `bf16` keeps fp32's
    range (safe for activations that grow large) with fewer mantissa bits; `fp16` is more precise
    but overflows above 65504.

    On CPU both run: PyTorch has CPU kernels for bf16 and (slower) fp16 matmul and convolution.
    The model keeps the stored dtype as its running dtype; evaluation code that meets an op with
    no half-precision kernel on its device may upcast a copy with `module.float()`
    (see `upcast_if_needed`). Tensors already quantized keep their encodings: they are stored
    packed regardless of the float dtype.
    """
    dtype = DTYPES[params["dtype"]]
    model = to_device(cm, ctx)
    if not any(t.is_floating_point() for t in model.parameters()):
        raise OpError(OP, "the model has no floating-point parameters", param="dtype")
    cast_floats(model, dtype)
    cm.edits.append({"kind": EDIT, "dtype": params["dtype"]})
    return cm


def upcast_if_needed(module: nn.Module, device: torch.device, example: Any) -> nn.Module:
    """Run `module` on `example`; if a half-precision kernel is missing, return a float copy.

    For evaluators: half-precision models normally run as they are; this is the fallback for a
    device/op without fp16/bf16 support. The stored artifact is unaffected.
    """
    import copy

    try:
        with torch.no_grad():
            module(example)
        return module
    except RuntimeError as e:
        if "Half" not in str(e) and "BFloat16" not in str(e):
            raise
        return copy.deepcopy(module).float().to(device)
