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
from .export import ExportError, export_model, float_copy

__all__ = [
    "FORMAT_VERSION",
    "ArtifactError",
    "ExportError",
    "StoredSize",
    "export_model",
    "float_copy",
    "load_artifact",
    "read_manifest",
    "read_tensor",
    "register_encoding_loader",
    "save_artifact",
    "stored_size",
    "tensor_names",
    "tensor_shapes",
]
