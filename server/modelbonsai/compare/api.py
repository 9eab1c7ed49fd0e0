"""Cached comparison entry points for the CLI and the language server.

Each function compares a base with one other model, returns the decoded wire result (and the
envelope bytes, ready for :func:`modelbonsai.wire.paginate`), and caches it in the store under
(kind, model ids, options). Models, sources and evaluations are passed as values or as
zero-argument callables, so a cache hit loads nothing. Every call takes `progress(fraction,
message)` and `cancelled()` and checks cancellation between steps (raising ops.Cancelled).

The `store_*` adapters read models from a :class:`~modelbonsai.store.LineageStore`: weights
stream from the artifact folders (dequantized by :mod:`modelbonsai.artifacts`), kept indices
come from the other model's manifest, and results go to the store's cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import torch
from torch import nn

from .. import wire
from ..tasks.base import Evaluation
from . import activations as A
from . import behavior as B
from . import stats as S
from . import tensors as T
from . import weights as W
from .cache import ResultCache, cached, result_key
from .control import CancelledFn, CompareError, Control, ProgressFn
from .sources import TensorSource, artifact_source

X = TypeVar("X")
#: a value, or a zero-argument function producing it (called only on a cache miss)
Lazy: TypeAlias = "X | Callable[[], X]"


def _get(x: Any) -> Any:
    return x() if callable(x) and not isinstance(x, (nn.Module, TensorSource)) else x


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
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    hist_sample: int | None = S.HIST_SAMPLE,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Outcome:
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
        return res[other_id].wire()

    ctl.check()
    return Outcome(*cached(cache, W.KIND, key, compute))


def activations(
    cache: ResultCache | None,
    base_id: str,
    other_id: str,
    base: Lazy[nn.Module],
    other: Lazy[nn.Module],
    task: Lazy[A.BatchTask],
    *,
    task_key: Mapping[str, Any],
    device: torch.device | str = "cpu",
    options: A.ActivationOptions | None = None,
    kept_indices: Lazy[Mapping[str, Mapping[int, Sequence[int]]]] | None = None,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Outcome:
    """`task_key` identifies the task and its data (e.g. the experiment file's task section),
    since the instances sampled depend on it."""
    ctl = _control(progress, cancelled)
    opt = options or A.ActivationOptions()
    opt.check()
    key = result_key({"base": base_id, "other": other_id}, {**opt.key(), "task": dict(task_key)})

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        kept = _get(kept_indices) if kept_indices is not None else None
        res = A.compare_activations(
            _get(base), {other_id: _get(other)}, _get(task), device=device, options=opt, base_id=base_id,
            kept_indices={other_id: kept} if kept else None, control=ctl,
        )  # fmt: skip
        return res[other_id].wire()

    ctl.check()
    return Outcome(*cached(cache, A.KIND, key, compute))


def behavior(
    cache: ResultCache | None,
    base_id: str,
    other_id: str,
    base: Lazy[Evaluation],
    other: Lazy[Evaluation],
    *,
    task_key: Mapping[str, Any],
    groupings: Lazy[Mapping[str, Mapping[str, str]]] | None = None,
    class_names: Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Outcome:
    ctl = _control(progress, cancelled)
    key = result_key({"base": base_id, "other": other_id}, {"task": dict(task_key), "bootstrap": bootstrap, "seed": seed})

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        res = B.compare_behavior(
            _get(base), {other_id: _get(other)}, base_id=base_id,
            groupings=_get(groupings) if groupings is not None else None,
            class_names=class_names, bootstrap=bootstrap, seed=seed, control=ctl,
        )  # fmt: skip
        return res[other_id].wire()

    ctl.check()
    return Outcome(*cached(cache, B.KIND, key, compute))


def weight_tiles(
    cache: ResultCache | None,
    model_id: str,
    source: Lazy[TensorSource],
    name: str,
    level: int,
    window: tuple[int, int, int, int] | None = None,
    *,
    minus: tuple[str, Lazy[TensorSource]] | None = None,
    kept_indices: Mapping[int, Sequence[int]] | None = None,
    tile: int = T.TILE,
) -> Outcome:
    """Tiles of weight `name` of `model_id`, or of (model − `minus` model) when `minus` = (id,
    source) is given; `kept_indices` aligns the minus (base) tensor to the model's layout."""
    models = {"model": model_id}
    if minus is not None:
        models["minus"] = minus[0]
    key = result_key(models, {"name": name, "level": level, "window": list(window) if window else None, "tile": tile})

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        src = _get(source)
        if name not in src.names():
            raise CompareError(f"model '{model_id}' has no tensor '{name}'")
        t = src.get(name)
        if minus is not None:
            msrc = _get(minus[1])
            if name not in msrc.names():
                raise CompareError(f"model '{minus[0]}' has no tensor '{name}'")
            t = T.difference(msrc.get(name), t, kept_indices)
        return T.tiles_wire(t, level, window, tile=tile, meta={"name": name, "models": models})

    return Outcome(*cached(cache, T.KIND, key, compute))


# -- store adapters -----------------------------------------------------------------------------


def artifact_kept_indices(folder: str | Path) -> dict[str, dict[int, list[int]]]:
    """Kept indices recorded in an artifact's manifest (structured pruning), with int dims."""
    from ..artifacts import read_manifest

    kept = read_manifest(Path(folder)).get("kept_indices") or {}
    return {n: {int(d): list(map(int, idx)) for d, idx in dims.items()} for n, dims in kept.items()}


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
        include=include, exclude=exclude, progress=progress, cancelled=cancelled,
    )  # fmt: skip


def activation_tiles(
    cache: ResultCache | None,
    model_id: str,
    model: Lazy[nn.Module],
    task: Lazy[A.BatchTask],
    instance_id: str,
    module: str,
    level: int,
    window: tuple[int, int, int, int] | None = None,
    *,
    task_key: Mapping[str, Any],
    minus: tuple[str, Lazy[nn.Module]] | None = None,
    kept_indices: Mapping[int, Sequence[int]] | None = None,
    device: torch.device | str = "cpu",
    tile: int = T.TILE,
) -> Outcome:
    """Tiles of `module`'s output for one instance (batch dim removed), or of (model − `minus`
    model). `kept_indices` = {0: kept output channels} aligns a structured-pruned module: the
    minus output is indexed on its channel dim (1 for conv-like 3-D+ outputs, else the last)."""
    models = {"model": model_id}
    if minus is not None:
        models["minus"] = minus[0]
    key = result_key(models, {"task": dict(task_key), "instance": instance_id, "module": module, "level": level,
                              "window": list(window) if window else None, "tile": tile})  # fmt: skip

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        tk = _get(task)
        t = T.activation_tensor(_get(model), tk, instance_id, module, device=device)
        if minus is not None:
            m = T.activation_tensor(_get(minus[1]), tk, instance_id, module, device=device)
            if kept_indices and 0 in kept_indices:
                dim = 0 if m.dim() >= 3 else m.dim() - 1  # per instance: conv channels first, else last
                m = m.index_select(dim, torch.as_tensor(list(kept_indices[0]), dtype=torch.long))
            t = T.difference(m, t)
        meta = {"module": module, "instance": instance_id, "models": models}
        return T.tiles_wire(t, level, window, tile=tile, meta=meta)

    return Outcome(*cached(cache, T.KIND, key, compute))


def lm_tokens(
    cache: ResultCache | None,
    base_id: str,
    other_id: str,
    base: Lazy[nn.Module],
    other: Lazy[nn.Module],
    task: Lazy[Any],
    *,
    task_key: Mapping[str, Any],
    device: torch.device | str = "cpu",
    instances: int = 64,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> Outcome:
    """Per-token KL(base ‖ other) and top-1 agreement of a causal LM (kind "lm_tokens"):
    meta {ids, mean_kl, top1_agreement}, tensors {kl [N, T] float32, top1_agree [N, T] bool}."""
    ctl = _control(progress, cancelled)
    key = result_key({"base": base_id, "other": other_id}, {"task": dict(task_key), "instances": instances})

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        out = B.lm_token_divergence(_get(base), {other_id: _get(other)}, _get(task), device=device,
                                    instances=instances, batch_size=batch_size, control=ctl)[other_id]  # fmt: skip
        meta = {"base": base_id, "other": other_id, "ids": out["ids"], "mean_kl": out["mean_kl"],
                "top1_agreement": out["top1_agreement"]}  # fmt: skip
        return "lm_tokens", meta, {"kl": out["kl"], "top1_agree": out["top1_agree"]}

    ctl.check()
    return Outcome(*cached(cache, "lm_tokens", key, compute))
