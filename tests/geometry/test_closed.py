"""Closedness from the edge table, checked against the np.unique formulations it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from assetfactory.core.mesh import MeshData
from assetfactory.geometry.closed import edge_stats, is_closed, is_watertight, part_report
from tests.builders import concat, sphere


def _unique_edge_stats(f: np.ndarray) -> tuple[int, int, int, int]:
    half = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = np.sort(half, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    forward = np.bincount(inverse.reshape(-1), weights=(half[:, 0] < half[:, 1]),
                          minlength=len(counts))
    return (len(counts), int((counts == 1).sum()), int((counts > 2).sum()),
            int(((counts == 2) & (forward != 1)).sum()))


def _defective() -> list[np.ndarray]:
    f = sphere(2).faces
    flipped = f.copy()
    flipped[::7] = flipped[::7, ::-1]
    fin = np.vstack([f, [[f[0, 0], f[0, 1], f.max() + 1]]])
    return [f, f[10:], flipped, fin]


@pytest.mark.parametrize("i", range(4))
def test_edge_stats_match_np_unique(i):
    f = _defective()[i]
    s = edge_stats(f)
    assert (s.edges, s.boundary, s.nonmanifold, s.inconsistent) == _unique_edge_stats(f)


def test_closed_checks():
    f = sphere(2).faces
    assert edge_stats(f).watertight and edge_stats(f).manifold
    assert is_watertight(f) and is_closed(f)
    assert not is_watertight(f[1:]) and not is_closed(f[1:])
    flipped = f.copy()
    flipped[0] = flipped[0, ::-1]
    assert is_watertight(flipped) and not is_closed(flipped)


def test_part_report_counts_closed_parts():
    mesh = concat(sphere(1, label=0), sphere(1, centre=(3, 0, 0), label=1))
    assert part_report(mesh) == {"parts": 2, "parts_watertight": 2, "parts_manifold": 2}
    opened = mesh.subset_faces(np.arange(mesh.n_faces) != 0)
    assert part_report(opened)["parts_watertight"] == 1
    assert part_report(MeshData(np.zeros((0, 3)), np.zeros((0, 3))))["parts"] == 0
