"""The one-pass projection kernel against the numpy definition of a view's contribution
(``visible_texels``, ``incidence_weights``, ``view_prior``, the edge band, ``sample_pyramid``
/ ``sample_bilinear``), on texels that some views see, some miss and some see through a
mismatched depth."""

from __future__ import annotations

import numpy as np
import pytest

from assetfactory.algorithms.projection import (
    TexelGrid,
    ViewInput,
    blend_views_stats,
    incidence_weights,
    view_prior,
    visible_texels,
)
from assetfactory.core.camera import orbit_camera
from assetfactory.geometry.texture_sampling import (
    build_pyramid,
    sample_bilinear,
    sample_nearest,
    sample_pyramid,
)


class Settings:
    incidence_power = 2.0
    depth_tolerance = 0.01
    front_back_prior = 0.5
    fill = "nearest3d"
    edge_weight = 0.1
    mip_filter = True
    mip_bias = 0.0


def reference(grid: TexelGrid, views: list[ViewInput], o) -> tuple[np.ndarray, np.ndarray]:
    """The numpy formulation the kernel replaces, step by step."""
    acc = np.zeros((len(grid.index), 3))
    wsum = np.zeros(len(grid.index))
    for v in views:
        vis, pix = visible_texels(grid.positions, v.camera, v.depth, v.mask, o.depth_tolerance)
        idx = np.flatnonzero(vis)
        w = incidence_weights(grid.positions[idx], grid.normals[idx], v.camera.position,
                              o.incidence_power) * view_prior(v.camera, o.front_back_prior)
        if v.edge is not None:
            on_edge = sample_nearest(v.edge, pix[idx]).astype(bool)
            w = np.where(on_edge, w * o.edge_weight, w)
        keep = w > 1e-8
        idx, w = idx[keep], w[keep]
        if o.mip_filter and v.pyramid is not None:
            level = np.maximum(np.log2(np.maximum(v.face_footprint[grid.faces[idx]], 1e-6))
                               + o.mip_bias, 0.0)
            col, cover = sample_pyramid(v.pyramid, pix[idx], level)
            w = w * np.clip(cover, 0.0, 1.0)
        else:
            col = sample_bilinear(v.linear_rgb, pix[idx])
        acc[idx] += w[:, None] * col
        wsum[idx] += w
    return acc / np.maximum(wsum, 1e-12)[:, None], wsum


def scene(mip: bool, edge: bool) -> tuple[TexelGrid, list[ViewInput]]:
    rng = np.random.default_rng(3)
    n = 4000
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    positions = normals * 0.5 + rng.normal(scale=0.002, size=(n, 3))
    grid = TexelGrid(256, np.arange(n), positions, normals, rng.integers(0, 50, n))
    views = []
    for k, az in enumerate((0.0, 90.0, 200.0)):
        cam = orbit_camera(f"v{k}", az, 15.0 * k, 2.5, size=96)
        pix, z = cam.project(positions)
        depth = np.full((96, 96), np.inf, np.float32)
        inside = (pix[:, 0] > -0.5) & (pix[:, 0] < 95.5) & (pix[:, 1] > -0.5) & \
                 (pix[:, 1] < 95.5)
        near = np.argsort(-z[inside])   # nearest written last
        xy = np.clip(np.rint(pix[inside][near]), 0, 95).astype(int)
        depth[xy[:, 1], xy[:, 0]] = z[inside][near]
        depth[::7] *= 0.9                  # rows whose depth disagrees: occluded there
        mask = rng.random((96, 96)) > 0.1
        rgb = rng.random((96, 96, 3)).astype(np.float32)
        views.append(ViewInput(
            cam.label, cam, rgb, mask, depth,
            edge=(rng.random((96, 96)) > 0.8) if edge else None,
            face_footprint=rng.uniform(0.3, 9.0, 50) if mip else None,
            pyramid=build_pyramid(rgb, mask, 4) if mip else None))
    return grid, views


@pytest.mark.parametrize("mip,edge", [(True, True), (False, False), (False, True)])
def test_kernel_matches_the_numpy_definition(mip, edge):
    grid, views = scene(mip, edge)
    colour, wsum, stats = blend_views_stats(grid, views, Settings())
    ref_colour, ref_wsum = reference(grid, views, Settings())
    seen = ref_wsum > 0
    assert 0.2 < seen.mean() < 0.95          # some texels seen, some not
    assert np.array_equal(wsum > 0, seen)
    assert np.allclose(wsum, ref_wsum, rtol=1e-5, atol=1e-9)
    assert np.allclose(colour[seen], ref_colour[seen], atol=1e-4)
    assert stats.used == ["v0", "v1", "v2"]
    assert (stats.edge_only > 0) == edge
