# mypy: disable-error-code="call-arg"
# (numba intrinsics take the typing context first, but jitted code calls them without it)
"""numba kernels for reading a flat element range of a stored tensor without decoding all of it.

Bit layout as in :mod:`modelbonsai.ops.packing`: element i of a b-bit stream occupies bits
[i*b, (i+1)*b), byte 0 holding the lowest bits; masks are 1-bit streams. Dequantization is the
one formula of :class:`~modelbonsai.ops.quantize.QuantEncoding`: (float32(code) - zero) * scale in
float32, with no fast-math (so the results are bit-identical to the torch decode). The entry
points have explicit signatures (compiled or loaded from numba's cache at import, not at first
use); helpers without one are typed, compiled and cached with their callers.

:func:`decode_range` decodes any element range of a stored float32 tensor given as a `SPEC` tuple
(dense, bitmask, CSR, packed, packed-bitmask) with no position arrays: a bitmask's values are
spread sixteen at a time by one expanding load (AVX-512 `vexpand`, through
`llvm.masked.expandload`), 2- and 4-bit codes unpack a byte at a time. The comparison's kernel
(`compare.kernels.pair_sums_specs`) calls it block by block.
"""

from __future__ import annotations

import os
import sys
import tempfile


def _import_numba() -> None:
    """Import numba without its start-up probe for SciPy's BLAS.

    numba's import checks whether `np.dot` and `np.linalg` can work in jitted code by importing
    scipy.linalg (a quarter of a second of every command's start when SciPy is installed, as it
    is beside scikit-learn). No Bonsai kernel uses them, so numba is imported with scipy.linalg
    hidden, unless scipy.linalg is imported already. In this process numba's linear algebra then
    reports SciPy missing; SciPy itself imports as usual afterwards."""
    if "numba" in sys.modules or "scipy.linalg" in sys.modules:
        return
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # an ImportError for the probe
    try:
        import numba.np.arraymath  # noqa: F401  (where the probe is: imported when the first kernel is typed)
    finally:
        if sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]


_import_numba()

import numba  # noqa: E402
import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402


def _probe() -> None:
    """A function numba could cache (used to ask its cache locators)."""


def ensure_numba_cache(py_file: str) -> None:
    """Give numba somewhere to write the on-disk cache of kernels defined in `py_file`.

    numba caches beside the source when that folder is writable, else in the user's cache folder
    (~/.cache/numba); with neither (a read-only install run by a user without a writable home)
    it refuses to define a `cache=True` function at all. Then use a per-user folder under the
    temporary directory, so the import still works and later processes still hit the cache."""
    from numba.core import caching, config

    if config.CACHE_DIR:  # type: ignore[attr-defined]
        return
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    for cls in getattr(impl, "_locator_classes", []):
        try:
            if cls.from_function(_probe, py_file) is not None:
                return
        except Exception:  # a locator that cannot even look: try the next
            continue
    uid = os.getuid() if hasattr(os, "getuid") else 0
    config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"bonsai-numba-cache-{uid}")  # type: ignore[attr-defined]


def cache_depends_on(py_file: str, *deps: str) -> None:
    """Make numba's on-disk cache of the kernels in `py_file` depend on the files `deps` too.

    numba keys a cached kernel on its own source file only, but a kernel that calls a kernel of
    another file has that code compiled into it: after an edit of the other file it would load
    the old code from the cache. Here the stamp numba checks for `py_file` also holds each
    dependency's (modification time, size), so such an edit recompiles it. Call before the
    first `cache=True` definition in `py_file`."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if classes is None:  # a numba without the hook: stale-cache risk only while developing
        return
    target = os.path.abspath(py_file)

    def deps_stamp() -> tuple[tuple[float, int], ...]:
        out = []
        for d in deps:
            st = os.stat(d)
            out.append((st.st_mtime, st.st_size))
        return tuple(out)

    def wrap(base: type) -> type:
        class _DependentLocator(base):  # type: ignore[misc, valid-type]
            @classmethod
            def from_function(cls, py_func, file):  # type: ignore[no-untyped-def]
                if os.path.abspath(file) != target:
                    return None
                return super().from_function(py_func, file)

            def get_source_stamp(self):  # type: ignore[no-untyped-def]
                return (super().get_source_stamp(), deps_stamp())

        return _DependentLocator

    classes[:0] = [wrap(base) for base in list(classes)]


ensure_numba_cache(__file__)

_U8 = types.Array(types.uint8, 1, "C")
_U8_RO = types.Array(types.uint8, 1, "C", readonly=True)
_F32 = types.Array(types.float32, 1, "C")
_F32_RO = types.Array(types.float32, 1, "C", readonly=True)
_I64 = types.Array(types.int64, 1, "C")


@numba.njit(cache=True, nogil=True, inline="always")
def _unpack_one(packed, bits, i, mask, n, out, k):  # type: ignore[no-untyped-def]
    """out[k] = code i of the stream; returns 1."""
    pos = i * bits
    byte = pos >> 3
    word = np.int64(packed[byte])
    if byte + 1 < n:
        word |= np.int64(packed[byte + 1]) << 8
    out[k] = np.uint8((word >> (pos & 7)) & mask)
    return 1


# Inputs are typed read-only (views of the mapped file are): writable arrays convert to that
# type at the call, so each kernel is compiled once.
@numba.njit([types.void(_U8_RO, types.int64, types.int64, _U8)], cache=True, nogil=True)
def unpack_range(packed, bits, start, out):  # type: ignore[no-untyped-def]
    """out[k] = code start + k of a `bits`-bit stream (any width 1..8)."""
    mask = (1 << bits) - 1
    n = packed.size
    m = out.size
    k = 0
    if bits == 4 or bits == 2:  # whole bytes of codes: a fixed loop per byte, which vectorises
        while k < m and ((start + k) * bits) & 7:
            k += _unpack_one(packed, bits, start + k, mask, n, out, k)
        per = 8 // bits
        whole = (m - k) // per
        src = packed[((start + k) * bits) >> 3 :]
        dst = out[k:]
        if bits == 4:
            for t in range(whole):
                v = src[t]
                dst[2 * t] = v & 15
                dst[2 * t + 1] = v >> 4
        else:
            for t in range(whole):
                v = src[t]
                dst[4 * t] = v & 3
                dst[4 * t + 1] = (v >> 2) & 3
                dst[4 * t + 2] = (v >> 4) & 3
                dst[4 * t + 3] = v >> 6
        k += whole * per
    while k < m:
        k += _unpack_one(packed, bits, start + k, mask, n, out, k)


@numba.njit([types.int64(_U8_RO, types.int64, types.int64)], cache=True, nogil=True)
def count_bits(mask, start, stop):  # type: ignore[no-untyped-def]
    """Set bits of a 1-bit stream in [start, stop)."""
    c = 0
    i = start
    while i < stop and i & 7:  # to a byte boundary
        c += (mask[i >> 3] >> (i & 7)) & 1
        i += 1
    while i + 8 <= stop:  # whole bytes
        v = mask[i >> 3]
        v = (v & 0x55) + ((v >> 1) & 0x55)
        v = (v & 0x33) + ((v >> 2) & 0x33)
        c += (v & 0x0F) + (v >> 4)
        i += 8
    while i < stop:
        c += (mask[i >> 3] >> (i & 7)) & 1
        i += 1
    return c


@numba.njit([types.int64(_U8_RO, types.int64, types.int64, _I64)], cache=True, nogil=True)
def scatter_positions(mask, start, stop, out):  # type: ignore[no-untyped-def]
    """out[j] = offset (from start) of the j-th set bit of the mask in [start, stop); returns how
    many there are."""
    j = 0
    for i in range(start, stop):
        if (mask[i >> 3] >> (i & 7)) & 1:
            out[j] = i - start
            j += 1
    return j


@numba.njit([types.void(_U8_RO, types.int64, types.int64, _F32_RO, _F32_RO, _F32)], cache=True, nogil=True)
def dequant_blocked(codes, start, group_len, scales, zeros, out):  # type: ignore[no-untyped-def]
    """out[k] = (float32(codes[k]) - zeros[g]) * scales[g], g = (start + k) // group_len: the
    layout where each scale covers `group_len` consecutive flat elements (per-tensor, and
    per-channel / per-group scales along dim 0)."""
    k = 0
    n = out.size
    while k < n:
        g = (start + k) // group_len
        s = scales[g]
        z = zeros[g]
        stop = min(n, (g + 1) * group_len - start)
        # slices indexed from 0 (no negative-index wrap to check): the loop vectorises
        c, o = codes[k:stop], out[k:stop]
        for j in range(stop - k):
            o[j] = (np.float32(c[j]) - z) * s
        k = stop


# -- decoding any stored float32 form inside a kernel ----------------------------------------------
# A stored tensor as one numba tuple (a "spec"), so that one kernel decodes every form block by
# block, straight from the mapped file, with no position arrays and no per-chunk Python:
#   (kind, mask, values, packed, bits, scales, zeros, a, b, c, indptr, indices, cols)
# kind DENSE: values; BITMASK: mask + the values of the set bits; CSR: indptr, indices, values,
# cols (elements per row); PACKED: packed `bits`-bit codes, scales, zeros; PACKED_BITMASK: as
# PACKED, holding only the codes of the set bits of mask. The scale (and zero point) of flat
# element i is scales[(i // a) * b + i % c]: a = group_len, b = c = 1 where each scale covers a
# run of consecutive elements (per tensor; per channel / group along dim 0); for the transposed
# layout of a 2-D weight [in, out] with channels on axis 1, a = out * group_len, b = c = out and
# scales are laid out [groups, out]. Unused fields are empty arrays / 0.
DENSE, BITMASK, CSR, PACKED, PACKED_BITMASK = range(5)
_I32_RO = types.Array(types.int32, 1, "C", readonly=True)
_I64_RO = types.Array(types.int64, 1, "C", readonly=True)
SPEC = types.Tuple((types.int64, _U8_RO, _F32_RO, _U8_RO, types.int64, _F32_RO, _F32_RO, types.int64,
                    types.int64, types.int64, _I64_RO, _I32_RO, types.int64))  # fmt: skip


def _suffix(t: ir.Type) -> str:
    return "f32" if isinstance(t, ir.FloatType) else "f64" if isinstance(t, ir.DoubleType) else f"i{t.width}"


@intrinsic
def _expand16(typingctx, src, off, m16, dst, at):  # type: ignore[no-untyped-def]
    """dst[at : at + 16] = the next popcount(m16) elements of src from src[off], spread over the
    set bits of m16 (0 at the clear ones): llvm.masked.expandload, one AVX-512 vexpand where the
    CPU has it (elsewhere LLVM expands it into conditional loads). Reads no element of src past
    those it places."""
    sig = types.void(src, types.int64, types.int64, dst, types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        s = context.make_array(signature.args[0])(context, builder, value=args[0])
        d = context.make_array(signature.args[3])(context, builder, value=args[3])
        elt = context.get_data_type(signature.args[0].dtype)
        vec = ir.VectorType(elt, 16)
        mask = builder.bitcast(builder.trunc(args[2], ir.IntType(16)), ir.VectorType(ir.IntType(1), 16))
        fnty = ir.FunctionType(vec, [elt.as_pointer(), mask.type, vec])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.expandload.v16{_suffix(elt)}")
        v = builder.call(fn, [builder.gep(s.data, [args[1]]), mask, ir.Constant(vec, None)])
        builder.store(v, builder.bitcast(builder.gep(d.data, [args[4]]), vec.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _keep16(typingctx, buf, at, m16):  # type: ignore[no-untyped-def]
    """buf[at : at + 16] = buf where the bit of m16 is set, else 0 (one vector select)."""
    sig = types.void(buf, types.int64, types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        b = context.make_array(signature.args[0])(context, builder, value=args[0])
        elt = context.get_data_type(signature.args[0].dtype)
        vec = ir.VectorType(elt, 16)
        mask = builder.bitcast(builder.trunc(args[2], ir.IntType(16)), ir.VectorType(ir.IntType(1), 16))
        ptr = builder.bitcast(builder.gep(b.data, [args[1]]), vec.as_pointer())
        v = builder.load(ptr, align=1)
        builder.store(builder.select(mask, v, ir.Constant(vec, None)), ptr, align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
    sig = types.int64(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
        return builder.call(fn, [args[0]])

    return sig, codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _mask16(mask, i):  # type: ignore[no-untyped-def]
    """The 16 mask bits of elements i .. i + 15 (i a multiple of 16)."""
    return np.int64(mask[i >> 3]) | (np.int64(mask[(i >> 3) + 1]) << 8)


@numba.njit(cache=True, nogil=True)  # typed (and cached) with its callers: float32 values, uint8 codes
def expand_mask(mask, start, src, off, fill, out):  # type: ignore[no-untyped-def]
    """out[k] = the next element of src (src[off] onwards) where bit start + k of the mask is
    set, `fill` where it is not; returns the offset in src after the range. Sixteen elements at
    a time are one expanding load (see :func:`_expand16`; no position array), then the clear
    bits get `fill` where it is not 0."""
    n = out.size
    k = 0
    while k < n and (start + k) & 15:  # to a 16-element boundary
        i = start + k
        if (mask[i >> 3] >> (i & 7)) & 1:
            out[k] = src[off]
            off += 1
        else:
            out[k] = fill
        k += 1
    while k + 16 <= n:
        m = _mask16(mask, start + k)
        _expand16(src, off, m, out, k)
        if fill != 0:
            for j in range(16):
                if not (m >> j) & 1:
                    out[k + j] = fill
        off += _popcount(m)
        k += 16
    while k < n:
        i = start + k
        if (mask[i >> 3] >> (i & 7)) & 1:
            out[k] = src[off]
            off += 1
        else:
            out[k] = fill
        k += 1
    return off


@numba.njit(cache=True, nogil=True)  # typed (and cached) with its callers
def keep_mask(mask, start, out):  # type: ignore[no-untyped-def]
    """out[k] = 0 where bit start + k of the mask is clear (kept where it is set)."""
    n = out.size
    k = 0
    while k < n and (start + k) & 15:
        i = start + k
        if not (mask[i >> 3] >> (i & 7)) & 1:
            out[k] = 0
        k += 1
    while k + 16 <= n:
        _keep16(out, k, _mask16(mask, start + k))
        k += 16
    while k < n:
        i = start + k
        if not (mask[i >> 3] >> (i & 7)) & 1:
            out[k] = 0
        k += 1


@numba.njit(cache=True, nogil=True)  # typed (and cached) with its callers
def dequant_any(codes, start, a, b, c, scales, zeros, out):  # type: ignore[no-untyped-def]
    """out[k] = (float32(codes[k]) - zeros[g]) * scales[g], g = ((start + k) // a) * b + (start +
    k) % c (see SPEC): runs where g is constant (c == 1) or steps by one (the transposed layout)
    are each one loop that vectorises."""
    n = out.size
    k = 0
    while k < n:
        i = start + k
        q = i // a
        stop = min(n, (q + 1) * a - start)
        if c > 1:
            r = i % c
            stop = min(stop, k + c - r)
            g0 = q * b + r
            cs, o, sc, zs = codes[k:stop], out[k:stop], scales[g0 : g0 + stop - k], zeros[g0 : g0 + stop - k]
            for j in range(stop - k):
                o[j] = (np.float32(cs[j]) - zs[j]) * sc[j]
        else:
            s = scales[q * b]
            z = zeros[q * b]
            cs, o = codes[k:stop], out[k:stop]
            for j in range(stop - k):
                o[j] = (np.float32(cs[j]) - z) * s
        k = stop


@numba.njit([types.void(SPEC, types.int64, types.int64, _I64, _U8, _U8, _F32)], cache=True, nogil=True)
def decode_range(spec, start, stop, state, codes, stored, out):  # type: ignore[no-untyped-def]
    """out[:stop - start] = flat elements [start, stop) of the stored tensor `spec`, as float32
    (bit-identical to the full decode). `state` carries the position in the stored values from
    one range to the next: [values (codes) before start, CSR: next non-zero, its row]; the caller
    sets it for a jump. `codes` and `stored` are uint8 scratch of at least stop - start."""
    kind, mask, values, packed, bits, scales, zeros, a, b, c, indptr, indices, cols = spec
    n = stop - start
    o = out[:n]
    if kind == DENSE:
        o[:] = values[start:stop]
    elif kind == BITMASK:
        state[0] = expand_mask(mask, start, values, state[0], np.float32(0.0), o)
    elif kind == CSR:
        o[:] = 0.0
        k = state[1]
        row = state[2]
        nnz = indptr[indptr.size - 1]
        while k < nnz:
            while indptr[row + 1] <= k:
                row += 1
            f = row * cols + indices[k]
            if f >= stop:
                break
            o[f - start] = values[k]
            k += 1
        state[1] = k
        state[2] = row
    else:
        cs = codes[:n]
        if kind == PACKED:
            if bits == 8:  # the stream is the codes
                dequant_any(packed[start:stop], start, a, b, c, scales, zeros, o)
                return
            unpack_range(packed, bits, start, cs)
        elif bits == 8:  # PACKED_BITMASK: the codes of the set bits, spread over the range
            state[0] = expand_mask(mask, start, packed, state[0], np.uint8(0), cs)
        else:
            # unpack as many codes as the range could hold (no count of its set bits first;
            # never past the stream's end), then spread the ones its set bits take
            m = min(n, (packed.size * 8) // bits - state[0])
            sv = stored[: max(m, 0)]
            unpack_range(packed, bits, state[0], sv)
            state[0] += expand_mask(mask, start, sv, 0, np.uint8(0), cs)
        dequant_any(cs, start, a, b, c, scales, zeros, o)
        if kind == PACKED_BITMASK:  # a clear bit is an exact 0.0, as the full decode's zero code gives
            keep_mask(mask, start, o)
