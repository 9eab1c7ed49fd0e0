"""The cached weight comparison of stored models, without torch.

What `api.py` offers for weights (`weights`, `store_weights`, the kept indices and groups read
from an artifact's manifest, `Outcome`) lives here so that a weights-only comparison (`bonsai
compare` of models without evaluation outputs, the service's weights job) imports neither torch
nor the activation and behaviour modules: weights stream from the artifacts through numpy and
the numba kernels. `api.py` re-exports every name, so callers keep using `compare.api`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from .. import wire
from . import stats as S
from . import weights as W
from .cache import ResultCache, cached, result_key
from .control import CancelledFn, Control, ProgressFn
from .sources import TensorSource, artifact_source

X = TypeVar("X")
#: a value, or a zero-argument function producing it (called only on a cache miss)
Lazy: TypeAlias = "X | Callable[[], X]"


def _is_module(x: Any) -> bool:
    # A torch module is callable but is a value, not a thunk; without torch imported there is none.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.nn.Module)


def _get(x: Any) -> Any:
    return x() if callable(x) and not isinstance(x, TensorSource) and not _is_module(x) else x


@dataclass
class Outcome:
    result: wire.Result
    data: bytes  # the envelope; page it with wire.paginate(...) or send as is
    cache_hit: bool


def _control(progress: ProgressFn | None, cancelled: CancelledFn | None) -> Control:
    c = Control()
    if progress is not None:
        c.progress = progress
    if cancelled is not None:
        c.cancelled = cancelled
    return c


def weights(
    cache: ResultCache | None,
    base_id: str,
    other_id: str,
    base: Lazy[TensorSource],
    other: Lazy[TensorSource],
    *,
    kept_indices: Lazy[Mapping[str, Mapping[int, Sequence[int]]]] | None = None,
    kept_groups: Lazy[Mapping[str, Mapping[int, int]]] | None = None,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    hist_sample: int | None = S.HIST_SAMPLE,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Outcome:
    """`kept_groups`: per tensor, elements per removed unit along a dim (see
    :func:`artifact_kept_groups`), named in the result as `group_size` (the panel groups heads)."""
    ctl = _control(progress, cancelled)
    options = {"include": include, "exclude": exclude, "hist_sample": hist_sample}
    key = result_key({"base": base_id, "other": other_id}, options)

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        kept = _get(kept_indices) if kept_indices is not None else None
        res = W.compare_weights(
            _get(base), {other_id: _get(other)}, base_id=base_id,
            kept_indices={other_id: kept} if kept else None,
            include=include, exclude=exclude, hist_sample=hist_sample, control=ctl,
        )  # fmt: skip
        groups = _get(kept_groups) if kept_groups is not None else {}
        for t in res[other_id].tensors:
            if t.removed and t.name in groups:
                t.groups = {d: g for d, g in groups[t.name].items() if d in t.removed}
        return res[other_id].wire()

    ctl.check()
    return Outcome(*cached(cache, W.KIND, key, compute))


def _manifest(folder: str | Path) -> dict[str, Any]:
    """The artifact's checked manifest, parsed once while its files are unchanged (the same
    cached opening the comparison reads the tensors through; tile requests ask per view)."""
    from ..artifacts import open_stored

    return open_stored(folder).manifest


def artifact_kept_indices(folder: str | Path) -> dict[str, dict[int, list[int]]]:
    """Kept indices recorded in an artifact's manifest (structured pruning), with int dims."""
    kept = _manifest(folder).get("kept_indices") or {}
    return {n: {int(d): list(map(int, idx)) for d, idx in dims.items()} for n, dims in kept.items()}


def artifact_kept_groups(folder: str | Path) -> dict[str, dict[int, int]]:
    """Elements per removed unit along each shrunk dim (attention heads: the head size), from the
    structured edits in an artifact's manifest; absent where units are single channels."""
    out: dict[str, dict[int, int]] = {}
    for edit in _manifest(folder).get("edits") or []:
        for sl in edit.get("slices") or []:
            if int(sl.get("group", 1)) > 1:
                name = f"{edit['module']}.{sl['tensor']}" if edit.get("module") else str(sl["tensor"])
                out.setdefault(name, {})[int(sl["dim"])] = int(sl["group"])
    return out


def store_weights(
    store: Any,
    base_id: str,
    other_id: str,
    *,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Outcome:
    """Weight comparison of two stored models (LineageStore), cached in that store."""
    base_dir = store.artifact_path(base_id)
    other_dir = store.artifact_path(other_id)
    return weights(
        store, base_id, other_id,
        lambda: artifact_source(base_dir), lambda: artifact_source(other_dir),
        kept_indices=lambda: artifact_kept_indices(other_dir),
        kept_groups=lambda: artifact_kept_groups(other_dir),
        include=include, exclude=exclude, progress=progress, cancelled=cancelled,
    )  # fmt: skip
