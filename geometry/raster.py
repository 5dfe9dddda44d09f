"""Exact rasterisation of UV triangles on the CPU (numba), for coverage questions."""

from __future__ import annotations

import numpy as np


def coverage_counts(uv: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """(size, size) how many triangles cover each texel centre (row 0 = v near 0).

    Exact and watertight: edge functions are evaluated in one canonical vertex order, and a
    centre exactly on an edge belongs to one side only (a top-left style rule), so a texel on
    a shared edge inside a chart counts once and only true overlaps count twice.
    """
    from ._raster_numba import coverage

    pts = np.ascontiguousarray(np.asarray(uv, np.float64) * size)
    return coverage(pts, np.ascontiguousarray(faces, np.int64), int(size))


def overlapping_faces(uv: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """(M,) bool: faces covering a texel centre that another face covers too, at ``size`` px
    (the texels ``coverage_counts`` counts twice, traced back to their faces)."""
    from ._raster_numba import coverage, covers_overlap

    pts = np.ascontiguousarray(np.asarray(uv, np.float64) * size)
    fc = np.ascontiguousarray(faces, np.int64)
    counts = coverage(pts, fc, int(size))
    if counts.max(initial=0) < 2:
        return np.zeros(len(fc), bool)
    return covers_overlap(pts, fc, counts)
