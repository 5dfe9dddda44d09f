"""numba kernel of ``algorithms.materials``: the colour statistics of every part in one pass
over the texels, at module level so numba's on-disk cache holds it."""

from __future__ import annotations

import math

import numba
import numpy as np

from ..geometry._colour_numba import encode_one

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@jit
def part_sums(colour, part, observed, n_parts):
    """Per part and per set (0: its observed texels, 1: all its texels), over the sRGB values
    of the linear ``colour`` (T, 3) float32 (clipped to 0-1 and encoded as
    ``geometry.colour.linear_to_srgb`` does, to float32): (count, sum of saturation, sum of
    value (max channel), sum of squared deviations of the value from the set's mean, sum of
    chroma, sum of sin(hue) * chroma, sum of cos(hue) * chroma), as ``materials.colour_stats``
    defines them. (n_parts, 2, 7) float64."""
    t = colour.shape[0]
    out = np.zeros((n_parts, 2, 7))
    value = np.empty(t)
    lo, c = np.float32(0.0031308), np.float32(12.92)
    zero, one = np.float32(0.0), np.float32(1.0)
    for i in range(t):
        r = np.float64(np.float32(encode_one(min(max(colour[i, 0], zero), one), lo, c)))
        g = np.float64(np.float32(encode_one(min(max(colour[i, 1], zero), one), lo, c)))
        b = np.float64(np.float32(encode_one(min(max(colour[i, 2], zero), one), lo, c)))
        mx = max(r, g, b)
        mn = min(r, g, b)
        value[i] = mx
        sat = (mx - mn) / max(mx, 1e-6) if mx > 1e-6 else 0.0
        d = max(mx - mn, 1e-12)
        if mx == r:
            h = ((g - b) / d) % 6.0
        elif mx == g:
            h = (b - r) / d + 2.0
        else:
            h = (r - g) / d + 4.0
        ang = math.radians(h * 60.0)
        chroma = mx - mn
        p = part[i]
        for s in range(2):
            if s == 0 and not observed[i]:
                continue
            out[p, s, 0] += 1.0
            out[p, s, 1] += sat
            out[p, s, 2] += mx
            out[p, s, 4] += chroma
            out[p, s, 5] += math.sin(ang) * chroma
            out[p, s, 6] += math.cos(ang) * chroma
    for i in range(t):
        p = part[i]
        for s in range(2):
            if s == 0 and not observed[i]:
                continue
            dv = value[i] - out[p, s, 2] / out[p, s, 0]
            out[p, s, 3] += dv * dv
    return out
