"""A starter `*.bonsai.yaml` for a Hugging Face model folder (the config.json CodeLens)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..ops.registry import get_op

#: Evaluation data looked for beside the model (first found wins), in the forms each task reads.
_DATA_CANDIDATES = {
    "image-classification": ("data/eval.safetensors",),  # the task takes the folder
    "text-classification": (
        "eval.jsonl",
        "data.jsonl",
        "data/eval.jsonl",
        "data/test.jsonl",
        "data/data.jsonl",
    ),
    "causal-lm": ("data", "corpus.txt", "eval.txt", "data.txt"),
    "sentence-embedding": (
        "sentences.jsonl",
        "sentences.txt",
        "data/sentences.jsonl",
        "data/sentences.txt",
        "data.jsonl",
        "data.txt",
    ),
}


class StarterError(UserError, ValueError):
    """The config.json cannot be read as a Hugging Face model config."""


def guess_task_kind(config: dict[str, Any]) -> str | None:
    """The task kind that fits a model config's architectures (None when nothing fits)."""
    archs = [str(a) for a in config.get("architectures") or []]
    for a in archs:
        if a.endswith("ForSequenceClassification"):
            return "text-classification"
        if a.endswith("ForCausalLM") or a.endswith("LMHeadModel"):
            return "causal-lm"
        if a.endswith("ForImageClassification"):
            return "image-classification"
    for a in archs:
        if a.endswith("Model") and "For" not in a:
            return "sentence-embedding"  # a bare encoder (BertModel, ...): its features
    return None


def starter_path(config_json_path: Path | str) -> Path:
    """Where the starter goes: beside the model folder, named after it."""
    model_dir = Path(config_json_path).absolute().parent
    return model_dir.parent / f"{_safe_name(model_dir.name)}.bonsai.yaml"


def _safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return s if s and s != "base" else "model"


_GENERIC = {"model", "models", "checkpoint", "checkpoints", "weights", "hf", "base"}


def _model_name(model_dir: Path) -> str:
    """The folder's name, or its parent's when the folder is just called `model` or the like."""
    name = model_dir.name
    if name.lower() in _GENERIC and model_dir.parent.name:
        name = model_dir.parent.name
    return _safe_name(name)


def _rel(target: Path, start: Path) -> str:
    rel = os.path.relpath(target, start)
    return rel.replace(os.sep, "/")


def starter_experiment(config_json_path: Path | str, experiment_dir: Path | str | None = None) -> str:
    """The text of a starter experiment file for the model whose config.json is given.

    Paths in it are relative to `experiment_dir` (default: the folder of :func:`starter_path`).
    It validates with no problems: it only names ops that are registered, and evaluation data
    only when a candidate exists beside the model (otherwise the line is left as a comment).
    """
    config_path = Path(config_json_path).absolute()
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise StarterError(f"cannot read {config_path}: {e}") from e
    except json.JSONDecodeError as e:
        raise StarterError(f"{config_path} is not valid JSON (line {e.lineno}): {e.msg}") from e
    if not isinstance(config, dict):
        raise StarterError(f"{config_path} is not a model config (expected a JSON object)")
    model_dir = config_path.parent
    where = (
        Path(experiment_dir).absolute() if experiment_dir is not None else starter_path(config_path).parent
    )
    kind = guess_task_kind(config)
    archs = (
        ", ".join(str(a) for a in config.get("architectures") or []) or config.get("model_type") or "unknown"
    )
    lines = [
        f"# Bonsai experiment for {model_dir.name} ({archs}).",
        "# Each variant is made from its parent by its ops; run one with the CodeLens above it,",
        "# or all with `bonsai run <this file>`. A list for a parameter sweeps it.",
        "seed: 0",
        "device: auto",
        "base:",
        f"  name: {_model_name(model_dir)}",
        f"  load: {_quote(_rel(model_dir, where))}",
    ]
    if kind is not None:
        lines += ["task:", f"  kind: {kind}"]
        data = _find_data(kind, model_dir)
        if data is not None:
            lines.append(f"  data: {_quote(_rel(data, where))}")
        else:
            lines.append("  # data: path/to/evaluation-data   # the task's evaluation data (see completion)")
        lines.append("  max_instances: 500")
    else:
        lines += [
            "# task:                      # no task kind fits this architecture; name your own:",
            "#   kind: my_tasks.py:MyTask",
        ]
    lines += ["variants:", *_variants()]
    return "\n".join(lines) + "\n"


def _quote(s: str) -> str:
    return s if re.fullmatch(r"[A-Za-z0-9._/-]+", s) and not s.startswith("-") else json.dumps(s)


def _find_data(kind: str, model_dir: Path) -> Path | None:
    for folder in (model_dir, model_dir.parent):
        for name in _DATA_CANDIDATES.get(kind, ()):
            p = folder / name
            if p.exists():
                return p.parent if name.endswith("eval.safetensors") else p
    return None


def _has(op: str, *params: str) -> bool:
    o = get_op(op)
    return o is not None and all(o.param(p) is not None for p in params)


def _variants() -> list[str]:
    out: list[str] = []
    prune = _has("prune.magnitude", "sparsity", "scope")
    quant = _has("quantize.weights", "bits", "granularity")
    if prune:
        out += [
            '  - name: "prune-{sparsity}"       # one sibling per sparsity: prune-0.3, prune-0.5',
            "    from: base",
            "    ops:",
            "      - prune.magnitude: {sparsity: [0.3, 0.5], scope: global}",
        ]
    if quant:
        out += [
            "  - name: int8",
            "    from: base",
            "    ops:",
            "      - quantize.weights: {bits: 8, granularity: channel}",
        ]
    if prune and quant:
        out += [
            "  - name: prune-0.5-int8",
            "    from: prune-0.5",
            "    ops:",
            "      - quantize.weights: {bits: 8, granularity: channel}",
        ]
    if not out:
        raise StarterError("no compression ops are registered (prune.magnitude, quantize.weights)")
    return out
