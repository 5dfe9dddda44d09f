"""Tests of the texture stage: the numerical pieces on their own, then the stage end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from assetfactory.algorithms.inpaint import fill_nearest_3d
from assetfactory.algorithms.projection import (
    edge_band,
    erode_mask,
    face_footprints,
    incidence_weights,
    view_prior,
    visible_texels,
)
from assetfactory.algorithms.shading import flatten_shading
from assetfactory.core.artifacts import load_image, save_cameras, save_image, save_mesh
from assetfactory.core.camera import orbit_camera
from assetfactory.core.errors import OptionsError, ProcessingError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.geometry.colour import image_to_linear, linear_to_srgb, srgb_to_linear
from assetfactory.geometry.dilation import dilate
from assetfactory.geometry.texture_sampling import (
    barycentric,
    build_pyramid,
    sample_bilinear,
    sample_pyramid,
)
from assetfactory.tasks.texture import TextureOptions, texture

VIEWS = [("front", 0.0), ("right", 90.0), ("back", 180.0), ("left", 270.0)]


# ---------------------------------------------------------------- options and colour

@pytest.mark.parametrize("bad", [{"size": 1000}, {"size": 8}, {"incidence_power": -1},
                                 {"depth_tolerance": 0}, {"mask_erode_px": -1},
                                 {"front_back_prior": 0}, {"fill": "magic"}])
def test_options_reject_bad_values(bad):
    with pytest.raises(OptionsError):
        TextureOptions(**bad)


def test_srgb_round_trip_and_midpoint():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.214, abs=1e-3)
    lin = image_to_linear(np.full((2, 2, 4), 128, np.uint8))
    assert lin.shape == (2, 2, 3) and lin[0, 0, 0] == pytest.approx(0.2158, abs=1e-3)


# ---------------------------------------------------------------- weighting and visibility

def test_incidence_weights_follow_cosine_power():
    pos = np.zeros((4, 3))
    c60 = np.cos(np.radians(60))
    normals = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 0, -1.0], [np.sin(np.radians(60)), 0, c60]])
    w = incidence_weights(pos, normals, np.array([0, 0, 5.0]), power=2.0)
    assert w == pytest.approx([1.0, 0.0, 0.0, c60 ** 2])


def test_view_prior_favours_front_and_back():
    front = orbit_camera("front", 0, 0, 3)
    back = orbit_camera("back", 180, 0, 3)
    side = orbit_camera("right", 90, 0, 3)
    top = orbit_camera("top", 0, 90, 3)
    assert view_prior(front, 1.5) == pytest.approx(1.5)
    assert view_prior(back, 1.5) == pytest.approx(1.5)
    assert view_prior(side, 1.5) == pytest.approx(1.0)
    assert view_prior(top, 1.5) == pytest.approx(1.0, abs=1e-6)


def test_visible_texels_uses_depth_mask_and_bounds():
    cam = orbit_camera("front", 0, 0, 3.0, size=64)
    pts = np.array([[0, 0, 0.0],     # on the surface the depth map holds: visible
                    [0, 0, -0.5],    # behind that surface: occluded
                    [0.3, 0.3, 0.0],  # on the surface but outside the mask
                    [50, 0, 0.0]])   # outside the image
    depth = np.full((64, 64), 3.0, np.float32)
    mask = np.zeros((64, 64), bool)
    mask[28:36, 28:36] = True
    vis, pix = visible_texels(pts, cam, depth, mask, tolerance=0.01)
    assert vis.tolist() == [True, False, False, False]
    assert pix[0] == pytest.approx([31.5, 31.5])


def test_erode_mask_shrinks_by_radius():
    m = np.zeros((20, 20), np.uint8)
    m[5:15, 5:15] = 255
    e = erode_mask(m, 2)
    assert e.sum() == 36 and e[7:13, 7:13].all()
    assert erode_mask(m, 0).sum() == 100


def test_sample_bilinear_interpolates_between_pixel_centres():
    img = np.zeros((2, 2, 3), np.float32)
    img[:, 1] = 1.0
    out = sample_bilinear(img, np.array([[0.25, 0.5], [1.0, 0.0], [-3, 0]]))
    assert out[:, 0] == pytest.approx([0.25, 1.0, 0.0])


# ---------------------------------------------------------------- fill and dilation

def test_fill_nearest_3d_ignores_the_other_side_of_a_thin_wall():
    # A thin wall: red texels face +z at z=0.01, blue ones face -z at z=-0.01; one unseen
    # texel faces +z and sits nearer the blue side. It must take red, not blue.
    xs = np.linspace(-1, 1, 9)
    red = np.c_[xs, np.zeros(9), np.full(9, 0.01)]
    blue = np.c_[xs, np.zeros(9), np.full(9, -0.01)]
    pos = np.vstack([red, blue, [[0.05, 0, -0.005]]])
    nrm = np.vstack([np.tile([0, 0, 1.0], (9, 1)), np.tile([0, 0, -1.0], (9, 1)), [[0, 0, 1.0]]])
    col = np.vstack([np.tile([1.0, 0, 0], (9, 1)), np.tile([0, 0, 1.0], (9, 1)), [[0, 0, 0]]])
    observed = np.r_[np.ones(18, bool), False]
    out = fill_nearest_3d(pos, nrm, col.astype(np.float32), observed, k=4)
    assert out[-1] == pytest.approx([1.0, 0.0, 0.0])
    assert np.array_equal(out[:18], col[:18])


def test_fill_nearest_3d_interpolates_by_inverse_distance():
    pos = np.array([[0, 0, 0.0], [1, 0, 0], [0.25, 0, 0]])
    nrm = np.tile([0, 1.0, 0], (3, 1))
    col = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32)
    out = fill_nearest_3d(pos, nrm, col, np.array([True, True, False]), k=2)
    # weights 1/0.25 and 1/0.75 -> 0.25 of the white
    assert out[2] == pytest.approx([0.25] * 3, abs=1e-6)


def test_fill_nearest_3d_reads_float32_colours_as_their_float64_values():
    # float32 colours go to the cell means as they are (summed in float64): the same fill
    # as from their float64 copy, bit for bit
    rng = np.random.default_rng(2)
    pos = rng.random((3000, 3))
    nrm = rng.normal(size=(3000, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    col = rng.random((3000, 3)).astype(np.float32)
    observed = pos[:, 0] < 0.6
    out = fill_nearest_3d(pos, nrm, col, observed, grid=32)
    again = fill_nearest_3d(pos, nrm, col.astype(np.float64), observed, grid=32)
    assert out.dtype == np.float32 and np.array_equal(out, again)
    assert not np.array_equal(out[~observed], col[~observed])


def test_dilate_grows_exactly_the_requested_margin():
    img = np.zeros((9, 9, 3), np.float32)
    ok = np.zeros((9, 9), bool)
    img[4, 4] = [0.5, 0.2, 0.1]
    ok[4, 4] = True
    out, grown = dilate(img, ok, 2)
    assert grown.sum() == 25 and grown[2:7, 2:7].all()
    assert out[2, 2] == pytest.approx([0.5, 0.2, 0.1])
    assert not out[0, 0].any()


def test_barycentric_recovers_weights():
    a, b, c = np.array([[0, 0, 0.0]]), np.array([[1, 0, 0.0]]), np.array([[0, 1, 0.0]])
    p = np.array([[0.2, 0.3, 0.0]])
    assert barycentric(p, a, b, c)[0] == pytest.approx([0.5, 0.2, 0.3])


# ---------------------------------------------------------------- the stage (needs the renderer)


def _sphere_with_colours(subdivisions: int = 3) -> MeshData:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.5)
    v = np.asarray(s.vertices)
    col = np.stack([0.5 + 0.5 * np.sin(6 * v[:, 0]), 0.5 + 0.5 * np.sin(5 * v[:, 1] + 1),
                    0.5 + 0.5 * np.cos(7 * v[:, 2])], 1)
    rgba = np.concatenate([np.round(col * 255), np.full((len(v), 1), 255)], 1).astype(np.uint8)
    return MeshData(v, np.asarray(s.faces), vertex_colors=rgba)


def _unwrapped(mesh: MeshData) -> MeshData:
    """A copy without colours, with an xatlas UV atlas (what the uv stage hands over)."""
    import xatlas

    vmap, idx, uv = xatlas.parametrize(mesh.vertices.astype(np.float32),
                                       mesh.faces.astype(np.uint32))
    return MeshData(mesh.vertices[vmap], idx.astype(np.int64), uv=uv)


def _state(tmp_path, mesh: MeshData, views=None) -> AssetState:
    st = AssetState(sku="t", spec=SkuSpec(sku="t"), store_uri=str(tmp_path))
    arts = {"mesh": save_mesh(st, mesh)}
    if views:
        cams = []
        for cam, rgb, mask in views:
            arts[f"image/{cam.label}"] = save_image(st, rgb)
            arts[f"mask/{cam.label}"] = save_image(st, mask)
            cams.append(cam)
        arts["cameras"] = save_cameras(st, cams)
    return dataclasses.replace(st, artifacts=arts)


def _photos(renderer, gt: MeshData, size: int = 160):
    views = []
    for label, az in VIEWS:
        cam = orbit_camera(label, az, 15.0, 3.0, size=size)
        rgba = renderer.render(gt, cam, shading="unlit")
        views.append((cam, rgba[..., :3].copy(), np.where(rgba[..., 3] > 127, 255, 0).astype(np.uint8)))
    return views


def test_texture_reproduces_the_photos(renderer, tmp_path):
    gt = _sphere_with_colours()
    views = _photos(renderer, gt)
    mesh = _unwrapped(gt)
    state = _state(tmp_path, mesh, views)
    before = dataclasses.replace(state)
    result = texture(state, TextureOptions(size=256))
    assert state == before                        # the input state is untouched
    assert result.record is not None and result.record.stage == "texture"
    m = result.metrics
    assert m["texture_size"] == 256 and m["texture_views_used"] == 4
    assert m["texture_observed_frac"] > 0.5
    assert m["texture_observed_frac"] + m["texture_filled_frac"] == pytest.approx(1.0)
    tex = load_image(state.apply(result), "texture/base_color")
    assert tex.shape == (256, 256, 3) and tex.dtype == np.uint8
    for cam, photo, mask in views:
        out = renderer.render(mesh, cam, texture=tex, shading="unlit")[..., :3]
        inside = mask > 127
        mse = ((out.astype(float) - photo.astype(float))[inside] ** 2).mean()
        assert 10 * np.log10(255 ** 2 / mse) > 25, cam.label


def test_unwrapped_mesh_without_photos_keeps_vertex_colours(renderer, tmp_path):
    gt = _sphere_with_colours(subdivisions=2)
    vmap, idx, uv = __import__("xatlas").parametrize(gt.vertices.astype(np.float32),
                                                     gt.faces.astype(np.uint32))
    mesh = MeshData(gt.vertices[vmap], idx.astype(np.int64), uv=uv,
                    vertex_colors=gt.vertex_colors[vmap])
    state = _state(tmp_path, mesh)
    result = texture(state, TextureOptions(size=128))
    assert result.metrics["texture_observed_frac"] == 0.0
    assert result.metrics["texture_filled_frac"] == 1.0
    assert result.metrics["texture_views_used"] == 0
    tex = load_image(state.apply(result), "texture/base_color")
    cam = orbit_camera("front", 0, 0, 3.0, size=96)
    want = renderer.render(gt, cam, shading="unlit")
    got = renderer.render(mesh, cam, texture=tex, shading="unlit")
    inside = want[..., 3] > 127
    assert np.abs(got[..., :3].astype(int) - want[..., :3].astype(int))[inside].mean() < 8


def test_mesh_without_colours_or_photos_is_neutral_grey(renderer, tmp_path):
    mesh = _unwrapped(_sphere_with_colours(subdivisions=1))
    result = texture(_state(tmp_path, mesh), TextureOptions(size=64))
    tex = load_image(_state(tmp_path, mesh).apply(result), "texture/base_color")
    assert np.all(tex == 204)


def test_mesh_without_uv_is_a_processing_error(tmp_path):
    mesh = MeshData(np.eye(3), np.array([[0, 1, 2]]))
    with pytest.raises(ProcessingError) as err:
        texture(_state(tmp_path, mesh))
    assert "uv stage" in err.value.fix and err.value.stage == "texture" and err.value.sku == "t"


# ---------------------------------------------------------------- edges, footprint, mip levels

@pytest.mark.parametrize("bad", [{"edge_px": -1}, {"depth_edge": 0}, {"edge_weight": 1.5},
                                 {"flatten_cells": 1}])
def test_new_options_reject_bad_values(bad):
    with pytest.raises(OptionsError):
        TextureOptions(**bad)


def test_edge_band_marks_depth_steps_and_mask_border_only():
    depth = np.full((40, 40), 2.0, np.float32)
    depth[:, 20:] = 3.0                      # a step in depth down the middle
    depth[:, :2] = np.inf                    # empty background on the left
    mask = np.zeros((40, 40), bool)
    mask[:, 2:] = True
    band = edge_band(depth, mask, px=1, rel_jump=0.05)
    assert band[10, 19] and band[10, 20]     # both sides of the step
    assert band[10, 2] and band[10, 3]       # the silhouette / mask border
    assert not band[10, 10] and not band[10, 30]
    assert not edge_band(depth, mask, px=0, rel_jump=0.05).any()


def test_face_footprint_is_pixels_per_texel():
    # a 1x1 quad facing the camera at distance 3 with fov 30: f = 0.5*256/tan(15deg) px/unit
    quad = MeshData(np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0.0]]),
                    np.array([[0, 1, 2], [0, 2, 3]]),
                    uv=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32))
    cam = orbit_camera("front", 0, 0, 3.0, size=256)
    f = 0.5 * 256 / np.tan(np.radians(15))
    fp = face_footprints(quad, cam, size=32)
    # the quad spans f/3 px across 32 texels
    assert fp == pytest.approx([f / 3 / 32] * 2, rel=1e-6)


def test_face_footprints_with_a_shared_uv_inverse_are_the_previous_formulation():
    # the UVs' inverse computed once for every view: each view's footprints are exactly the
    # per-view formulation's (J = dP inv(dT) over all faces, then its largest singular value)
    from assetfactory.algorithms.projection import uv_texel_inverse

    rng = np.random.default_rng(6)
    mesh = MeshData(rng.normal(size=(60, 3)), rng.integers(0, 60, (100, 3)),
                    uv=rng.random((60, 2)).astype(np.float32))
    mesh.uv[mesh.faces[:7, 1]] = mesh.uv[mesh.faces[:7, 0]]   # degenerate in UV
    shared = uv_texel_inverse(mesh, 64)
    for az in (0.0, 70.0, 200.0):
        cam = orbit_camera("v", az, 20.0, 4.0, size=128)
        pix, _ = cam.project(mesh.vertices)
        P, T = pix[mesh.faces], np.asarray(mesh.uv, np.float64)[mesh.faces] * 64
        dP = np.stack([P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]], axis=2)
        dT = np.stack([T[:, 1] - T[:, 0], T[:, 2] - T[:, 0]], axis=2)
        det = dT[:, 0, 0] * dT[:, 1, 1] - dT[:, 0, 1] * dT[:, 1, 0]
        ok = np.abs(det) > 1e-12
        want = np.ones(len(mesh.faces))
        want[ok] = np.linalg.svd(dP[ok] @ np.linalg.inv(dT[ok]), compute_uv=False)[:, 0]
        want = np.nan_to_num(want, nan=1.0, posinf=1.0)
        assert 0 < ok.sum() < len(ok)
        assert np.array_equal(face_footprints(mesh, cam, 64, shared), want)
        assert np.array_equal(face_footprints(mesh, cam, 64), want)


def test_sample_pyramid_level0_is_bilinear_and_coarse_levels_average():
    img = np.zeros((64, 64, 3), np.float32)
    img[:, ::2] = 1.0                         # one-pixel stripes
    mask = np.ones((64, 64), bool)
    pyr = build_pyramid(img, mask)
    pix = np.array([[10.0, 10.0], [11.0, 10.0], [31.5, 31.5]])
    c0, cover = sample_pyramid(pyr, pix, np.zeros(3))
    assert c0[:2, 0] == pytest.approx([1.0, 0.0]) and cover == pytest.approx(1.0)
    c3, _ = sample_pyramid(pyr, pix, np.full(3, 3.0))
    assert c3[:, 0] == pytest.approx([0.5] * 3, abs=0.02)


def test_pyramid_keeps_background_out_of_coarse_levels():
    img = np.ones((64, 64, 3), np.float32)           # white background ...
    img[:, :32] = [0.2, 0.4, 0.6]                    # ... left half is the object
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    pyr = build_pyramid(img, mask)
    col, cover = sample_pyramid(pyr, np.array([[30.0, 30.0]]), np.array([2.5]))
    assert col[0] == pytest.approx([0.2, 0.4, 0.6], abs=1e-3) and 0 < cover[0] < 1


def _quad_state(tmp_path, photo: np.ndarray, size: int = 128):
    quad = MeshData(np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0.0]]),
                    np.array([[0, 1, 2], [0, 2, 3]]),
                    uv=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32) * 0.9 + 0.05)
    cam = orbit_camera("front", 0, 0, 1.2, size=size)
    return _state(tmp_path, quad, [(cam, photo, np.full((size, size), 255, np.uint8))])


def test_mip_filter_stops_a_small_texture_aliasing_fine_stripes(renderer, tmp_path):
    photo = np.zeros((128, 128, 3), np.uint8)
    photo[:, ::2] = 255                                   # stripes at the photo's Nyquist rate
    state = _quad_state(tmp_path, photo)
    results = {}
    for mip in (True, False):
        r = texture(state, TextureOptions(size=16, mip_filter=mip, edge_px=0, pbr=False))
        tex = load_image(state.apply(r), "texture/base_color").astype(float)
        results[mip] = (tex[4:12, 4:12].std(), r.metrics["texture_mip_level_mean"])
    assert results[True][0] < 10 and results[False][0] > 60   # averaged vs. aliased
    assert results[True][1] > 2.0 and results[False][1] == 0.0


# ---------------------------------------------------------------- shading flattening and PBR

def test_flatten_shading_removes_smooth_light_falloff_per_part():
    x = np.linspace(0, 1, 400)
    pos = np.c_[x, np.zeros_like(x), np.zeros_like(x)]
    albedo = np.where(x < 0.5, 0.6, 0.2).astype(np.float32)       # two parts, two albedos
    light = (0.4 + 0.6 * x).astype(np.float32)                    # smooth light falloff
    col = np.repeat((albedo * light)[:, None], 3, axis=1)
    parts = (x >= 0.5).astype(np.int64)
    flat = flatten_shading(pos, col, parts, cells=8)
    for p in (0, 1):
        sel = parts == p
        assert flat[sel, 0].std() < 0.35 * col[sel, 0].std()
        assert flat[sel, 0].mean() == pytest.approx(col[sel, 0].mean(), rel=0.05)
    assert flat[parts == 0, 0].mean() > 1.5 * flat[parts == 1, 0].mean()  # albedos kept apart


def _two_part_sphere(renderer):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v, f = np.asarray(s.vertices), np.asarray(s.faces)
    top = v[f].mean(1)[:, 1] > 0
    colours = np.where(v[:, 1:2] > 0, [200, 20, 20, 255], [235, 235, 235, 255]).astype(np.uint8)
    gt = MeshData(v, f, vertex_colors=colours)
    mesh = _unwrapped(gt)
    import xatlas

    vmap, idx, uv = xatlas.parametrize(v.astype(np.float32), f.astype(np.uint32))
    mesh = MeshData(v[vmap], idx.astype(np.int64), face_labels=top.astype(np.int32), uv=uv)
    return gt, mesh


def test_pbr_writes_orm_and_materials_per_part(renderer, tmp_path):
    gt, mesh = _two_part_sphere(renderer)
    state = _state(tmp_path, mesh, _photos(renderer, gt, size=128))
    result = texture(state, TextureOptions(size=128))
    out = state.apply(result)
    from assetfactory.core.artifacts import load_json

    table = load_json(out, "materials")
    assert table["parts"]["1"]["material"] == "plastic"      # saturated red
    assert table["parts"]["0"]["material"] == "ceramic"      # plain white
    assert table["parts"]["1"]["name"] == "t-plastic"
    assert result.metrics["texture_materials"] == "ceramic,plastic"
    assert result.metrics["texture_parts"] == 2 and result.metrics["texture_has_ao"] is False
    orm = load_image(out, "texture/orm")
    assert orm.shape == (128, 128, 3)
    _, _, face = renderer.rasterize_uv(mesh, 128)
    covered = face >= 0
    labels = np.where(covered, mesh.face_labels[np.maximum(face, 0)], -1)
    assert np.all(orm[covered][:, 0] == 255)                  # no AO baked: R = 1
    assert np.all(orm[labels == 1][:, 1] == round(0.45 * 255))
    assert np.all(orm[labels == 0][:, 1] == round(0.25 * 255))
    assert np.all(orm[covered][:, 2] == 0)


def test_pbr_follows_the_catalog_hint_and_reads_baked_ao(renderer, tmp_path):
    gt, mesh = _two_part_sphere(renderer)
    state = _state(tmp_path, mesh, _photos(renderer, gt, size=96))
    ao = np.full((64, 64), 128, np.uint8)                      # another size than the atlas
    state = dataclasses.replace(
        state, spec=SkuSpec(sku="t", material="Brushed stainless steel"),
        artifacts={**state.artifacts, "texture/ao": save_image(state, ao)})
    result = texture(state, TextureOptions(size=64))
    orm = load_image(state.apply(result), "texture/orm")
    assert result.metrics["texture_materials"] == "metal" and result.metrics["texture_has_ao"]
    assert np.all(np.abs(orm[..., 0].astype(int) - 128) <= 1)
    assert np.all(orm[..., 2] == 255) and np.all(orm[..., 1] == round(0.35 * 255))


def test_pbr_off_writes_only_the_base_colour(renderer, tmp_path):
    _, mesh = _two_part_sphere(renderer)
    result = texture(_state(tmp_path, mesh), TextureOptions(size=32, pbr=False))
    assert set(result.artifacts) == {"texture/base_color"}


def test_delight_recovers_the_albedo_under_a_light_fixed_to_the_camera(renderer, tmp_path):
    # a turntable shoot lit from the upper left of the camera: the same point is bright in one
    # photo and dark in another; dividing the fitted light out leaves the albedo
    import trimesh

    gt = _sphere_with_colours()
    normals = np.asarray(trimesh.Trimesh(gt.vertices, gt.faces).vertex_normals, np.float32)
    gt = gt.replace(vertex_normals=normals)
    light = ((-0.4, 0.45, 1.0), 0.3)
    views, albedo = [], []
    for label, az in VIEWS:
        cam = orbit_camera(label, az, 15.0, 3.0, size=160)
        lit = renderer.render(gt, cam, shading="lambert", light=light)
        mask = np.where(lit[..., 3] > 127, 255, 0).astype(np.uint8)
        views.append((cam, lit[..., :3].copy(), mask))
        albedo.append(renderer.render(gt, cam, shading="unlit")[..., :3])
    mesh = _unwrapped(gt).replace(vertex_normals=None)
    state = _state(tmp_path, mesh, views)
    delit = texture(state, TextureOptions(size=256, delight=True))
    baked = texture(state, TextureOptions(size=256, delight=False))
    m = delit.metrics
    assert m["texture_delit"] is True and not baked.metrics["texture_delit"]
    assert m["texture_light_ambient"] == pytest.approx(0.3, abs=0.1)
    d = np.array([float(x) for x in m["texture_light_direction"].split(",")])
    want = np.array(light[0]) / np.linalg.norm(light[0])
    assert float(d @ want) > np.cos(np.radians(12))

    def psnr(tex, want_images, **kw):
        out = []
        for (cam, _, mask), ref in zip(views, want_images):
            img = renderer.render(mesh, cam, texture=tex, **kw)[..., :3].astype(float)
            mse = ((img - ref.astype(float))[mask > 127] ** 2).mean()
            out.append(10 * np.log10(255 ** 2 / mse))
        return float(np.mean(out))

    t_delit = load_image(state.apply(delit), "texture/base_color")
    t_baked = load_image(state.apply(baked), "texture/base_color")
    # unlit, the delit texture is the albedo; lit by the same light, it is the photos
    assert psnr(t_delit, albedo, shading="unlit") > psnr(t_baked, albedo, shading="unlit") + 3
    assert psnr(t_delit, [v[1] for v in views], shading="lambert", light=light) > 27
    # a visual hull carved from the same photos: its shared points lie between the photos,
    # so the light is not fitted there unless asked for
    hull = dataclasses.replace(state, metrics={"generate_method": "visual_hull"})
    skipped = texture(hull, TextureOptions(size=256, delight=True)).metrics
    assert skipped["texture_delit"] is False and skipped["texture_delight_skipped_hull"]
    assert not m["texture_delight_skipped_hull"]


def test_fill_bounds_are_numpys_min_and_max():
    from assetfactory.algorithms._inpaint_numba import bounds

    rng = np.random.default_rng(4)
    for pos in (rng.normal(size=(5000, 3)), rng.normal(size=(1, 3)),
                np.array([[0.0, -0.0, 1.0], [-0.0, 0.0, np.inf], [2.0, -5.0, -1.0]])):
        lo, hi = bounds(np.ascontiguousarray(pos))
        assert np.array_equal(lo, pos.min(0)) and np.array_equal(hi, pos.max(0))
