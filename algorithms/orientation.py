"""Orientation: consistent winding per edge-connected patch, then the right side out."""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from ..geometry import topology as kernels
from ..geometry.derived import edge_table as derived_edge_table
from ..geometry.derived import face_areas
from ..geometry.topology import edge_table


def _manifold_face_pairs(faces: np.ndarray, table: tuple | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge used by exactly two faces; whether both traverse that
    edge in the same direction (i.e. their windings disagree); and, per face, whether it has a
    border or non-manifold edge (its patch is then not closed)."""
    _, face_edge, counts = table if table is not None else edge_table(faces)
    slots, _ = kernels.manifold_slots(face_edge, counts)
    open_face = (counts[face_edge] != 2).any(axis=1)
    pairs = slots // 3
    keep = pairs[:, 0] != pairs[:, 1]
    slots, pairs = slots[keep], pairs[keep]
    # the vertex each face starts the shared edge from: the same vertex = the same direction
    start = np.ascontiguousarray(faces).reshape(-1)[slots]
    return pairs, start[:, 0] == start[:, 1], open_face


def orient_faces(mesh: MeshData) -> tuple[MeshData, int]:
    """Consistent winding per edge-connected patch, then the right side out.

    Winding: a BFS over the face graph per patch, each face's flip parity that of the face it
    was reached from, XOR whether the two disagree on their shared edge (a numba kernel, linear
    time). Side: a closed patch gets a positive signed volume; an open patch (where "outside"
    is undefined) keeps the orientation most of its area already had. Face order is unchanged,
    so per-face labels need no remapping. Returns the mesh and the number of faces flipped.
    """
    m = mesh.n_faces
    if m == 0:
        return mesh, 0
    pairs, disagree, open_face = _manifold_face_pairs(mesh.faces, derived_edge_table(mesh))
    n_patch, patch, flip = kernels.winding_patches(m, pairs, disagree)
    faces = np.where(flip[:, None], mesh.faces[:, ::-1], mesh.faces)
    vol = kernels.patch_volumes(mesh.vertices, faces, patch, n_patch)
    area = face_areas(mesh)
    flipped_area = np.bincount(patch, weights=area * flip, minlength=n_patch)
    kept_area = np.bincount(patch, weights=area * ~flip, minlength=n_patch)
    closed = np.bincount(patch, weights=open_face, minlength=n_patch) == 0
    invert = np.where(closed, vol < 0, flipped_area > kept_area)
    flip ^= invert[patch]
    faces = np.where(flip[:, None], mesh.faces[:, ::-1], mesh.faces)
    return mesh.replace(faces=faces), int(flip.sum())
