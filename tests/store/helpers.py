"""Shared bits of the store tests: a tiny artifact writer that looks like a real artifact."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from modelbonsai.store import ModelRecord


def writer(payload: bytes = b"x" * 1000) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "tensors.bin").write_bytes(payload)
        (folder / "manifest.json").write_text(json.dumps({"files": ["tensors.bin"], "size": len(payload)}))

    return write


def record(name: str, parent: str | None = None, fp: str = "") -> ModelRecord:
    return ModelRecord(name=name, parent_id=parent, op=None if parent is None else "test.op",
                       params={"k": 1}, fingerprint=fp or f"fp-{name}")
