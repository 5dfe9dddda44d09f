"""QEM optimal placement after a collapse: every kept vertex moves to the point that best fits
the dense surface around it.

Every surviving vertex gathers the area-weighted plane quadrics of the dense faces in its cell
on the surface (multi-source breadth-first search over the dense edges, so the two sides of a
thin wall never mix) and moves to the point that minimises them, regularised towards its
original position. Three guards keep that honest against the dense surface: a move is clamped
to MAX_STEP mean dense edge lengths (QEM would otherwise "sharpen" the bevel marching cubes
cuts into every crease, away from the dense surface); a move is kept only where it lowers the
distance of the cell's dense vertices to the vertex's one-ring; moves that would flip a face
are undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import topology as kernels
from ..geometry.normals import face_normals

MAX_STEP = 0.25  # a re-placed vertex moves at most this many mean dense edge lengths


ERROR_STRIDE = 2  # the move test uses every 2nd dense vertex (cells hold dozens)


@dataclass(frozen=True)
class DenseQuadrics:
    """Per welded-position quadrics of the dense mesh and its edge graph, computed once per
    asset."""

    positions: np.ndarray   # (P, 3) welded positions
    faces: np.ndarray       # (M, 3) dense faces over welded ids
    q: np.ndarray           # (P, 9) upper triangle of sum w n n^T (xx xy xz yy yz zz), then
                            #        sum -w d n; w = a third of each adjacent face's area
    indptr: np.ndarray      # CSR vertex adjacency over welded ids
    indices: np.ndarray
    edge_length: float      # mean dense edge length


def _kernels() -> dict:
    """The numba kernels of ``_qem_numba``, imported on first use (importing numba costs
    ~0.5 s, which processes that never simplify should not pay; Python's import lock makes a
    first use from two threads safe), compiled once and cached on disk."""
    from . import _qem_numba

    return vars(_qem_numba)


def dense_quadrics(positions: np.ndarray, faces: np.ndarray) -> DenseQuadrics:
    """Area-weighted plane quadrics of the dense faces (a third to each corner) and the
    symmetric vertex adjacency."""
    P = len(positions)
    acc = _kernels()["quadrics"](np.ascontiguousarray(positions, np.float64),
                                 np.ascontiguousarray(faces, np.int64), P)
    indptr, indices = _kernels()["adjacency"](np.ascontiguousarray(faces, np.int64), P)
    some = faces[:: max(1, len(faces) // 20_000)]  # a sample gives the mean well enough
    e = positions[some[:, 1]] - positions[some[:, 0]]
    edge = float(np.sqrt((e * e).sum(1)).mean()) if len(some) else 0.0
    return DenseQuadrics(positions, faces, acc, indptr, indices, edge)


def _cells(dq: DenseQuadrics, kept: np.ndarray) -> np.ndarray:
    """Per dense vertex: the index of the kept vertex it is fewest edges from (its cell), by a
    multi-source breadth-first search over the dense adjacency; -1 where none is connected."""
    return kernels.nearest_seed(dq.indptr, dq.indices, kept)


def place_vertices(dq: DenseQuadrics, kept: np.ndarray, faces: np.ndarray, start: np.ndarray,
                   regularization: float, locked: np.ndarray) -> tuple[np.ndarray, int]:
    """QEM optimal placement of simplified vertices after the collapse.

    ``kept``: welded dense id each simplified vertex sits on (its Voronoi seed); ``faces``
    index the simplified vertices; ``start`` their current positions. Each vertex minimises
    the quadric of its cell plus ``regularization`` x trace x |x - start|^2; locked vertices,
    moves that do not lower the cell's distance to the one-ring, and the corners of faces a
    move would flip keep ``start``. Returns (positions, vertices left in place).
    """
    cell = _cells(dq, kept)
    ok = cell >= 0
    K = len(kept)
    cq = np.stack([np.bincount(cell[ok], dq.q[ok, c], K) for c in range(9)], 1)
    A = np.empty((K, 3, 3))
    for c, (i, j) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]):
        A[:, i, j] = A[:, j, i] = cq[:, c]
    b = cq[:, 6:]
    reg = regularization * np.trace(A, axis1=1, axis2=2) + 1e-300
    x = np.linalg.solve(A + reg[:, None, None] * np.eye(3), (b + reg[:, None] * start)[..., None])
    x = x[..., 0]
    bad = locked | ~np.isfinite(x).all(1)
    x[bad] = start[bad]
    step = x - start
    limit = MAX_STEP * dq.edge_length
    length = np.linalg.norm(step, axis=1)
    far = length > limit
    x[far] = start[far] + step[far] * (limit / length[far])[:, None]
    x = _keep_improvements(dq, cell, faces, start, x)
    n0 = face_normals(start, faces)
    for _ in range(4):  # undo moves that flip or fold a face, until none does
        n1 = face_normals(x, faces)
        flipped = np.einsum("ij,ij->i", n0, n1) < 0.2
        if not flipped.any():
            break
        x[np.unique(faces[flipped])] = start[np.unique(faces[flipped])]
    return x, int(np.sum(np.all(x == start, axis=1) & ~locked))


def _keep_improvements(dq: DenseQuadrics, cell: np.ndarray, faces: np.ndarray,
                       start: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Keep a vertex's move only where it lowers the distance of its cell's dense points to
    its one-ring. The cell quadric is a proxy: a cell that spills over a crease onto a
    feature other vertices represent would pull a vertex off an exact flat; this catches it."""
    K = len(start)
    order = np.argsort(faces.ravel(), kind="stable")
    ring = (order // 3).astype(np.int64)
    ring_ptr = np.concatenate([[0], np.cumsum(np.bincount(faces.ravel(), minlength=K))])
    weight = dq.q[:, 0] + dq.q[:, 3] + dq.q[:, 5]  # a third of the adjacent area
    e0, e1 = _kernels()["cell_errors"](dq.positions, weight, cell, ring_ptr.astype(np.int64),
                                       ring, faces, start, x, K, ERROR_STRIDE)
    worse = np.any(x != start, axis=1) & (e1 >= e0)
    x = x.copy()
    x[worse] = start[worse]
    return x
