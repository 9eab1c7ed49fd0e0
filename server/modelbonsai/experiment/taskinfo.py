"""What the experiment file needs to know about task kinds, asked of `modelbonsai.tasks`.

Validation must not fail when a task kind cannot be imported (a missing optional dependency,
a broken user file): then the kind's options are simply not checked.

Only built-in kinds are ever asked: a user task (`file.py:Class`, `pkg.mod:Class`) is the
workspace's code, and the editor features (diagnostics, hover, completion) run in the language
server whether or not the workspace is trusted, so they never import it; a run does.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

#: The built-in kinds DESIGN.md promises, asked for when the tasks package lists none itself.
KNOWN_KINDS = ("image-classification", "text-classification", "causal-lm", "sentence-embedding")

#: Keys of `task:` that are not options of the task class.
COMMON_TASK_KEYS = ("kind", "max_instances")


def _tasks_module() -> Any | None:
    try:
        return importlib.import_module("modelbonsai.tasks")
    except Exception:  # the tasks package failing to import must not break validation
        return None


def is_user_kind(kind: str) -> bool:
    """A user task (`file.py:Class`, `pkg.module:Class`): code of the workspace, never imported here."""
    return ":" in kind


def _get_class(kind: str) -> type | None:
    """The class of a built-in kind (None for user kinds: getting theirs would run their file)."""
    if is_user_kind(kind):
        return None
    mod = _tasks_module()
    get = getattr(mod, "get_task_class", None) if mod is not None else None
    if get is None:
        return None
    try:
        cls = get(kind)
    except Exception:
        return None
    return cls if isinstance(cls, type) else None


@lru_cache(maxsize=1)
def builtin_kinds() -> tuple[str, ...]:
    """The built-in task kinds that really load (empty while the tasks package lacks them)."""
    mod = _tasks_module()
    names: list[str] = []
    for attr in ("TASKS", "BUILTIN_TASKS", "TASK_CLASSES", "REGISTRY"):
        table = getattr(mod, attr, None) if mod is not None else None
        if isinstance(table, Mapping):
            names.extend(str(k) for k in table)
    for kind in KNOWN_KINDS:
        if kind not in names and _get_class(kind) is not None:
            names.append(kind)
    return tuple(names)


def tasks_available() -> bool:
    """Whether task kinds can be checked at all (the tasks package provides get_task_class)."""
    mod = _tasks_module()
    return mod is not None and hasattr(mod, "get_task_class") and bool(builtin_kinds())


def task_options(kind: str) -> dict[str, tuple[str, str]] | None:
    """Option name -> (type, doc) for a built-in kind; None when unknown or undeclared."""
    cls = _get_class(kind)
    options = getattr(cls, "options", None) if cls is not None else None
    if not isinstance(options, Mapping) or not options:
        return None
    out: dict[str, tuple[str, str]] = {}
    for name, spec in options.items():
        if isinstance(spec, tuple) and len(spec) >= 2:
            out[str(name)] = (str(spec[0]), str(spec[1]))
        else:
            out[str(name)] = (str(spec), "")
    return out


def trains_on_evaluation(kind: str, options: Mapping[str, Any]) -> bool:
    """Whether a built-in kind with these options trains on its evaluation instances (False
    when that cannot be told: a user task, an unknown kind, a class that does not say)."""
    cls = _get_class(kind)
    fn = getattr(cls, "trains_on_evaluation", None) if cls is not None else None
    try:
        return bool(fn(options)) if callable(fn) else False
    except Exception:  # a task class failing here must not break validation
        return False


def task_doc(kind: str) -> str:
    """The docstring of a built-in kind ('' for user kinds: see the module's note)."""
    cls = _get_class(kind)
    doc = (cls.__doc__ or "").strip() if cls is not None else ""
    return doc


def user_task_doc(kind: str, root: Path | None) -> str:
    """The docstring of a user task `file.py:Class`, read from the file's syntax tree without
    running it ('' when the file or class is not there, or the kind names a module)."""
    file, _, name = kind.rpartition(":")
    if not file.endswith(".py") or not name.isidentifier():
        return ""
    try:
        path = Path(file).expanduser()
        if not path.is_absolute():
            if root is None:
                return ""
            path = root / path
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, SyntaxError, RecursionError, MemoryError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return (ast.get_docstring(node) or "").strip()
    return ""


def check_option_type(typ: str, value: Any) -> str | None:
    """A short description of the expected type when `value` does not fit `typ`, else None.

    Option types are free-form strings declared by task classes ("int", "float", "bool", "str",
    "path", "list[str]", ...); unknown ones are not checked.
    """
    t = typ.lower().strip()
    if t in ("int", "integer"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "an integer"
    if t in ("float", "number"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a number"
    if t in ("bool", "boolean"):
        return None if isinstance(value, bool) else "true or false"
    if t in ("str", "string", "path", "file", "folder", "dir"):
        return None if isinstance(value, str) else "a string"
    if t.startswith("list") or t.startswith("[") or t == "array":
        return None if isinstance(value, list) else "a list"
    return None


def is_path_option(name: str, typ: str | None) -> bool:
    """Options whose value names a file or folder (checked to exist)."""
    if name == "data":
        return True
    return typ is not None and typ.lower().strip() in ("path", "file", "folder", "dir")
