"""Tasks: how Bonsai evaluates a model. Built-in kinds, and user tasks named "file.py:ClassName"."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from .base import Batch, Evaluation, Metric, RenderedInstance, Task, TaskError
from .causal_lm import CausalLMTask
from .embedding import SentenceEmbeddingTask
from .image import ImageClassificationTask
from .text import TextClassificationTask

_BUILTIN: dict[str, type[Task]] = {
    cls.kind: cls
    for cls in (ImageClassificationTask, TextClassificationTask, CausalLMTask, SentenceEmbeddingTask)
}

#: built-in task kinds, for completion and the JSON Schema of the experiment file
TASK_KINDS: tuple[str, ...] = tuple(_BUILTIN)
#: kind -> class of the built-in tasks (read-only view)
TASKS = MappingProxyType(_BUILTIN)

#: what a user task class must define (the abstract methods of Task)
REQUIRED_METHODS: tuple[str, ...] = tuple(sorted(Task.__abstractmethods__))


def get_task_class(kind: str, root: Path | None = None) -> type[Task]:
    """The class for a task kind: a built-in name, or "file.py:ClassName" relative to `root`
    (the experiment file's folder; default the current folder). Raises TaskError with a plain
    message for any user mistake."""
    if not isinstance(kind, str) or not kind.strip():
        raise TaskError(f'task kind must be one of {", ".join(TASK_KINDS)} or "file.py:ClassName"')
    kind = kind.strip()
    if kind in _BUILTIN:
        return _BUILTIN[kind]
    if ":" not in kind:
        import difflib

        hint = difflib.get_close_matches(kind, TASK_KINDS, n=1)
        raise TaskError(
            f"unknown task kind '{kind}'"
            + (f"; did you mean '{hint[0]}'?" if hint else "")
            + f' (built in: {", ".join(TASK_KINDS)}; or a user task "file.py:ClassName")'
        )
    return load_user_task(kind, root if root is not None else Path.cwd())


def make_task(exp: Any, *, max_instances: int | None = None) -> Task | None:
    """The task of a parsed experiment (None: it has no `task:` section), built as every face
    builds it: options relative to the file's folder, and `model_path` the base model's folder or
    weights file, where the text tasks find their default tokenizer. The runner, the comparisons
    and the instances view all build the task here, so none of them forgets that folder."""
    spec = getattr(exp, "task", None)
    if spec is None:
        return None
    cls = get_task_class(spec.kind, exp.root)
    model_path: Path | None = getattr(exp.base, "load_path", None)
    if model_path is not None and _accepts_model_path(cls):
        return cls(dict(spec.options), exp.root, max_instances=max_instances, model_path=model_path)
    return cls(dict(spec.options), exp.root, max_instances=max_instances)


def _accepts_model_path(cls: type[Task]) -> bool:
    """Whether the class's constructor takes `model_path` (a user task may override __init__
    with the older signature; it then simply does not get it)."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False
    return "model_path" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def task_options(kind: str) -> dict[str, tuple[str, str]]:
    """Option name -> (type, doc) of a built-in kind (empty for unknown kinds)."""
    cls = _BUILTIN.get(kind)
    return dict(cls.options) if cls is not None else {}


def load_user_task(spec: str, root: Path) -> type[Task]:
    file_part, _, class_name = spec.rpartition(":")
    if not file_part or not class_name.isidentifier():
        raise TaskError(f"task '{spec}': expected \"file.py:ClassName\"")
    path = Path(file_part)
    if not path.is_absolute():
        path = root / path
    if path.suffix != ".py":
        raise TaskError(f"task '{spec}': '{file_part}' must be a Python file (.py)")
    if not path.is_file():
        raise TaskError(f"task '{spec}': file '{file_part}' does not exist (looked for {path})")
    module = _import_file(spec, path)
    cls = getattr(module, class_name, None)
    if cls is None:
        found = [n for n, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module.__name__]
        raise TaskError(
            f"task '{spec}': {path.name} defines no class '{class_name}'"
            + (f" (it defines: {', '.join(found)})" if found else "")
        )
    if not inspect.isclass(cls):
        raise TaskError(f"task '{spec}': '{class_name}' in {path.name} is not a class")
    missing = [m for m in REQUIRED_METHODS if not _implements(cls, m)]
    if missing:
        raise TaskError(
            f"task '{spec}': class {class_name} lacks method(s) {', '.join(missing)}; a task "
            f"must define {', '.join(REQUIRED_METHODS)} (subclass modelbonsai.tasks.Task)"
        )
    if not issubclass(cls, Task):
        raise TaskError(
            f"task '{spec}': class {class_name} must subclass modelbonsai.tasks.Task, so it gets "
            "the shared behaviour (to_device, calibration_batches, groupings)"
        )
    if not getattr(cls, "kind", ""):
        cls.kind = spec
    return cls


def _implements(cls: type, name: str) -> bool:
    attr = getattr(cls, name, None)
    return callable(attr) and not getattr(attr, "__isabstractmethod__", False)


def _import_file(spec: str, path: Path) -> ModuleType:
    # a stable, file-specific module name: re-importing after an edit picks up the new code
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"bonsai_user_task_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise TaskError(f"task '{spec}': cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    folder = str(path.parent)
    added = folder not in sys.path
    if added:  # so the task file can import its own helpers beside it
        sys.path.insert(0, folder)
    try:
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: report, never crash the server
        sys.modules.pop(name, None)
        raise TaskError(f"task '{spec}': importing {path.name} failed: {type(e).__name__}: {e}") from e
    finally:
        if added:
            sys.path.remove(folder)
    return module


__all__ = [
    "REQUIRED_METHODS",
    "TASKS",
    "TASK_KINDS",
    "Batch",
    "CausalLMTask",
    "Evaluation",
    "ImageClassificationTask",
    "Metric",
    "RenderedInstance",
    "SentenceEmbeddingTask",
    "Task",
    "TaskError",
    "TextClassificationTask",
    "get_task_class",
    "load_user_task",
    "make_task",
    "task_options",
]
