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
    consistent_blend,
    edge_band,
    edge_feather,
    harmonise_gains,
    incidence_weights,
    mean_blend,
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
        if v.feather is not None:
            w = w * sample_nearest(v.feather, pix[idx])
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


def scene(mip: bool, edge: bool, feather: bool = False) -> tuple[TexelGrid, list[ViewInput]]:
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
            pyramid=build_pyramid(rgb, mask, 4) if mip else None,
            feather=rng.uniform(0.05, 1.0, (96, 96)).astype(np.float32) if feather else None))
    return grid, views


@pytest.mark.parametrize("mip,edge,feather", [(True, True, False), (False, False, False),
                                              (False, True, False), (True, True, True)])
def test_kernel_matches_the_numpy_definition(mip, edge, feather):
    grid, views = scene(mip, edge, feather)
    colour, wsum, stats = blend_views_stats(grid, views, Settings())
    ref_colour, ref_wsum = reference(grid, views, Settings())
    seen = ref_wsum > 0
    assert 0.2 < seen.mean() < 0.95          # some texels seen, some not
    assert np.array_equal(wsum > 0, seen)
    assert np.allclose(wsum, ref_wsum, rtol=1e-5, atol=1e-9)
    assert np.allclose(colour[seen], ref_colour[seen], atol=1e-4)
    assert stats.used == ["v0", "v1", "v2"]
    assert (stats.edge_only > 0) == edge


class Consistent(Settings):
    blend = "consistent"
    consistency_sigma = 0.08
    harmonise = False


def test_per_view_mean_blend_is_the_one_pass_blend():
    grid, views = scene(True, True)
    colour, wsum, _ = blend_views_stats(grid, views, Settings())
    per_view = type("PerView", (Settings,), {"harmonise": True})()
    # the per-view path's mean (unit gains) is the one-pass blend; with harmonisation the
    # same texels stay seen
    seen = [(np.flatnonzero(wsum > 0), colour[wsum > 0], wsum[wsum > 0])]
    again, w2 = mean_blend(seen, len(wsum))
    assert np.allclose(again, colour, atol=1e-6) and np.allclose(w2, wsum)
    _, w3, _ = blend_views_stats(grid, views, per_view)
    assert np.array_equal(w3 > 0, wsum > 0)


def test_consistent_blend_drops_the_view_that_disagrees():
    t = 3
    idx = np.arange(t)
    grey = np.full((t, 3), 0.2, np.float32)
    # two photos agree on grey; a third, weaker one sees another surface (red) there
    red = np.tile(np.float32([0.8, 0.05, 0.05]), (t, 1))
    seen = [(idx, grey, np.full(t, 1.0, np.float32)), (idx, grey * 1.02, np.full(t, 0.9,
                                                                                  np.float32)),
            (idx, red, np.full(t, 0.7, np.float32))]
    mean, _ = mean_blend(seen, t)
    cons, wsum = consistent_blend(seen, t, 0.08)
    assert mean[0, 0] > 0.35                    # the plain mean is pulled towards red
    assert np.allclose(cons, 0.2 * (1.0 + 0.9 * 1.02) / 1.9, atol=2e-3)
    assert (wsum > 0).all()
    best_only, _ = consistent_blend(seen, t, 0.0)
    assert np.allclose(best_only, grey)


def test_consistent_blend_through_the_kernel_keeps_what_every_view_agrees_on():
    grid, views = scene(False, False)
    same = np.full((96, 96, 3), 0.3, np.float32)
    views = [ViewInput(v.label, v.camera, same, v.mask, v.depth) for v in views]
    colour, wsum, _ = blend_views_stats(grid, views, Consistent())
    assert np.allclose(colour[wsum > 0], 0.3, atol=1e-5)


def test_harmonise_recovers_a_photo_shot_with_another_exposure():
    rng = np.random.default_rng(0)
    t = 500
    albedo = rng.uniform(0.05, 0.9, (t, 3)).astype(np.float32)
    true_gain = [np.float32([1.0, 1.0, 1.0]), np.float32([1.0, 1.0, 1.0]),
                 np.float32([1.5, 1.2, 0.8])]      # the third photo: brighter and warmer
    idx = [np.arange(0, 400), np.arange(100, 500), np.arange(0, 500, 2)]
    seen = [(i, albedo[i] * g, np.ones(len(i), np.float32)) for i, g in
            zip(idx, true_gain, strict=True)]
    gains = harmonise_gains(seen, t)
    corrected = [c * g for (_, c, _), g in zip(seen, gains, strict=True)]
    # all three photos agree after the gains (up to the common factor the mean fixes)
    assert np.allclose(corrected[2][idx[2] < 400] / corrected[0][idx[2][idx[2] < 400]],
                       1.0, atol=1e-3)
    assert np.allclose(corrected[1][:300] / corrected[0][100:], 1.0, atol=1e-3)
    assert np.allclose(np.prod(np.stack(gains), axis=0), 1.0, atol=1e-3)   # mean kept
    # one photo alone, or photos that share nothing, keep gain 1
    assert np.allclose(harmonise_gains(seen[:1], t)[0], 1.0)
    apart = [(np.arange(0, 100), albedo[:100], np.ones(100, np.float32)),
             (np.arange(200, 300), albedo[200:300] * 2, np.ones(100, np.float32))]
    assert all(np.allclose(g, 1.0) for g in harmonise_gains(apart, t))


def test_edge_feather_ramps_from_the_band_to_full_weight():
    depth = np.full((40, 40), np.inf, np.float32)
    depth[:, :20] = 2.0
    mask = np.isfinite(depth)
    ramp = edge_feather(depth, mask, 2, 0.05, 6.0, 0.1)
    band = edge_band(depth, mask, 2, 0.05)
    assert edge_feather(depth, mask, 2, 0.05, 0.0, 0.1) is None
    assert np.all(ramp[band] == 1.0)               # the band's own weight applies there
    row = ramp[20, :20]
    # the silhouette border is column 19: 2 px band, then up to 1 over 6 px
    assert row[0] == pytest.approx(1.0) and row[10] == pytest.approx(1.0)
    inside = row[11:17]
    assert np.all(np.diff(inside[::-1]) >= 0)      # rises away from the border
    assert 0.1 <= inside.min() < 0.5


def _kernel_args(grid: TexelGrid, v: ViewInput, o, light_dir, ambient, acc, wsum, clean):
    from assetfactory.algorithms.projection import pack_levels

    cam = v.camera
    if v.pyramid is not None:
        pyr = pack_levels(v.pyramid)
        footprint = np.asarray(v.face_footprint, np.float64)
    else:
        pyr = pack_levels([(v.linear_rgb, np.ones(v.linear_rgb.shape[:2], np.float32))])
        footprint = np.zeros(0)
    return (grid.positions, grid.normals, grid.faces,
            np.ascontiguousarray(cam.world_to_camera[:3, :3]),
            np.ascontiguousarray(cam.world_to_camera[:3, 3]), np.asarray(cam.K, np.float64),
            np.asarray(cam.position, np.float64), v.depth, v.mask,
            np.zeros((0, 0), bool) if v.edge is None else v.edge, o.depth_tolerance,
            o.incidence_power, view_prior(cam, o.front_back_prior), o.edge_weight, footprint,
            o.mip_bias, *pyr, acc, wsum, clean, light_dir, ambient,
            np.zeros((0, 0), np.float32) if v.feather is None else v.feather)


@pytest.mark.parametrize("mip,edge,feather,power,light", [
    (True, True, False, 2.0, False), (False, False, False, 2.0, True),
    (True, True, True, 0.0, True), (True, False, False, 1.3, False)])
def test_kernel_is_the_previous_kernel_bit_for_bit(mip, edge, feather, power, light):
    """Texels facing away are dropped before their projection, and the upper pyramid level
    is skipped at weight 0: the sums, marks and statistics stay exactly the previous
    kernel's (levels spread over 0..3 with whole and fractional ones, back-facing texels,
    occluded rows, both branches of the incidence power)."""
    from assetfactory.algorithms._projection_numba import accumulate_view
    from tests.algorithms.projection_before import accumulate_view as before

    grid, views = scene(mip, edge, feather)
    o = type("O", (Settings,), {"incidence_power": power, "mip_bias": -1.0})()
    if mip:   # a third of the faces at whole levels 0..3 (frac 0), the rest between
        views = [ViewInput(v.label, v.camera, v.linear_rgb, v.mask, v.depth, v.edge,
                           np.where(np.arange(50) % 3 == 0, 2.0 ** (np.arange(50) % 4 + 1),
                                    v.face_footprint), v.pyramid, v.feather) for v in views]
    light_dir = np.array([0.3, 0.4, np.sqrt(0.75)]) if light else np.zeros(0)
    t = len(grid.index)
    out = []
    for kernel in (accumulate_view, before):
        acc, wsum, clean = np.zeros((t, 3)), np.zeros(t), np.zeros(t, bool)
        stats = [kernel(*_kernel_args(grid, v, o, light_dir, 0.3, acc, wsum, clean))
                 for v in views]
        out.append((acc, wsum, clean, np.array(stats)))
    (acc, wsum, clean, stats), (acc0, wsum0, clean0, stats0) = out
    assert 0.2 < (wsum > 0).mean() < 0.95
    assert np.array_equal(acc, acc0) and np.array_equal(wsum, wsum0)
    assert np.array_equal(clean, clean0) and np.array_equal(stats, stats0)
    if mip:
        assert stats[:, 1].sum() > 0    # some texels read above level 0


def test_weighted_mean_is_the_numpy_expression():
    from assetfactory.algorithms.projection import weighted_mean

    rng = np.random.default_rng(5)
    acc = rng.random((1000, 3)) * rng.choice([0.0, 1e-14, 1.0, 7.0], (1000, 1))
    wsum = rng.choice([0.0, 1e-13, 3e-12, 0.7, 5.0], 1000)
    want = (acc / np.maximum(wsum, 1e-12)[:, None]).astype(np.float32)
    got = weighted_mean(acc, wsum)
    assert got.dtype == np.float32 and np.array_equal(got, want)
