"""ExecuTorch export (`.pte`, XNNPACK delegate where it applies) and its runtime on the CPU.

torch.export -> `to_edge_transform_and_lower` with the XNNPACK partitioner (the ops XNNPACK has
run in its kernels; the rest in ExecuTorch's portable ones) -> `to_executorch`. The program is
run by `executorch.runtime` (verified with executorch 1.5.1 beside torch 2.13.0: VERIFIED.md).
Quantized weights are exported as the float weights the model holds: XNNPACK's integer kernels
need its own quantization flow (torchao's PT2E quantizer with calibration), which would not give
the model Bonsai evaluated.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .flat import Call, DeployError, FlatModule


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    loggers = [
        logging.getLogger(n)
        for n in ("executorch", "torch.export", "torch._dynamo", "torchao", "torch.utils._pytree")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """ExecuTorch's C++ side logs its CPU probing and thread-pool resets straight to file
    descriptor 2 ("[cpuinfo_utils.cpp:87] Failed to open midr file ..."): not Bonsai's output,
    so the descriptor points at /dev/null meanwhile (kept with BONSAI_DEBUG)."""
    if os.environ.get("BONSAI_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _lower(module: nn.Module, args: tuple[Any, ...], dynamic_shapes: Any = None) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with _quiet(), _native_stderr_quiet():
        ep = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
        return bytes(edge.to_executorch().buffer)


def export_executorch(
    model: nn.Module, call: Call, path: Path, *, dynamic: dict[int, dict[int, tuple[str, int]]] | None = None
) -> Path:
    """Write `model` (called as `call` recorded) as an ExecuTorch program. `dynamic`: input index
    -> {dim: (name, upper bound)}: ExecuTorch plans memory for the largest shape, so every varying
    dimension needs its bound. Raises DeployError naming the op and layer it cannot express."""
    from .layers import failing_layer

    flat = FlatModule(model, call).eval()
    inputs = tuple(call.inputs)
    shapes = None
    if dynamic:
        dims: dict[str, Any] = {}
        # FlatModule.forward(*tensors): one argument, the tuple of tensors, so one spec (a tuple)
        shapes = (
            tuple(
                {
                    d: dims.setdefault(n, torch.export.Dim(n, min=1, max=hi))
                    for d, (n, hi) in dynamic[i].items()
                }
                if dynamic.get(i)
                else None
                for i in range(len(inputs))
            ),
        )
    try:
        data = _lower(flat, inputs, shapes)
    except Exception as e:
        raise DeployError(
            failing_layer("ExecuTorch", model, call, e, lambda m, a: _lower(m.eval(), a))
        ) from e
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


_POOL_SET = False


def _one_thread_pool() -> None:
    """XNNPACK's thread pool set to one thread (the caller's), once per process and before any
    program is loaded: the latency protocol's thread clock then sees all of a call's work. Never
    reset again while programs live: a delegate loaded earlier keeps the pool it was given, and
    resetting it under one crashes the next call (seen with executorch 1.5.1)."""
    global _POOL_SET
    if _POOL_SET:
        return
    from executorch.extension.pybindings import portable_lib

    with _native_stderr_quiet():
        portable_lib._unsafe_reset_threadpool(1)
    _POOL_SET = True


class ExecuTorchProgram:
    """A `.pte` loaded by `executorch.runtime`, its `forward` method ready."""

    def __init__(self, path: Path):
        with _quiet(), _native_stderr_quiet():  # importing it loads torchao, which logs
            from executorch.runtime import Runtime

        _one_thread_pool()
        try:
            with _quiet(), _native_stderr_quiet():
                program = Runtime.get().load_program(str(path))
                self.method = program.load_method("forward")
        except Exception as e:
            raise DeployError(f"ExecuTorch cannot load the program: {_first_line(e)}") from e
        self._program = program  # the method borrows from it

    def prepare(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [x.detach().cpu().contiguous() for x in inputs]

    def run_prepared(self, inputs: list[torch.Tensor]) -> list[Any]:
        return list(self.method.execute(inputs))

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.as_tensor(o).clone() for o in self.run_prepared(self.prepare(inputs))]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
