"""A starter `*.bonsai.yaml` for a model: a Hugging Face folder (the config.json CodeLens), a
Python file with a function returning an `nn.Module` (the lens over that function), or a
`.safetensors` file with the factory that builds its architecture.

`create_starter` is what "Create Experiment File" runs: it picks the form from the file, writes
the starter beside the model under a name not taken, and writes nothing unless the text
validates with no problems.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..ops.registry import get_op
from .factories import FactoryError, ModelFactory, factories_in_file, factories_near, safetensors_summary

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
    """The model file cannot be started from: an unreadable config.json, no such function in a
    .py, a .py without any model function, a weights file that is not safetensors."""


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
    # `model.py:build` is a plain YAML scalar: a colon not followed by a space starts no mapping
    return s if re.fullmatch(r"[A-Za-z0-9._/][A-Za-z0-9._/:-]*", s) and not s.endswith(":") else json.dumps(s)


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


# -- plain PyTorch models: a .py with a function returning an nn.Module, or safetensors + factory --

#: Pickled checkpoints: the starter does not offer them (they load only with torch.load).
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _name_from(path: Path) -> str:
    """A base name for a model file: its stem, or the first folder above it whose name is not
    generic (`digits/model/model.safetensors` -> digits)."""
    for part in [path.stem, *(p.name for p in path.parents)][:4]:
        if part and part.lower() not in _GENERIC:
            return _safe_name(part)
    return "model"


def pick_factory(py: Path, function: str | None) -> ModelFactory:
    """The factory `function` of `py` (or its only factory callable without arguments)."""
    try:
        found = factories_in_file(py)
    except FactoryError as e:
        raise StarterError(str(e)) from None
    if function is not None:
        f = next((f for f in found if f.name == function), None)
        if f is None:
            listed = ", ".join(f"{x.name}()" for x in found)
            raise StarterError(
                f"{py.name} has no function '{function}' that returns an nn.Module"
                + (f" (it has {listed})" if listed else "")
            )
        if f.required:
            raise StarterError(
                f"{function}() in {py.name} needs arguments ({', '.join(f.required)}); give them "
                "defaults, or write the experiment file by hand with `args:` under `base:`"
            )
        return f
    usable = [f for f in found if f.callable_without_args]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        if found:
            raise StarterError(
                f"every model function in {py.name} needs arguments ("
                + "; ".join(f"{f.name}({', '.join(f.required)})" for f in found)
                + "): give them defaults, or add a function without arguments that returns the model"
            )
        raise StarterError(
            f"{py.name} has no function that returns an nn.Module (a `def` annotated "
            "`-> nn.Module`, or returning `nn.Sequential(...)` or an instance of an nn.Module "
            "subclass of the file)"
        )
    raise StarterError(
        f"{py.name} has several model functions ({', '.join(f.name + '()' for f in usable)}); say which one"
    )


def starter_for_module(
    py_path: Path | str, function: str | None = None, experiment_dir: Path | str | None = None
) -> str:
    """The starter for the model a function of a Python file returns (`load: file.py:function`).

    Paths are relative to `experiment_dir` (default: the file's folder)."""
    py = Path(py_path).absolute()
    fac = pick_factory(py, function)
    where = Path(experiment_dir).absolute() if experiment_dir is not None else py.parent
    what = (
        f"class {fac.name} in {py.name} builds"
        if fac.kind == "class"
        else f"{fac.name}() in {py.name} returns"
    )
    return _plain_document(
        f"# Bonsai experiment for the PyTorch model that {what}.",
        name=_name_from(py),
        base=[f"  load: {_quote(fac.ref(where))}"],
        near=py.parent,
        where=where,
    )


def starter_for_weights(
    weights_path: Path | str, factory: str | None = None, experiment_dir: Path | str | None = None
) -> str:
    """The starter for a `.safetensors` file whose architecture a factory builds.

    `factory` is `path/to/file.py:function` (relative to the weights' folder, or absolute); when
    it is None the one factory found beside the weights (or in their folder's parent) is used.
    Paths are relative to `experiment_dir` (default: :func:`weights_starter_dir`)."""
    weights = Path(weights_path).absolute()
    tensors, elements = weights_summary(weights)
    fac = _factory_for(weights, factory)
    where = (
        Path(experiment_dir).absolute() if experiment_dir is not None else weights_starter_dir(weights, fac)
    )
    return _plain_document(
        f"# Bonsai experiment for {weights.name} ({tensors:,} tensors, {elements:,} values), "
        f"built by {fac.name}() in {fac.file.name if fac.file else '?'}.",
        name=_name_from(weights),
        base=[f"  load: {_quote(_rel(weights, where))}", f"  factory: {_quote(fac.ref(where))}"],
        near=weights.parent,
        where=where,
    )


def weights_starter_dir(weights: Path, fac: ModelFactory) -> Path:
    """Where a weights file's starter goes: beside the factory's file when the weights lie under
    its folder (`model.py` + `model/model.safetensors`), else beside the weights."""
    if fac.file is not None and weights.absolute().is_relative_to(fac.file.parent):
        return fac.file.parent
    return weights.absolute().parent


def weights_summary(weights: Path) -> tuple[int, int]:
    if weights.suffix.lower() in _PICKLE_SUFFIXES:
        raise StarterError(
            f"{weights.name} is a pickled checkpoint; the starter takes .safetensors weights "
            "(save them with safetensors.torch.save_file), or write `load:` and `factory:` by hand"
        )
    if weights.suffix.lower() != ".safetensors":
        raise StarterError(f"{weights.name} is not a .safetensors file")
    try:
        return safetensors_summary(weights)
    except FactoryError as e:
        raise StarterError(str(e)) from None


def _factory_for(weights: Path, factory: str | None) -> ModelFactory:
    if factory is None:
        found = factories_near(weights)
        if len(found) == 1:
            return found[0]
        if not found:
            raise StarterError(
                f"no function returning an nn.Module was found in the .py files beside {weights.name} "
                "or in its folder's parent: choose the Python file whose function builds the model"
            )
        listed = ", ".join(f.ref(weights.parent) for f in found)
        raise StarterError(f"several functions could build {weights.name} ({listed}); choose one")
    file, sep, fn = factory.rpartition(":")
    if not sep or not file.endswith(".py") or not fn.isidentifier():
        raise StarterError(f"factory '{factory}' must be file.py:function")
    # normalised, so `../model.py` from `model/` is the same folder as the weights' parent
    py = Path(os.path.normpath(Path(file) if Path(file).is_absolute() else weights.parent / file))
    if not py.is_file():
        raise StarterError(f"factory file {py} does not exist")
    return pick_factory(py.absolute(), fn)


def _plain_document(title: str, *, name: str, base: list[str], near: Path, where: Path) -> str:
    lines = [
        title,
        "# Each variant is made from its parent by its ops; run one with the CodeLens above it,",
        "# or all with `bonsai run <this file>`. A list for a parameter sweeps it.",
        "seed: 0",
        "device: auto",
        "base:",
        f"  name: {name}",
        *base,
    ]
    # Only image data in Bonsai's own form says what the model does; anything else is the user's
    # call, so the task stays a comment (the ops below need none).
    data = _find_data("image-classification", near)
    if data is not None:
        rel = _rel(data, where)
        lines += ["task:", "  kind: image-classification", f"  data: {_quote(rel)}", "  max_instances: 500"]
    else:
        lines += [
            "# task:                          # how to evaluate it: a built-in kind and its data,",
            "#   kind: image-classification   # or your own (kind: my_tasks.py:MyTask)",
            "#   data: path/to/data",
        ]
    lines += ["variants:", *_variants()]
    return "\n".join(lines) + "\n"


# -- writing it ------------------------------------------------------------------------------------


def _free(folder: Path, name: str) -> Path:
    target = folder / f"{name}.bonsai.yaml"
    n = 2
    while target.exists():
        target = folder / f"{name}-{n}.bonsai.yaml"
        n += 1
    return target


def create_starter(path: Path | str, *, function: str | None = None, factory: str | None = None) -> Path:
    """Write a starter experiment file for the model at `path` and return where it went.

    `path` is a Hugging Face `config.json`, a `.py` (`function`: which of its functions; default
    its only one), or a `.safetensors` file (`factory`: `file.py:function`; default the one found
    beside it). The file goes beside the model under a free name; nothing is written unless the
    text validates with no problems."""
    from .parse import parse_experiment

    p = Path(path).absolute()
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    suffix = p.suffix.lower()
    if p.name == "config.json":
        if not p.is_file():
            raise FileNotFoundError(f"{p} is not a Hugging Face config.json")
        target = _free(p.parent.parent, p.parent.name)
        text = starter_experiment(p, target.parent)
        what = p.parent.name
    elif suffix == ".py":
        fac = pick_factory(p, function)
        target = _free(p.parent, _name_from(p))
        text = starter_for_module(p, fac.name, target.parent)
        what = f"{fac.name}() in {p.name}"
    elif suffix == ".safetensors" or suffix in _PICKLE_SUFFIXES:
        weights_summary(p)  # a broken file is named before any factory is looked for
        fac = _factory_for(p, factory)
        target = _free(weights_starter_dir(p, fac), _name_from(p))
        text = starter_for_weights(p, str(fac.file) + ":" + fac.name, target.parent)
        what = p.name
    else:
        raise StarterError(
            f"cannot start an experiment from {p.name}: choose a Hugging Face config.json, a .py "
            "file with a function that returns an nn.Module, or a .safetensors file"
        )
    problems = parse_experiment(text, target).errors
    if problems:  # the starter must validate; if it does not, say what and write nothing
        raise StarterError(f"the starter experiment for {what} does not validate: {problems[0].message}")
    from ..store.fsio import atomic_write_bytes

    atomic_write_bytes(target, text.encode("utf-8"))
    return target
