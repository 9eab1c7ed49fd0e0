"""The stored form of a model: packed/sparse tensors, stored size, rebuild, export.

Names are imported on first use (PEP 562): reading a manifest or streaming stored tensors
(`manifest`, `ranged`) does not import torch, so a weights-only comparison starts quickly."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .artifact import (
        StoredSize,
        load_artifact,
        read_tensor,
        register_encoding_loader,
        save_artifact,
        stored_size,
        tensor_names,
        tensor_shapes,
    )
    from .export import ExportError, ExportExistsError, export_conflict, export_model, float_copy
    from .manifest import FORMAT_VERSION, ArtifactError, read_manifest
    from .ranged import StoredTensors, open_stored

_WHERE = {
    "FORMAT_VERSION": "manifest", "ArtifactError": "manifest", "read_manifest": "manifest",
    "StoredSize": "artifact", "load_artifact": "artifact", "read_tensor": "artifact",
    "register_encoding_loader": "artifact", "save_artifact": "artifact", "stored_size": "artifact",
    "tensor_names": "artifact", "tensor_shapes": "artifact",
    "ExportError": "export", "ExportExistsError": "export", "export_conflict": "export", "export_model": "export",
    "float_copy": "export",
    "StoredTensors": "ranged", "open_stored": "ranged",
}  # fmt: skip

__all__ = [
    "FORMAT_VERSION",
    "ArtifactError",
    "ExportError",
    "ExportExistsError",
    "StoredSize",
    "StoredTensors",
    "export_conflict",
    "export_model",
    "float_copy",
    "load_artifact",
    "open_stored",
    "read_manifest",
    "read_tensor",
    "register_encoding_loader",
    "save_artifact",
    "stored_size",
    "tensor_names",
    "tensor_shapes",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value
