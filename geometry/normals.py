"""Face normals and areas, smooth vertex normals: one implementation each.

Face normals and areas come from one numba pass over the faces (bitwise what the numpy
formulation ``cross(b - a, c - a)`` gives). Vertex normals are the area-weighted sum of the
adjacent faces' cross products, accumulated corner 0 of every face first, then 1, then 2 (the
order ``np.add.at`` adds in, so the sums are the same to the last bit as the numpy code they
replace), normalised. A vertex whose faces cancel out (a two-sided sheet) or are degenerate
takes the normal of one adjacent face, and +Y if even that is degenerate, so every normal is
unit length as glTF requires.
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from .topology import _floats, _ints, kernels


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area of each face."""
    return kernels()["face_areas"](_floats(vertices), _ints(faces))


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit geometric normals per face (zero for degenerate faces)."""
    return kernels()["face_normals"](_floats(vertices), _ints(faces))


def face_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per face: (b - a) x (c - a), twice the area along the normal."""
    return kernels()["face_cross"](_floats(vertices), _ints(faces))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) float64 area-weighted unit vertex normals (see the module docstring)."""
    vertices, faces = _floats(vertices), _ints(faces)
    n_vertices = len(vertices)
    fn = face_cross(vertices, faces)
    n = kernels()["accumulate_corners"](faces, fn, n_vertices)
    length = np.linalg.norm(n, axis=1)
    bad = length <= 1e-12 * max(float(length.max(initial=0.0)), 1e-300)
    if bad.any():
        flen = np.linalg.norm(fn, axis=1, keepdims=True)
        unit_fn = np.where(flen > 0, fn / np.where(flen > 0, flen, 1.0), [0.0, 1.0, 0.0])
        fallback = np.tile([0.0, 1.0, 0.0], (n_vertices, 1))
        for k in range(3):
            fallback[faces[:, k]] = unit_fn
        n[bad] = fallback[bad]
        length = np.linalg.norm(n, axis=1)
    return n / np.where(length > 0, length, 1.0)[:, None]


def smooth_normals(mesh: MeshData) -> np.ndarray:
    """(N, 3) float32 area-weighted unit vertex normals of a mesh (where its own are stale)."""
    return vertex_normals(mesh.vertices, mesh.faces).astype(np.float32)


def seamless_normals(mesh: MeshData) -> np.ndarray:
    """Smooth vertex normals computed on the mesh welded by position, so UV seams (where
    vertices are split) do not show as shading creases."""
    from .weld import weld_ids

    wid = weld_ids(mesh.vertices)
    positions = np.zeros((int(wid.max()) + 1 if len(wid) else 0, 3))
    positions[wid] = mesh.vertices
    return smooth_normals(MeshData(positions, wid[mesh.faces]))[wid]


def unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-30, n, 1.0)
