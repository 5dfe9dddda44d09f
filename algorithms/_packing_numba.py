"""numba kernels of ``algorithms.chart_packing``, at module level so that numba's on-disk cache
holds them (nested functions were compiled again in every process)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def row_spans(pts, faces, h):
    # per cell row r (strip r <= y < r + 1): the cells [lo, hi] any triangle touches;
    # exact per triangle (clipped to the strip), conservative for the chart (holes
    # inside a row are filled)
    lo = np.full(h, 1 << 30, np.int64)
    hi = np.full(h, -1, np.int64)
    for f in range(faces.shape[0]):
        xs = np.empty(3)
        ys = np.empty(3)
        for j in range(3):
            xs[j] = pts[faces[f, j], 0]
            ys[j] = pts[faces[f, j], 1]
        r0 = max(int(np.floor(ys.min())), 0)
        r1 = min(int(np.floor(ys.max())), h - 1)
        for r in range(r0, r1 + 1):
            y0, y1 = float(r), float(r + 1)
            xmin, xmax = np.inf, -np.inf
            for j in range(3):
                ax, ay, bx, by = xs[j], ys[j], xs[(j + 1) % 3], ys[(j + 1) % 3]
                if y0 <= ay <= y1:
                    xmin, xmax = min(xmin, ax), max(xmax, ax)
                if ay != by:
                    for yc in (y0, y1):
                        t = (yc - ay) / (by - ay)
                        if 0.0 <= t <= 1.0:
                            xc = ax + t * (bx - ax)
                            xmin, xmax = min(xmin, xc), max(xmax, xc)
            if xmin <= xmax:
                lo[r] = min(lo[r], int(np.floor(xmin)))
                hi[r] = max(hi[r], int(np.floor(xmax)))
    return lo, hi

@numba.njit(cache=True, nogil=True)
def pack(p, faces, fstart, order, extents, grid, d):
    # first fit, lowest row then leftmost column, on a grid x grid occupancy raster;
    # each chart's rows are tested dilated by d cells (the padding), so two charts'
    # cells are never closer than d cells, and none is closer than d to the border
    corners = np.zeros((fstart.shape[0] - 1, 2), np.int64)
    # left[row, x]: the last occupied cell at or left of x in that row (-1: none),
    # so testing a span and jumping past the obstacle are one lookup each
    left = np.full((grid, grid), -1, np.int64)
    free = np.full(grid, grid, np.int64)
    for c in order:
        sub = faces[fstart[c]:fstart[c + 1]]
        h = extents[c, 1]
        if extents[c, 0] + 2 * d > grid or h + 2 * d > grid:
            return corners, False
        lo, hi = row_spans(p, sub, h)
        hd = h + 2 * d  # dilated rows: chart row r is dilated row r + d
        dlo = np.full(hd, 1 << 30, np.int64)
        dhi = np.full(hd, -(1 << 30), np.int64)
        for r in range(h):
            if hi[r] < 0:
                continue
            for q in range(r, r + 2 * d + 1):
                dlo[q] = min(dlo[q], lo[r] - d)
                dhi[q] = max(dhi[q], hi[r] + d)
        xmin_ok = 0
        xmax_ok = grid
        for q in range(hd):
            if dhi[q] >= dlo[q]:
                xmin_ok = max(xmin_ok, -dlo[q])
                xmax_ok = min(xmax_ok, grid - 1 - dhi[q])
        placed = False
        for y in range(grid - hd + 1):
            skip = False
            for q in range(hd):
                if dhi[q] >= dlo[q] and free[y + q] < dhi[q] - dlo[q] + 1:
                    skip = True
                    break
            if skip:
                continue
            x = xmin_ok
            while x <= xmax_ok:
                jump = -1
                for q in range(hd):
                    if dhi[q] < dlo[q]:
                        continue
                    last = left[y + q, x + dhi[q]]
                    if last >= x + dlo[q]:
                        jump = last - dlo[q] + 1
                        break
                if jump < 0:
                    placed = True
                    break
                x = jump
            if placed:
                corners[c, 0] = x
                corners[c, 1] = y + d
                for r in range(h):
                    if hi[r] < 0:
                        continue
                    row = y + d + r
                    a, b = x + lo[r], x + hi[r]
                    for cx in range(a, b + 1):
                        if left[row, cx] != cx:
                            free[row] -= 1
                            left[row, cx] = cx
                    cx = b + 1
                    while cx < grid and left[row, cx] < b:
                        left[row, cx] = b
                        cx += 1
                break
        if not placed:
            return corners, False
    return corners, True
