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


#: the manifest of a model imported from another tool: its recipe and metrics, no weights
IMPORTED_FORMAT = "bonsai-imported"


class NoWeightsError(ArtifactError):
    """A model imported from another tool (`bonsai import-cc`): there are no weights to read, so
    what needs them (a weight or activation comparison, an export) cannot run. Says so plainly."""

    def __init__(self, path: Path, source: dict[str, Any]):
        super().__init__(path, "no weights")
        tool, file, mid = source.get("tool", "another tool"), source.get("file", "?"), source.get("id", "?")
        self.message = (
            f"model '{mid}' was imported from {tool} ({file}): Bonsai has its recipe and metrics, "
            "not its weights, so this needs a model Bonsai made (or one loaded from its weights)"
        )
        self.args = (self.message,)

    def __str__(self) -> str:
        return self.message


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
    if isinstance(manifest, dict) and manifest.get("format") == IMPORTED_FORMAT:
        raise NoWeightsError(path, manifest.get("imported") or {})
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
