"""numba kernel of ``algorithms.inpaint``, at module level so numba's on-disk cache holds it."""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@jit
def cell_means(positions, normals, colours, rows, lo, cell, grid):
    """Group texels ``rows`` by the cubic cell of their position (``grid`` + 1 cells a side
    from ``lo``, edge ``cell``) in one pass over a dense slot table (no sort): returns (cell
    of each row, and per cell, in order of first appearance, the mean position, normal and
    colour; colours (0, 3) gives no colour means)."""
    g = grid + 1
    slot = np.full(g * g * g, -1, np.int32)
    n = len(rows)
    inverse = np.empty(n, np.int64)
    has_colour = colours.shape[0] > 0
    k = 0
    for i in range(n):
        r = rows[i]
        a = min(max(int(np.floor((positions[r, 0] - lo[0]) / cell)), 0), grid)
        b = min(max(int(np.floor((positions[r, 1] - lo[1]) / cell)), 0), grid)
        c = min(max(int(np.floor((positions[r, 2] - lo[2]) / cell)), 0), grid)
        key = (a * g + b) * g + c
        if slot[key] < 0:
            slot[key] = k
            k += 1
        inverse[i] = slot[key]
    count = np.zeros(k)
    pos = np.zeros((k, 3))
    nrm = np.zeros((k, 3))
    col = np.zeros((k if has_colour else 0, 3))
    for i in range(n):
        r = rows[i]
        j = inverse[i]
        count[j] += 1.0
        for d in range(3):
            pos[j, d] += positions[r, d]
            nrm[j, d] += normals[r, d]
            if has_colour:
                col[j, d] += colours[r, d]
    for j in range(k):
        for d in range(3):
            pos[j, d] /= count[j]
            nrm[j, d] /= count[j]
            if has_colour:
                col[j, d] /= count[j]
    return inverse, pos, nrm, col


@jit
def bounds(positions):
    """(lo, hi): the per-axis minimum and maximum of ``positions`` (N >= 1, 3) in one pass,
    as ``positions.min(0)`` and ``positions.max(0)`` (NaN propagates as there)."""
    lo = positions[0].copy()
    hi = positions[0].copy()
    for i in range(1, positions.shape[0]):
        for d in range(3):
            v = positions[i, d]
            lo[d] = np.minimum(lo[d], v)
            hi[d] = np.maximum(hi[d], v)
    return lo, hi
