"""The artifact's manifest: file names, format version, reading and checking it. No torch here,
so a comparison that only streams stored tensors (artifacts.ranged) starts without importing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError

FORMAT = "bonsai-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
#: joins a tensor's name and its component's ("w::mask", "w::values")
SEP = "::"
#: the floating dtypes a manifest names (forms.dtype_name of a torch dtype)
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


class ArtifactError(UserError, RuntimeError):
    """An artifact that cannot be read: names the file and what is wrong with it."""

    def __init__(self, path: Path, message: str):
        self.path, self.message = path, message
        super().__init__(f"artifact file {path}: {message}")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest, checked: ArtifactError naming the file when missing, corrupt or mismatched."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(path, "missing (the artifact was not written completely)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(path, f"not a readable JSON manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(path, "not a Bonsai artifact manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(
            path, f"format version {version!r} is newer than this Bonsai reads ({FORMAT_VERSION})"
        )
    for key in ("tensors", "edits", "encodings", "masks", "kept_indices"):
        if key not in manifest:
            raise ArtifactError(path, f"manifest lacks '{key}'")
    tensors_path = folder / str(manifest.get("tensors_file", TENSORS))
    if not tensors_path.is_file():
        raise ArtifactError(tensors_path, "missing")
    size = tensors_path.stat().st_size
    if size != manifest.get("tensors_bytes", size):
        raise ArtifactError(
            tensors_path,
            f"is {size} bytes, the manifest recorded {manifest['tensors_bytes']} (truncated or replaced)",
        )
    return manifest
