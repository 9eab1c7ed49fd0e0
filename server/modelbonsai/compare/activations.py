"""Activation comparison: every module's output on a sample of task instances.

For each batch the base model runs once with forward hooks that keep each module's output (and,
for the isolated mode, its inputs); then every other model runs once with hooks that compare its
module outputs with the base's *as they are produced* and drop them. So the propagated
comparison costs the forward passes that any comparison needs plus one fused pass over each
activation pair (and small samples of it); nothing of the other models is held.

- **propagated**: each model runs on its own input stream; a module's error includes what it
  inherited from earlier layers.
- **isolated**: each module of the other model (leaf modules by default; `isolated_scope="all"`
  for every module) is called on the exact inputs the base module received, so its error is its
  own.

Metrics per module and mode (over all sampled instances; sums exact in float64, as in :mod:`.stats`,
from one fused pass per instance, :func:`.kernels.row_pair_sums` on the CPU, which in the same
pass averages each instance over its positions for `cka_instances`):

- `rel_l2`, `sqnr_db`, `cosine`, `max_abs_diff`, `identical`: of the module's whole output;
- `sparsity_base` / `sparsity_other`: fraction of exact zeros of the activations (after a ReLU,
  say), with `zero_only_base`, `zero_only_other`, `zero_both` (counts of the zero masks);
- `nan_*` / `inf_*`: non-finite values per side, counted and left out of the sums;
- `cka`: linear CKA at the **position level**: samples are (instance, position) rows and features
  the channels (tokens of a [N, T, C] sequence output, pixels of a [N, C, H, W] conv output; a
  plain [N, C] output has one position). `ActivationOptions.cka_rows` rows are used, `cka_rows /
  instances` random positions of every instance (fixed seed, the same positions on both sides);
  `cka_rows=None` uses every row, accumulated exactly in feature space (memory 3·C² float64 per
  module), except for modules wider than :data:`GRAM_MAX_CHANNELS`, which keep a
  :data:`FALLBACK_ROWS` row sample. `cka_n` says how many rows were used, `cka_sampled` whether
  they were a sample. Why a sample by default: every row costs about 6·rows·C² flops per module
  (three C x C products); on the bench's GPT-2 (8,192 token rows, C up to 2,048) the whole
  comparison then takes about 7x the two forward passes, against about 1.3x with 256 rows. The
  sample is stratified (every instance contributes); there, 1 - CKA of an int8 copy was within
  25% of the exact value with 256 rows and 7% with 1,024;
- `cka_instances`: linear CKA over instances, each represented by its output averaged over
  positions;
- `rel_change` (propagated only): counts of unchanged elements, changes from an exact zero, and
  under/overflow of the relative-change histogram.

Histograms (propagated mode): a block sample of each module's output pair (about
:data:`stats.HIST_SAMPLE` elements over the run, the same elements on both sides, taken from
every batch) is binned at the end: value histograms of base and other over a common range
[-R, R] (R = the largest finite |value| of the sample) and the histogram of relative change
|d|/|b| over :data:`stats.REL_EDGES`. Counts are weighted to estimate element counts, as for
weights (`hist_weight` = elements per sampled element).

A module called several times in one forward adds every call to its sums and per-instance
errors; CKA and histograms use its first call.

The **divergence matrix** holds the relative L2 error of every (module, instance) pair;
`top_layers` / `top_instances` rank it.

Modules are aligned by name; a pair whose output shapes differ is reported as a mismatch unless
the other model's structured-pruning kept indices (`<module>.weight` dim 0) map its output
channels back to the base's layout, where its removed channels are zeros (so they count as error
and sparsity, as removed weights do). Modules that only one model has are listed.

Before running, a one-instance probe measures the activation bytes per instance; if the sample
would not fit the memory budget the batch is shrunk, and if even batches of one do not fit, a
:class:`ActivationMemoryError` says how many instances would.

Wire (:meth:`ActivationComparison.wire`, kind "activations"): tensors `propagated` and
`isolated` [modules, instances] (the matrix), `value_hist_base` / `value_hist_other` [modules,
VALUE_BINS] and `rel_hist` [modules, REL_BINS] float32 (rows in the order of `meta.modules`, zero
where there is no propagated histogram); meta `value_bins`, `rel_edges_log10`, and per module
`value_range` (the value histograms span [-value_range, value_range]) and `hist_weight`.

On an accelerator every reduction stays on the device and a batch's results come to the host in
one transfer per dtype at the end of the batch (no synchronisation per module).
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

from ..ops.cast import inputs_as_module_dtype
from ..ops.registry import match_names
from . import kernels as K
from . import stats as S
from .cka import GramCka, RowCka, as_rows, channels_first, linear_cka, pool_positions, sample_rows
from .control import CompareError, Control

KIND = "activations"
#: position-level CKA with every row: exact feature-space sums up to this many channels
GRAM_MAX_CHANNELS = 4096
#: ... and a row sample of this many rows for wider modules
FALLBACK_ROWS = 4096
#: seed of the CKA position sample
CKA_SEED = 0


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
    #: rows (instance x position) for the position-level CKA; None: every row (see module doc)
    cka_rows: int | None = 256

    def check(self) -> None:
        if self.mode not in ("propagated", "isolated", "both"):
            raise CompareError(f"activation mode must be propagated, isolated or both; got '{self.mode}'")
        if self.isolated_scope not in ("leaves", "all"):
            raise CompareError(f"isolated_scope must be leaves or all; got '{self.isolated_scope}'")
        if self.instances < 1:
            raise CompareError(f"instances must be at least 1; got {self.instances}")
        if self.batch_size < 1:
            raise CompareError(f"batch_size must be at least 1; got {self.batch_size}")
        if self.cka_rows is not None and self.cka_rows < 2:
            raise CompareError(f"cka_rows must be at least 2 (or none for every row); got {self.cka_rows}")

    def key(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "mode": self.mode,
            "isolated_scope": self.isolated_scope,
            "modules": list(self.modules) if self.modules else None,
            "cka_rows": self.cka_rows if self.cka_rows is not None else "all",
        }

    def cka_plan(self, channels: int) -> int | None:
        """Positions per instance for a module of `channels` channels; None: every row, exactly."""
        if self.cka_rows is None and channels <= GRAM_MAX_CHANNELS:
            return None
        rows = self.cka_rows if self.cka_rows is not None else FALLBACK_ROWS
        return max(1, math.ceil(rows / self.instances))

    def hist_per_batch(self, batch_size: int) -> int:
        """Histogram sample elements per module and batch (about HIST_SAMPLE over the run)."""
        batches = max(1, math.ceil(self.instances / max(1, batch_size)))
        return max(8 * S.SAMPLE_BLOCK, S.HIST_SAMPLE // batches)


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

    hist: bool = False  # collect the histogram sample (propagated mode)
    st: S.PairStats = field(default_factory=S.PairStats)
    dd: list[np.ndarray] = field(default_factory=list)  # per-instance Σd², one entry per batch
    bb: list[np.ndarray] = field(default_factory=list)  # per-instance Σb², one entry per batch
    batch_ix: list[int] = field(default_factory=list)  # which batch each entry belongs to
    feats_base: list[torch.Tensor] = field(default_factory=list)  # pooled outputs (cka_instances)
    feats_other: list[torch.Tensor] = field(default_factory=list)
    cka: GramCka | RowCka | None = None  # position-level CKA
    cka_sampled: bool = False
    hist_base: list[torch.Tensor] = field(default_factory=list)  # histogram sample
    hist_other: list[torch.Tensor] = field(default_factory=list)
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
    value_range: float | None = None  # value histograms span [-value_range, value_range]
    hist_weight: float | None = None  # elements each histogram-sampled element stands for
    #: propagated histograms {"base", "other", "rel"} (wire tensors, not JSON)
    hists: dict[str, np.ndarray] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != "" and k != "hists"}


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
        """(kind, meta, tensors). Histogram rows follow `meta["modules"]`; rows of modules without
        propagated histograms are zero."""
        n = len(self.modules)
        vbase = np.zeros((n, S.VALUE_BINS), np.float32)
        vother = np.zeros((n, S.VALUE_BINS), np.float32)
        rel = np.zeros((n, S.REL_BINS), np.float32)
        for i, m in enumerate(self.modules):
            if m.hists is not None:
                vbase[i], vother[i], rel[i] = m.hists["base"], m.hists["other"], m.hists["rel"]
        meta = {
            "base": self.base,
            "other": self.other,
            "ids": self.ids,
            "modules": [m.to_json() for m in self.modules],
            "options": self.options,
            "value_bins": S.VALUE_BINS,
            "rel_edges_log10": S.REL_EDGES.tolist(),
        }
        return (
            KIND,
            meta,
            {
                "propagated": self.propagated.astype(np.float32),
                "isolated": self.isolated.astype(np.float32),
                "value_hist_base": vbase,
                "value_hist_other": vother,
                "rel_hist": rel,
            },
        )


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


def instances_to_compare(task: Any, requested: int) -> int:
    """How many instances a comparison asking for `requested` gets: no more than the task has
    (its `total_instances` under its own `max_instances`, where it says; a progress line said
    "96/512 instances" of a task of 200)."""
    have = [
        n
        for n in (getattr(task, "total_instances", None), getattr(task, "max_instances", None))
        if isinstance(n, int) and not isinstance(n, bool) and n > 0
    ]
    return min([requested, *have])


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
    per_instance_kept: int  # bytes kept per instance until the end (pooled features, matrix)
    batch_size: int
    instances: int
    budget: int
    fixed: int = 0  # bytes kept regardless of the instance count (CKA sums, histogram samples)

    @property
    def total(self) -> int:
        return (
            self.per_instance_transient * self.batch_size
            + self.per_instance_kept * self.instances
            + self.fixed
        )


def _sample_bytes(options: ActivationOptions, shapes: Sequence[tuple[int, int, int]], instances: int) -> int:
    """Bytes of the samples kept until the end for `instances` instances: histogram samples
    (propagated) and the CKA sums or rows, per module of (elements, channels, positions) per instance."""
    total = 0
    for numel, channels, positions in shapes:
        if options.mode != "isolated":
            total += (
                2 * 4 * min(numel * instances, S.HIST_SAMPLE + options.hist_per_batch(options.batch_size))
            )
        if options.cka_plan(channels) is None:
            total += GramCka.nbytes(channels, channels)
        else:
            rows = options.cka_rows if options.cka_rows is not None else FALLBACK_ROWS
            total += RowCka.nbytes(min(rows, positions * instances), channels, channels)
    return total


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
    shapes: list[tuple[int, int, int]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        t = _first_tensor(output)
        if t is not None:
            sizes["out"] += t.numel() * t.element_size()
            rows = as_rows(t, channels_first(type(module).__name__, t)) if t.dim() else t.reshape(1, 1, 1)
            sizes["feat"] += rows.shape[2] * 4
            sizes["mods"] += 1
            shapes.append((t.numel(), rows.shape[2], rows.shape[1]))
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

    def samples(n: int) -> int:
        return _sample_bytes(options, shapes, n) * n_others

    bs = min(options.batch_size, options.instances)
    est = MemoryEstimate(transient, kept, bs, options.instances, budget, samples(options.instances))
    while est.total > budget and est.batch_size > 1:
        est.batch_size = max(1, est.batch_size // 2)
    if est.total > budget:
        lo, hi = 0, options.instances  # the most instances that fit with batches of one
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if transient + kept * mid + samples(mid) <= budget:
                lo = mid
            else:
                hi = mid - 1
        if lo < 1:
            raise ActivationMemoryError(
                f"comparing activations needs about {_fmt_bytes(transient + kept + samples(1))} for a single "
                f"instance ({sizes['mods']} modules), more than the memory budget of {_fmt_bytes(budget)}; "
                "select fewer modules, lower cka_rows or raise the memory budget"
            )
        raise ActivationMemoryError(
            f"comparing activations of {options.instances} instances needs about {_fmt_bytes(est.total)}, more "
            f"than the memory budget of {_fmt_bytes(budget)}; lower the instance count to {lo} or fewer"
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
    """Hooks on the base model: keep outputs (and inputs for isolated runs) of one batch; also
    the batch's CKA position sample and the contributions waiting for the end of the batch."""

    def __init__(
        self, mods: dict[str, nn.Module], keep_inputs: bool, clone: bool, options: ActivationOptions
    ):
        self.mods = mods
        self.keep_inputs = keep_inputs
        self.clone = clone
        self.options = options
        self.outputs: dict[str, list[torch.Tensor | None]] = {}
        self.inputs: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
        self.batch = 0
        self.index = -1  # batch counter, so calls of a shared module add up per instance
        self.recent = _Recent()
        self.pending: list[tuple[_Acc, _Contribution, int]] = []  # (acc, contribution, call)
        self.hist_n = options.hist_per_batch(options.batch_size)
        self._positions: dict[tuple[int, int, str], torch.Tensor] = {}

    def reset(self, batch: int) -> None:
        self.outputs, self.inputs = {}, {}
        self.batch = batch
        self.index += 1
        self.recent.clear()
        self._positions = {}

    def positions(self, count: int, k: int, device: torch.device) -> torch.Tensor:
        """[batch, k] random positions out of `count` per instance, the same for every module
        of this batch with that many positions (and for both models)."""
        key = (count, k, str(device))
        idx = self._positions.get(key)
        if idx is None:
            g = torch.Generator().manual_seed(CKA_SEED * 1_000_003 + self.index * 7919 + count)
            idx = torch.rand(self.batch, count, generator=g).argsort(1)[:, :k].to(device)
            self._positions[key] = idx
        return idx

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
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(base, other) in the base's layout: a structured-pruned output gets zeros in its removed
    channels (as a removed weight counts as zero in the weight comparison), or None if it cannot
    be aligned."""
    if b.shape == o.shape:
        return b, o
    if not kept or 0 not in {int(k) for k in kept}:
        return None
    idx = torch.as_tensor(list(next(v for k, v in kept.items() if int(k) == 0)), device=o.device)
    channel_dim = 1 if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm2d)) else -1
    if b.dim() < 2 or b.dim() != o.dim() or not idx.numel() or b.shape[channel_dim] <= int(idx.max()):
        return None
    dim = channel_dim % b.dim()
    if o.shape[dim] != idx.numel() or [n for i, n in enumerate(o.shape) if i != dim] != [
        n for i, n in enumerate(b.shape) if i != dim
    ]:
        return None
    full = o.new_zeros(b.shape)
    full.index_copy_(dim, idx, o)
    return b, full


def _add_rows(acc: _Acc, dd: np.ndarray, bb: np.ndarray, batch_ix: int) -> None:
    if acc.batch_ix and acc.batch_ix[-1] == batch_ix:  # another call of the module, same batch
        acc.dd[-1] = acc.dd[-1] + dd
        acc.bb[-1] = acc.bb[-1] + bb
    else:
        acc.dd.append(dd)
        acc.bb.append(bb)
        acc.batch_ix.append(batch_ix)


@dataclass
class _Contribution:
    """What one (base, other) output pair adds to a module. `f` [rows, 5] float64 and `i` [rows,
    8] int64 are :func:`.kernels.pair_sums` accumulators per row (K.F_* / K.I_* columns): one row
    per instance, or one row for the whole pair when it has no batch dim. They, and the samples,
    may live on the accelerator until the end of the batch (see :func:`_flush`)."""

    numel: int
    f: Any
    i: Any
    per_instance: bool
    batch_ix: int
    pooled: tuple[Any, Any] | None = None  # [B, C] per side: instance features
    cka: tuple[Any, Any] | None = None  # [r, C] per side: sampled CKA rows
    hist: tuple[Any, Any] | None = None  # flat histogram sample per side
    cka_sampled: bool = False


_NO_POSITIONS = np.empty((0, 0), np.int64)
_NO_POSITIONS.flags.writeable = False


def _np32(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy view of a CPU tensor (a copy only when it must be)."""
    return t.detach().to(torch.float32).contiguous().numpy()


def _row_sums_torch(b: torch.Tensor, o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same accumulators computed on the accelerator (no host synchronisation)."""
    b, o = b.float(), o.float()
    fin_b, fin_o = torch.isfinite(b), torch.isfinite(o)
    keep = fin_b & fin_o
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    x, y = torch.where(keep, b, zero), torch.where(keep, o, zero)
    d = y - x
    f64 = torch.float64
    cols: list[torch.Tensor] = [zero] * 5
    cols[K.F_BB] = (x * x).sum(1, dtype=f64)
    cols[K.F_OO] = (y * y).sum(1, dtype=f64)
    cols[K.F_BO] = (x * y).sum(1, dtype=f64)
    cols[K.F_DD] = (d * d).sum(1, dtype=f64)
    cols[K.F_MAXABS] = (
        d.abs().amax(1).to(f64) if d.shape[1] else torch.zeros(d.shape[0], dtype=f64, device=d.device)
    )
    zb, zo = b == 0, o == 0
    nan_b, nan_o = torch.isnan(b).sum(1), torch.isnan(o).sum(1)
    ints: list[torch.Tensor] = [nan_b] * 8
    ints[K.I_FINITE] = keep.sum(1)
    ints[K.I_ZB] = zb.sum(1)
    ints[K.I_ZO] = zo.sum(1)
    ints[K.I_ZBOTH] = (zb & zo).sum(1)
    ints[K.I_NANB] = nan_b
    ints[K.I_NANO] = nan_o
    ints[K.I_INFB] = (~fin_b).sum(1) - nan_b
    ints[K.I_INFO] = (~fin_o).sum(1) - nan_o
    return torch.stack(cols, 1), torch.stack(ints, 1)


def _on_accelerator(t: torch.Tensor) -> bool:
    """Whether reductions stay on the tensor's device (torch) instead of the CPU kernel."""
    return t.device.type != "cpu"


def _contribution(
    b: torch.Tensor, o: torch.Tensor, batch: int, batch_ix: int, chan_first: bool,
    capture: _BaseCapture | None = None, hist: bool = False,
) -> _Contribution:  # fmt: skip
    """The sums of one output pair: per instance when it has the batch dim, else as one row. On
    the CPU one kernel call per pair (:func:`.kernels.row_pair_sums`); with `capture` (a module's
    first call) the same call pools the instance features and takes the CKA position sample and
    (with `hist`) the histogram sample, each instance's rows read while in cache."""
    per_instance = o.dim() > 0 and o.shape[0] == batch
    rows = batch if per_instance else 1
    c = _Contribution(o.numel(), None, None, per_instance, batch_ix)
    bf, of = b.reshape(rows, -1), o.reshape(rows, -1)
    if _on_accelerator(b):
        c.f, c.i = _row_sums_torch(bf, of)
        return c
    positions = channels = 0  # pooled only on a module's first call: later calls add no features
    if capture is not None and per_instance and o.dim() > 2 and b.is_contiguous() and o.is_contiguous():
        _, positions, channels = as_rows(o, chan_first).shape
    idx = _NO_POSITIONS
    k = capture.options.cka_plan(channels) if capture is not None and positions else None
    if capture is not None and k is not None and k < positions:
        idx = np.ascontiguousarray(capture.positions(positions, k, b.device).numpy())
    k = idx.shape[1]
    # the histogram sample when it is a sample (else taken whole by _take_samples)
    step, picked = S.sample_plan(c.numel, capture.hist_n) if capture is not None and hist else (0, 0)
    picked = picked if step else 0
    c.f, c.i = np.zeros((rows, 5)), np.zeros((rows, 8), np.int64)
    pb, po = np.empty((rows, channels), np.float32), np.empty((rows, channels), np.float32)
    cb, co = np.empty((rows * k, channels), np.float32), np.empty((rows * k, channels), np.float32)
    hb, ho = np.empty(picked, np.float32), np.empty(picked, np.float32)
    K.row_pair_sums(_np32(bf), _np32(of), c.f, c.i, positions, chan_first, pb, po, idx, cb, co, step, hb, ho)
    if positions:
        c.pooled = (torch.from_numpy(pb), torch.from_numpy(po))
    if k:
        c.cka, c.cka_sampled = (torch.from_numpy(cb), torch.from_numpy(co)), True
    if step:
        c.hist = (torch.from_numpy(hb), torch.from_numpy(ho))
    return c


def _take_samples(c: _Contribution, b: torch.Tensor, o: torch.Tensor, chan_first: bool,
                  capture: _BaseCapture, hist: bool) -> None:  # fmt: skip
    """Copies of what the first call of a module keeps that its sums' pass did not already take
    (on an accelerator, or for outputs the CPU pass does not pool): pooled features, the CKA
    position sample (unless every row goes into feature-space sums) and the histogram sample."""
    if hist and c.hist is None:
        sb, _ = S.sample_elements(b.detach(), capture.hist_n)
        so, _ = S.sample_elements(o.detach(), capture.hist_n)
        c.hist = (sb.to(torch.float32, copy=True), so.to(torch.float32, copy=True))
    if not c.per_instance:
        return
    if c.pooled is None:
        c.pooled = (pool_positions(b, chan_first), pool_positions(o, chan_first))
    if c.cka is not None:
        return
    rb, ro = as_rows(b, chan_first), as_rows(o, chan_first)
    k = capture.options.cka_plan(rb.shape[2])
    if k is None:
        return
    if k < rb.shape[1]:
        idx = capture.positions(rb.shape[1], k, b.device)
        c.cka = (sample_rows(b, chan_first, idx).float(), sample_rows(o, chan_first, idx).float())
        c.cka_sampled = True
        return
    c.cka = (
        rb.reshape(-1, rb.shape[2]).to(torch.float32, copy=True),
        ro.reshape(-1, ro.shape[2]).to(torch.float32, copy=True),
    )


def _to_host(cs: Sequence[_Contribution]) -> None:
    """Bring the accelerator-resident parts of contributions to the host: one transfer per dtype."""
    slots: list[tuple[_Contribution, str, int | None, torch.Tensor]] = []
    for c in cs:
        for name in ("f", "i", "pooled", "cka", "hist"):
            v = getattr(c, name)
            parts = [(None, v)] if not isinstance(v, tuple) else list(enumerate(v))
            for j, t in parts:
                if isinstance(t, torch.Tensor) and t.device.type != "cpu":
                    slots.append((c, name, j, t))
    by_dtype: dict[torch.dtype, list[int]] = {}
    for k, (_, _, _, t) in enumerate(slots):
        by_dtype.setdefault(t.dtype, []).append(k)
    hosted: dict[int, torch.Tensor] = {}
    for ks in by_dtype.values():
        flat = torch.cat([slots[k][3].reshape(-1) for k in ks]).cpu()
        at = 0
        for k in ks:
            t = slots[k][3]
            hosted[k] = flat[at : at + t.numel()].view(t.shape)
            at += t.numel()
    for k, (c, name, j, _) in enumerate(slots):
        if j is None:
            setattr(c, name, hosted[k])
        else:
            v = list(getattr(c, name))
            v[j] = hosted[k]
            setattr(c, name, tuple(v))
    for c in cs:
        c.f = c.f.numpy() if isinstance(c.f, torch.Tensor) else c.f
        c.i = c.i.numpy() if isinstance(c.i, torch.Tensor) else c.i


def _pair_stats(c: _Contribution) -> S.PairStats:
    """The contribution's rows added up (max |d|: their maximum)."""
    f, i = c.f, c.i
    st = S.PairStats(n=c.numel)
    facc = f.sum(0)
    facc[K.F_MAXABS] = f[:, K.F_MAXABS].max() if len(f) else 0.0
    st.set_sums(facc, i.sum(0))
    return st


def _flush(capture: _BaseCapture) -> None:
    """Apply the batch's contributions to their modules (after one host transfer)."""
    unique = list({id(c): c for _, c, _ in capture.pending}.values())
    _to_host(unique)
    stats = {id(c): _pair_stats(c) for c in unique}
    for acc, c, call in capture.pending:
        acc.st.add_(stats[id(c)])  # each accumulator owns its PairStats
        if c.per_instance:
            _add_rows(acc, c.f[:, K.F_DD], c.f[:, K.F_BB], c.batch_ix)
        if call:
            continue
        if c.pooled is not None:
            acc.feats_base.append(c.pooled[0])
            acc.feats_other.append(c.pooled[1])
        if c.cka is not None and isinstance(acc.cka, RowCka):
            acc.cka.add(*c.cka)
            acc.cka_sampled = acc.cka_sampled or c.cka_sampled
        if acc.hist and c.hist is not None:
            acc.hist_base.append(c.hist[0])
            acc.hist_other.append(c.hist[1])
    capture.pending = []


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


_SUMMARY_KEYS = (
    "n", "rel_l2", "sqnr_db", "identical", "cosine", "max_abs_diff", "sparsity_base", "sparsity_other",
    "zero_only_base", "zero_only_other", "zero_both", "nan_base", "nan_other", "inf_base", "inf_other",
)  # fmt: skip


def _summary(acc: _Acc, hist: bool, memo: dict[tuple[int, ...], Any]) -> dict[str, Any]:
    """The module's metrics. `memo` caches CKA by the identity of the rows it is computed from:
    modules that share an output tensor (Dropout in eval, a block returning its last layer's
    output) share the same row tensors."""
    m = acc.st.metrics()
    out = {k: m[k] for k in _SUMMARY_KEYS}
    if hist:
        out["rel_change"] = m["rel_change"]
    out["cka"] = None
    if isinstance(acc.cka, RowCka):
        key = (0, *map(id, acc.cka.xs), *map(id, acc.cka.ys))
        out["cka"] = memo[key] if key in memo else memo.setdefault(key, acc.cka.result())
    elif acc.cka is not None:
        out["cka"] = acc.cka.result()
    out["cka_n"] = acc.cka.n if acc.cka is not None else 0
    out["cka_sampled"] = acc.cka_sampled
    out["cka_instances"] = None
    if acc.feats_base and len(acc.feats_base) == len(acc.feats_other):
        key = (1, *map(id, acc.feats_base), *map(id, acc.feats_other))
        if key not in memo:
            memo[key] = linear_cka(torch.cat(acc.feats_base), torch.cat(acc.feats_other), fast=True)
        out["cka_instances"] = memo[key]
    return out


def _histograms(
    acc: _Acc, memo: dict[tuple[int, ...], Any]
) -> tuple[dict[str, np.ndarray], float, float] | None:
    """Bin the module's histogram sample: ({base, other, rel}, range R, weight); adds the
    relative-change side counts to `acc.st`. `memo`: modules sharing an output share the sample."""
    if not acc.hist_base:
        return None
    key = (2, *map(id, acc.hist_base), *map(id, acc.hist_other))
    if key not in memo:
        sb, so = torch.cat(acc.hist_base), torch.cat(acc.hist_other)
        memo[key] = S.pair_stats(sb, so, hist_sample=None, values=True) if sb.numel() else None
    hs: S.PairStats | None = memo[key]
    if hs is None or hs.values is None:
        return None
    weight = acc.st.n / sum(t.numel() for t in acc.hist_base)
    acc.st.rel_hist = hs.rel_hist * weight
    acc.st.rel_unchanged = hs.rel_unchanged * weight
    acc.st.rel_from_zero = hs.rel_from_zero * weight
    acc.st.rel_under = hs.rel_under * weight
    acc.st.rel_over = hs.rel_over * weight
    hists = {"base": hs.values["base"] * weight, "other": hs.values["other"] * weight, "rel": acc.st.rel_hist}
    return hists, float(hs.values["range"]), weight


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
        n = instances_to_compare(task, opt.instances)
        ctl.step(0.0, f"comparing activations: {n} instances, batches of {est.batch_size}")
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
    run_opt = copy.copy(opt)
    run_opt.batch_size = batch_size
    capture = _BaseCapture(base_mods, keep_inputs="isolated" in modes, clone=inplace, options=run_opt)
    accs: dict[str, dict[str, dict[str, _Acc]]] = {
        oid: {mode: {n: _Acc(hist=mode == "propagated") for n in base_mods if n in om}
              for mode in ("propagated", "isolated")}
        for oid, om in other_mods.items()
    }  # fmt: skip
    base_shape: dict[str, list[int]] = {}
    ids: list[str] = []
    n_done = 0
    n_all = instances_to_compare(task, opt.instances)  # what "n/N instances" counts to

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
        _flush(capture)
        n_done += bsz
        n_all = max(n_all, n_done)
        ctl.step(n_done / n_all, f"activations: {n_done}/{n_all} instances")

    return {
        oid: _finish(base_id, oid, ids, base_mods, other_mods[oid], accs[oid], base_shape, modes, opt)
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
    pair = _align_output(b, o, module, kept)
    if pair is None:
        acc.problem = f"output shapes differ: base {list(b.shape)} vs other {list(o.shape)}"
        return
    if acc.shape_other is None:
        acc.shape_other = list(o.shape[1:]) if o.dim() and o.shape[0] == bsz else list(o.shape)
    chan_first = channels_first(type(module).__name__, o)
    produced = o  # the memo key: the tensors the modules returned (the expanded one is new)
    aligned, o = pair
    c = capture.recent.get(b, produced)
    if c is None:
        c = _contribution(
            aligned, o, bsz, capture.index, chan_first, capture if call == 0 else None, acc.hist
        )
        capture.recent.put(b, produced, c)
    if call == 0:
        _take_samples(c, aligned, o, chan_first, capture, acc.hist)
        if c.per_instance and acc.cka is None:
            rows = as_rows(o, chan_first)
            acc.cka = GramCka() if capture.options.cka_plan(rows.shape[2]) is None else RowCka()
        if isinstance(acc.cka, GramCka) and c.per_instance:
            # every row, summed now: keeping them for the end of the batch would hold the
            # other model's activations
            rb, ro = as_rows(aligned, chan_first), as_rows(o, chan_first)
            acc.cka.add(rb.reshape(-1, rb.shape[2]), ro.reshape(-1, ro.shape[2]))
    capture.pending.append((acc, c, call))


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
                # a cast (fp16/bf16) model's module takes the base's float32 input in its own dtype
                args, kwargs = inputs_as_module_dtype(mod, args, kwargs)
                with torch.inference_mode():
                    out = mod(*args, **kwargs)
            except (RuntimeError, ValueError, TypeError) as e:
                # e.g. a pruned module cannot take the base's (wider) input: say so, keep going
                accs[name].problem = f"cannot run on the base model's input: {str(e).splitlines()[0]}"
                break
            _compare_call(
                name, mod, capture, accs[name], bsz, kept.get(f"{name}.weight"), call, _first_tensor(out)
            )


def _finish(
    base_id: str,
    oid: str,
    ids: list[str],
    base_mods: Mapping[str, nn.Module],
    other_mods: Mapping[str, nn.Module],
    accs: dict[str, dict[str, _Acc]],
    base_shape: Mapping[str, list[int]],
    modes: set[str],
    opt: ActivationOptions,
) -> ActivationComparison:
    results: list[ModuleResult] = []
    rows: dict[str, list[np.ndarray]] = {"propagated": [], "isolated": []}
    n = len(ids)
    memo: dict[tuple[int, ...], Any] = {}  # results shared by modules with the same output
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
                    h = _histograms(acc, memo) if acc.hist else None
                    if h is not None:
                        r.hists, r.value_range, r.hist_weight = h
                    setattr(r, mode, _summary(acc, h is not None, memo))
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
    options = {**opt.key(), "cka_seed": CKA_SEED}
    return ActivationComparison(base_id, oid, ids, results, mat["propagated"], mat["isolated"], options)


def _instance_rel(acc: _Acc, n: int) -> np.ndarray:
    """Per-instance relative L2 (NaN for all when the module lacked a batch dim somewhere)."""
    if not acc.dd:
        return np.full(n, np.nan)
    dd = np.concatenate(acc.dd)
    bb = np.concatenate(acc.bb)
    if dd.size != n:
        return np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.sqrt(dd / bb)
    rel[(bb == 0) & (dd == 0)] = 0.0
    return rel
