"""Export a compressed model for use outside Bonsai: a Hugging Face folder or plain safetensors.

A Hugging Face folder (`hf`) keeps what Bonsai stored where transformers can load it with no
custom code: quantized Linear weights as compressed-tensors `pack-quantized` tensors (int2-int8
codes with their scales and zero points, per tensor, channel or group: `deploy/hf_compressed.py`),
a config that states the new widths of structurally pruned layers where the architecture can
(`deploy/hf_structured.py`), and the base model's tokenizer and processor files. What a folder
cannot state is refused with the op and the layer named: a quantized layer compressed-tensors does
not compress (GPT-2's Conv1D, a convolution, a look-up table) can be exported `dequantize`d (the
float values the model runs on, at full size); pruned heads, unevenly pruned or factorised layers
go to `safetensors`, which then writes `load_bonsai_model.py` beside the weights (plain torch and
the original class). Plain `safetensors` holds the float values the model runs on.

An export never writes into a folder that holds files unless asked to (`force`): a user's
`config.json` or tokenizer beside it would be replaced or left mismatched without a word. The
files are written into a temporary sibling folder that is renamed into place once complete, so an
interrupted export leaves the target as it was. With `force`, what is replaced is what an export
writes or a Hugging Face save leaves (configs, weight files, shard indexes, the loader): the rest
of the folder (a tokenizer, a README) is carried over, and a tokenizer file already there is kept
rather than replaced by the base model's.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import EXPORT_EXISTS
from ..ops.registry import CompressedModel
from .artifact import ArtifactError, load_artifact


class ExportError(ArtifactError, ValueError):
    """A model that cannot be exported in the asked format, or a folder it cannot go to (names
    the output and why). A ValueError too: the language server reports it as a user's error."""

    def __init__(self, path: Path, message: str):
        RuntimeError.__init__(self, f"export to {path}: {message}")
        self.path = path


#: What an export writes, or what a model's weights may be stored as: `force` replaces these,
#: per format. Any weight file or shard index goes, not only the names written now: a stale
#: `model.safetensors.index.json` beside a new single-file model would load the old shards. A
#: safetensors export writes no config, so it leaves a folder's config alone.
EXPORT_FILES: dict[str, tuple[str, ...]] = {
    "safetensors": (
        "bonsai_export.json",
        "load_bonsai_model.py",
        "*.safetensors",
        "*.safetensors.index.json",
        "pytorch_model*.bin",
        "pytorch_model*.bin.index.json",
    ),
}
EXPORT_FILES["hf"] = ("config.json", "generation_config.json", *EXPORT_FILES["safetensors"])

#: a base model's tokenizer and processor files, copied into a Hugging Face export (a model's own
#: vocabulary too: the charlm sample reads `char_vocab.json`)
TOKENIZER_FILES = (
    "tokenizer*.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "*vocab*.txt",
    "*vocab*.json",
    "*.vocab",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "feature_extractor_config.json",
)


def _is_export_file(entry: Path, format: str) -> bool:
    return not entry.is_dir() and any(fnmatch.fnmatchcase(entry.name, pat) for pat in EXPORT_FILES[format])


class ExportExistsError(ExportError):
    """The export folder already holds files and `force` was not given. `replaced` are the files
    a forced export overwrites or removes, `kept` the others (both names, sorted)."""

    code = EXPORT_EXISTS  # the client offers to export there anyway

    def __init__(self, path: Path, replaced: list[str], kept: list[str]):
        self.replaced, self.kept = replaced, kept
        parts = [f"replaces {_names(replaced)}" if replaced else "replaces none of its files"]
        if kept:
            parts.append(f"keeps {_names(kept)}")
        super().__init__(path, f"the folder is not empty (exporting there {'; '.join(parts)})")


def _names(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def export_conflict(out_dir: Path | str, format: str = "hf") -> ExportExistsError | None:
    """Why exporting into `out_dir` in `format` needs `force` (it exists and is not empty), else None."""
    out_dir = Path(out_dir)
    if format not in EXPORT_FILES:
        raise ExportError(out_dir, f"unknown export format '{format}' (use hf or safetensors)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(out_dir, "a file of that name exists; choose a folder")
    if not out_dir.is_dir():
        return None
    entries = sorted(out_dir.iterdir(), key=lambda e: e.name)
    if not entries:
        return None
    replaced = [e.name for e in entries if _is_export_file(e, format)]
    kept = [e.name + ("/" if e.is_dir() else "") for e in entries if not _is_export_file(e, format)]
    return ExportExistsError(out_dir, replaced, kept)


def export_model(
    source: CompressedModel | Path | str,
    out_dir: Path | str,
    skeleton: Callable[[], nn.Module] | None = None,
    format: Literal["hf", "safetensors"] = "hf",
    *,
    force: bool = False,
    dequantize: bool = False,
    base_dir: Path | str | None = None,
    ops: Sequence[str] = (),
) -> Path:
    """Write a model to `out_dir`; returns the folder (hf) or the .safetensors file written.

    `source` is a CompressedModel, or an artifact folder together with the base `skeleton`
    factory to rebuild it with. A non-empty `out_dir` raises ExportExistsError unless `force`
    (checked before the model is rebuilt, so a refusal is quick). `hf` writes quantized weights
    compressed unless `dequantize`; `base_dir` is the base model's folder, whose tokenizer and
    processor files an `hf` export copies (default: the folder its config was read from); `ops`
    names the ops of the model's lineage (base first), so a refusal names the op that made the
    tensor it cannot write.
    """
    out_dir = Path(out_dir)
    conflict = export_conflict(out_dir, format)
    if conflict is not None and not force:
        raise conflict
    if isinstance(source, CompressedModel):
        cm = source
    else:
        if skeleton is None:
            raise ExportError(Path(source), "exporting an artifact folder needs the base model's skeleton")
        cm = load_artifact(Path(source), skeleton)
    module = float_copy(cm)
    if format == "safetensors":
        return _export_safetensors(cm, module, out_dir)
    if not hasattr(module, "save_pretrained") or not hasattr(module, "config"):
        raise ExportError(
            out_dir,
            "this model is not a Hugging Face transformers model; export it with format safetensors instead",
        )
    from ..deploy.hf_compressed import NotExpressible, compress_state
    from ..deploy.hf_structured import LOADER, config_for

    try:
        changes = config_for(module, cm.edits, ops)
    except NotExpressible as e:
        if e.op in ("prune.structured", "lowrank"):
            hint = (
                "export with format safetensors instead: it writes model.safetensors and "
                f"{LOADER}, which loads it with plain torch and the original class"
            )
        else:  # an input hook: the tensors travel, the hook is Bonsai's
            hint = "export with format safetensors for its tensors (the input scales included)"
        raise ExportError(
            out_dir, f"{_what(e)}; a Hugging Face folder cannot hold this model; {hint}"
        ) from None
    state = {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    # torch's dynamic layers hold their weight as a packed qint8 tensor behind a method
    dynamic = {} if dequantize else {f"{n}.weight": m.weight() for n, m in _dynamic_layers(cm).items()}
    try:
        packed = compress_state(module, state, {} if dequantize else cm.encodings, dynamic, ops)
    except NotExpressible as e:
        raise ExportError(
            out_dir,
            f"{_what(e)}; export with dequantize (--dequantize) to write the float values it runs on, "
            "at full size",
        ) from None
    except ImportError as e:  # compressed-tensors missing: transformers could not load it either
        raise ExportError(out_dir, f"{e}; or export with dequantize (--dequantize)") from None
    tokenizer_from = _tokenizer_folder(module, base_dir)

    def write_hf(folder: Path) -> None:
        module.save_pretrained(  # type: ignore[operator]
            str(folder), state_dict=packed.state, safe_serialization=True
        )
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text())
        config.update(changes)
        if packed.quantization_config is not None:
            config["quantization_config"] = packed.quantization_config
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
        copied = _copy_tokenizer(tokenizer_from, folder, out_dir) if tokenizer_from else []
        (folder / "bonsai_export.json").write_text(
            json.dumps(
                {
                    "weights": "compressed-tensors pack-quantized"
                    if packed.quantization_config
                    else "floating point (the values the model runs on)",
                    "quantized": packed.layers,
                    "config_changes": changes,
                    "tokenizer_from": str(tokenizer_from) if tokenizer_from else None,
                    "tokenizer_files": copied,
                    "notes": packed.notes,
                    "edits": cm.edits,
                },
                indent=1,
            )
        )

    _write_into_place(out_dir, write_hf, format)
    return out_dir


def _what(e: Exception) -> str:
    """A NotExpressible as the user reads it: the op and the layer first."""
    op, layer, why = getattr(e, "op", ""), getattr(e, "layer", ""), getattr(e, "why", str(e))
    return f"'{layer}': {why}" if op == "export" else f"{op} on '{layer}': {why}"


def _export_safetensors(cm: CompressedModel, module: nn.Module, out_dir: Path) -> Path:
    """Plain float tensors; a model whose structure changed gets the loader script beside them."""
    from ..deploy.hf_structured import FACTORIZE, LOADER, SLICE, write_loader

    state = {
        k: v.detach().to("cpu").contiguous().clone()
        for k, v in module.state_dict().items()
        if isinstance(v, torch.Tensor)
    }
    reshaped = any(e.get("kind") in (SLICE, FACTORIZE) for e in cm.edits)

    def write_safetensors(folder: Path) -> None:
        save_file(
            state,
            str(folder / "model.safetensors"),
            metadata={
                "format": "pt",
                "bonsai_edits": json.dumps(cm.edits),
                "bonsai_note": "dequantized floats",
            },
        )
        if reshaped:
            write_loader(folder / LOADER, module, cm.edits)

    _write_into_place(out_dir, write_safetensors, "safetensors")
    return out_dir / "model.safetensors"


def _dynamic_layers(cm: CompressedModel) -> dict[str, Any]:
    from ..ops.dynamic import dynamic_linear_type

    kind = dynamic_linear_type()
    return {n: m for n, m in cm.module.named_modules() if isinstance(m, kind)}


def _tokenizer_folder(module: nn.Module, base_dir: Path | str | None) -> Path | None:
    """Where the base model's tokenizer lives: `base_dir`, else the folder its config came from."""
    if base_dir is not None:
        return Path(base_dir)
    name = getattr(getattr(module, "config", None), "_name_or_path", "") or ""
    folder = Path(str(name)) if name else None
    return folder if folder is not None and folder.is_dir() else None


def _copy_tokenizer(src: Path, folder: Path, out_dir: Path) -> list[str]:
    """Copy the tokenizer and processor files of `src` into the new export `folder`, except those
    `out_dir` already holds (a forced export keeps the user's own tokenizer)."""
    copied: list[str] = []
    if not src.is_dir():
        return copied
    for entry in sorted(src.iterdir()):
        if entry.is_file() and any(fnmatch.fnmatchcase(entry.name, p) for p in TOKENIZER_FILES):
            if (out_dir / entry.name).exists() or (folder / entry.name).exists():
                continue
            shutil.copy2(entry, folder / entry.name)
            copied.append(entry.name)
    return copied


def _write_into_place(out_dir: Path, write: Callable[[Path], None], format: str) -> None:
    """Run `write` into a new sibling folder, carry over the files of an existing `out_dir` that
    are not export files (linked, else copied), then swap the new folder in. Until the swap,
    `out_dir` is untouched; the swap is two renames (the old folder moves aside first, and comes
    back if the second rename fails), so no reader ever sees a half-written export."""
    from ..store.fsio import fsync_dir, fsync_tree

    # A link to a folder: the export goes where it points (renaming the link aside would replace
    # the link, not the folder, and leave the link behind).
    out_dir = out_dir.resolve() if out_dir.is_symlink() else out_dir.absolute()
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    # mkdir (not mkdtemp): the folder gets the user's umask like any folder they make, not 0700.
    tmp = parent / f".{out_dir.name}.bonsai-export-{tag}"
    tmp.mkdir()
    try:
        write(tmp)
        if out_dir.is_dir():
            written = {e.name for e in tmp.iterdir()}
            for entry in out_dir.iterdir():
                if entry.name not in written and not _is_export_file(entry, format):
                    _carry(entry, tmp / entry.name)
            shutil.copymode(out_dir, tmp)
        fsync_tree(tmp)
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        if out_dir.is_dir():
            aside = parent / f".{out_dir.name}.bonsai-replaced-{tag}"
            os.rename(out_dir, aside)
            try:
                os.rename(tmp, out_dir)
            except OSError:
                os.rename(aside, out_dir)
                raise
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
        fsync_dir(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _carry(src: Path, dst: Path) -> None:
    """A user's file or folder into the new export folder: a hard link where the file system
    allows (instant, no extra space), else a copy; symbolic links stay links."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def float_copy(cm: CompressedModel) -> nn.Module:
    """A copy of the model with dynamic int8 layers turned back into float layers of their base type."""
    from ..ops.dynamic import dynamic_linear_type

    kind = dynamic_linear_type()
    dynamic = [n for n, m in cm.module.named_modules() if isinstance(m, kind)]
    if not dynamic:
        return cm.module
    module = copy.deepcopy(cm.module)
    was_conv1d = {n for e in cm.edits if e.get("kind") == "quantize.dynamic" for n in e.get("conv1d", [])}
    for name in dynamic:
        q = module.get_submodule(name)
        weight = q.weight().dequantize()  # type: ignore[operator]
        bias = q.bias()  # type: ignore[operator]
        new: nn.Module
        if name in was_conv1d:
            from transformers.pytorch_utils import Conv1D

            new = Conv1D(int(weight.shape[0]), int(weight.shape[1]))
            with torch.no_grad():
                new.weight.copy_(weight.t())
                if bias is not None:
                    new.bias.copy_(bias)
        else:
            new = nn.Linear(int(weight.shape[1]), int(weight.shape[0]), bias=bias is not None)
            with torch.no_grad():
                new.weight.copy_(weight)
                if bias is not None:
                    new.bias.copy_(bias)
        parent_name, _, leaf = name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, leaf, new)
    return module
