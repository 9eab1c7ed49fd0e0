"""numba kernels for reading a flat element range of a stored tensor without decoding all of it.

Bit layout as in :mod:`modelbonsai.ops.packing`: element i of a b-bit stream occupies bits
[i*b, (i+1)*b), byte 0 holding the lowest bits; masks are 1-bit streams. Dequantization is the
one formula of :class:`~modelbonsai.ops.quantize.QuantEncoding`: (float32(code) - zero) * scale in
float32, with no fast-math (so the results are bit-identical to the torch decode). Every kernel
has explicit signatures: compiled or loaded from numba's cache at import, not at first use.
"""

from __future__ import annotations

import os
import tempfile

import numba
import numpy as np
from numba import types


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


ensure_numba_cache(__file__)

_U8 = types.Array(types.uint8, 1, "C")
_U8_RO = types.Array(types.uint8, 1, "C", readonly=True)
_F32 = types.Array(types.float32, 1, "C")
_F32_RO = types.Array(types.float32, 1, "C", readonly=True)
_I64 = types.Array(types.int64, 1, "C")


# Inputs are typed read-only (views of the mapped file are): writable arrays convert to that
# type at the call, so each kernel is compiled once.
@numba.njit([types.void(_U8_RO, types.int64, types.int64, _U8)], cache=True, nogil=True)
def unpack_range(packed, bits, start, out):  # type: ignore[no-untyped-def]
    """out[k] = code start + k of a `bits`-bit stream (any width 1..8)."""
    mask = (1 << bits) - 1
    n = packed.size
    for k in range(out.size):
        pos = (start + k) * bits
        byte = pos >> 3
        word = np.int64(packed[byte])
        if byte + 1 < n:
            word |= np.int64(packed[byte + 1]) << 8
        out[k] = np.uint8((word >> (pos & 7)) & mask)


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


@numba.njit(
    [types.void(_U8_RO, types.int64, types.int64, _F32_RO, _F32_RO, _F32)], cache=True, nogil=True
)
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
