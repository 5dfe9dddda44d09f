"""Face and vertex normals: one implementation, the same bits as the numpy code it replaced."""

from __future__ import annotations

import numpy as np

from assetfactory.core.mesh import MeshData
from assetfactory.geometry.normals import (
    face_areas,
    face_normals,
    seamless_normals,
    smooth_normals,
    vertex_normals,
)
from tests.builders import sphere


def _add_at_normals(mesh: MeshData) -> np.ndarray:
    """The numpy formulation cleanup used (np.add.at, corner by corner)."""
    v = mesh.vertices[mesh.faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = np.zeros((mesh.n_vertices, 3))
    for k in range(3):
        np.add.at(n, mesh.faces[:, k], fn)
    length = np.linalg.norm(n, axis=1)
    return n / np.where(length > 0, length, 1.0)[:, None]


def test_vertex_normals_match_np_add_at_bitwise():
    rng = np.random.default_rng(0)
    mesh = sphere(3)
    mesh = mesh.replace(vertices=mesh.vertices * rng.uniform(0.5, 2, 3)
                        + rng.normal(0, 1e-3, mesh.vertices.shape))
    np.testing.assert_array_equal(vertex_normals(mesh.vertices, mesh.faces),
                                  _add_at_normals(mesh))
    assert smooth_normals(mesh).dtype == np.float32


def test_degenerate_vertices_get_a_unit_normal():
    # two faces, back to back: their normals cancel at every vertex
    mesh = MeshData(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]),
                    np.array([[0, 1, 2], [0, 2, 1]]))
    n = vertex_normals(mesh.vertices, mesh.faces)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    unused = MeshData(np.vstack([mesh.vertices, [[5, 5, 5]]]), mesh.faces[:1])
    np.testing.assert_allclose(vertex_normals(unused.vertices, unused.faces)[3], [0, 1, 0])


def test_face_normals_and_areas():
    mesh = MeshData(np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 0.0]]),
                    np.array([[0, 1, 2], [0, 0, 3]]))
    np.testing.assert_allclose(face_areas(mesh.vertices, mesh.faces), [2.0, 0.0])
    np.testing.assert_allclose(face_normals(mesh.vertices, mesh.faces), [[0, 0, 1], [0, 0, 0]])


def test_seamless_normals_ignore_seams():
    mesh = sphere(2)
    # split every face's corners apart, as a UV unwrap does along seams
    split = MeshData(mesh.vertices[mesh.faces.reshape(-1)],
                     np.arange(mesh.n_faces * 3).reshape(-1, 3))
    np.testing.assert_allclose(seamless_normals(split),
                               smooth_normals(mesh)[mesh.faces.reshape(-1)], atol=1e-6)
