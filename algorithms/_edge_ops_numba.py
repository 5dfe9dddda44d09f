"""The sliver flip's inner loop (``edge_ops.flip_slivers``) as a numba kernel, at module level
so that numba's on-disk cache holds it. Imported on first use only: importing numba costs
~0.5 s."""

from __future__ import annotations

import numba
import numpy as np

from ..geometry._topology_numba import corner_cross


@numba.njit(cache=True, nogil=True, inline="always")
def _owner(keys, owners, key):
    # the face of directed edge ``key`` (the last one listed, as a dict built in order
    # would keep), or -1
    j = np.searchsorted(keys, key, side="right") - 1
    if j >= 0 and keys[j] == key:
        return owners[j]
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _slot(table, key):
    # open addressing over a power-of-two table of int64 keys (-1: empty)
    mask = len(table) - 1
    h = (key * 0x9E3779B97F4A7C1) & mask
    while table[h] != -1 and table[h] != key:
        h = (h + 1) & mask
    return h


@numba.njit(cache=True, nogil=True, error_model="numpy")
def flip_round(v, faces, labels, cand, longest, keys, owners, n):
    """One round of sliver flips over ``cand`` (in order), ``faces`` changed in place;
    ``longest``: each face's longest edge (corner k -> k+1); ``keys``/``owners``: the directed
    edges a * n + b of the faces at the round's start, sorted, and the face of each.
    Returns the number of flips."""
    used = np.zeros(faces.shape[0], np.bool_)
    cap = 16
    while cap < 4 * len(cand):
        cap *= 2
    new = np.full(cap, -1, np.int64)  # edges made by this round's flips (both directions)
    flips = 0
    for i in cand:
        k = longest[i]
        a = faces[i, k]
        b = faces[i, (k + 1) % 3]
        c = faces[i, (k + 2) % 3]
        g = _owner(keys, owners, b * n + a)
        if g < 0 or used[i] or used[g] or labels[g] != labels[i]:
            continue
        d = faces[g, 0]
        for j in range(3):
            if faces[g, j] != a and faces[g, j] != b:
                d = faces[g, j]
                break
        if d == c:
            continue
        cd, dc = c * n + d, d * n + c
        if _owner(keys, owners, cd) >= 0 or _owner(keys, owners, dc) >= 0:
            continue
        if new[_slot(new, cd)] == cd:
            continue
        # the new faces (c, a, d) and (d, b, c) must keep the neighbour's orientation
        nx, ny, nz = corner_cross(v, b, a, d)
        px, py, pz = corner_cross(v, c, a, d)
        if px * nx + py * ny + pz * nz <= 0:
            continue
        px, py, pz = corner_cross(v, d, b, c)
        if px * nx + py * ny + pz * nz <= 0:
            continue
        faces[i, 0], faces[i, 1], faces[i, 2] = c, a, d
        faces[g, 0], faces[g, 1], faces[g, 2] = d, b, c
        new[_slot(new, cd)] = cd
        new[_slot(new, dc)] = dc
        used[i] = True
        used[g] = True
        flips += 1
    return flips
