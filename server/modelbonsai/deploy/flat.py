"""A model's call as a runtime sees it: tensors in, tensors out, in a fixed order.

Tasks call models in their own ways (`model(x)`, `model(**inputs)`, keyword flags). Recording the
call a task makes (`record_call`) gives its arguments as a pytree; `FlatModule` is the model behind
a positional, tensors-only signature (what torch.export, ONNX and ExecuTorch take), with the
non-tensor arguments fixed as recorded. `Call.flatten` turns a later call of the same kind into
that signature's tensors, and `Call.unflatten` a runtime's output tensors back into the model's
output structure (a ModelOutput, a tuple, a tensor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree


class DeployError(Exception):
    """A model cannot be exported to a target (the message names the op and the layer)."""


@dataclass
class Call:
    """One recorded call of a model: the tensor leaves of its (args, kwargs) and of its output."""

    in_spec: Any
    in_leaves: list[Any]  # tensors where the model took tensors, the constants elsewhere
    out_spec: Any
    out_leaves: list[Any]

    @property
    def inputs(self) -> list[torch.Tensor]:
        return [x for x in self.in_leaves if isinstance(x, torch.Tensor)]

    @property
    def outputs(self) -> list[torch.Tensor]:
        return [x for x in self.out_leaves if isinstance(x, torch.Tensor)]

    def flatten(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
        """The tensors of another call of the model, checked to be a call of the same kind."""
        leaves, spec = pytree.tree_flatten((args, kwargs))
        if spec != self.in_spec:
            raise DeployError("the model was called with other arguments than when it was exported")
        for a, b in zip(leaves, self.in_leaves, strict=True):
            if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor) or (
                not isinstance(a, torch.Tensor) and a != b
            ):
                raise DeployError(f"the model was called with {a!r} where it was exported with {b!r}")
        return [x for x in leaves if isinstance(x, torch.Tensor)]

    def unflatten(self, tensors: list[torch.Tensor]) -> Any:
        it = iter(tensors)
        leaves = [next(it) if isinstance(x, torch.Tensor) else x for x in self.out_leaves]
        return pytree.tree_unflatten(leaves, self.out_spec)


class _Recorder(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[Call] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        in_leaves, in_spec = pytree.tree_flatten((args, kwargs))
        out_leaves, out_spec = pytree.tree_flatten(out)
        self.calls.append(Call(in_spec, in_leaves, out_spec, out_leaves))
        return out


def record_call(model: nn.Module, run: Callable[[nn.Module], Any]) -> tuple[Call, Any]:
    """Run `run(model)` (e.g. `lambda m: task.forward(m, batch)`) and record the model's call.
    Exactly one call of the model is expected: a task that calls it several times per batch (a
    generation loop) is not a single program to export."""
    rec = _Recorder(model)
    with torch.inference_mode():
        result = run(rec)
    if len(rec.calls) != 1:
        raise DeployError(f"the task called the model {len(rec.calls)} times for one batch; expected once")
    call = rec.calls[0]
    bad = [type(x).__name__ for x in call.out_leaves if not _plain(x)]
    if bad:
        raise DeployError(f"the model returns {', '.join(sorted(set(bad)))}, which a runtime cannot return")
    return call, result


def _plain(x: Any) -> bool:
    return x is None or isinstance(x, (torch.Tensor, int, float, bool, str))


class FlatModule(nn.Module):
    """`model` behind `forward(*tensors) -> tuple of tensors`, the call's constants fixed."""

    def __init__(self, model: nn.Module, call: Call):
        super().__init__()
        self.model = model
        self._in_spec = call.in_spec
        self._in_leaves = call.in_leaves

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        it = iter(tensors)
        leaves = [next(it) if isinstance(x, torch.Tensor) else x for x in self._in_leaves]
        args, kwargs = pytree.tree_unflatten(leaves, self._in_spec)
        out = self.model(*args, **kwargs)
        return tuple(x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor))
