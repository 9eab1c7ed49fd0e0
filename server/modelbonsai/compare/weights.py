"""Weight comparison: every parameter tensor of a base against one or more other models.

Per tensor: the metrics of :mod:`.stats` (relative L2, SQNR, cosine, max |diff|, sparsity and
zero-mask overlap, NaN/Inf counts, relative-change histogram) and value histograms of both sides.

**Roll-up rule.** Tensors are grouped by module path (the name without its last dotted part)
and every prefix of that path is a node (``""`` is the model, then e.g. ``layers`` →
``layers.3`` → ``layers.3.attn`` → ``layers.3.attn.q``). A node's statistics are the *sums* of
its tensors' sufficient statistics, so its relative L2 / SQNR / cosine are those of all its
parameters concatenated into one vector (a parameter-count-weighted, exact roll-up, dominated
by large tensors as the error energy is), max |diff| is the maximum, sparsity is zeros over
elements, and histograms add. Mismatched or missing tensors are listed and counted per node but
contribute nothing to its statistics.

**Alignment.** A tensor that structured pruning shrank is brought back to the base's layout
through the kept indices the op recorded (`kept_indices[name] = {dim: [base indices]}`), with
zeros where channels were removed, and compared there: like unstructured pruning, a removed
channel counts as error and as sparsity ("zero only in other"), so a layer that lost half its
channels never reads as unchanged. `kept_metrics` adds the metrics of the kept channels alone
(how much the surviving weights moved, e.g. by fine-tuning); the result names the removed
channels per dim. A pair whose shapes still differ, whose 2-D
layout is transposed, or that matches far better transposed (square matrices), is reported with
`status: "mismatch"` and a message instead of a score.

**Factorised layers.** The `lowrank` op replaces a layer's `X.weight` by two factors,
`X.first.weight` (rank x in) and `X.second.weight` (out x rank), and moves `X.bias` to
`X.second.bias`. The base weight is compared with the product of the factors (in the base's
layout: transformers' Conv1D stores [in, out]; a 1x1 conv keeps its trailing 1x1), the bias with
the moved bias, and the result says `factorised: rank`; the factors are not listed again as
tensors only in the other model.

**Identical.** A node's `identical` is true only when every tensor below it was compared and is
equal: one not compared (`not_compared`: missing, mismatched) makes it false. Integer tensors
(BatchNorm's `num_batches_tracked`, position ids) are compared for equality: equal, they count as
compared with no float elements; different, they are a mismatch.

Tensors stream from the sources one name at a time; each base tensor is read once whatever the
number of other models. Where both sources offer range readers (see :mod:`.sources`), a
same-shaped pair without kept indices is streamed chunk by chunk and never held whole (a
float32 file or tensor against a packed artifact tensor: one fused dequantize-and-reduce
kernel call, see :func:`.stats.stream_pair_stats`).
"""

from __future__ import annotations

import math
import os
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ops.registry import match_names
from . import stats as S
from .control import CompareError, Control
from .sources import TensorSource

if TYPE_CHECKING:  # imported where a whole tensor is needed: streamed pairs run without torch
    import torch

KIND = "weights"


@dataclass
class TensorResult:
    name: str
    status: str  # "ok" | "mismatch" | "missing_in_other" | "extra_in_other"
    shape_base: list[int] | None
    shape_other: list[int] | None
    message: str = ""
    removed: dict[int, int] = field(default_factory=dict)  # dim -> channels removed (structured)
    stats: S.PairStats | None = None
    values: dict[str, Any] | None = None  # value histograms (see stats.pair_stats(values=True))
    kept: dict[int, list[int]] = field(default_factory=dict)  # dim -> kept base indices (structured)
    kept_stats: S.PairStats | None = None  # structured: the kept channels alone (see module doc)
    groups: dict[int, int] = field(default_factory=dict)  # dim -> elements per removed unit (head size)
    factorised: int | None = None  # lowrank: the rank of the factors compared as their product

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "shape_base": self.shape_base,
            "shape_other": self.shape_other,
        }
        if self.message:
            d["message"] = self.message
        if self.factorised is not None:
            d["factorised"] = self.factorised
        if self.removed:
            d["removed"] = {str(k): v for k, v in self.removed.items()}
            # which channels / heads went, not only how many (the Layers panel lists them)
            d["kept_indices"] = {str(k): v for k, v in self.kept.items()}
            d["removed_indices"] = {str(k): sorted(set(range((self.shape_base or [])[k])) - set(v))
                                    for k, v in self.kept.items()}  # fmt: skip
            if self.groups:  # e.g. attention heads: this many consecutive indices per head
                d["group_size"] = {str(k): v for k, v in self.groups.items()}
        if self.stats is not None:
            d["metrics"] = self.stats.metrics()
        if self.kept_stats is not None:
            d["kept_metrics"] = self.kept_stats.metrics()
        if self.values is not None:
            d["value_range"] = self.values["range"]
            d["hist_weight"] = self.values["weight"]  # elements per binned element (sampling)
        return d


@dataclass
class TreeNode:
    path: str
    parent: str | None
    stats: S.PairStats = field(default_factory=S.PairStats)
    params: int = 0  # elements of compared tensors below
    tensors: int = 0
    not_compared: int = 0  # mismatched / missing tensors below

    def to_json(self) -> dict[str, Any]:
        metrics = self.stats.metrics()
        # the sums cover only what was compared: a tensor that was not is no evidence of equality
        metrics["identical"] = bool(metrics["identical"]) and self.not_compared == 0
        return {
            "path": self.path,
            "parent": self.parent,
            "params": self.params,
            "tensors": self.tensors,
            "not_compared": self.not_compared,
            "metrics": metrics,
        }


@dataclass
class WeightComparison:
    base: str
    other: str
    tensors: list[TensorResult]
    tree: list[TreeNode]
    options: dict[str, Any]

    def tensor(self, name: str) -> TensorResult:
        return next(t for t in self.tensors if t.name == name)

    def node(self, path: str) -> TreeNode:
        return next(n for n in self.tree if n.path == path)

    def wire(self) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
        """(kind, meta, tensors) for :func:`modelbonsai.wire.encode_result` / `paginate`.

        Histogram rows follow the order of `meta["tensors"]` / `meta["tree"]`; rows of tensors
        that were not compared are zero."""
        vb = S.VALUE_BINS
        rel = np.zeros((len(self.tensors), S.REL_BINS))
        vbase = np.zeros((len(self.tensors), vb))
        vother = np.zeros((len(self.tensors), vb))
        for i, t in enumerate(self.tensors):
            if t.stats is not None:
                rel[i] = t.stats.rel_hist
            if t.values is not None:
                vbase[i] = t.values["base"]
                vother[i] = t.values["other"]
        meta = {
            "base": self.base,
            "other": self.other,
            "options": self.options,
            "rel_edges_log10": S.REL_EDGES.tolist(),
            "value_bins": vb,
            "tensors": [t.to_json() for t in self.tensors],
            "tree": [n.to_json() for n in self.tree],
        }
        arrays = {
            "rel_hist": rel.astype(np.float32),
            "value_hist_base": vbase.astype(np.float32),
            "value_hist_other": vother.astype(np.float32),
            "tree_rel_hist": np.stack([n.stats.rel_hist for n in self.tree]).astype(np.float32)
            if self.tree
            else np.zeros((0, S.REL_BINS), np.float32),
        }
        return KIND, meta, arrays


def _module_path(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _ancestors(path: str) -> list[str]:
    """'a.b.c' -> ['', 'a', 'a.b', 'a.b.c']."""
    out = [""]
    if path:
        parts = path.split(".")
        out += [".".join(parts[: i + 1]) for i in range(len(parts))]
    return out


def _build_tree(results: list[TensorResult]) -> list[TreeNode]:
    nodes: dict[str, TreeNode] = {}
    for r in results:
        chain = _ancestors(_module_path(r.name))
        for i, p in enumerate(chain):
            if p not in nodes:
                nodes[p] = TreeNode(path=p, parent=chain[i - 1] if i else None)
            node = nodes[p]
            if r.stats is not None:
                node.stats.add_(r.stats)  # each node owns its PairStats (default_factory)
                node.params += r.stats.n
                node.tensors += 1
            else:
                node.not_compared += 1
    return list(nodes.values())


def _align(
    name: str, base: torch.Tensor, other_shape: tuple[int, ...], kept: Mapping[int, Sequence[int]] | None
) -> tuple[torch.Tensor | None, dict[int, int], str]:
    """The base tensor brought to the other's layout, the channels removed, or a mismatch message."""
    import torch

    removed: dict[int, int] = {}
    if kept:
        for dim, idx in sorted(kept.items()):
            dim = int(dim)
            if dim >= base.dim():
                return None, {}, f"kept indices for dim {dim}, but the base tensor has {base.dim()} dims"
            index = torch.as_tensor(list(idx), dtype=torch.long)
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= base.shape[dim]):
                return None, {}, f"kept indices on dim {dim} fall outside the base size {base.shape[dim]}"
            removed[dim] = base.shape[dim] - index.numel()
            base = base.index_select(dim, index)
    bs, os_ = tuple(base.shape), tuple(other_shape)
    if bs == os_:
        return base, removed, ""
    if len(bs) == 2 and bs[::-1] == os_:
        return None, removed, f"layout mismatch: base {list(bs)} vs other {list(os_)} (transposed)"
    what = (
        "same number of elements, different shape" if base.numel() == int(np.prod(os_)) else "shape mismatch"
    )
    hint = "" if kept else " (no kept indices recorded for it)"
    return None, removed, f"{what}: base {list(bs)} vs other {list(os_)}{hint}"


def _transpose_suspect(shape: Sequence[int], st: S.PairStats) -> bool:
    """Only a square matrix that matches badly needs the (whole-tensor) transposed check, and only
    when it could pass it: the transposed relative L2 is at least |1 - ||o|| / ||b|||
    (Cauchy-Schwarz: |Σ o·bᵀ| <= ||o|| ||b||), so a pair whose norms differ that much (a matrix
    pruned to a few percent) cannot match far better transposed, and is not read again."""
    rel = st.rel_l2
    if not (len(shape) == 2 and shape[0] == shape[1] and shape[0] >= 2 and rel is not None and rel >= 0.5):
        return False
    if st.nonfinite or st.sum_b2 <= 0:
        return True  # the bound needs the same finite pairs on both sides: check the pair
    bound = abs(1.0 - math.sqrt(st.sum_o2 / st.sum_b2))
    return not bound > 0.25 * rel * (1 + 1e-6) + 1e-12  # a margin for the sums' rounding


def _looks_transposed(b: torch.Tensor, o: torch.Tensor, st: S.PairStats) -> bool:
    """Square matrices cannot be told apart by shape: flag one that fits far better transposed."""
    if not _transpose_suspect(tuple(b.shape), st):
        return False
    t_rel = S.pair_stats(b.T.contiguous(), o, hist_sample=0).rel_l2
    rel = st.rel_l2
    return t_rel is not None and rel is not None and t_rel < 0.25 * rel


def _looks_transposed_streamed(read_b: S.RangeReader, read_o: S.RangeReader, shape: Sequence[int],
                               st: S.PairStats) -> bool:  # fmt: skip
    """:func:`_looks_transposed` of a streamed pair: the base read whole (one square matrix) and
    transposed in numpy, the other streamed again (no torch, no whole decode of a stored tensor);
    the same statistics, so the same verdict."""
    n = int(np.prod(shape))
    b = np.ascontiguousarray(
        np.asarray(read_b(0, n), dtype=np.float32).reshape(shape[0], shape[1]).T
    )  # one copy
    t_rel = S.stream_pair_stats(S.ArrayReader(b.reshape(-1)), read_o, n, hist_sample=0).rel_l2
    rel = st.rel_l2
    return t_rel is not None and rel is not None and t_rel < 0.25 * rel


def torch_threads() -> int:
    """The threads torch may use (torch.get_num_threads), without importing torch for it: when
    it is not imported, its default (OMP_NUM_THREADS, else the CPUs this process may run on)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class _Side:
    """One side of a tensor pair: a chunk reader when the source offers one, else the whole
    tensor, read at most once and only when needed."""

    def __init__(self, src: TensorSource, name: str):
        self.src, self.name = src, name
        self._whole: torch.Tensor | None = None
        fn = getattr(src, "reader", None)
        self.stream: S.RangeReader | None = fn(name) if callable(fn) else None

    def whole(self) -> torch.Tensor:
        if self._whole is None:
            self._whole = self.src.get(self.name)
        return self._whole

    def range_reader(self) -> S.RangeReader | None:
        """The stream, or a view of the whole tensor; None when it is not a float tensor."""
        if self.stream is not None:
            return self.stream
        t = self.whole()
        return S.ArrayReader(S._flat32_np(t)) if t.is_floating_point() else None


def _not_float(
    name: str, b: torch.Tensor, o: torch.Tensor, removed: dict[int, int] | None = None
) -> TensorResult:
    """An integer (or bool) pair: compared for equality, with no float statistics to add."""
    import torch

    if not removed and b.shape == o.shape and b.dtype == o.dtype and torch.equal(b, o):
        return TensorResult(
            name, "ok", list(b.shape), list(o.shape), f"{b.dtype} tensor, equal", stats=S.PairStats()
        )
    return TensorResult(
        name,
        "mismatch",
        list(b.shape),
        list(o.shape),
        f"not a float tensor ({b.dtype} vs {o.dtype})",
        removed or {},
    )


class _Renamed:
    """One tensor of a source under the base's name (a factorised layer's moved bias, or the
    product of its factors), so it is compared like any other pair."""

    def __init__(self, name: str, shape: Sequence[int], get: Any):
        self._name, self._shape, self._get = name, tuple(int(d) for d in shape), get

    def names(self) -> list[str]:
        return [self._name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shape

    def get(self, name: str) -> torch.Tensor:
        return self._get()  # type: ignore[no-any-return]


def factorised_pairs(base_names: Sequence[str], other_names: set[str]) -> dict[str, tuple[str, ...]]:
    """Base tensor -> the other model's tensors it became under `lowrank`: `X.weight` -> its
    factors (`X.first.weight`, `X.second.weight`), `X.bias` -> (`X.second.bias`,)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in base_names:
        if name in other_names:
            continue
        mod, _, leaf = name.rpartition(".")
        prefix = f"{mod}." if mod else ""
        first, second = f"{prefix}first.weight", f"{prefix}second.weight"
        if first in other_names and second in other_names:
            if leaf == "weight":
                out[name] = (first, second)
            elif leaf == "bias" and f"{prefix}second.bias" in other_names:
                out[name] = (f"{prefix}second.bias",)
    return out


def _compare_factorised(
    name: str,
    b: torch.Tensor,
    src: TensorSource,
    oid: str,
    parts: tuple[str, ...],
    kept: Mapping[str, Mapping[int, Sequence[int]]],
    hist_sample: int | None,
) -> TensorResult:
    """The base tensor against what `lowrank` made of it (see the module doc)."""
    if len(parts) == 1:  # the bias, moved to `second`
        moved = parts[0]
        res = _compare_whole(
            name,
            b,
            _Renamed(name, src.shape(moved), lambda: src.get(moved)),
            oid,
            kept.get(moved),
            hist_sample,
        )
        res.message = res.message or f"moved to {moved} by the factorisation"
        return res
    first_name, second_name = parts
    first, second = src.get(first_name), src.get(second_name)
    rank = int(first.shape[0])
    product = second.reshape(second.shape[0], rank).float() @ first.reshape(rank, -1).float()  # [out, in]
    k: dict[int, Sequence[int]] = {}
    if 0 in kept.get(second_name, {}):
        k[0] = kept[second_name][0]
    if 1 in kept.get(first_name, {}):
        k[1] = kept[first_name][1]
    out_f, in_f = product.shape
    if b.dim() == 2:

        def sizes(k: Mapping[int, Sequence[int]]) -> tuple[int, int]:  # the base's, once aligned
            return (len(k[0]) if 0 in k else int(b.shape[0]), len(k[1]) if 1 in k else int(b.shape[1]))

        turned_k = {1 - d: v for d, v in k.items()}
        straight, turned = sizes(k) == (out_f, in_f), sizes(turned_k) == (in_f, out_f)
        if turned and (not straight or (not k and _better_transposed(b, product))):
            # transformers' Conv1D keeps [in, out]: the product in that layout, its kept dims swapped
            product, k = product.t().contiguous(), turned_k
    elif b.dim() == 4:  # a 1x1 conv: [out, in, 1, 1]
        product = product.reshape(*product.shape, *b.shape[2:])
    res = _compare_whole(name, b, _Renamed(name, product.shape, lambda: product), oid, k or None, hist_sample)
    if k and res.removed:
        res.kept = {int(d): [int(i) for i in k[d]] for d in k if int(d) in res.removed}
    res.factorised = rank
    res.message = res.message or f"factorised at rank {rank}: compared as {second_name} x {first_name}"
    return res


def _better_transposed(b: torch.Tensor, product: torch.Tensor) -> bool:
    """A square factorised weight: whether the base is the product transposed (Conv1D layout)."""
    straight = S.pair_stats(b, product, hist_sample=0).rel_l2
    turned = S.pair_stats(b, product.t().contiguous(), hist_sample=0).rel_l2
    return straight is not None and turned is not None and turned < straight


def _check_listed(oid: str, name: str, got: Sequence[int], listed: Sequence[int]) -> None:
    """A source whose tensor does not have the shape its listing gave is broken: say so, plainly."""
    if tuple(got) != tuple(listed):
        raise CompareError(
            f"model '{oid}': tensor '{name}' has shape {list(got)}, its listing said {list(listed)}"
        )


def _compare_streamed(name: str, b: _Side, o: _Side, oid: str, hist_sample: int | None) -> TensorResult:
    """Same shape, no alignment: stream both sides chunk by chunk (whole tensors only for a
    non-float pair or a square matrix that may be transposed)."""
    shape = list(b.src.shape(name))
    read_b, read_o = b.range_reader(), o.range_reader()
    if read_b is None or read_o is None:
        return _not_float(name, b.whole(), o.whole())
    if o.stream is None:
        _check_listed(oid, name, o.whole().shape, shape)
    st = S.stream_pair_stats(read_b, read_o, int(np.prod(shape)), hist_sample=hist_sample, values=True)
    if _transpose_suspect(shape, st) and _looks_transposed_streamed(read_b, read_o, shape, st):
        return TensorResult(
            name, "mismatch", shape, shape, "layout mismatch: the other matches the base transposed"
        )
    return TensorResult(name, "ok", shape, shape, "", {}, st, st.values)


def _compare_whole(
    name: str,
    b: torch.Tensor,
    src: TensorSource,
    oid: str,
    kept: Mapping[int, Sequence[int]] | None,
    hist_sample: int | None,
) -> TensorResult:
    """The pair needs the base aligned (kept indices) or reported as a shape mismatch."""
    shape_b = list(b.shape)
    o_shape = tuple(src.shape(name))
    aligned, removed, problem = _align(name, b, o_shape, kept)
    if aligned is None:
        return TensorResult(name, "mismatch", shape_b, list(o_shape), problem, removed)
    o = src.get(name)
    _check_listed(oid, name, o.shape, o_shape)
    if not (aligned.is_floating_point() and o.is_floating_point()):
        return _not_float(name, b, o, removed)
    if kept and removed:
        # compared in the base's layout (removed channels are zeros); the kept part on its own too
        kept_st = S.pair_stats(aligned, o, hist_sample=0)
        st = S.pair_stats(b, _expand(o, b.shape, kept), hist_sample=hist_sample, values=True)
        return TensorResult(
            name, "ok", shape_b, list(o_shape), "", removed, st, st.values, kept_stats=kept_st
        )
    st = S.pair_stats(aligned, o, hist_sample=hist_sample, values=True)
    if not kept and _looks_transposed(aligned, o, st):
        return TensorResult(
            name, "mismatch", shape_b, list(o_shape), "layout mismatch: the other matches the base transposed"
        )
    return TensorResult(name, "ok", shape_b, list(o_shape), "", removed, st, st.values)


def _expand(o: torch.Tensor, shape: Sequence[int], kept: Mapping[int, Sequence[int]]) -> torch.Tensor:
    """A structured-pruned tensor in the base's layout: its slices at the kept indices, zeros
    elsewhere (one dim at a time, so several shrunk dims compose)."""
    import torch

    t = o
    for dim, idx in sorted((int(k), v) for k, v in kept.items()):
        size = list(t.shape)
        size[dim] = int(shape[dim])
        full = t.new_zeros(size)
        full.index_copy_(dim, torch.as_tensor(list(idx), dtype=torch.long), t)
        t = full
    return t


def compare_weights(
    base: TensorSource,
    others: Mapping[str, TensorSource],
    *,
    base_id: str = "base",
    kept_indices: Mapping[str, Mapping[str, Mapping[int, Sequence[int]]]] | None = None,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    hist_sample: int | None = S.HIST_SAMPLE,
    control: Control | None = None,
) -> dict[str, WeightComparison]:
    """Compare `base` with every source in `others` (id -> source), tensor by tensor.

    `kept_indices[other_id]` is that model's CompressedModel.kept_indices (may be absent).
    `include`/`exclude` are fnmatch globs over parameter names (default: every tensor)."""
    ctl = control or Control()
    if not others:
        raise CompareError("nothing to compare the base with: give at least one other model")
    kept_indices = kept_indices or {}
    names = base.names()
    if include:
        names = match_names(names, include)
    if exclude:
        dropped = set(match_names(names, exclude))
        names = [n for n in names if n not in dropped]
    other_names = {oid: set(src.names()) for oid, src in others.items()}
    factorised = {oid: factorised_pairs(names, other_names[oid]) for oid in others}
    results: dict[str, list[TensorResult]] = {oid: [] for oid in others}
    sizes = [int(np.prod(base.shape(n))) for n in names]
    total = max(1, sum(sizes))

    def one(name: str) -> dict[str, TensorResult]:
        """Every other model's result for tensor `name` (the base tensor is read once)."""
        out: dict[str, TensorResult] = {}
        base_side = _Side(base, name)
        shape_b = list(base.shape(name))
        for oid, src in others.items():
            if name not in other_names[oid]:
                parts = factorised[oid].get(name)
                if parts is not None:
                    out[oid] = _compare_factorised(
                        name, base_side.whole(), src, oid, parts, kept_indices.get(oid, {}), hist_sample
                    )
                else:
                    out[oid] = TensorResult(name, "missing_in_other", shape_b, None, "not in the other model")
                continue
            kept = kept_indices.get(oid, {}).get(name)
            if not kept and tuple(src.shape(name)) == tuple(shape_b):
                res = _compare_streamed(name, base_side, _Side(src, name), oid, hist_sample)
            else:
                res = _compare_whole(name, base_side.whole(), src, oid, kept, hist_sample)
                if kept and res.removed:
                    res.kept = {int(d): [int(i) for i in kept[d]] for d in kept if int(d) in res.removed}
            out[oid] = res
        return out

    # Tensors are independent and the kernels release the GIL: as many tensors in flight as torch
    # may use threads (torch.set_num_threads), results collected in order, so the output, the
    # progress and the point where a cancel stops are those of a sequential run. Queued ahead:
    # up to twice the largest tensor per worker, in elements (often the whole model), so the
    # others keep busy while the one collected next (an embedding) runs; a cancel drops what no
    # worker has started, so it wastes at most about that much work.
    workers = max(1, min(4, torch_threads(), len(names)))
    ahead = 2 * workers * max(sizes, default=1)
    todo = deque(zip(names, sizes, strict=True))
    pending: deque[Future[dict[str, TensorResult]]] = deque()
    queued = done = 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bonsai-weights")
    try:
        for name, size in zip(names, sizes, strict=True):
            while todo and (not pending or queued + todo[0][1] <= ahead):
                nxt, nsize = todo.popleft()
                pending.append(pool.submit(one, nxt))
                queued += nsize
            ctl.step(done / total, f"comparing weights: {name}")  # raises when cancelled
            got = pending.popleft().result()
            queued -= size
            for oid in others:
                results[oid].append(got[oid])
            done += size
    finally:
        # a cancel (or an error) waits for the tensors being compared, not for the queued ones
        pool.shutdown(wait=True, cancel_futures=True)
    base_names = set(base.names())
    for oid in others:
        # a factorised layer's factors and moved bias were compared under the base's names
        consumed = {part for parts in factorised[oid].values() for part in parts}
        extra = sorted(other_names[oid] - base_names - consumed)
        for name in extra:
            results[oid].append(
                TensorResult(
                    name, "extra_in_other", None, list(others[oid].shape(name)), "not in the base model"
                )
            )
    ctl.step(1.0, "weights compared")
    options = {"include": include, "exclude": exclude, "hist_sample": hist_sample}
    return {
        oid: WeightComparison(base_id, oid, res, _build_tree(res), options) for oid, res in results.items()
    }
