"""Cached comparison entry points for the CLI and the language server.

Each function compares a base with one other model, returns the decoded wire result (and the
envelope bytes, ready for :func:`modelbonsai.wire.paginate`), and caches it in the store under
(kind, model ids, options). Models, sources and evaluations are passed as values or as
zero-argument callables, so a cache hit loads nothing. Every call takes `progress(fraction,
message)` and `cancelled()` and checks cancellation between steps (raising ops.Cancelled).

`weights`, `store_weights` and the manifest readers live in :mod:`.stored` (no torch) and are
re-exported here. The `store_*` adapters read models from a :class:`~modelbonsai.store.LineageStore`: weights
stream from the artifact folders (dequantized by :mod:`modelbonsai.artifacts`), kept indices
come from the other model's manifest, and results go to the store's cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import nn

from ..tasks.base import Evaluation
from . import activations as A
from . import behavior as B
from . import stored
from . import tensors as T
from .cache import ResultCache, cached, result_key
from .control import CancelledFn, CompareError, Control, ProgressFn, check_keywords
from .sources import TensorSource
from .stored import Lazy, Outcome, _control, _get

# The weights entry points need no torch: they live in stored.py (so a weights-only comparison
# imports none) and are this module's as well.
weights = stored.weights
store_weights = stored.store_weights
artifact_kept_indices = stored.artifact_kept_indices
artifact_kept_groups = stored.artifact_kept_groups

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from Python 3.11 on


class ModelRun(TypedDict, total=False):
    """How the comparisons that run both models on task data (:func:`activations`,
    :func:`lm_tokens`) run them, as keywords (each optional)."""

    #: where the models run (default "cpu")
    device: torch.device | str
    #: `progress(fraction, message)` and `cancelled()`, as for every entry point
    progress: ProgressFn | None
    cancelled: CancelledFn | None


def _run_of(run: ModelRun) -> tuple[Control, torch.device | str]:
    """The control and the device of `run` (an unknown keyword: TypeError)."""
    check_keywords(run, ModelRun, "keyword(s)")
    return _control(run.get("progress"), run.get("cancelled")), run.get("device", "cpu")


def activations(
    cache: ResultCache | None,
    base_id: str,
    other_id: str,
    base: Lazy[nn.Module],
    other: Lazy[nn.Module],
    task: Lazy[A.BatchTask],
    *,
    task_key: Mapping[str, Any],
    options: A.ActivationOptions | None = None,
    kept_indices: Lazy[Mapping[str, Mapping[int, Sequence[int]]]] | None = None,
    **run: Unpack[ModelRun],
) -> Outcome:
    """`task_key` identifies the task and its data (e.g. the experiment file's task section),
    since the instances sampled depend on it."""
    ctl, device = _run_of(run)
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
    models: tuple[Lazy[nn.Module], Lazy[nn.Module]] | None = None,
    task: Lazy[Any] | None = None,
    device: torch.device | str = "cpu",
    token_instances: int | None = None,
    batch_size: int = 8,
) -> Outcome:
    """Behaviour of `other` against `base` from their Evaluations. For a causal LM, give
    `models` = (base module, other module) and `task` to add the true per-token KL (tensors
    `token_kl` [N, T], `kl` [N]; via the cached :func:`lm_tokens`, on the first
    `token_instances` instances, default all of the base evaluation's)."""
    ctl = _control(progress, cancelled)
    options: dict[str, Any] = {"task": dict(task_key), "bootstrap": bootstrap, "seed": seed}
    with_kl = models is not None and task is not None
    if with_kl:
        options["token_kl"] = token_instances if token_instances is not None else "all"  # old keys stay valid
    key = result_key({"base": base_id, "other": other_id}, options)

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        ev_b, ev_o = _get(base), _get(other)
        div, rest = None, ctl
        if with_kl and B.evaluation_kind(ev_b) == "causal_lm":
            assert models is not None and task is not None
            n = token_instances if token_instances is not None else len(ev_b.ids)
            tok = lm_tokens(cache, base_id, other_id, models[0], models[1], task, task_key=task_key, device=device,
                            instances=n, batch_size=batch_size, progress=ctl.sub(0.0, 0.9).progress, cancelled=ctl.cancelled)  # fmt: skip
            rest = ctl.sub(0.9, 1.0)
            div = {other_id: {"ids": tok.result.meta["ids"], "kl": tok.result.tensors["kl"]}}
        res = B.compare_behavior(
            ev_b, {other_id: ev_o}, base_id=base_id,
            groupings=_get(groupings) if groupings is not None else None,
            class_names=class_names, bootstrap=bootstrap, seed=seed, control=rest, token_divergence=div,
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
    key = result_key(
        models, {"name": name, "level": level, "window": list(window) if window else None, "tile": tile}
    )

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


def tensor_tiles(
    cache: ResultCache | None,
    model_id: str,
    name: str,
    level: int,
    window: tuple[int, int, int, int] | None = None,
    *,
    source: str = "weight",
    weights: Lazy[TensorSource] | None = None,
    model: Lazy[nn.Module] | None = None,
    task: Lazy[A.BatchTask] | None = None,
    task_key: Mapping[str, Any] | None = None,
    instances: str | Sequence[str] | None = None,
    minus: tuple[str, Any] | None = None,
    kept_indices: Mapping[int, Sequence[int]] | None = None,
    device: torch.device | str = "cpu",
    tile: int = T.TILE,
) -> Outcome:
    """The one tiles entry point (`bonsai/tensor/tiles`): `source` "weight" serves weight `name`
    from `weights` (a TensorSource), "activation" serves the output of module `name` of `model`
    for `instances` of `task`. `minus` = (id, the other side: a TensorSource for weights, a module
    for activations) gives tiles of the difference model − minus; `kept_indices` aligns the minus
    side to a structured-pruned model (weights: {dim: kept}; activations: {0: kept channels}).
    Both go through the same level-of-detail pyramid; a negative level counts from the coarsest."""
    if source == "weight":
        if weights is None:
            raise CompareError("weight tiles need the model's tensors (weights=...)")
        return weight_tiles(
            cache, model_id, weights, name, level, window, minus=minus, kept_indices=kept_indices, tile=tile
        )
    if source == "activation":
        if model is None or task is None:
            raise CompareError("activation tiles need the model and its task (model=..., task=...)")
        if instances is None or (not isinstance(instances, str) and not list(instances)):
            raise CompareError("activation tiles need 'instances': the ids of the instances to show")
        return activation_tiles(cache, model_id, model, task, instances, name, level, window, task_key=task_key or {},
                                minus=minus, kept_indices=kept_indices, device=device, tile=tile)  # fmt: skip
    raise CompareError(f"unknown tiles source '{source}': use 'weight' or 'activation'")


# -- store adapters -----------------------------------------------------------------------------


def activation_tiles(
    cache: ResultCache | None,
    model_id: str,
    model: Lazy[nn.Module],
    task: Lazy[A.BatchTask],
    instance_id: str | Sequence[str],
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
    """Tiles of `module`'s output for one instance (batch dim removed), or for a list of
    instances stacked as [instances, ...] (rows = instances, in the order given), or of (model −
    `minus` model). `kept_indices` = {0: kept output channels} aligns a structured-pruned module:
    the minus output is indexed on its channel dim (the first for conv-like 3-D+ outputs of one
    instance, else the last)."""
    models = {"model": model_id}
    if minus is not None:
        models["minus"] = minus[0]
    one = isinstance(instance_id, str)
    which: dict[str, Any] = {"instance": instance_id} if one else {"instances": [str(i) for i in instance_id]}
    key = result_key(models, {"task": dict(task_key), **which, "module": module, "level": level,
                              "window": list(window) if window else None, "tile": tile})  # fmt: skip

    lengths: list[int] = []

    def output(m: nn.Module, tk: Any) -> torch.Tensor:
        if one:
            return T.activation_tensor(m, tk, str(instance_id), module, device=device)
        return T.activation_tensors(m, tk, which["instances"], module, device=device, lengths_out=lengths)

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        tk = _get(task)
        t = output(_get(model), tk)
        if minus is not None:
            m = output(_get(minus[1]), tk)
            if kept_indices and 0 in kept_indices:
                m = T.align_channels(m, kept_indices[0], stacked=not one)
            t = T.difference(m, t)
        meta = {"source": "activation", "name": module, "module": module, **which, "models": models}
        if len(set(lengths)) > 1:  # rows of different lengths, zero-padded to the longest
            meta["lengths"] = list(lengths)
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
    instances: int = 64,
    batch_size: int = 8,
    **run: Unpack[ModelRun],
) -> Outcome:
    """Per-token KL(base ‖ other) and top-1 agreement of a causal LM (kind "lm_tokens"):
    meta {ids, mean_kl, top1_agreement}, tensors {kl [N, T] float32, top1_agree [N, T] bool};
    `task_key` as for :func:`activations`."""
    ctl, device = _run_of(run)
    key = result_key({"base": base_id, "other": other_id}, {"task": dict(task_key), "instances": instances})

    def compute() -> tuple[str, dict[str, Any], dict[str, Any]]:
        out = B.lm_token_divergence(_get(base), {other_id: _get(other)}, _get(task), device=device,
                                    instances=instances, batch_size=batch_size, control=ctl)[other_id]  # fmt: skip
        meta = {"base": base_id, "other": other_id, "ids": out["ids"], "mean_kl": out["mean_kl"],
                "top1_agreement": out["top1_agreement"]}  # fmt: skip
        return "lm_tokens", meta, {"kl": out["kl"], "top1_agree": out["top1_agree"]}

    ctl.check()
    return Outcome(*cached(cache, "lm_tokens", key, compute))
