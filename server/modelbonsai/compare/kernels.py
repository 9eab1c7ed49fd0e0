# mypy: disable-error-code="call-arg"
# (numba intrinsics take the typing context first, but jitted code calls them without it)
"""Fused single-pass kernels (numba) for the weight comparison's sufficient statistics.

:func:`pair_sums` reads a float32 pair (base, other) once and adds into two accumulators:

- ``facc`` float64[5]: Σb², Σo², Σbo, Σd² (d = o - b) over pairs where both sides are finite,
  and max |d| (of the float32 difference);
- ``iacc`` int64[8]: finite pairs, zeros of b, zeros of o, zeros of both, NaN of b, NaN of o,
  ±Inf of b, ±Inf of o.

The work goes block by block (:data:`BLOCK` elements). A branch-free loop, which the compiler
vectorises, computes the block's four sums in float32 (each vector lane adds a few dozen terms),
its zero counts and max |d|; the block sums then go into the float64 accumulators. A block whose
float32 sums are not finite (NaN or ±Inf on either side: NaN propagates and squares cannot
cancel; or float32 overflow) or are so small that terms may have underflowed is redone by an
exact per-element loop (float64 sums) that counts NaN/Inf per side and leaves those pairs out.
So the fast loop needs no per-element finiteness test and memory is read once.

Fast-math: only ``reassoc`` and ``contract`` (reordering lets the sums vectorise; fused
multiply-add). No ``nnan``/``ninf``: the finiteness test above must stay a real test. max |d| is
an integer max over the bit patterns of |d| (non-negative IEEE floats order like their bits),
because a float max reduction only vectorises under ``nnan``.

Compilation: every kernel has an explicit signature, so it is compiled (or loaded from numba's
on-disk cache: ~0.06 s; a cold compile takes ~10 s on the 2-core dev machine) at import instead
of on the first comparison; :func:`warm` imports this
early (the language server's worker can call it at start-up). ``cache=True`` writes the cache
beside this file when that folder is writable, else numba falls back to the user's cache folder
(~/.cache/numba; ``NUMBA_CACHE_DIR`` overrides both), and with neither writable
:func:`~modelbonsai.artifacts.kernels.ensure_numba_cache` picks a per-user temporary folder, so
a read-only install still imports and caches.
"""

from __future__ import annotations

import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..artifacts import kernels as AK
from ..artifacts.kernels import cache_depends_on, ensure_numba_cache

ensure_numba_cache(__file__)  # before the first cache=True definition below
cache_depends_on(__file__, AK.__file__)  # the decode kernels are compiled into these

#: elements per block: float32 partial sums over at most this many elements (each vector lane
#: then adds a few dozen terms) go into float64; two blocks (8 KB) stay in L1 for a redo
BLOCK = 1024
#: elements ahead of the block being reduced whose cache lines are prefetched (0: none). None:
#: on the 2-core EPYC dev machine a hint 1, 4, 16 or 64 blocks ahead made a DRAM-sized pair_sums
#: 2x slower (0.65-0.79 vs 0.32-0.36 ns per element, numpy's two sums 0.34): the hardware
#: prefetchers follow the two streams better than the hints, which only add traffic. The hook
#: stays for a machine where they help (numba freezes the value at compile time).
PREFETCH = 0
#: elements a stored side decodes per call (whole blocks): a decode call costs ~60 ns besides its
#: elements (unpacking the spec, making slices), as much as dequantizing a block of int8 codes;
#: the sums still go block by block, so they stay those of the chunked path, bit for bit. Its
#: scratch (16 KB of float32 per side) stays in L1/L2 between the decode and the sums.
DECODE = 4 * BLOCK
#: indices into the accumulators
F_BB, F_OO, F_BO, F_DD, F_MAXABS = range(5)
I_FINITE, I_ZB, I_ZO, I_ZBOTH, I_NANB, I_NANO, I_INFB, I_INFO = range(8)

_FAST = {"reassoc", "contract"}  # keeps NaN/Inf semantics (no nnan/ninf/nsz)
#: float32 block sums below this (2**-100) may hold underflowed terms: such blocks are redone
_TINY = np.float32(2.0**-100)

_t0 = time.perf_counter()


# -- tiny LLVM helpers: numba widens int32 arithmetic to int64, which halves the vector width of
# -- the block loop; these keep the per-block counters 32-bit (a block has < 2**31 elements)
@intrinsic
def _count(typingctx, c, flag):  # type: ignore[no-untyped-def]
    """c + flag as int32."""
    sig = types.int32(types.int32, types.boolean)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.add(args[0], builder.zext(args[1], ir.IntType(32)))

    return sig, codegen


@intrinsic
def _and(typingctx, a, b):  # type: ignore[no-untyped-def]
    sig = types.boolean(types.boolean, types.boolean)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.and_(args[0], args[1])

    return sig, codegen


@intrinsic
def _max_abs_bits(typingctx, m, d):  # type: ignore[no-untyped-def]
    """max(m, bits of |d|) as int32: non-negative floats order like their bit patterns, and an
    integer max reduction vectorises where a float max needs `nnan`."""
    sig = types.int32(types.int32, types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        bits = builder.and_(builder.bitcast(args[1], i32), ir.Constant(i32, 0x7FFFFFFF))
        return builder.select(builder.icmp_signed(">", bits, args[0]), bits, args[0])

    return sig, codegen


@intrinsic
def _prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """Hint the cache line holding arr[idx] into cache (llvm.prefetch: read, high locality)."""
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True)  # typed (and cached) with its callers
def _prefetch_range(x, start, stop):  # type: ignore[no-untyped-def]
    """Prefetch x[start:stop] (clipped), one hint per 64-byte line."""
    stop = min(stop, x.size)
    step = max(1, 64 // x.itemsize)
    for i in range(start, stop, step):
        _prefetch(x, i)


@intrinsic
def _float_of_bits(typingctx, m):  # type: ignore[no-untyped-def]
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_F32 = types.Array(types.float32, 1, "C")
_F32_RO = types.Array(types.float32, 1, "C", readonly=True)  # read-only mmaps of safetensors files
_ACC = (types.Array(types.float64, 1, "C"), types.Array(types.int64, 1, "C"))
# Inputs are typed read-only (mmaps of safetensors files are): writable arrays convert to that
# type at the call, so each kernel is compiled once, not once per mix of flags.
_PAIR_SIGS = [types.void(_F32_RO, _F32_RO, *_ACC)]


@numba.njit(cache=True, nogil=True, inline="always")  # typed (and cached) with its callers
def _add_block(facc, iacc, bb, oo, bo, dd, finite, zb, zo, zboth):  # type: ignore[no-untyped-def]
    """Add one block's sums and counts (the fast float32 or the exact float64 ones) into the
    accumulators."""
    facc[F_BB] += bb
    facc[F_OO] += oo
    facc[F_BO] += bo
    facc[F_DD] += dd
    iacc[I_FINITE] += finite
    iacc[I_ZB] += zb
    iacc[I_ZO] += zo
    iacc[I_ZBOTH] += zboth


@numba.njit(cache=True, nogil=True, fastmath=_FAST)  # typed (and cached) with its caller
def _exact_block(b, o, facc, iacc):  # type: ignore[no-untyped-def]
    """Exact per-element pass (float64 sums) for a block the fast loop cannot vouch for: counts
    NaN/Inf per side and sums only pairs where both sides are finite."""
    bb = oo = bo = dd = 0.0
    mx = facc[F_MAXABS]
    finite = zb = zo = zboth = nanb = nano = infb = info = 0
    for i in range(b.size):
        x = b[i]
        y = o[i]
        xz = x == 0.0
        yz = y == 0.0
        zb += xz
        zo += yz
        zboth += xz and yz
        fx = np.isfinite(x)
        fy = np.isfinite(y)
        if not fx:
            if np.isnan(x):
                nanb += 1
            else:
                infb += 1
        if not fy:
            if np.isnan(y):
                nano += 1
            else:
                info += 1
        if fx and fy:
            xd = np.float64(x)
            yd = np.float64(y)
            d = yd - xd
            bb += xd * xd
            oo += yd * yd
            bo += xd * yd
            dd += d * d
            finite += 1
            ad = np.float64(abs(y - x))  # max |d| of the float32 difference, as the fast loop
            if ad > mx:
                mx = ad
    _add_block(facc, iacc, bb, oo, bo, dd, finite, zb, zo, zboth)
    facc[F_MAXABS] = mx
    iacc[I_NANB] += nanb
    iacc[I_NANO] += nano
    iacc[I_INFB] += infb
    iacc[I_INFO] += info


#: how _block_sums also sums raw values for pooling (see there)
POOL_NONE, POOL_COLS, POOL_ROWS = 0, 1, 2


@numba.njit(cache=True, nogil=True, fastmath=_FAST, inline="always")  # typed (and cached) with its callers
def _pair_step(x, y, bb, oo, bo, dd, zb, zo, zboth, mb):  # type: ignore[no-untyped-def]
    """One pair's terms added into a block's running float32 sums and int32 counts."""
    d = y - x
    xz = x == 0.0
    yz = y == 0.0
    return (
        bb + x * x, oo + y * y, bo + x * y, dd + d * d,
        _count(zb, xz), _count(zo, yz), _count(zboth, _and(xz, yz)), _max_abs_bits(mb, d),
    )  # fmt: skip


@numba.njit(cache=True, nogil=True, fastmath=_FAST)  # typed (and cached) with its callers
def _block_sums(bs, os_, facc, iacc, width, pool, sb, so):  # type: ignore[no-untyped-def]
    """One block (at most BLOCK elements, `width` to a row): adds its statistics; returns the
    bits of its max |d| (0 when the block was redone exactly, which updates facc[F_MAXABS]
    itself). While the values are in registers it also sums them for pooling: POOL_COLS adds
    element (j, c) into sb[c] / so[c] (a position's channels); POOL_ROWS adds row j's total
    into sb[j] / so[j] (a channel's positions); POOL_NONE leaves sb / so alone. Raw values, NaN
    and all, as a mean would. One loop per form (each vectorises; the loops are indexed from 0,
    so there is no negative-index wrap to check)."""
    m = bs.size
    bb = oo = bo = dd = np.float32(0.0)
    zb = zo = zboth = mb = np.int32(0)
    if pool == POOL_NONE:
        for i in range(m):
            bb, oo, bo, dd, zb, zo, zboth, mb = _pair_step(bs[i], os_[i], bb, oo, bo, dd, zb, zo, zboth, mb)
    for j in range(m // width if pool != POOL_NONE else 0):
        rx = bs[j * width : (j + 1) * width]
        ry = os_[j * width : (j + 1) * width]
        if pool == POOL_COLS:
            for c in range(width):
                x = rx[c]
                y = ry[c]
                bb, oo, bo, dd, zb, zo, zboth, mb = _pair_step(x, y, bb, oo, bo, dd, zb, zo, zboth, mb)
                sb[c] += x
                so[c] += y
        else:
            tx = ty = np.float32(0.0)
            for c in range(width):
                x = rx[c]
                y = ry[c]
                bb, oo, bo, dd, zb, zo, zboth, mb = _pair_step(x, y, bb, oo, bo, dd, zb, zo, zboth, mb)
                tx += x
                ty += y
            sb[j] += tx
            so[j] += ty
    # float32 partial sums are trusted only when finite (no NaN/Inf, no overflow) and not
    # near underflow (a tiny sum of non-zero terms may have lost them): else redo exactly
    ok = np.isfinite(bb + oo + bo + dd)
    ok = ok and (bb >= _TINY or zb == m) and (oo >= _TINY or zo == m) and (dd >= _TINY or mb == 0)
    if not ok:
        _exact_block(bs, os_, facc, iacc)
        return np.int32(0)
    _add_block(facc, iacc, bb, oo, bo, dd, m, zb, zo, zboth)
    return mb


@numba.njit(_PAIR_SIGS, cache=True, nogil=True, fastmath=_FAST)
def pair_sums(b, o, facc, iacc):  # type: ignore[no-untyped-def]
    """Add the statistics of the flat pair (b, o) into (facc, iacc); see the module doc."""
    n = b.size
    mxbits = np.int32(0)
    none = np.empty(0, np.float32)
    for s in range(0, n, BLOCK):
        e = min(s + BLOCK, n)
        if PREFETCH:  # a block is one 4 KB page: hardware prefetchers stop at page ends
            _prefetch_range(b, s + PREFETCH, s + PREFETCH + BLOCK)
            _prefetch_range(o, s + PREFETCH, s + PREFETCH + BLOCK)
        mxbits = max(mxbits, _block_sums(b[s:e], o[s:e], facc, iacc, e - s, POOL_NONE, none, none))
    facc[F_MAXABS] = max(facc[F_MAXABS], np.float64(_float_of_bits(np.int32(mxbits))))


#: elements per histogram sample block (stats.SAMPLE_BLOCK: the same sample rule)
SAMPLE_BLOCK = 64


@numba.njit(
    [types.int64(_F32_RO, types.int64, types.int64, types.int64, _F32, types.int64)], cache=True, nogil=True
)
def take_blocks(x, block, skip, step, dst, at):  # type: ignore[no-untyped-def]
    """Copy blocks skip, skip + step, ... (each `block` elements, whole blocks of x only) into
    dst from position `at`; returns the new position."""
    nb = x.size // block
    j = skip
    while j < nb:
        src = x[j * block : (j + 1) * block]
        out = dst[at : at + block]
        for i in range(block):
            out[i] = src[i]
        at += block
        j += step
    return at


_F32_2D_RO = types.Array(types.float32, 2, "C", readonly=True)
_F32_2D = types.Array(types.float32, 2, "C")
_ROW_SIGS = [
    types.void(_F32_2D_RO, _F32_2D_RO, types.Array(types.float64, 2, "C"), types.Array(types.int64, 2, "C"),
               types.int64, types.boolean, _F32_2D, _F32_2D, types.Array(types.int64, 2, "C", readonly=True),
               _F32_2D, _F32_2D, types.int64, _F32, _F32)
]  # fmt: skip


#: positions whose channel sums add up in float32 before going into the float64 pooled sums
POOL_FLUSH = 16
#: rows (of the layout) narrower than this are pooled in a second pass: a block loop over so few
#: elements per row would not vectorise
POOL_MIN_WIDTH = 64


@numba.njit(cache=True, nogil=True, fastmath=_FAST)  # typed (and cached) with its caller
def _pool(x, positions, chan_first, acc, out):  # type: ignore[no-untyped-def]
    """out[c] = mean over positions of channel c of one instance's output x (layout as
    :func:`_pooled_pair_sums`), summed in float64 (`acc` is scratch of out.size): the separate
    pass for narrow rows."""
    channels = out.size
    if chan_first:
        for c in range(channels):
            row = x[c * positions : (c + 1) * positions]
            s = 0.0
            for p in range(positions):
                s += row[p]
            acc[c] = s
    else:
        acc[:] = 0.0
        for p in range(positions):
            row = x[p * channels : (p + 1) * channels]
            for c in range(channels):  # contiguous: vectorised across channels
                acc[c] += row[c]
    for c in range(channels):
        out[c] = acc[c] / positions


@numba.njit(cache=True, nogil=True, fastmath=_FAST)  # typed (and cached) with its caller
def _pooled_pair_sums(x, y, facc, iacc, positions, chan_first, pool_x, pool_y, sx, sy, ax, ay):  # type: ignore[no-untyped-def]
    """:func:`pair_sums` of one instance's outputs x, y (positions x channels, laid out
    [channels, positions] when chan_first) that also averages each side's channels over the
    positions into pool_x / pool_y, in the same pass. Blocks follow the layout's rows (a
    position's channels, or a channel's positions): whole rows when they fit in a block, else a
    block per piece of a row. Sums go through float32 (sx, sy: scratch of channels) for at most
    a block or POOL_FLUSH positions, as the block sums do, then into float64 (ax, ay)."""
    channels = pool_x.size
    rows, width = (channels, positions) if chan_first else (positions, channels)
    if width < POOL_MIN_WIDTH:
        pair_sums(x, y, facc, iacc)
        _pool(x, positions, chan_first, ax, pool_x)
        _pool(y, positions, chan_first, ax, pool_y)
        return
    mode = POOL_ROWS if chan_first else POOL_COLS
    ax[:] = 0.0
    ay[:] = 0.0
    sx[:] = 0.0
    sy[:] = 0.0
    per = max(1, BLOCK // width)  # whole rows per block
    piece = min(width, BLOCK)  # elements of a row per block
    mxbits = np.int32(0)
    pending = 0  # positions in sx, sy since the last flush (POOL_COLS)
    for j0 in range(0, rows, per):
        j1 = min(j0 + per, rows)
        for c0 in range(0, width, piece):
            c1 = min(c0 + piece, width)
            s, e = j0 * width + c0, (j1 - 1) * width + c1
            if PREFETCH:
                _prefetch_range(x, s + PREFETCH, e + PREFETCH)
                _prefetch_range(y, s + PREFETCH, e + PREFETCH)
            lo, hi = (j0, j1) if chan_first else (c0, c1)  # the sums this block adds to
            mxbits = max(mxbits, _block_sums(x[s:e], y[s:e], facc, iacc, c1 - c0, mode, sx[lo:hi], sy[lo:hi]))
        pending += j1 - j0
        if chan_first or pending >= POOL_FLUSH or j1 == rows:
            lo, hi = (j0, j1) if chan_first else (0, channels)
            for c in range(lo, hi):
                ax[c] += sx[c]
                ay[c] += sy[c]
                sx[c] = 0.0
                sy[c] = 0.0
            pending = 0
    facc[F_MAXABS] = max(facc[F_MAXABS], np.float64(_float_of_bits(np.int32(mxbits))))
    for c in range(channels):
        pool_x[c] = ax[c] / positions
        pool_y[c] = ay[c] / positions


@numba.njit(cache=True, nogil=True)  # typed (and cached) with its caller
def _take_positions(x, positions, chan_first, idx, out):  # type: ignore[no-untyped-def]
    """out[j] = the channels of position idx[j] of one instance's output x (layout as
    :func:`_pooled_pair_sums`)."""
    channels = out.shape[1]
    for j in range(idx.size):
        p = idx[j]
        if chan_first:
            for c in range(channels):
                out[j, c] = x[c * positions + p]
        else:
            out[j, :] = x[p * channels : (p + 1) * channels]


@numba.njit(_ROW_SIGS, cache=True, nogil=True, fastmath=_FAST)
def row_pair_sums(  # type: ignore[no-untyped-def]
    b, o, facc, iacc, positions, chan_first, pool_b, pool_o, idx, rows_b, rows_o, hist_step, hist_b, hist_o
):
    """:func:`pair_sums` of every row of b, o [rows, F] into facc[row], iacc[row] (one row per
    instance). With positions > 0 (F = positions x channels, see :func:`_pooled_pair_sums`) also
    each row's channels averaged over its positions into pool_b[row], pool_o[row] (in the same
    pass), and the channels of its positions idx[row] [k] into rows_b/rows_o[row * k : (row + 1)
    * k] (the CKA row sample; k = 0: none), read while the row is still in cache. With hist_step
    > 0, also the histogram sample of the flat pair into hist_b / hist_o (:func:`take_blocks` of
    SAMPLE_BLOCK blocks 0, hist_step, ...: the sample of stats.sample_elements). One call per
    batch: no per-instance dispatch."""
    channels = pool_b.shape[1]
    sb, so = np.empty(channels, np.float32), np.empty(channels, np.float32)
    ab, ao = np.empty(channels), np.empty(channels)
    k = idx.shape[1]
    for r in range(b.shape[0]):
        if positions > 0:
            _pooled_pair_sums(
                b[r], o[r], facc[r], iacc[r], positions, chan_first, pool_b[r], pool_o[r], sb, so, ab, ao
            )
            if k:
                _take_positions(b[r], positions, chan_first, idx[r], rows_b[r * k : (r + 1) * k])
                _take_positions(o[r], positions, chan_first, idx[r], rows_o[r * k : (r + 1) * k])
        else:
            pair_sums(b[r], o[r], facc[r], iacc[r])
    if hist_step > 0:
        take_blocks(b.reshape(b.size), SAMPLE_BLOCK, 0, hist_step, hist_b, 0)
        take_blocks(o.reshape(o.size), SAMPLE_BLOCK, 0, hist_step, hist_o, 0)


@numba.njit([types.UniTuple(types.float64, 3)(_F32_RO, _F32_RO)], cache=True, nogil=True, fastmath=_FAST)
def dots64(a, b):  # type: ignore[no-untyped-def]
    """(Σ a·b, Σ a², Σ b²) of two flat float32 arrays of one size, summed in float64, in one pass."""
    if a.size != b.size:
        raise ValueError("dots64 needs arrays of one size")
    ab = aa = bb = 0.0
    for i in range(a.size):
        x = np.float64(a[i])
        y = np.float64(b[i])
        ab += x * y
        aa += x * x
        bb += y * y
    return ab, aa, bb


@numba.njit([types.void(_F32_2D_RO, _F32_2D)], cache=True, nogil=True, fastmath=_FAST)
def center_columns(x, out):  # type: ignore[no-untyped-def]
    """out = x minus its column means (means summed in float64, subtracted in float32): the
    centring of CKA's sample rows, in two passes over an array that stays in cache."""
    n, c = x.shape
    mean64 = np.zeros(c)
    for i in range(n):
        row = x[i]
        for j in range(c):
            mean64[j] += row[j]
    mean = np.empty(c, np.float32)
    for j in range(c):
        mean[j] = np.float32(mean64[j] / max(n, 1))
    for i in range(n):
        row, dst = x[i], out[i]
        for j in range(c):
            dst[j] = row[j] - mean[j]


# -- fused with dequantization ---------------------------------------------------------------------
# The artifact reader's own kernels (one bit layout, one dequantization formula, no fast-math:
# bit-identical to the decode), applied to one L1-sized block at a time.
@numba.njit(cache=True, nogil=True)  # typed (and cached) with its caller
def _dequant_block(packed, bits, start, group_len, scales, zeros, codes, out):  # type: ignore[no-untyped-def]
    """out[k] = dequantized element start + k of a packed `bits`-bit code stream whose scale
    (and zero point) index is (element // group_len); `codes` is scratch for the unpacked codes."""
    n = out.size
    if bits == 8:
        AK.dequant_blocked(packed[start : start + n], start, group_len, scales, zeros, out)
    else:
        c = codes[:n]
        AK.unpack_range(packed, bits, start, c)
        AK.dequant_blocked(c, start, group_len, scales, zeros, out)


@numba.njit(cache=True, nogil=True)  # typed (and cached) with its callers
def _sample_copy(xs, s, e, step, end, sample):  # type: ignore[no-untyped-def]
    """Copy the histogram sample's blocks of elements [s, e) (xs = those elements): SAMPLE_BLOCK
    blocks j*step that end at or before `end`, to position (j // step) * SAMPLE_BLOCK."""
    jb = -(-(s // SAMPLE_BLOCK) // step) * step  # the first sampled block at or after s (s: a block start)
    while jb * SAMPLE_BLOCK < e:  # one division per call, not one per block (it showed in the profile)
        j0 = jb * SAMPLE_BLOCK
        j1 = min(j0 + SAMPLE_BLOCK, e)
        if j1 <= end:
            at = (jb // step) * SAMPLE_BLOCK
            sample[at : at + j1 - j0] = xs[j0 - s : j1 - s]
        jb += step


_U8_RO = types.Array(types.uint8, 1, "C", readonly=True)
_PACKED_SIGS = [
    types.void(_F32_RO, _U8_RO, types.int64, types.int64, _F32_RO, _F32_RO, types.boolean, *_ACC, types.int64,
               types.int64, _F32, _F32)
]  # fmt: skip


@numba.njit(_PACKED_SIGS, cache=True, nogil=True, fastmath=_FAST)
def pair_sums_packed(  # type: ignore[no-untyped-def]
    x, packed, bits, group_len, scales, zeros, packed_is_other, facc, iacc, step, end, sample_x, sample_p
):
    """:func:`pair_sums` of a float32 tensor x and a quantized one given as its packed codes
    (dequantized block by block into an L1-sized buffer: never materialised). `packed_is_other`
    says which side is quantized. With step > 0, also copies the histogram sample: SAMPLE_BLOCK
    blocks j*step (those ending at or before `end`) of each side, to position (j // step) * SAMPLE_BLOCK
    of sample_x / sample_p (the sample of stats._Sampler)."""
    n = x.size
    buf = np.empty(DECODE, np.float32)
    codes = np.empty(DECODE, np.uint8)
    none = np.empty(0, np.float32)
    mxbits = np.int32(0)
    for s0 in range(0, n, DECODE):
        e0 = min(s0 + DECODE, n)
        if PREFETCH:  # a block is one 4 KB page: hardware prefetchers stop at page ends
            _prefetch_range(x, s0 + PREFETCH, e0 + PREFETCH)
            _prefetch_range(packed, (s0 + PREFETCH) * bits // 8, (e0 + PREFETCH) * bits // 8 + 1)
        _dequant_block(packed, bits, s0, group_len, scales, zeros, codes, buf[: e0 - s0])
        for s in range(s0, e0, BLOCK):  # the sums go block by block, as pair_sums's
            e = min(s + BLOCK, e0)
            q = buf[s - s0 : e - s0]
            xs = x[s:e]
            if packed_is_other:
                mxbits = max(mxbits, _block_sums(xs, q, facc, iacc, e - s, POOL_NONE, none, none))
            else:
                mxbits = max(mxbits, _block_sums(q, xs, facc, iacc, e - s, POOL_NONE, none, none))
            if step > 0:
                _sample_copy(xs, s, e, step, end, sample_x)
                _sample_copy(q, s, e, step, end, sample_p)
    facc[F_MAXABS] = max(facc[F_MAXABS], np.float64(_float_of_bits(np.int32(mxbits))))


@numba.njit(cache=True, nogil=True)  # typed (and cached) with its caller
def _prefetch_spec(spec, s):  # type: ignore[no-untyped-def]
    """Prefetch the packed codes the block PREFETCH elements after s will decode. Only for the
    packed form, whose codes of a block are at a known place: prefetching a bitmask's values or
    mask from an estimated place measured slower (bench_weight_diff, same machine, A/B)."""
    if spec[0] == AK.PACKED:
        packed, bits = spec[3], spec[4]
        ahead = s + PREFETCH
        _prefetch_range(packed, (ahead * bits) >> 3, (((ahead + BLOCK) * bits) >> 3) + 1)


_SPEC_SIGS = [types.void(AK.SPEC, AK.SPEC, types.int64, *_ACC, types.int64, types.int64, _F32, _F32)]


@numba.njit(_SPEC_SIGS, cache=True, nogil=True, fastmath=_FAST)
def pair_sums_specs(b, o, n, facc, iacc, step, end, sample_b, sample_o):  # type: ignore[no-untyped-def]
    """:func:`pair_sums` of two stored tensors of n elements given as decode specs (see
    `artifacts.kernels.SPEC`: dense, bitmask, CSR, packed, packed-bitmask), each decoded block
    by block into an L1-sized buffer by :func:`~modelbonsai.artifacts.kernels.decode_range` (its
    own flags: no fast-math there), a dense side read in place. With step > 0, also the histogram
    sample (as :func:`pair_sums_packed`) into sample_b / sample_o."""
    dense_b = b[0] == AK.DENSE
    dense_o = o[0] == AK.DENSE
    vb, vo = b[2], o[2]
    buf_b, buf_o = np.empty(DECODE, np.float32), np.empty(DECODE, np.float32)
    codes, stored = np.empty(DECODE, np.uint8), np.empty(DECODE, np.uint8)
    state_b, state_o = np.zeros(3, np.int64), np.zeros(3, np.int64)
    none = np.empty(0, np.float32)
    mxbits = np.int32(0)
    for s0 in range(0, n, DECODE):
        e0 = min(s0 + DECODE, n)
        if not dense_b:
            AK.decode_range(b, s0, e0, state_b, codes, stored, buf_b)
        if not dense_o:
            AK.decode_range(o, s0, e0, state_o, codes, stored, buf_o)
        for s in range(s0, e0, BLOCK):  # the sums go block by block, as pair_sums's
            e = min(s + BLOCK, e0)
            m = e - s
            if PREFETCH:  # a block is one 4 KB page: hardware prefetchers stop at page ends
                if dense_b:
                    _prefetch_range(vb, s + PREFETCH, s + PREFETCH + BLOCK)
                else:
                    _prefetch_spec(b, s)
                if dense_o:
                    _prefetch_range(vo, s + PREFETCH, s + PREFETCH + BLOCK)
                else:
                    _prefetch_spec(o, s)
            # one call per mix of sides: a mapped dense side and a scratch buffer are different types
            if dense_b and dense_o:
                xb, xo = vb[s:e], vo[s:e]
                mxbits = max(mxbits, _block_sums(xb, xo, facc, iacc, m, POOL_NONE, none, none))
                if step > 0:
                    _sample_copy(xb, s, e, step, end, sample_b)
                    _sample_copy(xo, s, e, step, end, sample_o)
            elif dense_b:
                xb, qo = vb[s:e], buf_o[s - s0 : e - s0]
                mxbits = max(mxbits, _block_sums(xb, qo, facc, iacc, m, POOL_NONE, none, none))
                if step > 0:
                    _sample_copy(xb, s, e, step, end, sample_b)
                    _sample_copy(qo, s, e, step, end, sample_o)
            elif dense_o:
                qb, xo = buf_b[s - s0 : e - s0], vo[s:e]
                mxbits = max(mxbits, _block_sums(qb, xo, facc, iacc, m, POOL_NONE, none, none))
                if step > 0:
                    _sample_copy(qb, s, e, step, end, sample_b)
                    _sample_copy(xo, s, e, step, end, sample_o)
            else:
                qb, qo = buf_b[s - s0 : e - s0], buf_o[s - s0 : e - s0]
                mxbits = max(mxbits, _block_sums(qb, qo, facc, iacc, m, POOL_NONE, none, none))
                if step > 0:
                    _sample_copy(qb, s, e, step, end, sample_b)
                    _sample_copy(qo, s, e, step, end, sample_o)
    facc[F_MAXABS] = max(facc[F_MAXABS], np.float64(_float_of_bits(np.int32(mxbits))))


# -- histograms of the (sampled) elements ---------------------------------------------------------
_F64 = types.Array(types.float64, 1, "C")


@intrinsic
def _finite_abs_bits(typingctx, m, v):  # type: ignore[no-untyped-def]
    """max(m, bits of |v|) counting only finite v (|v| bits below those of +Inf), as int32."""
    sig = types.int32(types.int32, types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        bits = builder.and_(builder.bitcast(args[1], i32), ir.Constant(i32, 0x7FFFFFFF))
        finite = builder.icmp_signed("<", bits, ir.Constant(i32, 0x7F800000))
        bits = builder.select(finite, bits, ir.Constant(i32, 0))
        return builder.select(builder.icmp_signed(">", bits, args[0]), bits, args[0])

    return sig, codegen


@numba.njit([types.float64(_F32_RO)], cache=True, nogil=True)
def max_abs_finite(x):  # type: ignore[no-untyped-def]
    """Largest finite |value| of x (0 when there is none); branch-free, so it vectorises."""
    m = np.int32(0)
    for i in range(x.size):
        m = _finite_abs_bits(m, x[i])
    return np.float64(_float_of_bits(m))


# No fast-math here: (x - lo) * scale + 1 must round exactly as the numpy reference (no FMA).
@numba.njit([types.void(_F32_RO, types.float32, types.float32, types.float32, _F64)], cache=True, nogil=True)
def uniform_hist(x, lo, hi, scale, out):  # type: ignore[no-untyped-def]
    """Add counts of x in out.size equal bins over [lo, hi] (last bin closed) into out; values
    outside, NaN and ±Inf are not counted. `scale` = bins / (hi - lo) as float32. Two passes:
    a branch-free one (it vectorises) computes each value's slot (0 and bins + 1 collect what
    falls below / above), then the counting pass, into four interleaved count arrays so that
    consecutive increments of one bin do not wait on each other."""
    bins = out.size
    width = bins + 2
    top = np.float32(bins + 1)
    n = x.size
    slot = np.empty(n, np.int32)
    for i in range(n):
        v = x[i]
        t = (v - lo) * scale + np.float32(1.0)  # bin k -> [k+1, k+2); below lo -> slot 0
        t = t if t >= np.float32(0.0) else np.float32(0.0)  # also NaN
        t = t if t < top else top
        slot[i] = np.int32(bins) if v == hi else np.int32(t)  # v == hi: the closed last bin
    counts = np.zeros(4 * width, np.int64)
    for i in range(n):
        counts[(i & 3) * width + slot[i]] += 1
    for c in range(4):
        for j in range(bins):
            out[j] += counts[c * width + j + 1]


#: ratio buckets of the relative-change table: the top bits of a float64 above this shift
BUCKET_SHIFT = 42  # 10 mantissa bits: 1024 buckets per power of two


def bucket_table(edges: np.ndarray) -> tuple[np.ndarray, int]:
    """(per ratio bucket between edges[0] and edges[-1]: the bin of its low end, plus CUT when
    an edge falls inside the bucket; the first bucket's key). A bucket is the set of float64
    values sharing their bits above BUCKET_SHIFT (1/1024 of an octave, far narrower than a bin,
    so at most one edge cuts it), so a ratio's bucket is one shift of its bits."""
    edges = np.asarray(edges, np.float64)
    bins = edges.size - 1
    key_lo = int(edges[:1].view(np.int64)[0]) >> BUCKET_SHIFT
    key_hi = int(edges[-1:].view(np.int64)[0]) >> BUCKET_SHIFT
    keys = np.arange(key_lo, key_hi + 1, dtype=np.int64)
    blo = (keys << BUCKET_SHIFT).view(np.float64)
    bhi = ((keys + 1) << BUCKET_SHIFT).view(np.float64)
    # ratios reach the table only when edges[0] <= r <= edges[-1]: clamp the bins to [0, bins-1]
    j = np.clip(np.searchsorted(edges, blo, side="right") - 1, 0, bins - 1)
    cut = edges[j + 1] < bhi  # the next edge lies inside the bucket
    return (j + np.where(cut, CUT, 0)).astype(np.int8), key_lo


#: flag in a bucket_table entry: an edge cuts the bucket (compare the ratio with the next edge)
CUT = 64


@intrinsic
def _bits64(typingctx, x):  # type: ignore[no-untyped-def]
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


_I8_RO = types.Array(types.int8, 1, "C", readonly=True)
_F64_RO = types.Array(types.float64, 1, "C", readonly=True)


@numba.njit(
    [types.void(_F32_RO, _F32_RO, _F64_RO, _I8_RO, types.int64, _F64, _F64)],
    cache=True, nogil=True, error_model="numpy",  # x == 0 divides to inf, as IEEE says (no raise)
)  # fmt: skip
def rel_change_hist(b, o, edges, table, key_lo, hist, side):  # type: ignore[no-untyped-def]
    """Relative change |o - b| / |b| of the pairs where both sides are finite, binned by the
    float64 `edges` (10**(REL_LO + k/4): the bins of log10 of the ratio, without a logarithm per
    element: `table` (see :func:`bucket_table`) gives the bin from the ratio's top bits, and in
    the few buckets an edge cuts, one comparison with that edge decides). Adds into hist and
    side = [unchanged, from zero, under, over]."""
    bins = hist.size
    lo = edges[0]
    hi = edges[bins]
    n = b.size
    # pass 1, branch-free (it vectorises): each pair's slot, bins.. for the side counts
    unchanged, from_zero, under, over, skip = bins, bins + 1, bins + 2, bins + 3, bins + 4
    slot = np.empty(n, np.int32)
    for i in range(n):
        x = np.float64(b[i])
        y = np.float64(o[i])
        d = abs(np.float64(np.float32(y - x)))  # the float32 difference, as everywhere else
        r = d / abs(x)
        inside = (r >= lo) and (r <= hi)
        key = (_bits64(r) >> BUCKET_SHIFT) - key_lo if inside else 0
        s_ = np.int32(over)
        s_ = np.int32(under) if r < lo else s_
        s_ = np.int32(key) if inside else s_  # a table index for now (< 2**31: ~34K buckets)
        s_ = np.int32(from_zero) if x == 0.0 else s_
        s_ = np.int32(unchanged) if d == 0.0 else s_
        s_ = np.int32(skip) if not (np.isfinite(x) and np.isfinite(y)) else s_
        slot[i] = s_ if not inside or d == 0.0 or x == 0.0 else -1 - s_  # -1 - key: look it up
    # pass 2: table lookups (one edge comparison in the few buckets an edge cuts) and counting
    width = bins + 5
    counts = np.zeros(4 * width, np.int64)
    for i in range(n):
        k = np.int64(slot[i])
        if k < 0:
            v = np.int64(table[-1 - k])
            k = v & (CUT - 1)
            if v >= CUT:
                r = abs(np.float64(np.float32(np.float64(o[i]) - np.float64(b[i])))) / abs(np.float64(b[i]))
                if r >= edges[k + 1]:  # past the edge that cuts this bucket
                    k = min(k + 1, bins - 1)  # (r == hi: the closed last bin)
        counts[(i & 3) * width + k] += 1
    for c in range(4):
        for j in range(bins):
            hist[j] += counts[c * width + j]
        for j in range(4):
            side[j] += counts[c * width + bins + j]


@numba.njit(
    [types.float64(_F32_RO, _F32_RO, types.boolean, _F64, _F64, _F64_RO, _I8_RO, types.int64, _F64, _F64)],
    cache=True, nogil=True,
)  # fmt: skip
def sample_hists(sb, so, values, vb, vo, edges, table, key_lo, rel, side):  # type: ignore[no-untyped-def]
    """Every histogram of a tensor pair's sample in one call: with `values`, the value
    histograms of both sides over vb.size equal bins on [-R, R] (R = largest finite |value| of
    either side, 1 when there is none), then the relative-change histogram (see
    :func:`rel_change_hist`). Returns R (0 without `values`)."""
    r = 0.0
    if values:
        r = max(max_abs_finite(sb), max_abs_finite(so))
        if r == 0.0:
            r = 1.0
        lo, hi = np.float32(-r), np.float32(r)
        scale = np.float32(vb.size / (r + r))
        uniform_hist(sb, lo, hi, scale, vb)
        uniform_hist(so, lo, hi, scale, vo)
    if sb.size:
        rel_change_hist(sb, so, edges, table, key_lo, rel, side)
    return r


#: seconds spent compiling or loading the kernels at import (reported by :func:`warm`)
LOAD_SECONDS = time.perf_counter() - _t0


def warm() -> float:
    """Make sure the kernels are compiled (they are, at import); returns the import's seconds."""
    return LOAD_SECONDS
