"""Streaming comparison statistics of two equally shaped tensors, with an exact roll-up.

Every metric is derived from additive *sufficient statistics* (sums over elements), so merging
the statistics of several tensors gives exactly the metric of their concatenation: the roll-up
of relative L2 over a layer is the relative L2 of the layer's parameters as one vector, not an
average of ratios. With b the base, o the other and d = o - b, over pairs where both are finite:

- relative L2 error  = sqrt(Σd² / Σb²)
- SQNR (dB)          = 10·log10(Σb² / Σd²)
- cosine similarity  = Σbo / sqrt(Σb² · Σo²)
- max |d|            (max of maxima)
- sparsity           = exact zeros / elements, for each side; zero-mask overlap counts
  (zero in base only, in other only, in both)
- histogram of relative change |d|/|b| over fixed log10 bins (:data:`REL_EDGES`), plus counts
  of unchanged elements, of elements changed from an exact zero, and of under/overflow.

Histograms (relative change, and the value histograms of `values=True`) are computed over every element of
tensors up to :data:`HIST_SAMPLE` elements, and over a fixed sample of larger ones: blocks of 64
consecutive elements (whole cache lines, whole N:M groups) taken every p-th block, p prime so
the blocks do not alias with row lengths; each sampled element then counts `n / sample size`
times, so histogram counts are estimates of element counts that still add up across tensors.
Everything else is exact. Relative change is binned by comparing the float64 ratio with the
float64 bin edges (a table on the ratio's top bits picks the bin; no logarithm per element).
Binning costs more per element than all the sums together, which is why big tensors are
sampled; pass `hist_sample=None` for exact histograms.

NaN and ±Inf are counted per side and excluded from the sums (the pair is skipped), never
replaced by zeros; a result with any of them carries the counts so a view can flag it.

One fused pass (:func:`.kernels.pair_sums`, numba) reads each pair once and produces every exact
statistic: the four sums (float32 partial sums per short block, accumulated in float64), max |d|,
the zero counts and the NaN/Inf counts (a block holding NaN/Inf, or overflowing float32, is
redone by an exact float64 loop inside the kernel). :func:`stream_pair_stats` takes the two sides
as range readers, so a source that can read (or dequantize) a flat element range never
materialises the whole tensor; readers that are views of whole flat arrays (:class:`ArrayReader`:
in-memory tensors, float32 safetensors mmaps) go to the kernel in one call, with no Python chunk
loop at all, and so does such a side against a packed quantized artifact tensor (a reader with a
`packed` spec): :func:`.kernels.pair_sums_packed` dequantizes it block by block in L1 and copies
the histogram sample as it goes. Float32 partial sums agree with float64 references to ~1e-7
relative; the chunked and fused paths give bit-identical results when the chunk is a multiple
of `kernels.BLOCK` (CHUNK is: the blocks then fall on the same elements).

Paired tests on per-instance outcomes live here too: :func:`mcnemar` (two models' correctness
on the same instances; the Behaviors panel shows it beside the agreement interval).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from ..artifacts.ranged import FlatArray, dense_spec
from . import kernels as K
from .control import check_keywords

if TYPE_CHECKING:
    import torch  # imported where torch tensors come in: streamed comparisons run without it
    from typing_extensions import Unpack  # typing's from Python 3.11 on

#: Elements per chunk read from a range reader: a dequantizing reader's float32 output (512 KB)
#: is still in L2 when the kernel reads it; the kernel itself has no per-chunk buffers.
CHUNK = 1 << 17
#: Relative-change histogram: log10(|d|/|b|) in [-8, 2] in 40 equal bins (a quarter decade each).
REL_LO, REL_HI, REL_BINS = -8.0, 2.0, 40
REL_EDGES = np.linspace(REL_LO, REL_HI, REL_BINS + 1)
#: the same edges as ratios |d|/|b| (float64): the kernel bins the ratio against them directly
REL_EDGES_RATIO = np.power(10.0, REL_EDGES)
_REL_TABLE, _REL_KEY_LO = K.bucket_table(REL_EDGES_RATIO)
#: Value histograms: this many equal bins over [-R, R], R = largest finite |value| of either side.
VALUE_BINS = 64
#: Tensors with more elements than this get histograms from a block sample (see module doc).
HIST_SAMPLE = 1 << 15


def _zeros_hist() -> np.ndarray:
    return np.zeros(REL_BINS, dtype=np.float64)


def _is_prime(k: int) -> bool:
    return k >= 2 and all(k % p for p in range(2, math.isqrt(k) + 1))


SAMPLE_BLOCK = K.SAMPLE_BLOCK  # the kernels take samples of these blocks too


@functools.lru_cache(maxsize=256)  # asked for the same few block counts for every batch
def _next_prime(k: int) -> int:
    k = max(2, k)
    while not _is_prime(k):
        k += 1
    return k


def _sample_step(blocks: int, sample: int) -> int:
    """Every how many blocks of SAMPLE_BLOCK elements the sample takes one (a prime, see the
    module doc): the one rule of :func:`sample_elements` and the streaming :class:`_Sampler`."""
    return _next_prime(math.ceil(blocks / max(1, sample // SAMPLE_BLOCK)))


def sample_plan(n: int, sample: int | None = HIST_SAMPLE) -> tuple[int, int]:
    """(step, elements) of the block sample of n elements: SAMPLE_BLOCK blocks 0, step, 2·step,
    ... (whole blocks only); (0, n) when the sample is the whole tensor."""
    if sample is None or n <= sample:
        return 0, n
    blocks = n // SAMPLE_BLOCK
    step = _sample_step(blocks, sample)
    return step, len(range(0, blocks, step)) * SAMPLE_BLOCK


def sample_elements(x: torch.Tensor, sample: int | None = HIST_SAMPLE) -> tuple[torch.Tensor, float]:
    """(contiguous sample of the flat tensor, elements each sampled one stands for)."""
    x = x.reshape(-1)
    n = x.numel()
    step, picked = sample_plan(n, sample)
    if not step:
        return x, 1.0
    return x[: n // SAMPLE_BLOCK * SAMPLE_BLOCK].view(-1, SAMPLE_BLOCK)[::step].reshape(-1), n / picked


@dataclass
class PairStats:
    """Additive statistics of (base, other) pairs; `merge` gives the exact roll-up."""

    n: int = 0  # elements compared (all pairs)
    finite: int = 0  # pairs where both values are finite (the sums cover these)
    sum_b2: float = 0.0
    sum_o2: float = 0.0
    sum_bo: float = 0.0
    sum_d2: float = 0.0
    max_abs_diff: float = 0.0
    zeros_base: int = 0
    zeros_other: int = 0
    zeros_both: int = 0
    nan_base: int = 0
    nan_other: int = 0
    inf_base: int = 0
    inf_other: int = 0
    rel_hist: np.ndarray = field(default_factory=_zeros_hist)
    # relative-change histogram side counts (estimated like the histogram when sampled)
    rel_unchanged: float = 0.0  # d == 0
    rel_from_zero: float = 0.0  # b == 0 and d != 0 (relative change undefined)
    rel_under: float = 0.0  # 0 < |d|/|b| < 10**REL_LO
    rel_over: float = 0.0  # |d|/|b| >= 10**REL_HI
    #: value histograms of this tensor pair (not rolled up: their bins differ per tensor)
    values: dict[str, Any] | None = None

    _ADDITIVE = (
        "n", "finite", "sum_b2", "sum_o2", "sum_bo", "sum_d2", "zeros_base", "zeros_other",
        "zeros_both", "nan_base", "nan_other", "inf_base", "inf_other", "rel_unchanged",
        "rel_from_zero", "rel_under", "rel_over",
    )  # fmt: skip

    def merge(self, other: PairStats) -> PairStats:
        """A new PairStats: the roll-up of self and other (neither changes)."""
        out = PairStats(rel_hist=self.rel_hist.copy())
        for name in self._ADDITIVE:
            setattr(out, name, getattr(self, name))
        out.max_abs_diff = self.max_abs_diff
        return out.add_(other)

    def add_(self, other: PairStats) -> PairStats:
        """Roll `other` into self in place (the tree builder adds every tensor into each of its
        ancestors: no new object and array per addition)."""
        d, o = self.__dict__, other.__dict__
        for name in self._ADDITIVE:
            d[name] += o[name]
        if other.max_abs_diff > self.max_abs_diff:
            self.max_abs_diff = other.max_abs_diff
        self.rel_hist += other.rel_hist
        return self

    def set_sums(self, facc: Any, iacc: Any) -> None:
        """Take the exact statistics from :func:`.kernels.pair_sums` accumulators (K.F_* / K.I_*
        positions; any sequences of numbers)."""
        self.sum_b2, self.sum_o2, self.sum_bo, self.sum_d2 = (
            float(facc[k]) for k in (K.F_BB, K.F_OO, K.F_BO, K.F_DD)
        )
        self.max_abs_diff = float(facc[K.F_MAXABS])
        (self.finite, self.zeros_base, self.zeros_other, self.zeros_both, self.nan_base, self.nan_other,
         self.inf_base, self.inf_other) = (int(iacc[k]) for k in (K.I_FINITE, K.I_ZB, K.I_ZO, K.I_ZBOTH, K.I_NANB,
                                                                  K.I_NANO, K.I_INFB, K.I_INFO))  # fmt: skip

    # -- derived metrics (None where undefined, e.g. cosine of a zero vector) --------------------
    @property
    def rel_l2(self) -> float | None:
        if self.sum_b2 > 0:
            return math.sqrt(self.sum_d2 / self.sum_b2)
        return 0.0 if self.sum_d2 == 0 else None

    @property
    def sqnr_db(self) -> float | None:
        if self.sum_d2 == 0:
            return math.inf if self.sum_b2 > 0 else None
        if self.sum_b2 == 0:
            return None
        return 10.0 * math.log10(self.sum_b2 / self.sum_d2)

    @property
    def cosine(self) -> float | None:
        den = math.sqrt(self.sum_b2 * self.sum_o2)
        return self.sum_bo / den if den > 0 else None

    @property
    def nonfinite(self) -> int:
        return self.nan_base + self.nan_other + self.inf_base + self.inf_other

    def metrics(self) -> dict[str, Any]:
        """The summary a view shows (JSON-safe: inf SQNR is reported as None with `identical`)."""
        n = max(self.n, 1)
        sqnr = self.sqnr_db
        return {
            "n": self.n,
            "rel_l2": self.rel_l2,
            "sqnr_db": None if sqnr is None or math.isinf(sqnr) else sqnr,
            "identical": self.sum_d2 == 0 and self.nonfinite == 0,
            "cosine": self.cosine,
            "max_abs_diff": self.max_abs_diff,
            "sparsity_base": self.zeros_base / n,
            "sparsity_other": self.zeros_other / n,
            "zero_only_base": self.zeros_base - self.zeros_both,
            "zero_only_other": self.zeros_other - self.zeros_both,
            "zero_both": self.zeros_both,
            "nan_base": self.nan_base,
            "nan_other": self.nan_other,
            "inf_base": self.inf_base,
            "inf_other": self.inf_other,
            "rel_change": {
                "unchanged": self.rel_unchanged,
                "from_zero": self.rel_from_zero,
                "under": self.rel_under,
                "over": self.rel_over,
            },
        }


def _add_rel(st: PairStats, hist: np.ndarray, side: np.ndarray, weight: float) -> None:
    st.rel_hist += hist * weight
    unchanged, from_zero, under, over = (float(v) * weight for v in side)  # plain floats for the wire
    st.rel_unchanged += unchanged
    st.rel_from_zero += from_zero
    st.rel_under += under
    st.rel_over += over


#: reads the flat float32 elements [start, stop) of one tensor; the array may be a scratch
#: buffer that the next call overwrites
RangeReader = Callable[[int, int], np.ndarray]


#: A :data:`RangeReader` over a flat float32 array already in memory (or mapped): the statistics
#: then take the whole array in one kernel call instead of a chunk loop (they look for its
#: `array`). The artifact reader's class, so its float32 views need no rewrapping.
ArrayReader = FlatArray


class StatsOptions(TypedDict, total=False):
    """How :func:`pair_stats` and :func:`stream_pair_stats` read and sample, as keywords (each
    optional; the defaults are in :func:`_options`)."""

    #: elements per step (default :data:`CHUNK`): bounds the float32 scratch memory
    chunk: int
    #: elements sampled for the histograms (default :data:`HIST_SAMPLE`; None: every element;
    #: 0: no histograms, e.g. a second look at a transposed layout)
    hist_sample: int | None
    #: also the value histograms, `PairStats.values` (default False)
    values: bool


def _options(opts: StatsOptions) -> tuple[int, int | None, bool]:
    """(chunk, hist_sample, values) with the defaults filled in (an unknown keyword: TypeError)."""
    check_keywords(opts, StatsOptions, "statistics option(s)")
    return opts.get("chunk", CHUNK), opts.get("hist_sample", HIST_SAMPLE), opts.get("values", False)


def pair_stats(base: torch.Tensor, other: torch.Tensor, **opts: Unpack[StatsOptions]) -> PairStats:
    """Statistics of two equally shaped tensors (any float dtype; computed in float32 chunks,
    accumulated in float64). `values=True` also fills `.values`: histograms of the finite values
    of both sides over the same VALUE_BINS bins on [-R, R], R the largest finite |value| of either
    side's sample, counts estimated as element counts (see :func:`_sample_histograms`)."""
    if base.shape != other.shape:
        raise ValueError(f"shapes differ: {tuple(base.shape)} vs {tuple(other.shape)}")
    if base.device.type != "cpu" or other.device.type != "cpu":
        # accelerator tensors (activations): reduce where they are instead of copying to the host
        return _pair_stats_torch(base, other, **opts)
    b, o = _flat32_np(base), _flat32_np(other)
    return stream_pair_stats(ArrayReader(b), ArrayReader(o), b.size, **opts)


def _flat32_np(t: torch.Tensor) -> np.ndarray:
    """A flat float32 numpy view of a CPU tensor (no copy when it is float32 and contiguous)."""
    return _flat32(t).contiguous().numpy()


def _f32(x: np.ndarray) -> np.ndarray:
    """The kernel's input type: flat C-contiguous aligned float32 (a no-op for every built-in
    reader; a file written with a float32 tensor at an odd offset gives an unaligned view)."""
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        return np.ascontiguousarray(x, dtype=np.float32)
    if not x.flags.aligned:
        return x.copy()
    return x


class _Sampler:
    """Collects the histogram sample of :func:`sample_elements` from chunks as they stream by
    (chunks start at multiples of SAMPLE_BLOCK, so no sampled block straddles two chunks)."""

    def __init__(self, n: int, sample: int | None):
        self.whole = sample is None or n <= sample
        if self.whole:
            self.step, self.end, size = 1, n, n
        else:
            assert sample is not None
            blocks = n // SAMPLE_BLOCK
            self.step = _sample_step(blocks, sample)
            self.end = blocks * SAMPLE_BLOCK  # the ragged tail is never sampled
            size = len(range(0, blocks, self.step)) * SAMPLE_BLOCK
        self.weight = n / size if size else 1.0
        self.base = np.empty(size, np.float32)
        self.other = np.empty(size, np.float32)

    def add(self, start: int, b: np.ndarray, o: np.ndarray) -> None:
        if self.whole:
            self.base[start : start + b.size] = b
            self.other[start : start + o.size] = o
            return
        stop = min(start + b.size, self.end)
        if stop <= start:
            return
        first_block = start // SAMPLE_BLOCK
        j0 = -(-first_block // self.step)  # first sampled block at or after this chunk
        skip = j0 * self.step - first_block
        at = j0 * SAMPLE_BLOCK
        span = stop - start
        K.take_blocks(b[:span], SAMPLE_BLOCK, skip, self.step, self.base, at)
        K.take_blocks(o[:span], SAMPLE_BLOCK, skip, self.step, self.other, at)


def stream_pair_stats(
    read_base: RangeReader, read_other: RangeReader, n: int, **opts: Unpack[StatsOptions]
) -> PairStats:
    """:func:`pair_stats` of two flat tensors of `n` elements given as range readers, read one
    chunk at a time (memory: what the readers hold plus the histogram sample). Two
    :class:`ArrayReader` sides are reduced in one kernel call, and so is an ArrayReader side
    against a packed quantized one (a reader with a `packed` spec: dequantized in the kernel)."""
    chunk, hist_sample, values = _options(opts)
    chunk = max(SAMPLE_BLOCK, -(-chunk // SAMPLE_BLOCK) * SAMPLE_BLOCK)
    st = PairStats(n=n)
    sampler = _Sampler(n, hist_sample) if hist_sample != 0 else None
    facc = np.zeros(5, np.float64)
    iacc = np.zeros(8, np.int64)
    whole_b, whole_o = getattr(read_base, "array", None), getattr(read_other, "array", None)
    if (
        isinstance(whole_b, np.ndarray)
        and isinstance(whole_o, np.ndarray)
        and whole_b.size == whole_o.size == n
    ):
        chunk = max(chunk, n)  # one call; the GIL is released inside (nogil)
    fused = _fused_packed(whole_b, whole_o, read_base, read_other, n, facc, iacc, sampler)
    if not fused and not (isinstance(whole_b, np.ndarray) and isinstance(whole_o, np.ndarray)):
        fused = _fused_specs(whole_b, whole_o, read_base, read_other, n, facc, iacc, sampler)
    if not fused:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            m = stop - start
            b, o = _f32(read_base(start, stop)), _f32(read_other(start, stop))
            if b.shape != (m,) or o.shape != (m,):
                raise ValueError(f"a range reader gave {b.shape} / {o.shape} elements for [{start}, {stop})")
            K.pair_sums(b, o, facc, iacc)
            if sampler is not None:
                sampler.add(start, b, o)
    st.set_sums(facc, iacc)
    if sampler is None:  # no histogram wanted (e.g. a second look at a transposed layout)
        return st
    _sample_histograms(st, sampler.base, sampler.other, sampler.weight, values)
    return st


def _fused_packed(
    whole_b: Any, whole_o: Any, read_base: RangeReader, read_other: RangeReader, n: int,
    facc: np.ndarray, iacc: np.ndarray, sampler: _Sampler | None,
) -> bool:  # fmt: skip
    """One float32 array side against one packed quantized side: one fused kernel call that
    dequantizes block by block (no buffer of dequantized values, no chunk loop). False when the
    pair is not of that kind."""
    spec_b, spec_o = getattr(read_base, "packed", None), getattr(read_other, "packed", None)
    if isinstance(whole_b, np.ndarray) and whole_b.size == n and spec_o is not None:
        x, spec, packed_is_other = whole_b, spec_o, True
    elif isinstance(whole_o, np.ndarray) and whole_o.size == n and spec_b is not None:
        x, spec, packed_is_other = whole_o, spec_b, False
    else:
        return False
    if sampler is None:
        step, end, sx, sp = 0, 0, _EMPTY, _EMPTY
    else:
        step, end = sampler.step, sampler.end
        sx, sp = (sampler.base, sampler.other) if packed_is_other else (sampler.other, sampler.base)
    K.pair_sums_packed(_f32(x), spec.packed, spec.bits, spec.group_len, spec.scales, spec.zeros, packed_is_other,
                       facc, iacc, step, end, sx, sp)  # fmt: skip
    return True


_EMPTY = np.empty(0, np.float32)


def _fused_specs(
    whole_b: Any, whole_o: Any, read_base: RangeReader, read_other: RangeReader, n: int,
    facc: np.ndarray, iacc: np.ndarray, sampler: _Sampler | None,
) -> bool:  # fmt: skip
    """Two sides that are each a whole float32 array or a stored tensor a kernel can decode (a
    reader with a `spec`: bitmask, CSR, packed, packed-bitmask): one kernel call that decodes
    block by block in L1 (no chunk loop, no scratch of decoded values). False otherwise."""

    def spec_of(whole: Any, reader: RangeReader) -> tuple[Any, ...] | None:
        if isinstance(whole, np.ndarray) and whole.size == n:
            return dense_spec(_f32(whole))
        spec = getattr(reader, "spec", None)
        # the spec decodes float32 exactly; a reader that rounds to float16/bfloat16 keeps its own path
        if spec is None or getattr(reader, "dtype", "float32") != "float32":
            return None
        return spec  # type: ignore[no-any-return]

    sb, so = spec_of(whole_b, read_base), spec_of(whole_o, read_other)
    if sb is None or so is None:
        return False
    if sampler is None:
        step, end, xb, xo = 0, 0, _EMPTY, _EMPTY
    else:
        step, end, xb, xo = sampler.step, sampler.end, sampler.base, sampler.other
    K.pair_sums_specs(sb, so, n, facc, iacc, step, end, xb, xo)
    return True


def _sample_histograms(st: PairStats, sb: np.ndarray, so: np.ndarray, weight: float, values: bool) -> None:
    """Value histograms (with `values`) and the relative-change
    histogram of a sample, in one kernel call (it runs once per tensor)."""
    vb, vo = np.zeros(VALUE_BINS), np.zeros(VALUE_BINS)
    rel, side = np.zeros(REL_BINS), np.zeros(4)  # side: unchanged, from zero, under, over
    r = K.sample_hists(
        _f32(sb), _f32(so), values, vb, vo, REL_EDGES_RATIO, _REL_TABLE, _REL_KEY_LO, rel, side
    )
    if values:
        st.values = {
            "range": r,
            "bins": VALUE_BINS,
            "weight": weight,
            "base": vb * weight,
            "other": vo * weight,
        }
    _add_rel(st, rel, side, weight)


def _pair_stats_torch(base: torch.Tensor, other: torch.Tensor, **opts: Unpack[StatsOptions]) -> PairStats:
    """:func:`pair_stats` computed by torch where the tensors live (accelerators)."""
    import torch

    chunk, hist_sample, values = _options(opts)
    b_all = _flat32(base)
    o_all = _flat32(other)
    n = b_all.numel()
    st = PairStats(n=n)
    dbuf = torch.empty(min(chunk, max(1, n)), dtype=torch.float32, device=b_all.device)
    acc = torch.zeros(4, dtype=torch.float64, device=b_all.device)  # Σb², Σo², Σbo, Σd²
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        m = stop - start
        b, o = b_all[start:stop], o_all[start:stop]
        d = torch.sub(o, b, out=dbuf[:m])
        g = torch.stack((torch.dot(b, b), torch.dot(o, o), torch.dot(b, o), torch.dot(d, d)))
        if bool(torch.isfinite(g).all()):
            acc += g
            st.finite += m
            zb = m - int(torch.count_nonzero(b))
            zo = m - int(torch.count_nonzero(o))
            st.zeros_base += zb
            st.zeros_other += zo
            if zb and zo:  # a pair is zero on both sides iff |b| + |o| == 0 (no underflow)
                st.zeros_both += m - int(torch.count_nonzero(torch.add(b.abs(), o.abs())))
        else:
            # Slow path only for chunks holding NaN/Inf (or float32 overflow): count, then drop.
            for side, x in (("base", b), ("other", o)):
                nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
                setattr(st, f"nan_{side}", getattr(st, f"nan_{side}") + nan)
                setattr(st, f"inf_{side}", getattr(st, f"inf_{side}") + inf)
            zbm, zom = b == 0, o == 0
            st.zeros_base += int(zbm.sum())
            st.zeros_other += int(zom.sum())
            st.zeros_both += int((zbm & zom).sum())
            keep = torch.isfinite(b) & torch.isfinite(o)
            fb, fo = b[keep].double(), o[keep].double()
            fd = fo - fb
            acc += torch.stack((fb @ fb, fo @ fo, fb @ fo, fd @ fd))
            st.finite += fb.numel()
            if not fb.numel():
                continue
            d = fd.float()
        lo, hi = torch.aminmax(d)
        st.max_abs_diff = max(st.max_abs_diff, -float(lo), float(hi))
    st.sum_b2, st.sum_o2, st.sum_bo, st.sum_d2 = (float(v) for v in acc.cpu())

    if hist_sample == 0:  # no histogram wanted
        return st
    sb, weight = sample_elements(b_all, hist_sample)
    so, _ = sample_elements(o_all, hist_sample)
    _sample_histograms(st, _flat32_np(sb.cpu()), _flat32_np(so.cpu()), weight, values)
    return st


def _flat32(t: torch.Tensor) -> torch.Tensor:
    """A flat float32 view (no copy when it already is float32 and contiguous)."""
    import torch

    t = t.detach().reshape(-1)
    return t if t.dtype == torch.float32 else t.float()


# -- paired tests on per-instance outcomes ------------------------------------------------------

#: McNemar's test is exact (binomial) below this many discordant pairs, chi-square above: the
#: usual rule (b + c < 25), where the chi-square approximation starts to hold.
MCNEMAR_EXACT_BELOW = 25
MCNEMAR_EXACT = "exact binomial"
MCNEMAR_CHI2 = "chi-square with continuity correction"


def mcnemar(base_only: int, other_only: int) -> dict[str, Any]:
    """McNemar's paired test of two models' correctness on the same instances.

    Only the discordant pairs carry evidence: `base_only` instances the base gets right and the
    other wrong, `other_only` the reverse. Under the null (equal accuracy) each discordant pair
    falls either way with probability 1/2. Below :data:`MCNEMAR_EXACT_BELOW` discordant pairs the
    two-sided p is exact: min(1, 2·P(X ≤ min(b, c))), X ~ Binomial(b + c, 1/2) (statistic None);
    otherwise the statistic is (|b − c| − 1)² / (b + c) (Yates' continuity correction, never
    past zero) and p its chi-square (1 degree of freedom) tail. No discordant pair: p = 1.
    Returns {"test", "statistic", "p", "base_only", "other_only"}."""
    b, c = int(base_only), int(other_only)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n < MCNEMAR_EXACT_BELOW:
        # exact integer tail, one division: no rounding before the last step
        tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
        p = min(1.0, 2 * tail / 2**n)
        return {"test": MCNEMAR_EXACT, "statistic": None, "p": p, "base_only": b, "other_only": c}
    stat = max(0, abs(b - c) - 1) ** 2 / n
    # chi-square with 1 dof: P(χ² > s) = P(|Z| > √s) = erfc(√(s/2))
    p = math.erfc(math.sqrt(stat / 2))
    return {"test": MCNEMAR_CHI2, "statistic": stat, "p": p, "base_only": b, "other_only": c}
