"""Helpers shared by the built-in tasks: option and path handling, model outputs, batching."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import torch

from .base import TaskError

#: keys of the experiment file's `task:` section that are not task options
NON_OPTIONS = frozenset({"kind", "max_instances"})


def fail(kind: str, message: str) -> TaskError:
    """A TaskError that names the task, so the user knows which section of the file to fix."""
    return TaskError(f"task {kind}: {message}")


def option(
    kind: str,
    options: Mapping[str, Any],
    name: str,
    typ: type | tuple[type, ...],
    default: Any = None,
    *,
    required: bool = False,
) -> Any:
    """Read one option, checking its type; a clear TaskError instead of a later crash."""
    if name not in options or options[name] is None:
        if required:
            raise fail(kind, f"needs option '{name}'")
        return default
    value = options[name]
    ok = isinstance(value, typ) and not (isinstance(value, bool) and bool not in _as_tuple(typ))
    if not ok:
        names = " or ".join(t.__name__ for t in _as_tuple(typ))
        raise fail(kind, f"option '{name}' must be {names}, got {value!r}")
    return value


def _as_tuple(typ: type | tuple[type, ...]) -> tuple[type, ...]:
    return typ if isinstance(typ, tuple) else (typ,)


def resolve_path(kind: str, root: Path, value: str, what: str, *, must_exist: bool = True) -> Path:
    """A path from the experiment file, relative to the experiment file's folder."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = root / p
    if must_exist and not p.exists():
        raise fail(kind, f"{what} '{value}' does not exist (looked for {p})")
    return p


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model call: a tensor, a Hugging Face ModelOutput, a tuple or a dict."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) or hasattr(output, "logits"):
        value = (
            output["logits"]
            if isinstance(output, Mapping) and "logits" in output
            else getattr(output, "logits", None)
        )
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"the model returned {type(output).__name__}; expected a tensor or an output with .logits"
    )


def hidden_states_of(output: Any) -> torch.Tensor:
    """Token embeddings [B, T, D] of an encoder call (last_hidden_state, or the first tensor)."""
    value = getattr(output, "last_hidden_state", None)
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(output, Mapping) and isinstance(output.get("last_hidden_state"), torch.Tensor):
        return output["last_hidden_state"]
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; expected last_hidden_state")


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def chunks(n: int, batch_size: int) -> Iterator[range]:
    for start in range(0, n, batch_size):
        yield range(start, min(n, start + batch_size))


def endless_shuffle(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Seeded epochs of shuffled indices, cut into batches; a fresh permutation each epoch."""
    if n == 0:
        return
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=g).tolist()
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            if len(batch) == batch_size or n < batch_size:
                yield batch


def read_jsonl(kind: str, path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise fail(kind, f"{path.name} line {lineno} is not valid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise fail(
                    kind, f"{path.name} line {lineno}: expected a JSON object, got {type(row).__name__}"
                )
            rows.append(row)
    return rows


def limit(n: int, max_instances: int | None) -> int:
    return n if max_instances is None else max(0, min(n, int(max_instances)))
