"""Cast a model's floating-point tensors to half precision (fp16 or bf16)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .registry import CompressedModel, OpContext, OpError, Param, register_edit, register_op
from .targets import to_device

OP = "cast"
EDIT = "cast.dtype"
DTYPES = ("fp16", "bf16")  # the dtype param's choices (names: no torch to register the op)


def _dtype(name: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[name]


def cast_floats(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast floating parameters and buffers only (integer buffers such as position ids stay),
    and cast floating inputs at the model's entry to match (`cast_inputs`)."""
    module.to(dtype=dtype)  # nn.Module.to(dtype) leaves integer tensors alone by design
    cast_inputs(module)


_CASTS_INPUTS = "_bonsai_casts_inputs"  # set on a module whose inputs `cast_inputs` casts


def cast_inputs(module: nn.Module) -> None:
    """Cast the floating tensors a model is called with to its own floating dtype.

    Tasks feed float32 data (images, features); a conv or linear in fp16/bf16 refuses it ("Input
    type (torch.FloatTensor) and weight type (torch.HalfTensor) should be the same"). A forward
    pre-hook on the model casts its floating inputs to the dtype of its first floating parameter
    at call time, so evaluation, latency and every comparison run the cast model on the same data
    as its parent (an upcast copy, `module.float()`, gets float32 inputs again). Token ids and
    other integer inputs are left alone. Replaying the cast edit installs it again on load.
    """
    if getattr(module, _CASTS_INPUTS, False):
        return
    module.register_forward_pre_hook(_cast_inputs_hook, with_kwargs=True)
    setattr(module, _CASTS_INPUTS, True)


def _cast_inputs_hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return inputs_as_module_dtype(module, args, kwargs)


def inputs_as_module_dtype(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any]:
    """`args` and `kwargs` with their floating tensors in `module`'s floating dtype (that of its
    first floating parameter; unchanged when it has none). Also for feeding one model's recorded
    activations to another model's module (the isolated activation comparison of a cast model)."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    if dtype is None:
        return args, kwargs
    return _to_dtype(args, dtype), _to_dtype(kwargs, dtype)


def _to_dtype(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, tuple):
        return tuple(_to_dtype(v, dtype) for v in value)
    if isinstance(value, list):
        return [_to_dtype(v, dtype) for v in value]
    if isinstance(value, dict):
        return {k: _to_dtype(v, dtype) for k, v in value.items()}
    return value


@register_edit(EDIT)
def _replay(model: nn.Module, edit: dict[str, Any]) -> None:
    # the artifact loader loads the stored half-precision tensors into this skeleton; without the
    # cast, load_state_dict would silently upcast them back to fp32 (and the inputs hook with it)
    cast_floats(model, _dtype(edit["dtype"]))


@register_op(
    OP,
    family="precision",
    summary="Cast every floating-point tensor to fp16 or bf16 (half the stored size).",
    params=[Param("dtype", "enum", "Target precision.", default="bf16", choices=DTYPES)],
)
def cast(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Cast all floating-point parameters and buffers to `fp16` or `bf16`.

    The artifact stores the tensors in that dtype, so the stored size halves. `bf16` keeps fp32's
    range (safe for activations that grow large) with fewer mantissa bits; `fp16` is more precise
    but overflows above 65504.

    On CPU both run: PyTorch has CPU kernels for bf16 and (slower) fp16 matmul and convolution.
    The model keeps the stored dtype as its running dtype, and casts floating inputs (images,
    features) to it where it is called, so it runs on the task's float32 data; its outputs are in
    that dtype. Tensors already quantized keep their encodings: they are stored packed regardless
    of the float dtype.
    """
    dtype = _dtype(params["dtype"])
    model = to_device(cm, ctx)
    if not any(t.is_floating_point() for t in model.parameters()):
        raise OpError(OP, "the model has no floating-point parameters", param="dtype")
    cast_floats(model, dtype)
    cm.edits.append({"kind": EDIT, "dtype": params["dtype"]})
    return cm
