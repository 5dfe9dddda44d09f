"""Ambient occlusion: the stratified cosine-weighted rays, and the lattice traced at every
``stride``-th texel and interpolated within each chart."""

from __future__ import annotations

import numpy as np

from assetfactory.algorithms._ao_numba import hemisphere_rays
from assetfactory.algorithms.ambient_occlusion import texel_ambient_occlusion
from assetfactory.core.mesh import MeshData
from assetfactory.geometry.texture_sampling import texel_uv

SIZE = 64


def quad(corners, uv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.asarray(corners, float), np.array([[0, 1, 2], [0, 2, 3]]), np.asarray(uv, float)


def scene() -> tuple[MeshData, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two floor charts side by side in the atlas, far apart in 3D: A (left half) open with a
    wall along its far edge, B (right half) under a low roof. Wall and roof have no texels."""
    parts = [
        quad([[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 0, 0]], [[0, 0], [0, 1], [.5, 1], [.5, 0]]),
        quad([[3, 0, 0], [3, 0, 1], [4, 0, 1], [4, 0, 0]], [[.5, 0], [.5, 1], [1, 1], [1, 0]]),
        quad([[0, 0, 1], [0, .5, 1], [1, .5, 1], [1, 0, 1]], [[0, 0]] * 4),          # wall
        quad([[2, .05, -1], [5, .05, -1], [5, .05, 2], [2, .05, 2]], [[0, 0]] * 4),   # roof
    ]
    v, f, uv = [], [], []
    for k, (pv, pf, puv) in enumerate(parts):
        f.append(pf + 4 * k)
        v.append(pv)
        uv.append(puv)
    mesh = MeshData(np.concatenate(v), np.concatenate(f), uv=np.concatenate(uv))
    index = np.arange(SIZE * SIZE)
    t = texel_uv(index, SIZE)
    in_b = t[:, 0] > 0.5
    x = np.where(in_b, 3 + (t[:, 0] - 0.5) * 2, t[:, 0] * 2)
    points = np.c_[x, np.zeros(len(t)), t[:, 1]]
    normals = np.tile([0.0, 1.0, 0.0], (len(t), 1))
    faces = np.where(in_b, 2, 0)
    return mesh, index, faces, points, normals


def test_rays_are_cosine_weighted_on_the_hemisphere():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(200, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    p = rng.normal(size=(200, 3))
    out = np.empty((200 * 32, 6), np.float32)
    hemisphere_rays(p, n, 32, 0.01, rng.random((200, 2)), out)
    d = out[:, 3:].astype(np.float64)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    cos = np.einsum("ij,ij->i", d, np.repeat(n, 32, axis=0))
    assert (cos >= -1e-6).all()
    assert abs(cos.mean() - 2 / 3) < 0.01            # E[cos] of the cosine distribution
    assert np.allclose(out[:, :3], np.repeat(p + 0.01 * n, 32, axis=0), atol=1e-5)


def test_lattice_matches_tracing_every_texel_and_does_not_leak_across_charts():
    mesh, index, faces, points, normals = scene()
    full, traced_full = texel_ambient_occlusion(mesh, index, faces, points, normals, SIZE, 1,
                                                256, 0.5, 0, threads=1)
    lattice, traced = texel_ambient_occlusion(mesh, index, faces, points, normals, SIZE, 4,
                                              256, 0.5, 0, threads=1)
    assert traced_full == len(index) and traced < len(index) / 10
    in_b = points[:, 0] > 2
    assert full[in_b].max() < 0.3                       # under the roof
    near_wall = ~in_b & (points[:, 2] > 0.9)
    assert full[near_wall].mean() < 0.85
    assert np.abs(lattice - full).mean() < 0.03
    # chart A beside chart B in the atlas: no value of B leaks into A
    assert np.allclose(lattice[~in_b & (points[:, 2] < 0.3)], 1.0)   # the wall is far
    a_border = ~in_b & (texel_uv(index, SIZE)[:, 0] > 0.5 - 3 / SIZE) & (points[:, 2] < 0.3)
    assert a_border.sum() >= 50 and np.allclose(lattice[a_border], 1.0)


def test_charts_narrower_than_the_lattice_are_traced_themselves():
    mesh, index, faces, points, normals = scene()
    strip = texel_uv(index, SIZE)[:, 1] < 1.5 / SIZE      # one texel row: no node on it
    lattice, traced = texel_ambient_occlusion(mesh, index[strip], faces[strip], points[strip],
                                              normals[strip], SIZE, 8, 64, 0.5, 0, threads=1)
    assert traced == strip.sum()
    assert np.allclose(lattice[points[strip][:, 0] < 0.5], 1.0)
