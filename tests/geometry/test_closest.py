"""closest: Embree's closest faces, made exact in float64 (``exact_distances``)."""

from __future__ import annotations

import numpy as np
import trimesh

from assetfactory.core.mesh import MeshData
from assetfactory.geometry.closest import (
    ClosestSurface,
    CoherentGrid,
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


def _walk(rng, mesh, n):
    """Points in runs of neighbours near the surface (as texels in image order come), with
    jumps between runs."""
    runs = []
    for _ in range(n // 100):
        start = mesh.vertices[rng.integers(mesh.n_vertices)] * (1 + 0.05 * rng.normal())
        steps = rng.normal(scale=0.01, size=(100, 3)).cumsum(axis=0)
        runs.append(start + steps)
    return np.concatenate(runs)


def test_the_coherent_grid_finds_the_exact_closest_point():
    mesh = sphere(3)
    rng = np.random.default_rng(4)
    bumpy = MeshData(mesh.vertices * (1 + 0.1 * rng.random((mesh.n_vertices, 1))), mesh.faces)
    points = np.concatenate([_walk(rng, bumpy, 3000),
                             rng.normal(size=(200, 3)) * 3.0,    # far off, outside the grid
                             rng.normal(size=(200, 3)) * 0.3])   # inside, far from the surface
    surface = ClosestSurface(bumpy, threads=1)
    dist, normal = surface.closest_coherent(points)
    truth = _brute(bumpy.vertices, bumpy.faces, points)
    assert np.allclose(dist, truth, rtol=0, atol=1e-12)
    _, embree = surface.closest(points)                 # the same point: the same normal
    assert np.abs(normal - embree).max() < 1e-4
    # the order of the points changes nothing but the work
    order = rng.permutation(len(points))
    again, _ = surface.closest_coherent(points[order])
    assert np.array_equal(again, dist[order])


def test_the_coherent_grid_on_a_flat_mesh_with_a_degenerate_face():
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 0], [2, 2, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3], [0, 4, 2], [1, 5, 5]])  # last: a segment, no area
    rng = np.random.default_rng(5)
    points = rng.uniform(-1, 3, size=(500, 3))
    got, face, u, w = CoherentGrid(v, f).query(points)
    truth = _brute(v, f, points)
    assert np.allclose(got, truth, rtol=0, atol=1e-12)
    q = ((1 - u - w)[:, None] * v[f[face, 0]] + u[:, None] * v[f[face, 1]]
         + w[:, None] * v[f[face, 2]])                   # the weights give the point
    assert np.allclose(np.linalg.norm(q - points, axis=1), got, atol=1e-12)
