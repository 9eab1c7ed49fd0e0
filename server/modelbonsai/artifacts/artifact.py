"""Writing and reading an artifact folder: `manifest.json` + `tensors.safetensors`.

The manifest records the format version, the structural edits (replayed on a fresh base skeleton
at load), the encodings, kept indices, how each pruning mask is re-derived, and per state-dict
entry its stored form, dtype and shape (see `forms.py`). The tensors file holds every stored
component. The stored size of a model is the bytes of these two files.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..ops.palettize import PaletteEncoding
from ..ops.quantize import QuantEncoding
from ..ops.registry import CompressedModel, Encoding, all_ops, replay_edits
from . import forms
from .forms import SEP, Encoded
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, TENSORS, ArtifactError, read_manifest

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "TENSORS", "ArtifactError", "read_manifest"]  # re-exported


@dataclass
class StoredSize:
    """Bytes on disk: the total of the artifact's files, and each tensor's stored payload."""

    bytes_total: int
    per_tensor: dict[str, int] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)


#: loaders for encodings other modules define: kind -> fn(json) -> Encoding
_ENCODING_LOADERS: dict[str, Callable[[dict[str, Any]], Encoding]] = {}


def register_encoding_loader(
    kind: str,
) -> Callable[[Callable[[dict[str, Any]], Encoding]], Callable[[dict[str, Any]], Encoding]]:
    """Decorator for ops whose encodings are not quantization grids (rebuilt from their JSON only)."""

    def wrap(fn: Callable[[dict[str, Any]], Encoding]) -> Callable[[dict[str, Any]], Encoding]:
        _ENCODING_LOADERS[kind] = fn
        return fn

    return wrap


# -- saving ----------------------------------------------------------------------------------------
def save_artifact(cm: CompressedModel, folder: Path) -> StoredSize:
    """Write `cm` to `folder` in its smallest honest stored form; returns the stored size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module = cm.module
    dynamic = _dynamic_modules(module)
    state = module.state_dict()
    entries: dict[str, dict[str, Any]] = {}
    tensors: dict[str, torch.Tensor] = {}
    per_tensor: dict[str, int] = {}
    encodings_json: dict[str, dict[str, Any]] = {}
    canonical = _alias_map(state, cm.encodings)
    notes: list[str] = []

    def put(name: str, enc: Encoded) -> None:
        entries[name] = enc.entry
        tensors.update(enc.tensors)
        per_tensor[name] = enc.nbytes

    for name, value in state.items():
        if any(name.startswith(prefix + ".") for prefix in dynamic):
            continue  # stored below as int8 weight + float bias
        if not isinstance(value, torch.Tensor):
            raise ArtifactError(
                folder / TENSORS, f"state entry '{name}' is not a tensor ({type(value).__name__})"
            )
        if name in canonical:
            entries[name] = {
                "form": "alias",
                "of": canonical[name],
                "dtype": forms.dtype_name(value.dtype),
                "shape": list(value.shape),
            }
            per_tensor[name] = 0
            continue
        encoding = cm.encodings.get(name)
        stored: Encoded | None = None
        if isinstance(encoding, QuantEncoding):
            stored = forms.encode_quant(name, value, encoding)
            if stored is None:
                notes.append(f"{name}: values no longer on its quantization grid; stored unquantized")
            else:
                encodings_json[name] = encoding.to_json()
        elif isinstance(encoding, PaletteEncoding):
            stored = forms.encode_palette(name, value, encoding)
            if stored is None:
                notes.append(f"{name}: values no longer on its palette; stored unquantized")
            else:
                encodings_json[name] = encoding.to_json()
        elif encoding is not None:
            encodings_json[name] = encoding.to_json()
        put(name, stored if stored is not None else forms.encode_plain(name, value))

    for prefix, mod in dynamic.items():
        put(f"{prefix}.weight", forms.encode_qint8(f"{prefix}.weight", mod.weight()))
        bias = mod.bias()
        if bias is not None:
            put(f"{prefix}.bias", forms.encode_plain(f"{prefix}.bias", bias))

    masks = _mask_entries(cm, state, tensors, per_tensor)
    tensors = _unshare(tensors)
    tmp = folder / (TENSORS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / TENSORS)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch": torch.__version__,
        "tensors_file": TENSORS,
        "tensors_bytes": (folder / TENSORS).stat().st_size,
        "edits": cm.edits,
        "encodings": encodings_json,
        "kept_indices": {
            n: {str(d): list(map(int, idx)) for d, idx in dims.items()} for n, dims in cm.kept_indices.items()
        },
        "masks": masks,
        "dynamic_modules": sorted(dynamic),
        "tensors": entries,
        "notes": notes,
    }
    tmp_manifest = folder / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp_manifest, folder / MANIFEST)
    return StoredSize(stored_size(folder), per_tensor, {n: e["form"] for n, e in entries.items()})


def _dynamic_modules(module: nn.Module) -> dict[str, Any]:
    from ..ops.dynamic import dynamic_linear_type

    kind = dynamic_linear_type()
    return {name: m for name, m in module.named_modules() if isinstance(m, kind)}


def _alias_map(state: dict[str, Any], encodings: dict[str, Encoding]) -> dict[str, str]:
    """name -> the entry it shares storage with (tied weights), for every entry but one per group."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.numel() > 0 and not t.is_quantized:
            key = (
                t.device,
                t.untyped_storage().data_ptr(),
                t.storage_offset(),
                tuple(t.shape),
                tuple(t.stride()),
                t.dtype,
            )
            groups.setdefault(key, []).append(name)
    out: dict[str, str] = {}
    for names in groups.values():
        if len(names) > 1:
            keep = next((n for n in names if n in encodings), names[0])  # the quantized name is the real one
            out.update({n: keep for n in names if n != keep})
    return out


def _mask_entries(
    cm: CompressedModel, state: dict[str, Any], tensors: dict[str, torch.Tensor], per_tensor: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """How each pruning mask comes back: from the zeros of its tensor when it can, else stored."""
    out: dict[str, dict[str, Any]] = {}
    for name, mask in cm.masks.items():
        value = state.get(name)
        mask = mask.detach().to("cpu").to(torch.bool)
        if isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(mask.shape):
            zeros = value.detach().to("cpu") == 0
            if torch.equal(mask, zeros):
                out[name] = {"derive": "zeros"}
                continue
            if torch.equal(mask, ~zeros):
                out[name] = {"derive": "nonzeros"}
                continue
            # Quantization rounds some kept weights to 0: the mask is then the zeros minus a few
            # positions, listed (int32 flat indices) when that is cheaper than a full bitmask.
            extra = zeros & ~mask
            if not bool((mask & ~zeros).any()) and int(extra.sum()) * 4 < mask.numel() // 8:
                key = f"{name}{SEP}mask_exceptions"
                tensors[key] = extra.reshape(-1).nonzero().reshape(-1).to(torch.int32)
                per_tensor[name] = per_tensor.get(name, 0) + tensors[key].numel() * 4
                out[name] = {"derive": "zeros", "except": key}
                continue
        key = f"{name}{SEP}prune_mask"
        tensors[key] = forms.pack_mask(mask)
        per_tensor[name] = per_tensor.get(name, 0) + tensors[key].numel()
        out[name] = {"stored": key, "shape": list(mask.shape)}
    return out


def _unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory; copy any that are views into shared storage."""
    seen: set[int] = set()
    out = {}
    for key, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and (ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        seen.add(ptr)
        out[key] = t
    return out


def stored_size(folder: Path) -> int:
    """Bytes of the artifact's files (manifest + tensors)."""
    folder = Path(folder)
    return sum((folder / f).stat().st_size for f in (MANIFEST, TENSORS) if (folder / f).exists())


# -- reading ---------------------------------------------------------------------------------------
class _Reader:
    """Component tensors from the safetensors file (memory-mapped), with errors naming the file."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.path = Path(folder) / str(manifest.get("tensors_file", TENSORS))
        try:
            self._ctx = safe_open(str(self.path), framework="pt", device="cpu")
            self._file = self._ctx.__enter__()
        except Exception as e:
            raise ArtifactError(self.path, f"not a readable safetensors file ({e})") from None

    def get(self, key: str) -> torch.Tensor:
        try:
            return self._file.get_tensor(key)
        except Exception as e:
            raise ArtifactError(self.path, f"cannot read tensor '{key}' ({e})") from None

    def close(self) -> None:
        self._ctx.__exit__(None, None, None)


def _decode_entry(reader: _Reader, manifest: dict[str, Any], name: str) -> torch.Tensor:
    entries = manifest["tensors"]
    if name not in entries:
        raise KeyError(name)
    entry = entries[name]
    if entry.get("form") == "alias":
        return _decode_entry(reader, manifest, str(entry["of"]))
    try:
        return forms.decode(name, entry, reader.get, manifest["encodings"].get(name))
    except ArtifactError:
        raise
    except Exception as e:  # a manifest entry that does not fit its data
        raise ArtifactError(reader.path, f"tensor '{name}' cannot be decoded ({e})") from None


def load_artifact(folder: Path, skeleton: Callable[[], nn.Module]) -> CompressedModel:
    """Rebuild a runnable CompressedModel: fresh base skeleton + edits + decoded tensors."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    mpath = folder / MANIFEST
    all_ops()  # registers the built-in ops, hence their edit replayers
    module = skeleton()
    try:
        replay_edits(module, manifest["edits"])
    except Exception as e:
        raise ArtifactError(mpath, f"cannot rebuild the model's structure: {e}") from None
    reader = _Reader(folder, manifest)
    try:
        state: OrderedDict[str, Any] = OrderedDict()
        dynamic_prefixes = list(manifest.get("dynamic_modules", []))
        for prefix in dynamic_prefixes:
            _load_dynamic(module, prefix, manifest, reader)
        own = module.state_dict()
        # module versions (e.g. of quantized Linear) decide how their state is read back
        state._metadata = getattr(own, "_metadata", None)  # type: ignore[attr-defined]
        for name in own:
            if any(name.startswith(p + ".") for p in dynamic_prefixes):
                state[name] = own[name]  # set just above through set_weight_bias
        stored_dtypes: dict[str, torch.dtype] = {}
        for name, entry in manifest["tensors"].items():
            if any(name.startswith(p + ".") for p in dynamic_prefixes):
                continue
            state[name] = _decode_entry(reader, manifest, name)
            stored_dtypes[name] = forms.dtype_of(entry["dtype"])
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ArtifactError(folder / TENSORS, f"does not fit the base model's skeleton: {e}") from None
        _restore_dtypes(module, stored_dtypes)
        cm = CompressedModel(module=module, edits=list(manifest["edits"]))
        cm.kept_indices = {
            n: {int(d): list(idx) for d, idx in dims.items()} for n, dims in manifest["kept_indices"].items()
        }
        for name, enc in manifest["encodings"].items():
            entry = manifest["tensors"].get(name, {})
            if entry.get("form") in ("packed", "packed-bitmask"):
                cm.encodings[name] = forms.quant_encoding(name, enc, reader.get)
            elif entry.get("form") == "palette":
                cm.encodings[name] = forms.palette_encoding(name, enc, reader.get)
            elif enc.get("kind") in _ENCODING_LOADERS:
                cm.encodings[name] = _ENCODING_LOADERS[enc["kind"]](enc)
        params = dict(module.state_dict(keep_vars=True))
        for name, how in manifest["masks"].items():
            cm.masks[name] = _mask(name, how, params, reader)
        return cm
    finally:
        reader.close()


def _load_dynamic(module: nn.Module, prefix: str, manifest: dict[str, Any], reader: _Reader) -> None:
    wname, bname = f"{prefix}.weight", f"{prefix}.bias"
    entries = manifest["tensors"]
    if wname not in entries:
        raise ArtifactError(reader.path, f"dynamic layer '{prefix}' has no stored weight")
    try:
        mod = module.get_submodule(prefix)
        qweight = forms.decode_qint8(wname, entries[wname], reader.get)
        bias = _decode_entry(reader, manifest, bname) if bname in entries else None
        mod.set_weight_bias(qweight, bias)  # type: ignore[operator]
    except ArtifactError:
        raise
    except Exception as e:
        raise ArtifactError(reader.path, f"dynamic layer '{prefix}' cannot be restored ({e})") from None


def _restore_dtypes(module: nn.Module, stored: dict[str, torch.dtype]) -> None:
    """load_state_dict copies into the skeleton's dtype; give back casts (e.g. fp16) as stored."""
    live = module.state_dict(keep_vars=True)
    for name, dt in stored.items():
        t = live.get(name)
        if isinstance(t, torch.Tensor) and t.dtype != dt:
            t.data = t.data.to(dt)  # in place on the (possibly tied) parameter object


def _mask(name: str, how: dict[str, Any], params: dict[str, Any], reader: _Reader) -> torch.Tensor:
    if "stored" in how:
        shape = [int(x) for x in how["shape"]]
        numel = 1
        for d in shape:
            numel *= d
        return forms.unpack_mask(reader.get(str(how["stored"])), numel).reshape(shape)
    value = params.get(name)
    if value is None:
        raise ArtifactError(reader.path, f"mask for '{name}', which the model does not have")
    zeros = value.detach().to("cpu") == 0
    if "except" in how:
        flat = zeros.reshape(-1).clone()
        flat[reader.get(str(how["except"])).to(torch.int64)] = False
        zeros = flat.reshape(zeros.shape)
    return zeros if how.get("derive") == "zeros" else ~zeros


# -- streaming, for comparisons --------------------------------------------------------------------
# (through ranged.open_stored: the manifest is parsed once per artifact while its files are unchanged)
def tensor_names(folder: Path) -> list[str]:
    """Every stored tensor's name (state-dict names; dynamic layers as `<layer>.weight/.bias`)."""
    from .ranged import open_stored

    return open_stored(folder).names()


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every stored tensor's shape, from the manifest alone (nothing is decoded)."""
    from .ranged import open_stored

    return open_stored(folder).shapes()


def read_tensor(folder: Path, name: str) -> torch.Tensor:
    """One tensor, decoded (dequantized), reading only its components from the memory-mapped file.
    (`open_stored(folder).range_reader(name)` decodes a flat element range instead.)"""
    from .ranged import open_stored

    return open_stored(folder).tensor(name)
