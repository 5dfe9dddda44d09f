"""Two-sided surface error between a mesh and its simplification (Chamfer, Hausdorff, normal
error), from uniform area samples and Embree closest points, with float64 distances and an
exact maximum (see ``geometry.closest.exact_distances``)."""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from ..geometry.closest import closest_points, exact_distances, raycasting_scene
from ..geometry.normals import face_normals
from ..geometry.sampling import sample_surface, surface_points


def _samples(mesh: MeshData, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform points on the surface and the face each lies on."""
    idx, bary = sample_surface(mesh.vertices, mesh.faces, n, rng)
    return surface_points(mesh.vertices, mesh.faces, idx, bary), idx


def _closest(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(distance, nearest face) of each point: Embree's face, the distance exact (float64,
    and the largest made exact by a search; see ``exact_distances``)."""
    _, prim, _ = closest_points(raycasting_scene(vertices, faces), points)
    return exact_distances(vertices, faces, points, prim), prim


def surface_error(dense: MeshData, simple: MeshData, samples: int = 100_000,
                  seed: int = 0) -> dict[str, float]:
    """Two-sided point-to-surface error of ``simple`` against ``dense``, with the dense mesh's
    bounding-box diagonal scaled to 1: ``chamfer`` (mean of the two mean distances),
    ``hausdorff`` (max of the two max distances), ``normal_error_deg`` (mean angle between a
    dense sample's face normal and the normal of the closest simplified face)."""
    rng = np.random.default_rng(seed)
    lo, hi = dense.bounds()
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    pd, fd = _samples(dense, samples, rng)
    ps, _ = _samples(simple, samples, rng)
    a, prim = _closest(simple.vertices, simple.faces, pd)
    b, _ = _closest(dense.vertices, dense.faces, ps)
    nd = face_normals(dense.vertices, dense.faces[fd])
    ns = face_normals(simple.vertices, simple.faces[prim])
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", nd, ns), -1, 1)))
    return {"chamfer": float((a.mean() + b.mean()) / 2 / diag),
            "hausdorff": float(max(a.max(), b.max()) / diag),
            "normal_error_deg": float(angle.mean())}
