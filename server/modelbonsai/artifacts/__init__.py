"""The stored form of a model: packed/sparse tensors, stored size, rebuild, export."""

from .artifact import (
    FORMAT_VERSION,
    ArtifactError,
    StoredSize,
    load_artifact,
    read_manifest,
    read_tensor,
    register_encoding_loader,
    save_artifact,
    stored_size,
    tensor_names,
    tensor_shapes,
)
from .export import ExportError, ExportExistsError, export_conflict, export_model, float_copy
from .ranged import StoredTensors, open_stored

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
