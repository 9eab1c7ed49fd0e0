"""Activation comparison: every module's output on a sample of task instances.

For each batch the base model runs once with forward hooks that keep each module's output (and,
for the isolated mode, its inputs); then every other model runs once with hooks that compare its
module outputs with the base's *as they are produced* and drop them. So the propagated
comparison costs the forward passes that any comparison needs plus a few elementwise passes per
activation; nothing of the other models is held.

- **propagated**: each model runs on its own input stream; a module's error includes what it
  inherited from earlier layers.
- **isolated**: each module of the other model (leaf modules by default; `isolated_scope="all"`
  for every module) is called on the exact inputs the base module received, so its error is its
  own.

Metrics per module (over all sampled instances, exact sums as in :mod:`.stats`): relative L2,
SQNR, cosine, max |diff|, NaN/Inf counts, and linear CKA over instances, where each instance is
represented by its output averaged over positions (dims 2.. of 4-D/5-D conv-like outputs, dim 1
of 3-D sequence outputs). The **divergence matrix** holds the relative L2 error of every
(module, instance) pair; `top_layers` / `top_instances` rank it.

Modules are aligned by name; a pair whose output shapes differ is reported as a mismatch unless
the other model's structured-pruning kept indices (`<module>.weight` dim 0) map its output
channels back to the base. Modules that only one model has are listed.

Before running, a one-instance probe measures the activation bytes per instance; if the sample
would not fit the memory budget the batch is shrunk, and if even batches of one do not fit, a
:class:`ActivationMemoryError` says how many instances would.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..ops.registry import match_names
from . import stats as S
from .cka import linear_cka
from .control import CompareError, Control

KIND = "activations"


class ActivationMemoryError(CompareError):
    """The comparison would not fit the memory budget at the requested instance count."""


class BatchTask(Protocol):
    """What activation comparison needs from a task (see tasks.base.Task)."""

    def eval_batches(self, batch_size: int) -> Iterator[Any]: ...

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    @staticmethod
    def to_device(batch: Any, device: torch.device) -> Any: ...


@dataclass
class ActivationOptions:
    instances: int = 64
    batch_size: int = 16
    mode: str = "both"  # "propagated" | "isolated" | "both"
    isolated_scope: str = "leaves"  # "leaves" | "all"
    modules: Sequence[str] | None = None  # fnmatch globs over module names ("" is the model)
    memory_budget: int | None = None  # bytes; default: see default_memory_budget

    def check(self) -> None:
        if self.mode not in ("propagated", "isolated", "both"):
            raise CompareError(f"activation mode must be propagated, isolated or both; got '{self.mode}'")
        if self.isolated_scope not in ("leaves", "all"):
            raise CompareError(f"isolated_scope must be leaves or all; got '{self.isolated_scope}'")
        if self.instances < 1:
            raise CompareError(f"instances must be at least 1; got {self.instances}")
        if self.batch_size < 1:
            raise CompareError(f"batch_size must be at least 1; got {self.batch_size}")

    def key(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "mode": self.mode,
            "isolated_scope": self.isolated_scope,
            "modules": list(self.modules) if self.modules else None,
        }


def default_memory_budget(device: torch.device) -> int:
    """80% of free accelerator memory, or half of the available RAM on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE") // 2) if pages else 4 << 30


# -- per-module accumulation -------------------------------------------------------------------


@dataclass
class _Acc:
    """Running sums for one module and one mode (propagated or isolated)."""

    st: S.PairStats = field(default_factory=S.PairStats)
    dd: list[torch.Tensor] = field(default_factory=list)  # per-instance Σd², one entry per batch
    bb: list[torch.Tensor] = field(default_factory=list)  # per-instance Σb², one entry per batch
    batch_ix: list[int] = field(default_factory=list)  # which batch each entry belongs to
    feats_base: list[torch.Tensor] = field(default_factory=list)  # pooled outputs for CKA
    feats_other: list[torch.Tensor] = field(default_factory=list)
    shape_other: list[int] | None = None
    problem: str = ""


@dataclass
class ModuleResult:
    name: str
    type_base: str | None
    type_other: str | None
    shape_base: list[int] | None = None  # per-instance output shape (without the batch dim)
    shape_other: list[int] | None = None
    status: str = "ok"  # "ok" | "mismatch" | "only_in_base" | "only_in_other" | "no_output"
    message: str = ""
    propagated: dict[str, Any] | None = None
    isolated: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ""}


@dataclass
class ActivationComparison:
    base: str
    other: str
    ids: list[str]
    modules: list[ModuleResult]
    #: [modules, instances] relative L2 per (module, instance); NaN where not available
    propagated: np.ndarray
    isolated: np.ndarray
    options: dict[str, Any]

    def module(self, name: str) -> ModuleResult:
        return next(m for m in self.modules if m.name == name)

    def _matrix(self, mode: str) -> np.ndarray:
        if mode not in ("propagated", "isolated"):
            raise CompareError(f"mode must be propagated or isolated; got '{mode}'")
        return self.propagated if mode == "propagated" else self.isolated

    def top_layers(self, instance_id: str, k: int = 10, mode: str = "propagated") -> list[tuple[str, float]]:
        """The modules where `instance_id` diverged most (largest relative error first)."""
        if instance_id not in self.ids:
            raise CompareError(f"instance '{instance_id}' is not in this comparison's sample")
        col = self._matrix(mode)[:, self.ids.index(instance_id)]
        order = [i for i in np.argsort(-np.nan_to_num(col, nan=-np.inf)) if not np.isnan(col[i])]
        return [(self.modules[i].name, float(col[i])) for i in order[:k]]

    def top_instances(self, module: str, k: int = 10, mode: str = "propagated") -> list[tuple[str, float]]:
        """The instances that `module` hurts most (largest relative error first)."""
        names = [m.name for m in self.modules]
        if module not in names:
            raise CompareError(f"module '{module}' is not in this comparison")
        row = self._matrix(mode)[names.index(module)]
        order = [i for i in np.argsort(-np.nan_to_num(row, nan=-np.inf)) if not np.isnan(row[i])]
        return [(self.ids[i], float(row[i])) for i in order[:k]]

    def wire(self) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "base": self.base,
            "other": self.other,
            "ids": self.ids,
            "modules": [m.to_json() for m in self.modules],
            "options": self.options,
        }
        return KIND, meta, {
            "propagated": self.propagated.astype(np.float32),
            "isolated": self.isolated.astype(np.float32),
        }


# -- helpers -----------------------------------------------------------------------------------


def _first_tensor(x: Any) -> torch.Tensor | None:
    """A module's main output: the tensor itself, or the first tensor of a tuple/dict/ModelOutput."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, Mapping):
        x = list(x.values())
    if isinstance(x, (tuple, list)):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _pool(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] -> [B, C] instance features for CKA (see module doc)."""
    x = x.float()
    if x.dim() == 1:
        return x[:, None]
    if x.dim() == 2:
        return x
    if x.dim() == 3:
        return x.mean(1)
    return x.flatten(2).mean(2)


#: Rows at least this long are reduced one instance at a time with BLAS dot products (in cache,
#: no [B, F] temporaries); shorter rows in one vectorised pass (per-call overhead would dominate).
_ROWWISE = 4096


def _pool_one(x: torch.Tensor) -> torch.Tensor:
    """One instance's features for CKA (the per-instance form of :func:`_pool`)."""
    if x.dim() <= 1:
        return x.reshape(-1)
    if x.dim() == 2:
        return x.mean(0)
    return x.flatten(1).mean(1)


@dataclass
class _RowSums:
    dd: torch.Tensor  # per-row Σd² (d = o - b)
    bd: torch.Tensor  # per-row Σb·d
    bb: torch.Tensor  # per-row Σb²
    max_abs: float
    pooled_b: torch.Tensor | None
    pooled_o: torch.Tensor | None


def _diff_sums(b: torch.Tensor, o: torch.Tensor, pool: bool) -> _RowSums:
    """Per-instance sums of a [B, ...] pair in one sweep. Long rows go one instance at a time,
    so the difference and both sides stay in cache for every reduction (several times faster
    than whole-tensor passes on activations that do not fit in cache)."""
    batch = b.shape[0]
    bf = b.reshape(batch, -1).float()
    of = o.reshape(batch, -1).float()
    if bf.shape[1] < _ROWWISE:
        d = of - bf
        lo, hi = torch.aminmax(d) if d.numel() else (torch.zeros(()), torch.zeros(()))
        return _RowSums((d * d).sum(1), (bf * d).sum(1), (bf * bf).sum(1), max(-float(lo), float(hi)),
                        _pool(b) if pool else None, _pool(o) if pool else None)  # fmt: skip
    buf = torch.empty(bf.shape[1], dtype=bf.dtype, device=bf.device)
    dd, bd, bb, lows, highs, pb, po = [], [], [], [], [], [], []
    inst = tuple(b.shape[1:])
    for b_row, o_row in zip(bf, of, strict=True):
        d = torch.sub(o_row, b_row, out=buf)
        dd.append(torch.dot(d, d))
        bd.append(torch.dot(b_row, d))
        bb.append(torch.dot(b_row, b_row))
        lo, hi = torch.aminmax(d)
        lows.append(lo)
        highs.append(hi)
        if pool:
            pb.append(_pool_one(b_row.view(inst)))
            po.append(_pool_one(o_row.view(inst)))
    max_abs = max(-float(torch.stack(lows).min()), float(torch.stack(highs).max()))
    return _RowSums(torch.stack(dd), torch.stack(bd), torch.stack(bb), max_abs,
                    torch.stack(pb) if pool else None, torch.stack(po) if pool else None)  # fmt: skip


def _has_inplace(model: nn.Module) -> bool:
    return any(getattr(m, "inplace", False) is True for m in model.modules())


def _slice_batch(batch: Any, k: int) -> Any:
    def cut(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            return x[:k]
        if isinstance(x, dict):
            return {a: cut(b) for a, b in x.items()}
        if isinstance(x, list) and len(x) >= k:
            return x[:k]
        return x

    out = copy.copy(batch)
    out.__dict__.update({a: cut(b) for a, b in batch.__dict__.items()})
    return out


def _selected(model: nn.Module, patterns: Sequence[str] | None) -> dict[str, nn.Module]:
    mods = dict(model.named_modules())
    if patterns:
        keep = set(match_names(list(mods), patterns))
        mods = {n: m for n, m in mods.items() if n in keep}
    return mods


def _batches(task: BatchTask, options: ActivationOptions, batch_size: int) -> Iterator[Any]:
    """Batches of at most `batch_size` holding the first `instances` instances."""
    left = options.instances
    for batch in task.eval_batches(batch_size):
        if left <= 0:
            return
        n = len(batch.ids)
        if n > left:
            batch = _slice_batch(batch, left)
            n = left
        left -= n
        yield batch


# -- memory estimate ---------------------------------------------------------------------------


@dataclass
class MemoryEstimate:
    per_instance_transient: int  # bytes held per instance of a batch (activations of a forward)
    per_instance_kept: int  # bytes kept per instance until the end (CKA features, matrix)
    batch_size: int
    instances: int
    budget: int

    @property
    def total(self) -> int:
        return self.per_instance_transient * self.batch_size + self.per_instance_kept * self.instances


def estimate_memory(
    base: nn.Module,
    task: BatchTask,
    device: torch.device,
    options: ActivationOptions,
    n_others: int = 1,
) -> MemoryEstimate:
    """Probe one instance through the base model and size the run; shrink the batch to fit,
    or raise ActivationMemoryError naming the instance count that would fit."""
    budget = options.memory_budget or default_memory_budget(device)
    mods = _selected(base, options.modules)
    sizes = {"out": 0, "in": 0, "feat": 0, "mods": 0}

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        t = _first_tensor(output)
        if t is not None:
            sizes["out"] += t.numel() * t.element_size()
            sizes["feat"] += _pool(t).numel() * 4 if t.dim() > 0 else 4
            sizes["mods"] += 1
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor):
                sizes["in"] += a.numel() * a.element_size()

    first = next(iter(task.eval_batches(1)), None)
    if first is None:
        raise CompareError("the task has no evaluation instances to compare activations on")
    probe = task.to_device(_slice_batch(first, 1), device)
    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in mods.values()]
    try:
        with torch.inference_mode():
            task.forward(base, probe)
    finally:
        for h in handles:
            h.remove()
    # held per instance: base outputs (x2 if cloned for in-place models), the other model's live
    # activations during its forward (~ the same again), base inputs are mostly views of outputs.
    clone = 2 if _has_inplace(base) else 1
    transient = sizes["out"] * (clone + 1) + (sizes["in"] if options.mode != "propagated" else 0)
    kept = (sizes["feat"] * (1 + 2 * n_others)) + sizes["mods"] * 8 * 2 * n_others
    bs = min(options.batch_size, options.instances)
    est = MemoryEstimate(transient, kept, bs, options.instances, budget)
    while est.total > budget and est.batch_size > 1:
        est.batch_size = max(1, est.batch_size // 2)
    if est.total > budget:
        fits = max(0, (budget - transient) // max(1, kept))
        need = _fmt_bytes(est.total)
        if fits < 1:
            raise ActivationMemoryError(
                f"comparing activations needs about {_fmt_bytes(transient)} for a single instance "
                f"({sizes['mods']} modules), more than the memory budget of {_fmt_bytes(budget)}; "
                "select fewer modules or raise the memory budget"
            )
        raise ActivationMemoryError(
            f"comparing activations of {options.instances} instances needs about {need}, more than the "
            f"memory budget of {_fmt_bytes(budget)}; lower the instance count to {fits} or fewer"
        )
    return est


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# -- the comparison ----------------------------------------------------------------------------


class _BaseCapture:
    """Hooks on the base model: keep outputs (and inputs for isolated runs) of one batch."""

    def __init__(self, mods: dict[str, nn.Module], keep_inputs: bool, clone: bool):
        self.mods = mods
        self.keep_inputs = keep_inputs
        self.clone = clone
        self.outputs: dict[str, list[torch.Tensor | None]] = {}
        self.inputs: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
        self.feats: dict[str, list[torch.Tensor]] = {}
        self.batch = 0
        self.index = -1  # batch counter, so calls of a shared module add up per instance
        self.recent = _Recent()

    def reset(self, batch: int) -> None:
        self.outputs, self.inputs = {}, {}
        self.batch = batch
        self.index += 1
        self.recent.clear()

    def hooks(self) -> list[Any]:
        hs = []
        for name, m in self.mods.items():
            hs.append(m.register_forward_hook(self._out(name), with_kwargs=True))
        return hs

    def _out(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            t = _first_tensor(output)
            if t is not None and self.clone:
                t = t.clone()  # a later in-place op (e.g. ReLU(inplace=True)) would change it
            self.outputs.setdefault(name, []).append(t)
            if self.keep_inputs:
                if self.clone:
                    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
                self.inputs.setdefault(name, []).append((args, dict(kwargs)))

        return hook


def _align_output(
    b: torch.Tensor, o: torch.Tensor, module: nn.Module, kept: Mapping[int, Sequence[int]] | None
) -> torch.Tensor | None:
    """The base output in the other's layout (structured pruning), or None if it cannot be."""
    if b.shape == o.shape:
        return b
    if not kept or 0 not in {int(k) for k in kept}:
        return None
    idx = torch.as_tensor(list(next(v for k, v in kept.items() if int(k) == 0)), device=b.device)
    channel_dim = 1 if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm2d)) else -1
    if b.dim() < 2 or b.shape[channel_dim] <= int(idx.max()):
        return None
    aligned = b.index_select(channel_dim % b.dim(), idx)
    return aligned if aligned.shape == o.shape else None


def _add_rows(acc: _Acc, dd: torch.Tensor, bb: torch.Tensor, batch_ix: int) -> None:
    if acc.batch_ix and acc.batch_ix[-1] == batch_ix:  # another call of the module, same batch
        acc.dd[-1] = acc.dd[-1] + dd
        acc.bb[-1] = acc.bb[-1] + bb
    else:
        acc.dd.append(dd)
        acc.bb.append(bb)
        acc.batch_ix.append(batch_ix)


@dataclass
class _Contribution:
    """What one (base, other) output pair adds to a module: totals and per-instance rows."""

    st: S.PairStats
    dd: torch.Tensor | None = None  # per-instance Σd² (CPU, float64)
    bb: torch.Tensor | None = None  # per-instance Σb²
    pooled_base: torch.Tensor | None = None
    pooled_other: torch.Tensor | None = None


def _contribution(b: torch.Tensor, o: torch.Tensor, batch: int, pool: bool) -> _Contribution:
    """The sums of one output pair (fast float32 path; exact slow path when NaN/Inf appear)."""
    if not (o.dim() > 0 and o.shape[0] == batch):
        # No batch dimension to split instances: module totals only.
        return _Contribution(S.pair_stats(b, o, hist_sample=0))
    rs = _diff_sums(b, o, pool)
    dd, bd, bbr, max_abs = rs.dd, rs.bd, rs.bb, rs.max_abs
    sums = torch.stack([dd.sum(), bbr.sum(), bd.sum()]).double().cpu()
    if not (bool(torch.isfinite(sums).all()) and math.isfinite(max_abs)):
        c = _contribution_nonfinite(b, o, batch)
    else:
        c = _finite_contribution(dd, bd, bbr, max_abs, b.numel())
    if pool:
        c.pooled_base = rs.pooled_b.cpu() if rs.pooled_b is not None else None
        c.pooled_other = rs.pooled_o.cpu() if rs.pooled_o is not None else None
    return c


def _finite_contribution(dd: torch.Tensor, bd: torch.Tensor, bbr: torch.Tensor, max_abs: float, n: int) -> _Contribution:
    sum_dd, sum_bb, sum_bd = (float(v) for v in torch.stack([dd.sum(), bbr.sum(), bd.sum()]).double().cpu())
    st = S.PairStats(n=n, finite=n, sum_d2=sum_dd, sum_b2=sum_bb, max_abs_diff=max_abs if n else 0.0)
    st.sum_bo = sum_bb + sum_bd  # b·o = b·b + b·d
    st.sum_o2 = sum_bb + 2 * sum_bd + sum_dd  # o·o = |b + d|²
    return _Contribution(st, dd.double().cpu(), bbr.double().cpu())


def _contribution_nonfinite(b: torch.Tensor, o: torch.Tensor, batch: int) -> _Contribution:
    """Slow path when NaN/Inf appear: exact counts, per-instance errors over finite pairs."""
    st = S.pair_stats(b, o, hist_sample=0)
    bf = b.reshape(batch, -1).double()
    of = o.reshape(batch, -1).double()
    keep = torch.isfinite(bf) & torch.isfinite(of)
    d = torch.where(keep, of - bf, torch.zeros((), dtype=bf.dtype, device=bf.device))
    bz = torch.where(keep, bf, torch.zeros((), dtype=bf.dtype, device=bf.device))
    return _Contribution(st, (d * d).sum(1).cpu(), (bz * bz).sum(1).cpu())


def _apply(acc: _Acc, c: _Contribution, batch_ix: int) -> None:
    acc.st = acc.st.merge(c.st)
    if c.dd is not None and c.bb is not None:
        _add_rows(acc, c.dd, c.bb, batch_ix)


def _key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, t.device)


class _Recent:
    """The last few compared pairs, holding references so their memory cannot be reused: a
    module whose output *is* an earlier module's output (Dropout in eval, the model returning
    its head's logits, a view after the final norm) reuses that comparison instead of redoing it."""

    def __init__(self, size: int = 4):
        self.size = size
        self.items: list[tuple[tuple[Any, ...], torch.Tensor, torch.Tensor, _Contribution]] = []

    def get(self, b: torch.Tensor, o: torch.Tensor) -> _Contribution | None:
        key = (_key(b), _key(o))
        for k, _, _, c in self.items:
            if k == key:
                return c
        return None

    def put(self, b: torch.Tensor, o: torch.Tensor, c: _Contribution) -> None:
        self.items.append(((_key(b), _key(o)), b, o, c))
        del self.items[: -self.size]

    def clear(self) -> None:
        self.items.clear()


def _summary(acc: _Acc) -> dict[str, Any]:
    m = acc.st.metrics()
    out = {k: m[k] for k in ("n", "rel_l2", "sqnr_db", "identical", "cosine", "max_abs_diff",
                             "nan_base", "nan_other", "inf_base", "inf_other")}  # fmt: skip
    cka = None
    if acc.feats_base and acc.feats_other:
        x, y = torch.cat(acc.feats_base), torch.cat(acc.feats_other)
        if x.shape[0] == y.shape[0]:
            cka = linear_cka(x, y)
    out["cka"] = cka
    return out


def compare_activations(
    base: nn.Module,
    others: Mapping[str, nn.Module],
    task: BatchTask,
    *,
    device: torch.device | str = "cpu",
    options: ActivationOptions | None = None,
    base_id: str = "base",
    kept_indices: Mapping[str, Mapping[str, Mapping[int, Sequence[int]]]] | None = None,
    control: Control | None = None,
) -> dict[str, ActivationComparison]:
    """Compare module outputs of `base` with every model of `others` (id -> module) on the
    first `options.instances` evaluation instances of `task`. Moves the models to `device` and
    puts them in eval mode for the run (restoring the mode afterwards)."""
    opt = options or ActivationOptions()
    opt.check()
    ctl = control or Control()
    if not others:
        raise CompareError("nothing to compare the base with: give at least one other model")
    dev = torch.device(device)
    kept_indices = kept_indices or {}
    modes = {"propagated", "isolated"} if opt.mode == "both" else {opt.mode}
    was_training = {id(m): m.training for m in [base, *others.values()]}
    base.to(dev).eval()
    for m in others.values():
        m.to(dev).eval()
    try:
        est = estimate_memory(base, task, dev, opt, len(others))
        ctl.step(0.0, f"comparing activations: {opt.instances} instances, batches of {est.batch_size}")
        return _run(base, others, task, dev, opt, est.batch_size, modes, base_id, kept_indices, ctl)
    finally:
        base.train(was_training[id(base)])
        for m in others.values():
            m.train(was_training[id(m)])


def _run(
    base: nn.Module,
    others: Mapping[str, nn.Module],
    task: BatchTask,
    dev: torch.device,
    opt: ActivationOptions,
    batch_size: int,
    modes: set[str],
    base_id: str,
    kept_indices: Mapping[str, Mapping[str, Mapping[int, Sequence[int]]]],
    ctl: Control,
) -> dict[str, ActivationComparison]:
    base_mods = _selected(base, opt.modules)
    other_mods = {oid: _selected(m, opt.modules) for oid, m in others.items()}
    inplace = _has_inplace(base) or any(_has_inplace(m) for m in others.values())
    capture = _BaseCapture(base_mods, keep_inputs="isolated" in modes, clone=inplace)
    accs: dict[str, dict[str, dict[str, _Acc]]] = {
        oid: {mode: {n: _Acc() for n in base_mods if n in om} for mode in ("propagated", "isolated")}
        for oid, om in other_mods.items()
    }
    base_shape: dict[str, list[int]] = {}
    ids: list[str] = []
    n_done = 0

    for batch in _batches(task, opt, batch_size):
        bsz = len(batch.ids)
        ids.extend(str(i) for i in batch.ids)
        dbatch = task.to_device(batch, dev)
        capture.reset(bsz)
        handles = capture.hooks()
        try:
            with torch.inference_mode():
                task.forward(base, dbatch)
        finally:
            for h in handles:
                h.remove()
        for name, outs in capture.outputs.items():
            t = outs[0] if outs else None
            if t is not None and name not in base_shape:
                base_shape[name] = list(t.shape[1:]) if t.dim() and t.shape[0] == bsz else list(t.shape)
        for oid, other in others.items():
            ctl.check()
            kept = kept_indices.get(oid, {})
            acc_p = accs[oid]["propagated"]
            if "propagated" in modes:
                hs = []
                for name, mod in other_mods[oid].items():
                    if name in acc_p:
                        hs.append(mod.register_forward_hook(
                            _compare_hook(name, capture, acc_p[name], bsz, kept.get(f"{name}.weight"))
                        ))  # fmt: skip
                try:
                    with torch.inference_mode():
                        task.forward(other, dbatch)
                finally:
                    for h in hs:
                        h.remove()
            if "isolated" in modes:
                _isolated(other_mods[oid], capture, accs[oid]["isolated"], bsz, kept, opt.isolated_scope, ctl)
        n_done += bsz
        ctl.step(n_done / opt.instances, f"activations: {n_done}/{opt.instances} instances")

    return {
        oid: _finish(base_id, oid, ids, base_mods, other_mods[oid], capture, accs[oid], base_shape, modes, opt)
        for oid in others
    }


def _compare_hook(
    name: str,
    capture: _BaseCapture,
    acc: _Acc,
    bsz: int,
    kept: Mapping[int, Sequence[int]] | None,
) -> Callable[..., None]:
    calls = {"i": 0}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        i = calls["i"]
        calls["i"] += 1
        _compare_call(name, module, capture, acc, bsz, kept, i, _first_tensor(output))

    return hook


def _compare_call(
    name: str,
    module: nn.Module,
    capture: _BaseCapture,
    acc: _Acc,
    bsz: int,
    kept: Mapping[int, Sequence[int]] | None,
    call: int,
    o: torch.Tensor | None,
) -> None:
    outs = capture.outputs.get(name, [])
    if call >= len(outs) or acc.problem:
        return
    b = outs[call]
    if b is None or o is None:
        acc.problem = "the module returned no tensor"
        return
    aligned = _align_output(b, o, module, kept)
    if aligned is None:
        acc.problem = f"output shapes differ: base {list(b.shape)} vs other {list(o.shape)}"
        return
    if acc.shape_other is None:
        acc.shape_other = list(o.shape[1:]) if o.dim() and o.shape[0] == bsz else list(o.shape)
    c = capture.recent.get(aligned, o)
    if c is None:
        c = _contribution(aligned, o, bsz, pool=True)
        capture.recent.put(aligned, o, c)
    _apply(acc, c, capture.index)
    if call == 0 and c.pooled_base is not None and c.pooled_other is not None:
        acc.feats_base.append(c.pooled_base)
        acc.feats_other.append(c.pooled_other)


def _isolated(
    mods: Mapping[str, nn.Module],
    capture: _BaseCapture,
    accs: dict[str, _Acc],
    bsz: int,
    kept: Mapping[str, Mapping[int, Sequence[int]]],
    scope: str,
    ctl: Control,
) -> None:
    """Run each module of the other model on the base module's recorded inputs."""
    for name, mod in mods.items():
        if name not in accs or name not in capture.inputs:
            continue
        if scope == "leaves" and any(True for _ in mod.children()):
            continue
        ctl.check()
        for call, (args, kwargs) in enumerate(capture.inputs[name]):
            try:
                if capture.clone:  # an in-place module would overwrite the base's recorded input
                    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
                with torch.inference_mode():
                    out = mod(*args, **kwargs)
            except (RuntimeError, ValueError, TypeError) as e:
                # e.g. a pruned module cannot take the base's (wider) input: say so, keep going
                accs[name].problem = f"cannot run on the base model's input: {str(e).splitlines()[0]}"
                break
            _compare_call(name, mod, capture, accs[name], bsz, kept.get(f"{name}.weight"), call, _first_tensor(out))


def _finish(
    base_id: str,
    oid: str,
    ids: list[str],
    base_mods: Mapping[str, nn.Module],
    other_mods: Mapping[str, nn.Module],
    capture: _BaseCapture,
    accs: dict[str, dict[str, _Acc]],
    base_shape: Mapping[str, list[int]],
    modes: set[str],
    opt: ActivationOptions,
) -> ActivationComparison:
    results: list[ModuleResult] = []
    rows: dict[str, list[np.ndarray]] = {"propagated": [], "isolated": []}
    n = len(ids)
    for name, mod in base_mods.items():
        om = other_mods.get(name)
        r = ModuleResult(name, type(mod).__name__, type(om).__name__ if om is not None else None)
        r.shape_base = base_shape.get(name)
        if om is None:
            r.status, r.message = "only_in_base", "the other model has no module of this name"
        elif name not in base_shape:
            r.status, r.message = "no_output", "the module returned no tensor (or never ran)"
        for mode in ("propagated", "isolated"):
            acc = accs.get(mode, {}).get(name)
            row = np.full(n, np.nan)
            if acc is not None and mode in modes and r.status == "ok":
                if acc.problem and (mode == "propagated" or "propagated" not in modes):
                    r.status, r.message = "mismatch", acc.problem
                elif acc.problem:
                    r.message = f"isolated: {acc.problem}"
                elif acc.st.n:
                    r.shape_other = r.shape_other or acc.shape_other
                    setattr(r, mode, _summary(acc))
                    row = _instance_rel(acc, n)
            rows[mode].append(row)
        results.append(r)
    for name, om in other_mods.items():
        if name not in base_mods:
            results.append(ModuleResult(name, None, type(om).__name__, status="only_in_other",
                                        message="the base model has no module of this name"))  # fmt: skip
            rows["propagated"].append(np.full(n, np.nan))
            rows["isolated"].append(np.full(n, np.nan))
    mat = {k: np.stack(v) if v else np.zeros((0, n)) for k, v in rows.items()}
    return ActivationComparison(base_id, oid, ids, results, mat["propagated"], mat["isolated"], opt.key())


def _instance_rel(acc: _Acc, n: int) -> np.ndarray:
    """Per-instance relative L2 (NaN for all when the module lacked a batch dim somewhere)."""
    if not acc.dd:
        return np.full(n, np.nan)
    dd = torch.cat(acc.dd).numpy()
    bb = torch.cat(acc.bb).numpy()
    if dd.size != n:
        return np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.sqrt(dd / bb)
    rel[(bb == 0) & (dd == 0)] = 0.0
    return rel
