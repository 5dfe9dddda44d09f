"""Derived data of a mesh, computed once per content and shared (``MeshData.derived``).

The stages and metrics ask these of the same mesh several times (parts asks for face normals
in three places, cleanup's checks and metrics for the same edge table); each accessor computes
once and returns the cached value until the mesh's arrays change. Float arrays come back
read-only, so a caller cannot change the shared copy by accident; integer tables feed the
numba kernels as they are (a read-only array is a different type to numba).
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from . import components as _components
from . import normals as _normals
from . import topology as _topology
from .closest import RayScene


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def face_areas(mesh: MeshData) -> np.ndarray:
    """Area of each face (read-only, cached)."""
    return mesh.derived("face_areas", lambda: _frozen(
        _normals.face_areas(mesh.vertices, mesh.faces)))


def face_normals(mesh: MeshData) -> np.ndarray:
    """Unit geometric normal of each face, zero for degenerate faces (read-only, cached)."""
    return mesh.derived("face_normals", lambda: _frozen(
        _normals.face_normals(mesh.vertices, mesh.faces)))


def edge_table(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``topology.edge_table`` of the mesh's faces (cached; depends on the faces only)."""
    return mesh.derived("edge_table", lambda: _topology.edge_table(mesh.faces), ("faces",))


def manifold_pairs(mesh: MeshData) -> tuple[np.ndarray, np.ndarray]:
    """Face pairs across every edge exactly two faces use, and those edges (cached)."""
    def compute():
        _, face_edge, counts = edge_table(mesh)
        return _topology.manifold_pairs(face_edge, counts)

    return mesh.derived("manifold_pairs", compute, ("faces",))


def vertex_fans(mesh: MeshData) -> tuple[np.ndarray, np.ndarray]:
    """``topology.vertex_fans`` of the mesh (cached)."""
    return mesh.derived("vertex_fans", lambda: _topology.vertex_fans(
        mesh.faces, table=edge_table(mesh), pairs=manifold_pairs(mesh)), ("faces",))


def edge_face_pairs(mesh: MeshData) -> tuple[np.ndarray, np.ndarray]:
    """``topology.edge_face_pairs`` of the mesh (cached)."""
    return mesh.derived("edge_face_pairs", lambda: _topology.edge_face_pairs(
        mesh.faces, table=edge_table(mesh)), ("faces",))


def vertex_components(mesh: MeshData) -> tuple[int, np.ndarray]:
    """(count over all vertices, component per face) through shared vertices (cached)."""
    return mesh.derived("vertex_components", lambda: _components.vertex_components(mesh),
                        ("vertices", "faces"))


def ray_scene(mesh: MeshData) -> RayScene:
    """An Embree scene of the mesh for first-hit ray queries (cached: the BVH of a dense mesh
    costs far more than the rays cleanup casts at it)."""
    return mesh.derived("ray_scene", lambda: RayScene.of(mesh))


def keep_ray_scene(before: MeshData, after: MeshData, kept: np.ndarray) -> None:
    """Let ``after``, which keeps faces ``kept`` (indices, increasing) of ``before`` in order
    with the same corner positions (a face subset, bow-ties split), use ``before``'s cached
    scene instead of building its own. Does nothing when ``before`` has none."""
    scene = before.cached("ray_scene")
    if scene is None:
        return
    kept = np.asarray(kept, np.int64)
    if len(kept) != after.n_faces:
        raise ValueError(f"{len(kept)} kept faces for a mesh of {after.n_faces}")
    after.derived("ray_scene", lambda: scene.subset(kept, before.n_faces))


def subset_faces(mesh: MeshData, keep: np.ndarray) -> MeshData:
    """``mesh.subset_faces(keep)`` that hands its cached edge table on.

    The subset keeps faces in order and renumbers the used vertices in order, so its edge
    table is the kept faces' edges of the old one, in the same (low, high) order: a few
    gathers instead of a new table (~0.3-0.6 s of CPU at a million faces); likewise its
    manifold face pairs. The results are exactly ``topology.edge_table`` and
    ``topology.manifold_pairs`` of the subset's faces (tests/geometry/test_derived.py).
    """
    out = mesh.subset_faces(keep)
    if out is mesh:
        return out
    table = mesh.cached("edge_table", ("faces",))
    if table is None or mesh.n_faces == 0:
        return out
    edges, face_edge, _ = table
    keep = np.asarray(keep)
    if keep.dtype != bool:
        keep = np.isin(np.arange(mesh.n_faces), keep)
    kept_fe = face_edge[keep]
    if out.n_faces == 0:
        return out
    used_edge = np.zeros(len(edges), bool)
    used_edge[kept_fe.ravel()] = True
    new_edge = np.cumsum(used_edge) - 1
    used_vertex = np.zeros(mesh.n_vertices, bool)
    used_vertex[mesh.faces[keep].ravel()] = True
    new_vertex = np.cumsum(used_vertex) - 1
    sub_fe = new_edge[kept_fe]
    sub_edges = new_vertex[edges[used_edge]]
    counts = np.bincount(sub_fe.ravel(), minlength=len(sub_edges)).astype(np.int64)
    out.derived("edge_table", lambda: (sub_edges, sub_fe, counts), ("faces",))
    pairs = mesh.cached("manifold_pairs", ("faces",))
    if pairs is not None and int(table[2].max()) <= 2:
        # with no edge of more than two faces before, the subset's pairs are the old pairs
        # whose two faces stay, in the same edge order
        p, e = pairs
        both = keep[p[:, 0]] & keep[p[:, 1]]
        new_face = np.cumsum(keep) - 1
        sub_pairs, sub_e = new_face[p[both]], new_edge[e[both]]
        out.derived("manifold_pairs", lambda: (sub_pairs, sub_e), ("faces",))
    return out


def split_vertices_table(mesh: MeshData, out: MeshData) -> None:
    """Hand ``mesh``'s cached edge table on to ``out``, the same faces with some corners moved
    to new vertices appended after the old ones (bow-tie fans split apart). On an
    edge-manifold mesh (no edge of more than two faces: cleanup removes those first) the two
    faces across an edge share their fan at each end, so each old edge is one new edge whose
    ends are the new ids of its corners; the table is re-sorted by (low, high). Does nothing
    when ``mesh`` has no cached table or an edge has more than two faces."""
    table = mesh.cached("edge_table", ("faces",))
    if table is None or out.n_faces != mesh.n_faces or mesh.n_faces == 0:
        return
    edges, face_edge, counts = table
    if int(counts.max()) > 2:
        return
    # the new ends of each edge, from any face that uses it (both give the same ends)
    slot = np.empty(len(edges), np.int64)
    slot[face_edge.ravel()] = np.arange(face_edge.size)
    f, k = slot // 3, slot % 3
    a, b = out.faces[f, k], out.faces[f, (k + 1) % 3]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((hi, lo))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    new_edges = np.stack([lo[order], hi[order]], axis=1)
    new_fe = rank[face_edge]
    new_counts = counts[order].copy()
    out.derived("edge_table", lambda: (new_edges, new_fe, new_counts), ("faces",))
    pairs = mesh.cached("manifold_pairs", ("faces",))
    if pairs is not None:  # the same face pairs, in the new edge order
        p, e = pairs
        e_new = rank[e]
        by = np.argsort(e_new, kind="stable")
        out.derived("manifold_pairs", lambda: (p[by], e_new[by]), ("faces",))
