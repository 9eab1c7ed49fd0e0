"""numba kernels of `quantize.weights`: the round-to-nearest quantization of a float32 weight in
two passes over memory instead of a dozen torch passes.

1. :func:`group_ranges` reads the weight once and gives every scale group's min and max, and
   whether the weight holds NaN or ±Inf (so the op needs no separate finiteness pass);
2. the op turns the ranges into scales and zero points with the same torch code as before
   (:func:`~modelbonsai.ops.quantize.scales_from_ranges`: a few values per row);
3. :func:`project_groups` reads the weight again and writes it back projected onto the grid,
   with the one formula of :class:`~modelbonsai.ops.quantize.QuantEncoding`: q = clamp(rint(x /
   s) + z, lo, hi), value = (q - z) * s, all in float32 with no fast-math, so the result is
   bit-identical to `QuantEncoding.project`.

Two layouts, as the op's row view needs them (see `quantize._to_rows`):

- ``rows`` (axis 0, or one scale for the whole tensor): the contiguous weight *is* the row view
  [rows, groups, group_len]; the kernels take that 3-D view.
- ``cols`` (transformers' Conv1D, weight [in, out], axis 1): the row view is the transpose, so
  the kernels walk the [in, out] array in memory order with per-output-channel accumulators
  (scale group of element (i, c) = (c, i // group_len)); no transposed copy is made.

Compiled (or loaded from numba's cache) when this module is first imported, which the op does
lazily: importing the op registry does not load numba.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from ..artifacts.kernels import ensure_numba_cache

ensure_numba_cache(__file__)  # before the first cache=True definition below

_F32_3D = types.Array(types.float32, 3, "C")
_F32_2D = types.Array(types.float32, 2, "C")
_F32_3D_RO = types.Array(types.float32, 3, "C", readonly=True)
_F32_2D_RO = types.Array(types.float32, 2, "C", readonly=True)
#: bits of |x| at or above this are ±Inf or NaN
_NONFINITE_BITS = 0x7F800000


_I32_2D = types.Array(types.int32, 2, "C")
_INT32_MAX = np.int32(0x7FFFFFFF)
_INT32_MIN = np.int32(-0x80000000)


# Min and max are integer reductions over keys that order like the floats (the bits of a
# non-negative float, the bits with every bit but the sign flipped for a negative one): integer
# min / max vectorise, where a float min / max only does under `nnan`. -0.0 and 0.0 get two keys,
# which can only change which zero comes back, and neither the scale nor the zero point depends
# on that. The keys of NaN and Inf do not matter: a weight holding them is refused.
@numba.njit(cache=True, nogil=True, inline="always")
def _key(b):  # type: ignore[no-untyped-def]
    return b ^ ((b >> 31) & _INT32_MAX)


@numba.njit([types.boolean(_F32_3D_RO, _I32_2D, _I32_2D)], cache=True, nogil=True)
def group_ranges(r, lo, hi):  # type: ignore[no-untyped-def]
    """lo[i, g] / hi[i, g] = the float32 bits of the min / max of r[i, g, :] (layout ``rows``);
    False when r holds NaN or ±Inf (then lo / hi mean nothing). The finiteness test is an
    integer max over the bits of |x| (NaN and Inf have the largest), in the same pass."""
    rows, groups, n = r.shape
    worst = np.int32(0)
    for i in range(rows):
        for g in range(groups):
            xb = r[i, g].view(np.int32)
            kmin, kmax, amax = _INT32_MAX, _INT32_MIN, np.int32(0)
            for j in range(n):
                b = xb[j]
                a = b & _INT32_MAX
                k = _key(b)
                kmin = k if k < kmin else kmin
                kmax = k if k > kmax else kmax
                amax = a if a > amax else amax
            worst = amax if amax > worst else worst
            lo[i, g] = _key(kmin)  # the key's own inverse
            hi[i, g] = _key(kmax)
    return worst < _NONFINITE_BITS


@numba.njit([types.boolean(_F32_2D_RO, types.int64, _I32_2D, _I32_2D)], cache=True, nogil=True)
def group_ranges_cols(w, group_len, lo, hi):  # type: ignore[no-untyped-def]
    """:func:`group_ranges` of the layout ``cols``: w is [in, out]; lo / hi are [out, groups]
    with group g covering inputs [g * group_len, (g + 1) * group_len)."""
    n_in, n_out = w.shape
    kmin = np.empty(n_out, np.int32)
    kmax = np.empty(n_out, np.int32)
    amax = np.zeros(n_out, np.int32)
    for i in range(n_in):
        xb = w[i].view(np.int32)
        if i % group_len == 0:
            kmin[:] = _INT32_MAX
            kmax[:] = _INT32_MIN
        for c in range(n_out):
            b = xb[c]
            a = b & _INT32_MAX
            k = _key(b)
            kmin[c] = k if k < kmin[c] else kmin[c]
            kmax[c] = k if k > kmax[c] else kmax[c]
            amax[c] = a if a > amax[c] else amax[c]
        if (i + 1) % group_len == 0:
            g = i // group_len
            for c in range(n_out):
                lo[c, g] = _key(kmin[c])
                hi[c, g] = _key(kmax[c])
    return amax.max() < _NONFINITE_BITS


@numba.njit(
    [types.void(_F32_3D_RO, _F32_2D_RO, _F32_2D_RO, types.float32, types.float32, _F32_3D)],
    cache=True, nogil=True,
)  # fmt: skip
def project_groups(r, scales, zeros, qlo, qhi, out):  # type: ignore[no-untyped-def]
    """out = r projected onto the grid of (scales, zeros) [rows, groups] (layout ``rows``); out
    may be r itself. No fast-math: every step rounds as the torch formula does."""
    rows, groups, n = r.shape
    for i in range(rows):
        for g in range(groups):
            s = scales[i, g]
            z = zeros[i, g]
            x = r[i, g]
            o = out[i, g]
            for j in range(n):
                q = np.rint(x[j] / s) + z
                q = qlo if q < qlo else q
                q = qhi if q > qhi else q
                o[j] = (q - z) * s


@numba.njit(
    [types.void(_F32_2D_RO, types.int64, _F32_2D_RO, _F32_2D_RO, types.float32, types.float32, _F32_2D)],
    cache=True, nogil=True,
)  # fmt: skip
def project_groups_cols(w, group_len, scales, zeros, qlo, qhi, out):  # type: ignore[no-untyped-def]
    """:func:`project_groups` of the layout ``cols`` (w, out [in, out]; scales, zeros [out,
    groups]); out may be w itself."""
    n_in, n_out = w.shape
    s = np.empty(n_out, np.float32)
    z = np.empty(n_out, np.float32)
    for i in range(n_in):
        if i % group_len == 0:
            g = i // group_len
            s[:] = scales[:, g]
            z[:] = zeros[:, g]
        x = w[i]
        o = out[i]
        for c in range(n_out):
            q = np.rint(x[c] / s[c]) + z[c]
            q = qlo if q < qlo else q
            q = qhi if q > qhi else q
            o[c] = (q - z[c]) * s[c]
