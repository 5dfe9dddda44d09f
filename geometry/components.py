"""Connected components: one union-find kernel for every graph the pipeline asks about.

Vertices joined through faces (floaters, pieces, the largest component), faces joined through
shared edges (regions, flood fills), UV vertices joined through faces (charts): each is the
components of a graph given as an edge list. ``label_components`` numbers them in order of
each component's lowest node, exactly as ``scipy.sparse.csgraph.connected_components`` does
(so results that depend on the numbering stay the same), in one linear pass instead of a
sparse-matrix build and sort.
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from .topology import kernels


def label_components(n_nodes: int, a: np.ndarray, b: np.ndarray) -> tuple[int, np.ndarray]:
    """(count, label per node) of the undirected graph with edges ``a[i] - b[i]``."""
    count, labels = kernels()["components"](int(n_nodes), np.ascontiguousarray(a, np.int64),
                                            np.ascontiguousarray(b, np.int64))
    return int(count), labels


def vertex_labels(faces: np.ndarray, n_vertices: int) -> tuple[int, np.ndarray]:
    """(count, component per vertex) of vertices joined through faces; an unused vertex is a
    component of its own."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    return label_components(n_vertices, np.concatenate([f[:, 0], f[:, 1]]),
                            np.concatenate([f[:, 1], f[:, 2]]))


def vertex_components(mesh: MeshData) -> tuple[int, np.ndarray]:
    """Connected components through shared vertices: (count over all vertices, component id
    per face)."""
    count, labels = vertex_labels(mesh.faces, mesh.n_vertices)
    return count, labels[mesh.faces[:, 0]]


def face_components(mesh: MeshData) -> tuple[int, np.ndarray]:
    """Connected components through shared vertices, numbered densely over the faces:
    (count, component id per face)."""
    _, labels = vertex_labels(mesh.faces, mesh.n_vertices)
    _, comp = np.unique(labels[mesh.faces[:, 0]], return_inverse=True)
    return int(comp.max()) + 1 if len(comp) else 0, comp.reshape(-1)


def count_components(n_vertices: int, faces: np.ndarray) -> int:
    """Connected pieces of surface (vertices linked through faces; unused vertices ignored)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return 0
    _, labels = vertex_labels(f, n_vertices)
    return len(np.unique(labels[f[:, 0]]))


def face_graph_labels(n_faces: int, pairs: np.ndarray) -> tuple[int, np.ndarray]:
    """(count, component per face) of faces joined through the given face pairs."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return label_components(n_faces, pairs[:, 0], pairs[:, 1])


def flood_from_seeds(n_faces: int, pairs: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """(M,) bool: faces connected to a seed through the given face pairs."""
    if n_faces == 0:
        return np.zeros(0, bool)
    count, comp = face_graph_labels(n_faces, pairs)
    reached = np.zeros(count, bool)
    reached[comp[seeds]] = True
    return reached[comp]


def pieces_by_volume(mesh: MeshData, min_fraction: float) -> tuple[MeshData, int, int]:
    """The closed pieces that enclose at least ``min_fraction`` of the largest piece's volume
    (a visual hull's floaters from noisy masks enclose next to nothing; a product's separate
    parts, a cake's candles or a lid that more views cut free, enclose their own volume), and
    (pieces there were, pieces kept)."""
    n, labels = vertex_labels(mesh.faces, mesh.n_vertices)
    face_comp = labels[mesh.faces[:, 0]]
    present = np.bincount(face_comp, minlength=n) > 0
    pieces = int(present.sum())
    if pieces <= 1:
        return mesh, pieces, pieces
    t = mesh.vertices[mesh.faces]
    six_vol = np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2]))
    vol = np.abs(np.bincount(face_comp, weights=six_vol, minlength=n))
    keep = present & (vol >= min_fraction * vol.max())
    if not keep.any():
        keep = present
    return mesh.subset_faces(keep[face_comp]), pieces, int(keep.sum())


def largest_component(mesh: MeshData) -> tuple[MeshData, int]:
    """The connected piece with the most faces, and how many pieces there were."""
    n, labels = vertex_labels(mesh.faces, mesh.n_vertices)
    face_comp = labels[mesh.faces[:, 0]]
    counts = np.bincount(face_comp, minlength=n)
    pieces = int((counts > 0).sum())
    if pieces <= 1:
        return mesh, pieces
    return mesh.subset_faces(face_comp == int(np.argmax(counts))), pieces
