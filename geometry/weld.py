"""Welding: vertices at equal (or nearly equal) positions become one.

Three questions, one module: ``weld_ids`` numbers exact positions (UV seams and part borders
split vertices that must still move and be judged together); ``weld`` merges positions within
a tolerance for topology checks (metrics); ``merge_vertices`` is cleanup's repair weld, which
keeps UV seams split and renumbers vertices in order of first use.

All three reduce each row to one sortable scalar (``topology.row_keys``, or a 64-bit hash of
the coordinates' bits), so ``np.unique`` is a 1-d sort, several times faster than
``np.unique(axis=0)`` on a million rows; the groups are exactly those of the row-wise unique.
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from .topology import first_use, row_keys


def weld_ids(vertices: np.ndarray) -> np.ndarray:
    """Id of each vertex's exact position (vertices at equal positions share one id), so seams
    split for UVs or parts move together and watertightness is judged on positions.

    A 64-bit hash of the coordinates' bits is uniqued (fast, 1-D); a hash collision between
    different positions is detected and answered with an exact row-wise unique."""
    v = np.ascontiguousarray(vertices, np.float64) + 0.0  # -0.0 -> 0.0
    if len(v) == 0:
        return np.zeros(0, np.int64)
    bits = v.view(np.uint64)
    h = (bits[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (bits[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)) \
        ^ (bits[:, 2] * np.uint64(0x165667B19E3779F9))
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    if np.array_equal(v[first[inverse]], v):
        return inverse
    rows = v.view(np.dtype((np.void, v.dtype.itemsize * 3))).ravel()
    return np.unique(rows, return_inverse=True)[1].reshape(-1).astype(np.int64)


def weld(vertices: np.ndarray, faces: np.ndarray, tolerance: float = 1e-7
         ) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at equal positions (within ``tolerance`` x bbox diagonal); drop faces
    that collapse. Returns (vertices, faces) of the welded mesh; each welded vertex sits at
    the position of the first vertex of its group, numbered in the order of their grid cells
    (what ``np.unique(axis=0)`` of the rounded positions gives)."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(v) == 0 or len(f) == 0:
        return v.reshape(-1, 3), f
    diag = float(np.linalg.norm(v.max(0) - v.min(0))) or 1.0
    step = tolerance * diag
    if step > 0:
        key = np.round(v / step).astype(np.int64)
        _, first, inverse = np.unique(row_keys(key - key.min(axis=0)), return_index=True,
                                      return_inverse=True)
    else:
        wid = weld_ids(v)
        _, first, inverse = np.unique(wid, return_index=True, return_inverse=True)
    f2 = inverse.reshape(-1)[f]
    ok = (f2[:, 0] != f2[:, 1]) & (f2[:, 1] != f2[:, 2]) & (f2[:, 2] != f2[:, 0])
    return v[first], f2[ok]


def merge_vertices(mesh: MeshData, tolerance: float) -> MeshData:
    """Weld vertices on a grid of ``tolerance`` x bbox diagonal; unused vertices are dropped.

    UVs, when present, are part of the key, so texture seams stay split.
    """
    if mesh.n_vertices == 0:
        return mesh
    lo, hi = mesh.bounds()
    step = tolerance * float(np.linalg.norm(hi - lo))
    uv = None if mesh.uv is None else np.round(np.asarray(mesh.uv, np.float64) * 1e6)
    if step > 0 and np.isfinite(step):
        key = np.round((mesh.vertices - lo) / step).astype(np.int64)
        if uv is not None:
            key = np.hstack([key, (uv - uv.min(axis=0)).astype(np.int64)])
        # one int64 per row where it fits: a 1-d sort, much faster than unique(axis=0)
        _, first, inverse = np.unique(row_keys(key), return_index=True, return_inverse=True)
    else:  # merge_tolerance 0 (or a single point): only exact duplicates weld
        key = np.asarray(mesh.vertices, np.float64) + 0.0  # -0.0 -> 0.0
        if uv is not None:
            key = np.hstack([key, uv])
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    welded = inverse.reshape(-1)[mesh.faces]
    # number the welded vertices in order of first use by the faces (unused ones go): the
    # sort above left them in grid order, where a face's corners lie far apart in memory,
    # and every later step walks the faces
    rank, used = first_use(welded, len(first))
    src = first[used]
    pick = lambda a: None if a is None else np.asarray(a)[src]
    return MeshData(mesh.vertices[src], rank[welded], mesh.face_labels,
                    pick(mesh.uv), pick(mesh.vertex_colors), pick(mesh.vertex_normals))
