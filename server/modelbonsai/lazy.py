"""torch, torch.nn and torch.nn.functional, imported on first use.

The op modules register their ops (names, params, docs: what the language server's completion,
hover and stale marks read) on import, and import torch through these stand-ins so that
registering costs no torch import (over a second of a cold start); the first attribute read (an
op running, an edit replayed) imports it. Type checkers see the real modules (the op modules
import these only when not TYPE_CHECKING). Module-level code of an op module must not read an
attribute of them (tests/runner/test_fingerprint_values.py checks, in a fresh process).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module `name`; reading an attribute imports it (once) and reads it there."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


torch = LazyModule("torch")
nn = LazyModule("torch.nn")
F = LazyModule("torch.nn.functional")
