"""The crease-corner scan behind ``decimate.feature_corners`` as one numba kernel, at module
level so that numba's on-disk cache holds it. Imported on first use only: importing numba
costs ~0.5 s."""

from __future__ import annotations

import numba
import numpy as np

from ..geometry._topology_numba import corner_cross


@numba.njit(cache=True, nogil=True, error_model="numpy")
def crease_corners(positions, faces, flat_tol, turn_tol, faceted_share):
    """(share of vertices whose faces are all coplanar, mask of crease corners).

    A vertex is flat when the unit normals of its faces agree within ``flat_tol`` (their sum
    is that much shorter than their count only if some differ by ~acos(1 - flat_tol)). When
    fewer than ``faceted_share`` of the used vertices are flat (a smooth surface), the scan
    stops there and no corner is marked: that first pass costs one sweep over the faces.

    Else an edge is a crease when two of its faces' normals differ by more than ``flat_tol``
    (1 - cos of the dihedral); creases only join vertices that are not flat, so only their
    edges are visited. A vertex is a crease corner when its crease edges do not pass straight
    through it: one, three or more, or two whose directions turn by more than ``turn_tol``
    (the length of the sum of the two outward unit directions, ~ the angle)."""
    n = positions.shape[0]
    m = faces.shape[0]
    normal = np.zeros((m, 3))
    vsum = np.zeros((n, 3))
    vcount = np.zeros(n, np.int64)
    for f in range(m):
        x, y, z = corner_cross(positions, faces[f, 0], faces[f, 1], faces[f, 2])
        ln = np.sqrt(x * x + y * y + z * z)
        if ln > 0.0:
            x, y, z = x / ln, y / ln, z / ln
        normal[f, 0], normal[f, 1], normal[f, 2] = x, y, z
        for k in range(3):
            v = faces[f, k]
            vsum[v, 0] += x
            vsum[v, 1] += y
            vsum[v, 2] += z
            vcount[v] += 1
    sharp = np.zeros(n, np.bool_)
    used = 0
    flat = 0
    for v in range(n):
        if vcount[v] == 0:
            continue
        used += 1
        ln = np.sqrt(vsum[v, 0] ** 2 + vsum[v, 1] ** 2 + vsum[v, 2] ** 2)
        if vcount[v] - ln > flat_tol * vcount[v]:
            sharp[v] = True
        else:
            flat += 1
    share = flat / max(used, 1)
    corner = np.zeros(n, np.bool_)
    if share < faceted_share:
        return share, corner
    # faces around each vertex that is not flat (counting sort)
    start = np.zeros(n + 1, np.int64)
    for f in range(m):
        for k in range(3):
            v = faces[f, k]
            if sharp[v]:
                start[v + 1] += 1
    for i in range(n):
        start[i + 1] += start[i]
    fill = start[:-1].copy()
    around = np.empty(start[n], np.int64)
    for f in range(m):
        for k in range(3):
            v = faces[f, k]
            if sharp[v]:
                around[fill[v]] = f
                fill[v] += 1
    count = np.zeros(n, np.int64)
    turn = np.zeros((n, 3))
    for f in range(m):
        for k in range(3):
            a = faces[f, k]
            b = faces[f, (k + 1) % 3]
            if a == b or not sharp[a] or not sharp[b]:
                continue
            # every other face on edge a-b; the edge is counted by its lowest face
            first = True
            crease = False
            for j in range(start[a], start[a + 1]):
                g = around[j]
                if g == f or not (faces[g, 0] == b or faces[g, 1] == b or faces[g, 2] == b):
                    continue
                if g < f:
                    first = False
                    break
                d = (normal[f, 0] * normal[g, 0] + normal[f, 1] * normal[g, 1]
                     + normal[f, 2] * normal[g, 2])
                if 1.0 - d > flat_tol:
                    crease = True
            if not first or not crease:
                continue
            dx = positions[b, 0] - positions[a, 0]
            dy = positions[b, 1] - positions[a, 1]
            dz = positions[b, 2] - positions[a, 2]
            ln = np.sqrt(dx * dx + dy * dy + dz * dz)
            if ln > 0.0:
                dx, dy, dz = dx / ln, dy / ln, dz / ln
            count[a] += 1
            count[b] += 1
            turn[a, 0] += dx
            turn[a, 1] += dy
            turn[a, 2] += dz
            turn[b, 0] -= dx
            turn[b, 1] -= dy
            turn[b, 2] -= dz
    for v in range(n):
        if count[v] == 0:
            continue
        t = np.sqrt(turn[v, 0] ** 2 + turn[v, 1] ** 2 + turn[v, 2] ** 2)
        corner[v] = count[v] != 2 or t > turn_tol
    return share, corner
