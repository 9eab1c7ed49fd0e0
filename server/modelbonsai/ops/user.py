"""User ops: a Python file whose `@register_op` decorators add ops to the registry.

Only called for trusted workspaces: importing the file runs the user's code. Ops registered
while the file is imported get `source=<path>`, so listings and hover say where they come from.
Importing the same file again (after the user edited it) first removes the ops it registered
before, so a changed op replaces the old one instead of clashing with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from ..errors import UserError
from . import registry


class UserOpsError(UserError, ValueError):
    """A user ops file could not be loaded; the message names the file and, if known, the line."""

    def __init__(self, path: Path, message: str, line: int | None = None):
        self.path = path
        self.line = line
        super().__init__(f"{path}{f':{line}' if line else ''}: {message}")


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    return f"bonsai_user_ops_{path.stem}_{digest}"


def _line_in(path: Path, exc: BaseException) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == path:
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename and Path(frame.filename).resolve() == path:
            line = frame.lineno  # the deepest frame in the user's file
    return line


def load_user_ops(path: Path) -> list[str]:
    """Import `path`, registering its ops with source=path. Returns the names of its ops.

    Raises UserOpsError (file and line) when the file is missing or fails to import, or when it
    registers an op whose name is already taken by another source.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise UserOpsError(path, "no such file")
    registry._ensure_builtins()  # so a clash with a built-in is reported, not hidden until later
    ops = registry._OPS
    source = str(path)
    previous = {n: d for n, d in ops.items() if d.source == source}
    for n in previous:
        del ops[n]
    before = dict(ops)
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserOpsError(path, "cannot be imported as a Python module")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # let the file import helpers next to it
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        _rollback(ops, before, previous)
        sys.modules.pop(name, None)
        detail = e.msg if isinstance(e, SyntaxError) else str(e)
        raise UserOpsError(path, f"{type(e).__name__}: {detail}", _line_in(path, e)) from e
    finally:
        if sys.path and sys.path[0] == str(path.parent):
            sys.path.pop(0)
    added = [n for n in ops if n not in before or ops[n] is not before[n]]
    for n in added:
        if n in before:  # re-registration of an existing name with the same function object
            continue
        ops[n] = dataclasses.replace(ops[n], source=source)
    return sorted(added)


def _rollback(
    ops: dict[str, registry.OpDef], before: dict[str, registry.OpDef], previous: dict[str, registry.OpDef]
) -> None:
    """A failed import leaves the registry as it was, including the file's previous ops."""
    ops.clear()
    ops.update(before)
    ops.update(previous)
