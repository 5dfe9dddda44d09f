"""closest: Embree's closest faces, made exact in float64 (``exact_distances``)."""

from __future__ import annotations

import numpy as np
import trimesh

from assetfactory.core.mesh import MeshData
from assetfactory.geometry.closest import (
    ClosestSurface,
    closest_points,
    exact_distances,
    raycasting_scene,
    shared_scene,
)
from assetfactory.geometry.normals import unit
from tests.builders import sphere

# a plate-long flat sliver that a simplified faceted plate had (0.92 long, 0.006 wide)
SLIVER = np.array([[0.46027926, -0.2, -0.38054572], [-0.45500001, -0.2, -0.37794229],
                   [0.4655585, -0.2, -0.38314915]])


def test_points_on_a_long_sliver_are_at_distance_zero():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), 2000)
    points = w @ SLIVER
    faces = np.array([[0, 1, 2]])
    q, prim, _ = closest_points(raycasting_scene(SLIVER, faces), points)
    embree = np.linalg.norm(q - points, axis=1)
    exact = exact_distances(SLIVER, faces, points, prim)
    assert embree.max() > 5e-6  # float32: 100x its rounding (in a mesh: up to ~1e-3)
    assert exact.max() < 1e-9


def _brute(vertices, faces, points):
    tri = vertices[faces]
    d = [np.linalg.norm(trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), 0))
                        - p, axis=1).min() for p in points]
    return np.array(d)


def test_distances_match_a_float64_search_and_the_maximum_is_exact():
    mesh = sphere(2)
    rng = np.random.default_rng(1)
    points = rng.normal(size=(300, 3)) * 0.8
    _, prim, _ = closest_points(raycasting_scene(mesh.vertices, mesh.faces), points)
    truth = _brute(mesh.vertices, mesh.faces, points)
    got = exact_distances(mesh.vertices, mesh.faces, points, prim)
    assert np.allclose(got, truth, atol=1e-5)  # Embree's face, distance in float64
    # a wrong candidate face (the first face for every point): every distance is an upper
    # bound, and the search still finds the exact maximum
    bad = exact_distances(mesh.vertices, mesh.faces, points, np.zeros(len(points), np.int64))
    assert (bad >= truth - 1e-12).all()
    assert bad.max() == np.float64(truth.max()) or abs(bad.max() - truth.max()) < 1e-12


def test_closest_surface_is_the_numpy_formulation_to_the_bit():
    mesh = sphere(3)
    rng = np.random.default_rng(2)
    bumpy = MeshData(mesh.vertices * (1 + 0.1 * rng.random((mesh.n_vertices, 1))), mesh.faces)
    surface = ClosestSurface(bumpy, threads=1)
    points = rng.normal(size=(2000, 3)) * 0.8
    dist, normal = surface.closest(points)
    q, prim, bary = closest_points(surface.scene, points, threads=1)
    assert np.array_equal(dist, np.linalg.norm(q - points, axis=1))
    assert np.array_equal(normal, unit(np.einsum("ik,ikc->ic", bary,
                                                 surface.normals[bumpy.faces[prim]])))


def test_a_shared_scene_is_handed_on_once_and_answers_as_its_own():
    mesh = sphere(3)
    rng = np.random.default_rng(3)
    bumpy = MeshData(mesh.vertices * (1 + 0.1 * rng.random((mesh.n_vertices, 1))), mesh.faces)
    kept = shared_scene(bumpy, threads=1)                   # the first user keeps it
    other = MeshData(bumpy.vertices * 1.01, bumpy.faces)
    assert ClosestSurface(other, 1, shared=True).scene is not kept  # another mesh: its own
    twin = MeshData(bumpy.vertices.copy(), bumpy.faces.copy())      # the same content
    taken = ClosestSurface(twin, 1, shared=True)
    assert taken.scene is kept
    assert ClosestSurface(twin, 1, shared=True).scene is not kept   # handed on once, dropped
    points = rng.normal(size=(2000, 3)) * 0.8
    own = ClosestSurface(twin, 1)
    for a, b in zip(taken.closest(points), own.closest(points)):
        assert np.array_equal(a, b)
