"""Ambient occlusion by ray casting: the unoccluded share of cosine-weighted rays over each
point's hemisphere (Embree through open3d)."""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from ..geometry.closest import raycasting_scene
from ..geometry.normals import unit as _unit

_RAY_BATCH = 2_000_000


def cosine_directions(normals: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(T, k, 3) cosine-weighted directions on each normal's hemisphere (stratified in
    azimuth, one random rotation per point so neighbouring texels do not band)."""
    t = len(normals)
    u1 = rng.random((t, k))
    phi = 2 * np.pi * ((np.arange(k)[None, :] + rng.random((t, 1))) / k)
    r = np.sqrt(u1)
    local = np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(1 - u1)], axis=2)
    axis = np.eye(3)[np.argmin(np.abs(normals), axis=1)]
    tx = _unit(np.cross(normals, axis))
    ty = np.cross(normals, tx)
    return (local[..., :1] * tx[:, None] + local[..., 1:2] * ty[:, None]
            + local[..., 2:3] * normals[:, None])


def ambient_occlusion(mesh: MeshData, points: np.ndarray, normals: np.ndarray, rays: int,
                      distance: float, seed: int) -> np.ndarray:
    """Unoccluded share of ``rays`` cosine-weighted rays per point (1 = open)."""
    import open3d as o3d

    if rays == 0 or len(points) == 0:
        return np.ones(len(points))
    scene = raycasting_scene(mesh.vertices, mesh.faces)
    rng = np.random.default_rng(seed)
    eps = 1e-3 * distance  # off the surface, so a ray does not hit its own face
    open_share = np.empty(len(points))
    step = max(1, _RAY_BATCH // rays)
    for s in range(0, len(points), step):
        n = normals[s:s + step]
        d = cosine_directions(n, rays, rng)
        o = np.broadcast_to((points[s:s + step] + eps * n)[:, None], d.shape)
        batch = np.concatenate([o, d], axis=2).reshape(-1, 6).astype(np.float32)
        hit = scene.test_occlusions(o3d.core.Tensor(batch), tnear=0.0, tfar=distance).numpy()
        open_share[s:s + step] = 1.0 - hit.reshape(-1, rays).mean(axis=1)
    return open_share
