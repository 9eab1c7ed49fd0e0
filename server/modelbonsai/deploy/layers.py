"""Which layer, and which op in it, keeps a model from exporting.

An exporter's error names an operator deep in a traced graph ("Unsupported FX nodes:
quantized.linear_dynamic"), rarely the layer a user knows. When a whole model fails, each leaf
module is exported on its own, with the inputs it received in the same call, in the order they
ran: the first that fails is the layer named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .flat import Call

_OP = re.compile(r"\b((?:aten|quantized|prims?|torch\.ops\.[A-Za-z_]\w*)(?:\.|::)[A-Za-z_][\w.]*)")
_MAX_LEAVES = 400  # a model with more leaves is not searched past this many


def op_of(e: BaseException) -> str | None:
    """The operator an exporter's error names, if it names one."""
    m = _OP.search(str(e))
    return m.group(1).rstrip(".") if m else None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(e: BaseException) -> str:
    """The first line of the innermost cause: the exporters wrap the real reason ("... is not
    supported") in a generic "Failed to export the model" error."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = _ANSI.sub("", str(e)).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= 300 else line[:300] + "…"


def failing_layer(
    runtime: str,
    model: nn.Module,
    call: Call,
    error: BaseException,
    export_one: Callable[[nn.Module, tuple[Any, ...]], object] | None = None,
) -> str:
    """The message for `error`, the whole model's export failure: '<runtime> cannot express <op>
    in layer <name> (<type>): <first line>'. `export_one(module, args)` exports one module the same
    way (default: torch.export, the first step of both exporters)."""
    op = op_of(error)
    found = _find(model, call, export_one or _torch_export)
    if found is not None:
        layer, kind, leaf_error = found
        op = op_of(leaf_error) or op or kind
        return f"{runtime} export failed: op {op} in layer '{layer}' ({kind}) cannot be exported: {first_line(leaf_error)}"
    where = f"op {op}" if op else "the model"
    return f"{runtime} export failed: {where} cannot be exported: {first_line(error)}"


def _torch_export(module: nn.Module, args: tuple[Any, ...]) -> object:
    return torch.export.export(module, args, strict=False)


def _find(
    model: nn.Module, call: Call, export_one: Callable[[nn.Module, tuple[Any, ...]], object]
) -> tuple[str, str, BaseException] | None:
    """The first module, in the order they ran, that ran none of its own submodules (a leaf as
    the call saw it: a dynamic int8 Linear holds a parameter module it never calls) and fails to
    export on its own."""
    seen: list[tuple[str, nn.Module, tuple[Any, ...]]] = []
    ran: set[str] = set()
    hooks = []
    for name, m in model.named_modules():
        if not name:
            continue

        def hook(mod: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            ran.add(name)
            if len(seen) < _MAX_LEAVES and all(isinstance(a, torch.Tensor) for a in args):
                seen.append((name, mod, tuple(a.detach().clone() for a in args)))

        hooks.append(m.register_forward_pre_hook(hook))
    try:
        from .flat import FlatModule

        with torch.no_grad():
            FlatModule(model, call)(*call.inputs)
    except Exception:  # the eager call worked before; if it does not now, say what the exporter said
        return None
    finally:
        for h in hooks:
            h.remove()
    parents = {n.rsplit(".", 1)[0] for n in ran if "." in n}
    done: set[int] = set()
    for name, mod, args in seen:
        if name in parents or id(mod) in done:
            continue
        done.add(id(mod))
        try:
            export_one(mod, args)
        except Exception as e:
            return name, _kind(mod), e
    return None


def _kind(mod: nn.Module) -> str:
    """`Conv2d` for torch.nn's own layers, the module path otherwise (a dynamic int8 Linear is
    `torch.ao.nn.quantized.dynamic.Linear`, not just `Linear`)."""
    t = type(mod)
    if t.__module__.startswith("torch.nn.modules"):
        return t.__name__
    return re.sub(r"\.modules\.\w+$", "", t.__module__) + "." + t.__name__
