"""Closest points and rays against a triangle mesh: Embree's BVH through open3d's
``RaycastingScene`` (about a million closest-point queries per second on a CPU core)."""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from .normals import unit, vertex_normals


def raycasting_scene(vertices: np.ndarray, faces: np.ndarray, threads: int = 0):
    """An open3d ``RaycastingScene`` holding one mesh (float32 positions, uint32 indices);
    ``threads`` bounds the threads that build its BVH (0 = all cores)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene(nthreads=int(threads))
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices).astype(np.float32)),
                        o3d.core.Tensor(np.asarray(faces).astype(np.uint32)))
    return scene


def closest_points(scene, points: np.ndarray, threads: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(closest points (T, 3), face ids (T,), barycentric coordinates (T, 3)) on the scene,
    on at most ``threads`` threads (0 = all cores)."""
    import open3d as o3d

    out = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points).astype(np.float32)),
                                       nthreads=int(threads))
    q = out["points"].numpy().astype(np.float64)
    prim = out["primitive_ids"].numpy().astype(np.int64)
    uv = out["primitive_uvs"].numpy().astype(np.float64)
    return q, prim, np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)


def cast_rays(scene, origins: np.ndarray, directions: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distance along the ray (T,), inf on a miss; face ids (T,), -1 on a miss; barycentric
    coordinates (T, 3)) of the first hit of each ray on the scene."""
    import open3d as o3d

    rays = np.concatenate([np.asarray(origins), np.asarray(directions)], axis=1)
    hit = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
    t = hit["t_hit"].numpy().astype(np.float64)
    prim = hit["primitive_ids"].numpy().astype(np.int64)
    miss = ~np.isfinite(t) | (prim == o3d.t.geometry.RaycastingScene.INVALID_ID)
    t[miss] = np.inf
    prim[miss] = -1
    uv = hit["primitive_uvs"].numpy().astype(np.float64)
    return t, prim, np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)


class ClosestSurface:
    """Closest-point queries on one mesh, with its smooth normal at the answer, on at most
    ``threads`` threads (0 = all cores)."""

    def __init__(self, mesh: MeshData, threads: int = 0) -> None:
        self.threads = int(threads)
        self.scene = raycasting_scene(mesh.vertices, mesh.faces, self.threads)
        self.faces = mesh.faces
        self.normals = (vertex_normals(mesh.vertices, mesh.faces)
                        if mesh.vertex_normals is None
                        else unit(np.asarray(mesh.vertex_normals, np.float64)))

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance (T,), unit normal (T, 3)) of the closest surface point."""
        q, prim, bary = closest_points(self.scene, points, self.threads)
        n = unit(np.einsum("ik,ikc->ic", bary, self.normals[self.faces[prim]]))
        return np.linalg.norm(q - points, axis=1), n
