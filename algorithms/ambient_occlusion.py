"""Ambient occlusion by ray casting: the unoccluded share of cosine-weighted rays over each
point's hemisphere (Embree through open3d).

Why a lattice: AO varies slowly over a surface (its scale is the distance to the occluder),
so tracing every texel of a 2048 px atlas (2-3M texels x 16 rays) spends most of the rays on
detail that is not there. ``texel_ambient_occlusion`` traces a regular lattice of texels
(every ``stride``-th texel in each direction) with more rays each, and gives every texel the
bilinear interpolation of the lattice nodes around it that lie in its own chart (so a value
never leaks across a chart border to a part of the surface that is far away in 3D). Texels
with no such node (charts or slivers narrower than the lattice) are traced themselves. The
maps' dilation then carries the values across the seams.
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from ..geometry.closest import raycasting_scene

_RAY_BATCH = 1_000_000


def ambient_occlusion(mesh: MeshData, points: np.ndarray, normals: np.ndarray, rays: int,
                      distance: float, seed: int, threads: int = 0, scene=None) -> np.ndarray:
    """Unoccluded share of ``rays`` cosine-weighted rays per point (1 = open).

    ``threads``: Embree threads (0 = all cores); ``scene``: a ray scene of ``mesh`` to reuse.
    """
    import open3d as o3d

    from ._ao_numba import hemisphere_rays

    if rays == 0 or len(points) == 0:
        return np.ones(len(points))
    if scene is None:
        scene = raycasting_scene(mesh.vertices, mesh.faces, threads)
    rng = np.random.default_rng(seed)
    jitter = rng.random((len(points), 2))
    eps = 1e-3 * distance  # off the surface, so a ray does not hit its own face
    points = np.ascontiguousarray(points, np.float64)
    normals = np.ascontiguousarray(normals, np.float64)
    open_share = np.empty(len(points))
    step = max(1, _RAY_BATCH // rays)
    batch = np.empty((min(step, len(points)) * rays, 6), np.float32)
    for s in range(0, len(points), step):
        e = min(s + step, len(points))
        out = batch[: (e - s) * rays]
        hemisphere_rays(points[s:e], normals[s:e], rays, eps, jitter[s:e], out)
        hit = scene.test_occlusions(o3d.core.Tensor(out), tnear=0.0, tfar=distance,
                                    nthreads=threads).numpy()
        open_share[s:e] = 1.0 - hit.reshape(-1, rays).mean(axis=1)
    return open_share


def chart_ids(mesh: MeshData) -> np.ndarray:
    """(M,) UV chart of each face: faces joined through shared (seam-split) vertices."""
    from ..geometry.components import vertex_labels

    return vertex_labels(mesh.faces, mesh.n_vertices)[1][mesh.faces[:, 0]]


def texel_ambient_occlusion(mesh: MeshData, index: np.ndarray, faces: np.ndarray,
                            points: np.ndarray, normals: np.ndarray, size: int, stride: int,
                            rays: int, distance: float, seed: int, threads: int = 0
                            ) -> tuple[np.ndarray, int]:
    """AO of the covered texels of a ``size`` px atlas (flat ``index``, face ``faces``,
    surface point and normal per texel), traced on a lattice of every ``stride``-th texel and
    interpolated within each chart (see the module docstring). Returns (AO per texel, points
    traced)."""
    from ._ao_numba import lattice_nodes, upsample

    if rays == 0 or len(index) == 0:
        return np.ones(len(index)), 0
    scene = raycasting_scene(mesh.vertices, mesh.faces, threads)
    if stride <= 1:
        return ambient_occlusion(mesh, points, normals, rays, distance, seed, threads,
                                 scene), len(index)
    index = np.ascontiguousarray(index, np.int64)
    texel_of = np.full(size * size, -1, np.int64)
    texel_of[index] = np.arange(len(index))
    node_row = lattice_nodes(texel_of, int(size), int(stride))
    rows = node_row[node_row >= 0]
    node_value = np.zeros(node_row.shape)
    node_value[node_row >= 0] = ambient_occlusion(mesh, points[rows], normals[rows], rays,
                                                  distance, seed, threads, scene)
    chart = np.ascontiguousarray(chart_ids(mesh)[faces], np.int64)
    values, orphan = upsample(index, chart, int(size), int(stride), node_row, node_value)
    lone = np.flatnonzero(orphan)
    if len(lone):
        values[lone] = ambient_occlusion(mesh, points[lone], normals[lone], rays, distance,
                                         seed + 1, threads, scene)
    return values, len(rows) + len(lone)
