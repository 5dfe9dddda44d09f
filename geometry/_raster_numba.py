"""numba kernels of ``geometry.raster``, at module level so numba's on-disk cache holds them."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def edge(ax, ay, bx, by, px, py):
    # canonical order: the same geometric edge gives exactly opposite values
    if ax < bx or (ax == bx and ay < by):
        return (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    return -((ax - bx) * (py - by) - (ay - by) * (px - bx))


@numba.njit(cache=True)
def owns(ax, ay, bx, by):
    dy, dx = by - ay, bx - ax
    return dy > 0 or (dy == 0 and dx < 0)


@numba.njit(cache=True)
def triangle(pts, faces, f, size):
    """Face ``f``'s corners made counter-clockwise (folds still count), its texel box clipped
    to the image, and which of its edges own the texel centres they pass through (the
    top-left rule: a centre on an edge shared by two faces belongs to exactly one).
    ``ok`` is False for a face of zero area."""
    i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
    x0, y0 = pts[i0, 0], pts[i0, 1]
    x1, y1 = pts[i1, 0], pts[i1, 1]
    x2, y2 = pts[i2, 0], pts[i2, 1]
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    if area < 0:
        x1, y1, x2, y2 = x2, y2, x1, y1
    lo_x = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
    hi_x = min(int(np.ceil(max(x0, x1, x2) - 0.5)), size - 1)
    lo_y = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
    hi_y = min(int(np.ceil(max(y0, y1, y2) - 0.5)), size - 1)
    o0, o1, o2 = owns(x0, y0, x1, y1), owns(x1, y1, x2, y2), owns(x2, y2, x0, y0)
    return (area != 0, x0, y0, x1, y1, x2, y2, lo_x, hi_x, lo_y, hi_y, o0, o1, o2)


@numba.njit(cache=True)
def inside(t, px, py):
    """Is the point (a texel centre) covered by the triangle ``t`` from ``triangle``?"""
    e0 = edge(t[1], t[2], t[3], t[4], px, py)
    if e0 < 0 or (e0 == 0 and not t[11]):
        return False
    e1 = edge(t[3], t[4], t[5], t[6], px, py)
    if e1 < 0 or (e1 == 0 and not t[12]):
        return False
    e2 = edge(t[5], t[6], t[1], t[2], px, py)
    return not (e2 < 0 or (e2 == 0 and not t[13]))


@numba.njit(cache=True)
def coverage(pts, faces, size):
    """How many faces cover each texel centre."""
    counts = np.zeros((size, size), np.int32)
    for f in range(faces.shape[0]):
        t = triangle(pts, faces, f, size)
        if not t[0]:
            continue
        for j in range(t[9], t[10] + 1):
            for i in range(t[7], t[8] + 1):
                if inside(t, i + 0.5, j + 0.5):
                    counts[j, i] += 1
    return counts


@numba.njit(cache=True)
def covers_overlap(pts, faces, counts):
    """Per face: does any texel centre it covers have ``counts >= 2`` (same rules as
    ``coverage``)."""
    size = counts.shape[0]
    out = np.zeros(faces.shape[0], np.bool_)
    for f in range(faces.shape[0]):
        t = triangle(pts, faces, f, size)
        if not t[0]:
            continue
        for j in range(t[9], t[10] + 1):
            for i in range(t[7], t[8] + 1):
                if counts[j, i] >= 2 and inside(t, i + 0.5, j + 0.5):
                    out[f] = True
                    break
            if out[f]:
                break
    return out
