"""Closedness: which edges are borders, non-manifold or wound inconsistently, and what that
means for a mesh (watertight, manifold) and for each of its parts.

Every answer comes from the one edge table of ``topology.edge_table`` (a linear numba pass),
not from ``np.unique`` over the 3M edge keys of a million-face mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.mesh import MeshData
from .topology import edge_keys, edge_table


@dataclass(frozen=True)
class EdgeStats:
    """Counts of undirected edges by how many faces share them and how they are wound."""

    edges: int
    boundary: int       # used by one face
    nonmanifold: int    # used by three or more faces
    inconsistent: int   # used by two faces wound the same way (one of them is flipped)

    @property
    def watertight(self) -> bool:
        return self.edges > 0 and self.boundary == 0 and self.nonmanifold == 0

    @property
    def manifold(self) -> bool:
        return self.edges > 0 and self.nonmanifold == 0 and self.inconsistent == 0


def edge_stats(faces: np.ndarray, table: tuple | None = None) -> EdgeStats:
    """Classify every undirected edge of a (welded) face array. ``table``: its
    ``edge_table`` when the caller has it (``geometry.derived``)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return EdgeStats(0, 0, 0, 0)
    _, face_edge, counts = table if table is not None else edge_table(f)
    forward = np.bincount(face_edge.ravel(), weights=(f < np.roll(f, -1, axis=1)).ravel(),
                          minlength=len(counts))
    return EdgeStats(
        edges=len(counts),
        boundary=int((counts == 1).sum()),
        nonmanifold=int((counts > 2).sum()),
        inconsistent=int(((counts == 2) & (forward != 1)).sum()),
    )


def is_watertight(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two faces (faces indexed by welded position ids).

    Fast path for the usual case, a closed and consistently wound surface: the half-edges
    a->b with a<b must be exactly the reversed half-edges b->a with b<a, one each."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return False
    a = f.ravel()
    b = f[:, [1, 2, 0]].ravel()
    n = int(f.max()) + 1
    up = a < b
    fwd = np.sort(a[up] * n + b[up])
    bwd = np.sort(b[~up] * n + a[~up])
    if len(fwd) == len(bwd) and np.array_equal(fwd, bwd) and np.all(fwd[1:] != fwd[:-1]):
        return True
    _, counts = np.unique(edge_keys(f), return_counts=True)
    return bool(np.all(counts == 2))


def is_closed(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two faces, in opposite directions (watertight, oriented)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return False
    stats = edge_stats(f)
    return stats.watertight and stats.inconsistent == 0


def boundary_vertices(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Mask of vertices on an open border (an edge used by one face)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    mask = np.zeros(n_vertices, bool)
    if len(f) == 0:
        return mask
    keys, counts = np.unique(edge_keys(f), return_counts=True)
    n = int(f.max()) + 1
    border = keys[counts == 1]
    mask[border // n] = True
    mask[border % n] = True
    return mask


def nonmanifold_vertices(faces: np.ndarray) -> np.ndarray:
    """Vertices of edges shared by more than two faces (welded ids)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return np.zeros(0, np.int64)
    keys, counts = np.unique(edge_keys(f), return_counts=True)
    n = int(f.max()) + 1
    bad = keys[counts > 2]
    return np.unique(np.concatenate([bad // n, bad % n]))


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (divergence theorem); positive when faces wind outward."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return 0.0
    t = np.asarray(vertices, np.float64)[f]
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def part_report(mesh: MeshData) -> dict[str, int]:
    """Parts (face labels) and how many are closed / manifold.

    A part is *watertight* when none of its edges is a border of the mesh and none is used by
    more than two faces (an edge it shares with a neighbouring part counts as closed: the part
    is a closed piece of a closed surface). It is *manifold* when no edge of it has more than
    two faces and none of its vertices is a bow-tie.
    """
    if mesh.n_faces == 0:
        return {"parts": 0, "parts_watertight": 0, "parts_manifold": 0}
    _, part = np.unique(mesh.face_labels, return_inverse=True)
    part = part.reshape(-1)
    n_parts = int(part.max()) + 1
    from . import derived  # the edge table and fans are shared with the caller's other checks

    _, face_edge, counts = derived.edge_table(mesh)
    c = counts[face_edge]
    open_face = (c == 1).any(axis=1)
    nm_face = (c > 2).any(axis=1)
    _, fan_vertex = derived.vertex_fans(mesh)
    fans_per_vertex = np.bincount(fan_vertex, minlength=mesh.n_vertices)
    bowtie_face = (fans_per_vertex[mesh.faces] > 1).any(axis=1)
    bad_closed = np.bincount(part, weights=open_face | nm_face, minlength=n_parts) > 0
    bad_manifold = np.bincount(part, weights=nm_face | bowtie_face, minlength=n_parts) > 0
    return {"parts": n_parts, "parts_watertight": int((~bad_closed).sum()),
            "parts_manifold": int((~bad_manifold).sum())}
