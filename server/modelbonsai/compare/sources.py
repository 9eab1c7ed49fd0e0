"""Where compared weights come from: one tensor at a time, as float32 on the CPU.

A :class:`TensorSource` lists parameter names and shapes without reading data and returns one
(dequantized) tensor per call, so a weight comparison holds about one tensor per side in memory.
Sources: safetensors files (memory-mapped), an in-memory module, a callable, or a stored artifact
(through :mod:`modelbonsai.artifacts`, which dequantizes packed tensors).

A source may also offer `reader(name)`: a :data:`~.stats.RangeReader` over the flat float32
elements (or None for that tensor). The weight comparison then streams the pair chunk by chunk
and never materialises either tensor: safetensors files read straight from the mmap (float32: one
view of the whole tensor, so the kernel takes it in one call), a stored artifact decodes just the
requested range of any stored form (:meth:`modelbonsai.artifacts.StoredTensors.range_reader`),
and a :class:`FunctionSource` given `read_range` can dequantize just the requested range.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .control import CompareError

if TYPE_CHECKING:  # torch is imported where tensors are made: streamed comparisons run without it
    import torch
    from torch import nn


@runtime_checkable
class TensorSource(Protocol):
    def names(self) -> list[str]: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def get(self, name: str) -> torch.Tensor: ...


def _as_float(t: torch.Tensor) -> torch.Tensor:
    """Floats widen to float32 (float64 stays); integer tensors are kept as they are."""
    import torch  # already imported: t is a torch tensor

    if t.is_floating_point() and t.dtype != torch.float64:
        return t.float()
    return t


class SafetensorsSource:
    """One or more .safetensors files (a folder means every *.safetensors in it, i.e. shards).

    safetensors memory-maps the files, so listing names and shapes reads only the headers and
    `get` reads only that tensor's bytes."""

    def __init__(self, path: str | Path | Iterable[str | Path]):
        from safetensors import safe_open

        if isinstance(path, (str, Path)):
            p = Path(path)
            files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
        else:
            files = [Path(x) for x in path]
        if not files:
            raise CompareError(f"no .safetensors files in {path}")
        self._handles: dict[str, Any] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        for f in files:
            if not f.is_file():
                raise CompareError(f"weights file not found: {f}")
            try:
                h = safe_open(str(f), framework="pt")
            except Exception as e:  # safetensors raises its own error type
                raise CompareError(f"cannot read {f} as safetensors: {e}") from e
            for name in h.keys():
                self._handles[name] = h
                self._shapes[name] = tuple(h.get_slice(name).get_shape())
        self._files = files
        self._raw: dict[str, tuple[np.ndarray, str]] | None = None  # name -> (bytes, dtype)
        self._raw_lock = threading.Lock()  # readers are asked for from several threads at once

    def names(self) -> list[str]:
        return list(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def get(self, name: str) -> torch.Tensor:
        return _as_float(self._handles[name].get_tensor(name))

    def reader(self, name: str) -> Callable[[int, int], np.ndarray] | None:
        """Flat float32 ranges read from the mmap (no copy for F32); None for non-float dtypes."""
        from ..artifacts import ArtifactError
        from ..artifacts.ranged import dense_reader, mmap_components

        with self._raw_lock:
            if self._raw is None:
                mapped: dict[str, tuple[np.ndarray, str]] = {}
                for f in self._files:
                    try:
                        mapped.update({k: (raw, dt) for k, (raw, dt, _) in mmap_components(f).items()})
                    except ArtifactError as e:  # a plain weights file, not an artifact: say so
                        raise CompareError(f"cannot read {f} as safetensors: {e.message}") from None
                self._raw = mapped
        raw, dtype = self._raw[name]
        if dtype not in _FLOAT_VIEWS:
            return None  # integers, bools, float8: the whole-tensor path reports them
        return dense_reader(raw.view(_FLOAT_VIEWS[dtype]), dtype)


# float dtypes read by range: F32 as a view of the mmap, the others widened chunk by chunk
# (F64 narrows to float32, as the whole-tensor path computes in float32 too)
_FLOAT_VIEWS = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


class ModuleSource:
    """The parameters of an in-memory module (shared parameters are listed once)."""

    def __init__(self, module: nn.Module, *, include_buffers: bool = False):
        self._tensors: dict[str, torch.Tensor] = dict(module.named_parameters())
        if include_buffers:
            self._tensors.update(
                (n, b) for n, b in module.named_buffers() if b.is_floating_point() and n not in self._tensors
            )

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensors[name].shape)

    def get(self, name: str) -> torch.Tensor:
        return _as_float(self._tensors[name].detach().cpu())


class FunctionSource:
    """Names and shapes given up front; `read(name)` produces the tensor on demand.

    `read_range(name, start, stop)`, if given, produces the flat float32 elements [start, stop)
    (e.g. dequantizing only those), so a comparison streams the tensor instead of reading it
    whole."""

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, ...]],
        read: Callable[[str], torch.Tensor],
        read_range: Callable[[str, int, int], np.ndarray] | None = None,
    ):
        self._shapes = {k: tuple(v) for k, v in shapes.items()}
        self._read = read
        self._read_range = read_range

    def reader(self, name: str) -> Callable[[int, int], np.ndarray] | None:
        rr = self._read_range
        if rr is None:
            return None
        return lambda start, stop: rr(name, start, stop)

    def names(self) -> list[str]:
        return list(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def get(self, name: str) -> torch.Tensor:
        return _as_float(self._read(name))


class ArtifactSource:
    """A stored artifact's tensors: names and shapes from its manifest (parsed once), whole
    tensors decoded on `get`, and ranged readers that decode only the elements a chunk needs
    (so comparing two stored models holds about one chunk per side, not one tensor)."""

    def __init__(self, folder: str | Path):
        from ..artifacts import ArtifactError, open_stored

        try:
            self._stored = open_stored(Path(folder))
        except ArtifactError as e:
            raise CompareError(str(e)) from None
        self._shapes = self._stored.shapes()

    def names(self) -> list[str]:
        return list(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def get(self, name: str) -> torch.Tensor:
        return _as_float(self._stored.tensor(name))

    def reader(self, name: str) -> Callable[[int, int], np.ndarray] | None:
        # a whole-tensor float32 view is an ArrayReader already: the kernel takes it in one call
        return self._stored.range_reader(name)


def artifact_source(folder: str | Path) -> TensorSource:
    """A stored artifact's tensors, dequantized by the artifacts package (by range when read
    through `reader`, whole through `get`)."""
    return ArtifactSource(folder)


def as_source(x: TensorSource | nn.Module | str | Path) -> TensorSource:
    """Accept a source, a module, or a path (a .safetensors file, or a folder of them)."""
    torch_nn = sys.modules.get("torch.nn")  # a module can only be given once torch is imported
    if torch_nn is not None and isinstance(x, torch_nn.Module):
        return ModuleSource(x)
    if isinstance(x, (str, Path)):
        return SafetensorsSource(x)
    if isinstance(x, TensorSource):
        return x
    raise CompareError(f"cannot compare weights of a {type(x).__name__}")
