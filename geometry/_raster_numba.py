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
def coverage(pts, faces, size):
    counts = np.zeros((size, size), np.int32)
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0 = pts[i0, 0], pts[i0, 1]
        x1, y1 = pts[i1, 0], pts[i1, 1]
        x2, y2 = pts[i2, 0], pts[i2, 1]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if area == 0:
            continue
        if area < 0:  # make it counter-clockwise; folds still count
            x1, y1, x2, y2 = x2, y2, x1, y1
        lo_x = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
        hi_x = min(int(np.ceil(max(x0, x1, x2) - 0.5)), size - 1)
        lo_y = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
        hi_y = min(int(np.ceil(max(y0, y1, y2) - 0.5)), size - 1)
        o0, o1, o2 = owns(x0, y0, x1, y1), owns(x1, y1, x2, y2), owns(x2, y2, x0, y0)
        for j in range(lo_y, hi_y + 1):
            py = j + 0.5
            for i in range(lo_x, hi_x + 1):
                px = i + 0.5
                e0 = edge(x0, y0, x1, y1, px, py)
                if e0 < 0 or (e0 == 0 and not o0):
                    continue
                e1 = edge(x1, y1, x2, y2, px, py)
                if e1 < 0 or (e1 == 0 and not o1):
                    continue
                e2 = edge(x2, y2, x0, y0, px, py)
                if e2 < 0 or (e2 == 0 and not o2):
                    continue
                counts[j, i] += 1
    return counts


@numba.njit(cache=True)
def covers_overlap(pts, faces, counts):
    # per face: does any texel centre it covers have counts >= 2 (same rules as coverage)
    size = counts.shape[0]
    out = np.zeros(faces.shape[0], np.bool_)
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0 = pts[i0, 0], pts[i0, 1]
        x1, y1 = pts[i1, 0], pts[i1, 1]
        x2, y2 = pts[i2, 0], pts[i2, 1]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if area == 0:
            continue
        if area < 0:
            x1, y1, x2, y2 = x2, y2, x1, y1
        lo_x = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
        hi_x = min(int(np.ceil(max(x0, x1, x2) - 0.5)), size - 1)
        lo_y = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
        hi_y = min(int(np.ceil(max(y0, y1, y2) - 0.5)), size - 1)
        o0, o1, o2 = owns(x0, y0, x1, y1), owns(x1, y1, x2, y2), owns(x2, y2, x0, y0)
        for j in range(lo_y, hi_y + 1):
            py = j + 0.5
            for i in range(lo_x, hi_x + 1):
                if counts[j, i] < 2:
                    continue
                px = i + 0.5
                e0 = edge(x0, y0, x1, y1, px, py)
                if e0 < 0 or (e0 == 0 and not o0):
                    continue
                e1 = edge(x1, y1, x2, y2, px, py)
                if e1 < 0 or (e1 == 0 and not o1):
                    continue
                e2 = edge(x2, y2, x0, y0, px, py)
                if e2 < 0 or (e2 == 0 and not o2):
                    continue
                out[f] = True
                break
            if out[f]:
                break
    return out
