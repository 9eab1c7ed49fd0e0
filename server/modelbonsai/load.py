"""Loading a base model from what an experiment file's `base:` section says.

Three forms (paths are relative to `root`, the folder of the experiment file):

- ``load: path/to/hf-folder`` — a Hugging Face folder (``config.json`` + ``*.safetensors``). The
  class named in ``config.architectures`` is built through transformers, offline. A
  ``pytorch_model.bin`` is a pickle and is refused unless the caller allows pickles; then it is
  read with ``torch.load(weights_only=True)``.
- ``load: weights.safetensors`` (or a folder of ``*.safetensors``) with
  ``factory: "path/to/file.py:function"`` or ``"package.module:function"`` — the factory builds
  the architecture, the weights are loaded into it strictly.
- ``load: "file.py:function"`` or ``"module:function"`` — the function returns the model itself.

`load_skeleton` builds the same architecture without the weights: artifacts are rebuilt on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Torch-free parts live in fingerprints.py (the language server's stale marks need them without
# torch); re-exported here, where the loader's callers look for them.
from .fingerprints import (  # noqa: E402, F401
    _looks_like_callable_ref,
    _resolve_path_part,
    base_fingerprint,
    spec_to_dict,
)


class LoadError(UserError, ValueError):
    """A user-facing problem loading a base model: names the spec entry and what is wrong."""


def load_base(
    spec: Mapping[str, Any] | Any,
    root: Path,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> nn.Module:
    """Build the base model with its weights, in eval mode, on the CPU."""
    s = spec_to_dict(spec)
    load = s.get("load")
    if not isinstance(load, str) or not load.strip():
        raise LoadError(
            "base: 'load' must name a Hugging Face folder, a .safetensors file or module:function"
        )
    factory = s.get("factory")
    if _looks_like_callable_ref(load, root) and not factory:
        model = _call_factory(load, root, s.get("args"), what="load")
        return model.eval()
    path = _existing_path(load, root)
    if factory:
        model = _call_factory(str(factory), root, s.get("args"), what="factory")
        _load_weights_into(model, path, allow_pickle=allow_pickle)
        return model.eval()
    if path.is_dir() and (path / "config.json").is_file():
        return _load_hf(path, s, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code).eval()
    if path.is_dir():
        raise LoadError(
            f"base: {load} has no config.json; to load plain weights give a 'factory' that builds the model"
        )
    raise LoadError(
        f"base: {load} is a weights file; give a 'factory: file.py:function' that builds the architecture"
    )


def load_skeleton(spec: Mapping[str, Any] | Any, root: Path, *, trust_remote_code: bool = False) -> nn.Module:
    """The base architecture (same class and shapes) without loading the base weights."""
    s = spec_to_dict(spec)
    load = s.get("load")
    if not isinstance(load, str) or not load.strip():
        raise LoadError("base: 'load' is missing")
    factory = s.get("factory")
    if _looks_like_callable_ref(load, root) and not factory:
        return _call_factory(load, root, s.get("args"), what="load").eval()
    if factory:
        return _call_factory(str(factory), root, s.get("args"), what="factory").eval()
    path = _existing_path(load, root)
    if not (path / "config.json").is_file():
        raise LoadError(f"base: {load} has no config.json")
    cls, config = _hf_class(path, trust_remote_code=trust_remote_code)
    if config is None:  # remote code (only reachable with trust_remote_code)
        import transformers

        config = transformers.AutoConfig.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=True
        )
    dtype = _dtype(s)
    with _default_dtype(dtype):
        model = cls(config) if not hasattr(cls, "_from_config") else cls._from_config(config)
    return model.to(dtype).eval()


# -- forms --------------------------------------------------------------------------------------


def _existing_path(text: str, root: Path) -> Path:
    path = (root / text).resolve()
    if not path.exists():
        raise LoadError(f"base: path '{text}' does not exist (looked in {root})")
    return path


def _call_factory(ref: str, root: Path, args: Any, *, what: str) -> nn.Module:
    fn = _import_callable(ref, root, what=what)
    kwargs = args if isinstance(args, dict) else {}
    try:
        model = fn(**kwargs)
    except LoadError:
        raise
    except Exception as e:
        raise LoadError(f"base: {what} '{ref}' raised {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise LoadError(f"base: {what} '{ref}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _import_callable(ref: str, root: Path, *, what: str) -> Callable[..., Any]:
    target, _, name = ref.rpartition(":")
    if not target or not name.isidentifier():
        raise LoadError(
            f"base: {what} '{ref}' must look like 'file.py:function' or 'package.module:function'"
        )
    if target.endswith(".py"):
        file = (root / target).resolve()
        if not file.is_file():
            raise LoadError(f"base: {what} file '{target}' does not exist (looked in {root})")
        module = _import_file(file, what=what)
    else:
        with _on_path(root):
            try:
                module = importlib.import_module(target)
            except ImportError as e:
                raise LoadError(f"base: {what} module '{target}' cannot be imported: {e}") from e
            except Exception as e:
                raise LoadError(
                    f"base: importing {what} module '{target}' raised {type(e).__name__}: {e}"
                ) from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LoadError(f"base: {what} '{ref}': no function '{name}' in {target}")
    return fn  # type: ignore[no-any-return]


def _import_file(file: Path, *, what: str) -> Any:
    # A stable, path-derived module name: re-importing the same file reuses the module.
    mod_name = "bonsai_user_" + hashlib.sha1(str(file).encode()).hexdigest()[:12]
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise LoadError(f"base: {what} file '{file}' cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        with _on_path(file.parent):
            spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[mod_name]
        raise LoadError(f"base: importing {what} file '{file.name}' raised {type(e).__name__}: {e}") from e
    return module


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """Let user code import its sibling modules while it is being imported."""
    entry = str(folder.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


# -- weights ------------------------------------------------------------------------------------


def read_state_dict(path: Path, *, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """All tensors of a weights file or folder (safetensors, or a pickle when allowed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files: list[Path]
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            pickles = sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
            if pickles:
                files = pickles
            else:
                raise LoadError(f"base: no weights in {path} (expected *.safetensors)")
    else:
        files = [path]
    out: dict[str, torch.Tensor] = {}
    for f in files:
        if f.suffix == ".safetensors":
            try:
                out.update(load_file(str(f)))
            except (SafetensorError, OSError, ValueError) as e:
                raise LoadError(f"base: {f.name} is not a readable safetensors file ({e})") from e
        elif f.suffix in (".bin", ".pt", ".pth", ".ckpt"):
            if not allow_pickle:
                raise LoadError(
                    f"base: {f.name} is a pickle checkpoint, which can run arbitrary code when loaded; "
                    "convert it to safetensors, or allow pickle loading explicitly"
                )
            try:
                obj = torch.load(f, map_location="cpu", weights_only=True)
            except Exception as e:
                raise LoadError(f"base: {f.name} cannot be loaded safely (weights_only): {e}") from e
            if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
                obj = obj["state_dict"]
            if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
                raise LoadError(f"base: {f.name} does not hold a state dict of tensors")
            out.update(obj)
        else:
            raise LoadError(f"base: {f.name} is not a weights file (expected .safetensors)")
    return out


def _load_weights_into(model: nn.Module, path: Path, *, allow_pickle: bool) -> None:
    state = read_state_dict(path, allow_pickle=allow_pickle)
    own = model.state_dict()
    shape_problems = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if shape_problems or missing or unexpected:
        parts = []
        if shape_problems:
            parts.append("shape mismatch " + "; ".join(shape_problems[:3]))
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise LoadError(f"base: weights in {path.name} do not fit the factory's model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


# -- Hugging Face -------------------------------------------------------------------------------


def _hf_class(folder: Path, *, trust_remote_code: bool) -> tuple[type[nn.Module], Any]:
    import transformers

    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LoadError(f"base: {folder.name}/config.json is unreadable ({e})") from e
    archs = raw.get("architectures") or []
    if not archs:
        raise LoadError(
            f"base: {folder.name}/config.json names no 'architectures'; cannot tell which model class to build"
        )
    arch = str(archs[0])
    cls = getattr(transformers, arch, None)
    if cls is None:
        if raw.get("auto_map"):
            if not trust_remote_code:
                raise LoadError(
                    f"base: {arch} is not part of transformers; the folder ships its own model code "
                    "(auto_map), which Bonsai does not run unless remote code is trusted explicitly"
                )
            return _remote_class(folder, raw), None
        raise LoadError(
            f"base: architecture '{arch}' from config.json is not in transformers {transformers.__version__}"
        )
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:
        raise LoadError(f"base: {folder.name}/config.json cannot be read by transformers: {e}") from e
    return cls, config


def _remote_class(folder: Path, raw: dict[str, Any]) -> type[nn.Module]:
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    auto_map = raw.get("auto_map") or {}
    ref = next((v for k, v in auto_map.items() if k.startswith("AutoModel")), None)
    if not isinstance(ref, str):
        raise LoadError(f"base: {folder.name}/config.json auto_map names no AutoModel class")
    return get_class_from_dynamic_module(ref, str(folder), local_files_only=True)  # type: ignore[no-any-return]


def _dtype(spec: dict[str, Any]) -> torch.dtype:
    # Compression works on float32 unless the experiment asks otherwise: fp16 on a CPU is slow and
    # lossy, and ops (quantize, prune) are defined against the full-precision weights.
    name = str(spec.get("dtype") or "float32")
    if name not in _DTYPES:
        raise LoadError(f"base: dtype must be one of {', '.join(_DTYPES)}, got '{name}'")
    return _DTYPES[name]


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _load_hf(folder: Path, spec: dict[str, Any], *, allow_pickle: bool, trust_remote_code: bool) -> nn.Module:
    has_st = any(folder.glob("*.safetensors"))
    has_pickle = (folder / "pytorch_model.bin").is_file() or any(folder.glob("pytorch_model-*.bin"))
    if not has_st and not has_pickle:
        raise LoadError(f"base: no weights in {folder.name} (expected model.safetensors next to config.json)")
    if not has_st and not allow_pickle:
        raise LoadError(
            f"base: {folder.name} has only pytorch_model.bin, a pickle that can run arbitrary code when "
            "loaded; convert it to safetensors, or allow pickle loading explicitly"
        )
    dtype = _dtype(spec)
    if trust_remote_code and (cls_cfg := _hf_class(folder, trust_remote_code=True))[1] is None:
        return _from_pretrained(cls_cfg[0], folder, dtype, use_safetensors=has_st, trust_remote_code=True)
    cls, config = _hf_class(folder, trust_remote_code=trust_remote_code)
    if has_st:
        return _from_pretrained(cls, folder, dtype, use_safetensors=True, trust_remote_code=False)
    # Pickle allowed: build from config and read the tensors ourselves, weights_only.
    with _default_dtype(dtype):
        model = cls(config)
    state = read_state_dict(folder, allow_pickle=True)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not _is_tied(model, k)]
    if missing:
        raise LoadError(
            f"base: pytorch_model.bin in {folder.name} lacks {len(missing)} weights (e.g. {missing[0]})"
        )
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        tie()
    return model.to(dtype)


def _is_tied(model: nn.Module, key: str) -> bool:
    tied = getattr(model, "_tied_weights_keys", None) or []
    if isinstance(tied, dict):
        tied = list(tied)
    return any(re.fullmatch(str(t), key) or key == t for t in tied)


def _from_pretrained(
    cls: Any, folder: Path, dtype: torch.dtype, *, use_safetensors: bool, trust_remote_code: bool
) -> nn.Module:
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": use_safetensors}
    # transformers draws a "Loading weights" bar on stderr for every load: noise in the CLI's own
    # progress display and in the language server's log.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    try:
        model = cls.from_pretrained(str(folder), dtype=dtype, **kwargs)
    except TypeError:
        model = cls.from_pretrained(str(folder), torch_dtype=dtype, **kwargs)  # older transformers
    except OSError as e:
        raise LoadError(f"base: transformers could not load {folder.name}: {e}") from e
    return model  # type: ignore[no-any-return]
