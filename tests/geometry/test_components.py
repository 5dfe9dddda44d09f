"""Connected components: the union-find kernel numbers components exactly as scipy does."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from assetfactory.geometry.components import (
    count_components,
    face_components,
    flood_from_seeds,
    label_components,
    largest_component,
    vertex_components,
)
from tests.builders import concat, sphere


@pytest.mark.parametrize("seed", range(5))
def test_labels_match_scipy_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    m = int(rng.integers(0, 2 * n))
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    count, labels = label_components(n, a, b)
    graph = coo_matrix((np.ones(m, np.int8), (a, b)), shape=(n, n))
    ref_count, ref = connected_components(graph, directed=False)
    assert count == ref_count
    np.testing.assert_array_equal(labels, ref)


def test_mesh_components():
    mesh = concat(sphere(1, centre=(3, 0, 0)), sphere(2), sphere(1, centre=(-3, 0, 0)))
    count, per_face = vertex_components(mesh)
    assert count == 3 and len(np.unique(per_face)) == 3
    n, comp = face_components(mesh)
    assert n == 3 and comp[0] == 0 and comp.max() == 2
    assert count_components(mesh.n_vertices, mesh.faces) == 3
    biggest, pieces = largest_component(mesh)
    assert pieces == 3 and biggest.n_faces == sphere(2).n_faces


def test_flood_reaches_only_connected_faces():
    pairs = np.array([[0, 1], [1, 2], [3, 4]])
    np.testing.assert_array_equal(flood_from_seeds(6, pairs, np.array([2])),
                                  [True, True, True, False, False, False])
