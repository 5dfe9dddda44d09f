"""Chart packing: charts that overlap themselves (xatlas folds and self-overlapping borders)."""

from __future__ import annotations

import numpy as np

from assetfactory.algorithms.chart_packing import (
    Unwrap,
    detach_faces,
    folded_faces,
    pack_charts,
    without_overlaps,
)
from assetfactory.algorithms.uv_quality import uv_areas
from assetfactory.geometry.raster import coverage_counts, overlapping_faces
from assetfactory.tasks.uv import UVOptions


def _fan(n: int, step_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """n counter-clockwise triangles around one centre vertex, each ``step_deg`` wide: past
    360 degrees the last ones lie over the first (a chart whose border runs over itself)."""
    a = np.radians(step_deg) * np.arange(n + 1)
    uv = np.concatenate([[[0.0, 0.0]], np.stack([np.cos(a), np.sin(a)], 1)])
    faces = np.stack([np.zeros(n, np.int64), np.arange(1, n + 1), np.arange(2, n + 2)], 1)
    return uv, faces


def _tiny_charts() -> tuple[np.ndarray, np.ndarray]:
    """Chart A: a fan of 5 x 90 degrees (the 5th over the 1st); chart B: a square of two
    triangles plus a third folded back over them (opposite winding); chart C: a clean quad."""
    ua, fa = _fan(5, 90.0)
    ub = np.array([[3.0, 0], [4, 0], [4, 1], [3, 1], [3.6, 0.5]])
    fb = np.array([[0, 1, 2], [0, 2, 3], [2, 1, 4]]) + len(ua)  # [2, 1, 4] is folded
    uc = np.array([[6.0, 0], [7, 0], [7, 1], [6, 1]])
    fc = np.array([[0, 1, 2], [0, 2, 3]]) + len(ua) + len(ub)
    return np.concatenate([ua, ub, uc]), np.concatenate([fa, fb, fc])


def test_the_tiny_case_overlaps_after_a_plain_pack():
    uv, faces = _tiny_charts()
    options = UVOptions(resolution=128, padding=2)
    packed = pack_charts(uv, faces, options)
    assert coverage_counts(packed.uv, packed.faces, 128).max() >= 2
    assert folded_faces(uv, faces).tolist() == [False] * 5 + [False, False, True, False, False]


def test_overlapping_faces_names_the_faces_on_texels_covered_twice():
    uv, faces = _tiny_charts()
    packed = pack_charts(uv, faces, UVOptions(resolution=128, padding=2))
    mask = overlapping_faces(packed.uv, packed.faces, 128)
    # the fan's first and fifth triangles, the folded one and what it lies over; never chart C
    assert mask[0] and mask[4] and mask[7] and not mask[8:].any()


def test_without_overlaps_leaves_no_texel_covered_twice_and_keeps_faces():
    uv, faces = _tiny_charts()
    options = UVOptions(resolution=128, padding=2)
    packed = pack_charts(uv, faces, options)
    out = without_overlaps(packed, options)
    assert coverage_counts(out.uv, out.faces, 128).max() == 1
    assert len(out.faces) == len(faces)
    # every face still copies the same input corners, and keeps its UV shape (one common scale)
    assert np.array_equal(out.vmapping[out.faces], packed.vmapping[packed.faces])
    ratio = np.abs(uv_areas(out.uv.astype(np.float64), out.faces)) / np.abs(uv_areas(uv, faces))
    assert np.allclose(ratio, ratio[0], rtol=0.05)
    assert out.charts > packed.charts  # the offending faces became charts of their own


def test_detach_gives_each_face_fresh_vertices():
    uv, faces = _tiny_charts()
    u = Unwrap(np.arange(len(uv)), faces, uv.astype(np.float32), 3, 0.0)
    mask = np.zeros(len(faces), bool)
    mask[[0, 7]] = True
    cut = detach_faces(u, mask)
    assert np.array_equal(cut.vmapping[cut.faces], faces)
    assert np.array_equal(cut.uv[cut.faces], u.uv[faces])
    assert set(cut.faces[[0, 7]].ravel()) == set(range(len(uv), len(uv) + 6))


def test_a_chart_from_an_earlier_packing_keeps_its_turn():
    """A re-pack (``without_overlaps``) marks the charts an earlier packing turned and that
    lost no face: they are placed as they are, with the layout measuring them again gives."""
    rng = np.random.default_rng(3)
    uvs, faces = [], []
    for k in range(12):  # slanted parallelograms of two triangles, several sizes
        a, s = rng.uniform(0, np.pi), rng.uniform(0.2, 1.0)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        quad = (np.array([[0, 0], [2.0, 0], [2.5, 1], [0.5, 1]]) * s) @ r.T + [3.0 * k, 0]
        faces.append(np.array([[0, 1, 2], [0, 2, 3]]) + 4 * k)
        uvs.append(quad)
    uv, faces = np.concatenate(uvs), np.concatenate(faces)
    options = UVOptions(resolution=256, padding=2)
    first = pack_charts(uv, faces, options)
    assert first.packed
    again = pack_charts(first.uv, first.faces, options)
    kept = pack_charts(first.uv, first.faces, options, np.ones(len(first.uv), bool))
    np.testing.assert_allclose(kept.uv, again.uv, atol=1e-5)
    assert coverage_counts(kept.uv, kept.faces, 256).max() == 1
