"""Export a compressed model for use outside Bonsai: a Hugging Face folder or plain safetensors.

Both formats hold *dequantized floating-point* weights (quantized tensors as the float values the
model runs on; dynamic int8 layers turned back into float Linear / Conv1D), because neither a
standard HF folder nor a plain state dict can describe Bonsai's packed storage. The export is
therefore not smaller than the base; the Bonsai artifact is the compressed form.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import nn

from ..ops.registry import CompressedModel
from .artifact import ArtifactError, load_artifact


class ExportError(ArtifactError):
    """A model that cannot be exported in the asked format (names the output and why)."""

    def __init__(self, path: Path, message: str):
        RuntimeError.__init__(self, f"export to {path}: {message}")
        self.path = path


def export_model(
    source: CompressedModel | Path | str,
    out_dir: Path | str,
    skeleton: Callable[[], nn.Module] | None = None,
    format: Literal["hf", "safetensors"] = "hf",
) -> Path:
    """Write a model to `out_dir`; returns the folder (hf) or the .safetensors file written.

    `source` is a CompressedModel, or an artifact folder together with the base `skeleton`
    factory to rebuild it with.
    """
    out_dir = Path(out_dir)
    if isinstance(source, CompressedModel):
        cm = source
    else:
        if skeleton is None:
            raise ExportError(Path(source), "exporting an artifact folder needs the base model's skeleton")
        cm = load_artifact(Path(source), skeleton)
    module = float_copy(cm)
    if format == "safetensors":
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.safetensors"
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()
                 if isinstance(v, torch.Tensor)}
        save_file(state, str(path), metadata={"format": "pt", "bonsai_edits": json.dumps(cm.edits),
                                              "bonsai_note": "dequantized floats"})
        return path
    if format != "hf":
        raise ExportError(out_dir, f"unknown export format '{format}' (use hf or safetensors)")
    if not hasattr(module, "save_pretrained") or not hasattr(module, "config"):
        raise ExportError(out_dir, "this model is not a Hugging Face transformers model; export it with "
                                     "format safetensors instead")
    _check_config_describes(module, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    module.save_pretrained(str(out_dir), safe_serialization=True)  # type: ignore[operator]
    (out_dir / "bonsai_export.json").write_text(json.dumps({
        "note": "weights are the dequantized floating-point values the compressed model runs on; "
                "the packed/sparse stored form lives in the Bonsai artifact",
        "edits": cm.edits,
        "quantized": sorted(cm.encodings),
    }, indent=1))
    return out_dir


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


def _check_config_describes(module: nn.Module, out_dir: Path) -> None:
    """Refuse an HF export whose config would rebuild a differently shaped model (e.g. after
    structural edits the config does not record), since from_pretrained would then fail or worse."""
    config: Any = module.config
    try:
        with torch.device("meta"):
            fresh = type(module)(copy.deepcopy(config))
    except Exception as e:
        raise ExportError(out_dir, f"cannot rebuild this model from its config ({e}); export as safetensors") from None
    want = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    bad = [k for k in have if k in want and want[k] != have[k]]
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    if bad or missing or extra:
        example = (bad or missing or extra)[0]
        raise ExportError(
            out_dir,
            "the model's structure no longer matches its Hugging Face config "
            f"({len(bad)} reshaped, {len(missing)} missing, {len(extra)} extra tensors, e.g. '{example}'); "
            "export with format safetensors instead",
        )
