"""Uniform random points on a triangle surface."""

from __future__ import annotations

import numpy as np

from .normals import face_areas


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator,
                   areas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform points as (face ids (n,), barycentric coordinates (n, 3)).

    Draws ``n`` uniforms for the faces (inverse CDF of the area), then two per point for the
    position inside its face (the square-root warp, uniform over the triangle)."""
    area = face_areas(vertices, faces) if areas is None else areas
    cdf = np.cumsum(area)
    idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1]), len(faces) - 1)
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    return idx, np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)


def surface_points(vertices: np.ndarray, faces: np.ndarray, idx: np.ndarray,
                   bary: np.ndarray) -> np.ndarray:
    """Positions of barycentric points on the given faces."""
    t = np.asarray(vertices, np.float64)[np.asarray(faces)[idx]]
    return bary[:, :1] * t[:, 0] + bary[:, 1:2] * t[:, 1] + bary[:, 2:3] * t[:, 2]
