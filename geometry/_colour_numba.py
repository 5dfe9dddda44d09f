"""numba kernels of the sRGB transfer functions, with the C library's ``pow`` for every value
(``geometry.colour``).

Why not numpy's ``**``: numpy's vectorised float power is not the C library's on every CPU (its
SIMD paths differ between machines), and one ulp of difference moves an 8-bit texel by a level:
a texture's bytes then depended on the machine it was made on (the texture stage's golden hash,
recorded on one machine, failed on another by one texel). ``math.pow`` in numba (without Intel's
SVML) is a call to the C library's ``pow``, the same on every machine, and one pass with no
temporaries is as fast as numpy's float32 power was.

The arithmetic around the power is the formulation numpy evaluated before (numpy 2's rules for
Python scalars): the comparison and the linear branch in the input's precision (the constants
passed in that type), the power branch in float64, each value rounded once to the output type.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def decode_into(x: np.ndarray, lo, a, b, c, out: np.ndarray) -> None:
    """sRGB -> linear: ``x / c`` where ``x <= lo``, else ``((x + a) / b) ** 2.4`` (flat)."""
    for i in range(x.size):
        v = x[i]
        if v <= lo:
            out[i] = v / c
        else:
            out[i] = math.pow(np.float64((v + a) / b), 2.4)


@numba.njit(cache=True, nogil=True, inline="always")
def encode_one(v, lo, c):
    """linear -> sRGB of one value ``v`` (already clipped to 0..1): ``v * c`` in ``v``'s
    precision where ``v <= lo``, else ``1.055 v ** (1/2.4) - 0.055`` in float64; the caller
    rounds it to its output type (``encode_into``: float32)."""
    if v <= lo:
        return np.float64(v * c)
    return 1.055 * math.pow(np.float64(v), 1.0 / 2.4) - 0.055


@numba.njit(cache=True, nogil=True)
def encode_into(x: np.ndarray, lo, c, out: np.ndarray) -> None:
    """linear -> sRGB: ``x * c`` where ``x <= lo``, else ``1.055 x ** (1/2.4) - 0.055``
    (flat; ``x`` already clipped to 0..1)."""
    for i in range(x.size):
        out[i] = encode_one(x[i], lo, c)


@numba.njit(cache=True, nogil=True)
def bytes_into(x: np.ndarray, srgb: bool, lo, c, out: np.ndarray) -> None:
    """float32 values -> uint8 as ``colour.to_uint8`` rounds them (``x * 255 + 0.5`` in
    float32, clipped to 0..255, truncated), after ``encode_into``'s sRGB transfer of the
    value clipped to 0..1 when ``srgb`` (flat). A run of equal inputs (an image's background)
    takes the transfer once."""
    full, half = np.float32(255.0), np.float32(0.5)
    zero, one = np.float32(0.0), np.float32(1.0)
    last = np.float32(np.nan)
    code = np.uint8(0)
    for i in range(x.size):
        v = x[i]
        if v != last:
            if srgb:
                v = np.float32(encode_one(min(max(v, zero), one), lo, c))
            e = min(max(v * full + half, zero), full)
            code = np.uint8(e)
            last = x[i]
        out[i] = code
