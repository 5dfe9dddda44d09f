"""Tests of the metrics stage: topology on welded vertices, sizes, volume, IoU and PSNR."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from assetfactory.core.artifacts import save_cameras, save_image, save_mesh
from assetfactory.core.camera import orbit_camera
from assetfactory.core.errors import OptionsError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.tasks import metrics as mt
from assetfactory.tasks.metrics import MetricsOptions, metrics
from tests.builders import unit_cube

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _state(tmp_path, mesh: MeshData, **extra) -> AssetState:
    st = AssetState(sku="t", spec=SkuSpec(sku="t"), store_uri=str(tmp_path))
    arts = {"mesh": save_mesh(st, mesh)}
    return dataclasses.replace(st, artifacts={**arts, **extra})


# ---------------------------------------------------------------- pure functions

def test_options_reject_unknown_mode():
    with pytest.raises(OptionsError):
        MetricsOptions(iou_views="all-of-them")


def test_cube_geometry_with_split_seams():
    g = mt.geometry_metrics(unit_cube(split_seams=True))
    assert g["metrics_tris"] == 12 and g["metrics_verts"] == 36
    assert g["metrics_verts_welded"] == 8 and g["metrics_components"] == 1
    assert g["metrics_watertight"] is True and g["metrics_manifold"] is True
    assert (g["metrics_bbox_x_m"], g["metrics_bbox_y_m"], g["metrics_bbox_z_m"]) == \
        pytest.approx((1.0, 1.0, 1.0))
    assert g["metrics_volume_m3"] == pytest.approx(1.0)
    assert g["metrics_outward"] is True


def test_open_mesh_is_not_watertight_but_manifold():
    cube = unit_cube()
    g = mt.geometry_metrics(cube.subset_faces(np.arange(12) >= 2))
    assert g["metrics_watertight"] is False and g["metrics_manifold"] is True
    assert g["metrics_boundary_edges"] == 4 and g["metrics_volume_m3"] is None


def test_flipped_face_and_fin_are_not_manifold():
    cube = unit_cube()
    flipped = cube.faces.copy()
    flipped[0] = flipped[0, ::-1]
    s = mt.edge_stats(flipped)
    assert s.inconsistent == 3 and not s.manifold and s.boundary == 0
    fin = np.vstack([cube.faces, [[0, 1, 7]]])  # an extra face on an existing edge
    s = mt.edge_stats(fin)
    assert s.nonmanifold >= 1 and not s.manifold and not s.watertight


def test_inside_out_cube_reports_inward_winding():
    cube = unit_cube()
    g = mt.geometry_metrics(cube.replace(faces=cube.faces[:, ::-1]))
    assert g["metrics_volume_m3"] == pytest.approx(1.0) and g["metrics_outward"] is False


def test_components_count_separate_shells():
    a = unit_cube()
    b = a.replace(vertices=a.vertices + [3, 0, 0])
    two = MeshData(np.vstack([a.vertices, b.vertices]),
                   np.vstack([a.faces, b.faces + a.n_vertices]))
    g = mt.geometry_metrics(two)
    assert g["metrics_components"] == 2 and g["metrics_volume_m3"] == pytest.approx(2.0)


def test_silhouette_iou_and_masked_psnr():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert mt.silhouette_iou(a, b) == pytest.approx(4 / 12)
    assert mt.silhouette_iou(a, a) == 1.0 and mt.silhouette_iou(~a & a, ~a & a) is None
    img = np.full((4, 4, 3), 100, np.uint8)
    off = img.copy()
    off[0, 0] = 110   # 3 channels off by 10 on one of 8 masked pixels -> MSE 100/8
    assert mt.masked_psnr(off, img, a) == pytest.approx(10 * np.log10(255 ** 2 / 12.5))
    assert mt.masked_psnr(img, img, a) == 99.0


# ---------------------------------------------------------------- the stage


def _views(renderer, mesh: MeshData, state: AssetState, size: int = 96) -> dict:
    arts, cams = {}, []
    for label, az in (("front", 0.0), ("right", 90.0), ("back_left", 225.0)):
        cam = orbit_camera(label, az, 20.0, 4.0, size=size, target=(0, 0.5, 0))
        mask = renderer.mask(mesh, cam)
        arts[f"mask/{label}"] = save_image(state, np.where(mask, 255, 0).astype(np.uint8))
        cams.append(cam)
    arts["cameras"] = save_cameras(state, cams)
    return arts


def test_metrics_stage_on_the_unit_cube(renderer, tmp_path):
    cube = unit_cube(split_seams=True)
    base = _state(tmp_path, cube)
    state = dataclasses.replace(base, artifacts={**base.artifacts, **_views(renderer, cube, base)})
    before = dataclasses.replace(state)
    result = metrics(state, MetricsOptions())
    assert state == before and result.record is not None and result.record.stage == "metrics"
    assert dict(result.artifacts) == {}
    m = result.metrics
    assert m["metrics_watertight"] and m["metrics_manifold"]
    assert m["metrics_volume_m3"] == pytest.approx(1.0)
    assert m["metrics_iou_mean"] == pytest.approx(1.0) and m["metrics_iou_min"] == pytest.approx(1.0)
    assert set(json.loads(m["metrics_iou_views"])) == {"front", "right", "back_left"}
    assert m["metrics_psnr_mean"] is None        # no texture yet
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in m.values())


def test_iou_drops_when_the_mesh_is_smaller_than_the_masks(renderer, tmp_path):
    cube = unit_cube()
    base = _state(tmp_path, cube)
    views = _views(renderer, cube, base)
    small = cube.replace(vertices=(cube.vertices - [0, 0.5, 0]) * 0.7 + [0, 0.5, 0])
    state = dataclasses.replace(_state(tmp_path, small), artifacts={
        **_state(tmp_path, small).artifacts, **views})
    m = metrics(state, MetricsOptions()).metrics
    assert 0.3 < m["metrics_iou_min"] <= m["metrics_iou_mean"] < 0.7   # about 0.7 ** 2


def test_psnr_of_a_textured_mesh_against_its_own_render(renderer, tmp_path):
    cube = unit_cube(split_seams=True)
    uv = np.tile(np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]], np.float32), (12, 1))
    mesh = cube.replace(uv=uv)
    tex = np.zeros((16, 16, 3), np.uint8)
    tex[...] = (200, 60, 30)
    base = _state(tmp_path, mesh)
    arts = {**base.artifacts, **_views(renderer, mesh, base), "texture/base_color":
            save_image(base, tex)}
    cams = [orbit_camera(lb, az, 20.0, 4.0, size=96, target=(0, 0.5, 0))
            for lb, az in (("front", 0.0), ("right", 90.0), ("back_left", 225.0))]
    for cam in cams:
        arts[f"image/{cam.label}"] = save_image(base, np.full((96, 96, 3), (200, 60, 30), np.uint8))
    state = dataclasses.replace(base, artifacts=arts)
    m = metrics(state, MetricsOptions()).metrics
    assert m["metrics_psnr_mean"] > 40
    assert m["metrics_ssim_mean"] > 0.95 and m["metrics_ssim_min"] <= m["metrics_ssim_mean"]
    assert set(json.loads(m["metrics_ssim_views"])) == {"front", "right", "back_left"}
    grey = {**arts, "texture/base_color": save_image(base, np.full((16, 16, 3), 128, np.uint8))}
    m2 = metrics(dataclasses.replace(state, artifacts=grey), MetricsOptions()).metrics
    assert m2["metrics_psnr_mean"] < 15


def test_masked_ssim_scores_structure_inside_the_mask():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    assert mt.masked_ssim(img, img, mask) == pytest.approx(1.0)
    other = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    assert mt.masked_ssim(other, img, mask) < 0.5
    outside_only = img.copy()
    outside_only[~mask] = 0                       # changes outside the mask do not count
    assert mt.masked_ssim(outside_only, img, mask) == pytest.approx(1.0)
    assert mt.masked_ssim(img, img, np.zeros((32, 32), bool)) is None


def test_mesh_only_asset_without_views(tmp_path):
    m = metrics(_state(tmp_path, unit_cube()), MetricsOptions(iou_views="none")).metrics
    assert m["metrics_tris"] == 12 and "metrics_iou_mean" not in m
    m = metrics(_state(tmp_path, unit_cube()), MetricsOptions()).metrics
    assert m["metrics_iou_mean"] is None and m["metrics_iou_views"] == "{}"


def test_real_non_manifold_file_from_shared_data():
    path = DATA / "broken" / "auditor_cube-non-manifold.glb"
    if not path.exists():
        pytest.skip(f"shared test data not found at {path}")
    import trimesh

    scene = trimesh.load(path, force="mesh", process=False)
    g = mt.geometry_metrics(MeshData(np.asarray(scene.vertices), np.asarray(scene.faces)))
    assert g["metrics_nonmanifold_edges"] > 0
    assert not g["metrics_manifold"] and not g["metrics_watertight"]


def test_masked_ssim_on_the_mask_box_equals_the_whole_image_formula():
    """The crop to the mask's bounding box changes no in-mask SSIM value (masks at a border,
    in the middle, and a few pixels in a corner)."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (90, 120, 3)).astype(np.uint8)
    render = np.clip(photo.astype(int) + rng.integers(-40, 40, photo.shape), 0, 255)
    render = render.astype(np.uint8)
    masks = [np.zeros((90, 120), bool) for _ in range(3)]
    masks[0][20:60, 30:100] = True
    masks[0][25:30, 10:31] = True
    masks[1][0:90, 100:120] = True
    masks[2][0:3, 0:2] = True
    for m in masks:
        a = render.copy()
        a[~m] = photo[~m]
        _, full = structural_similarity(a, photo, channel_axis=2, data_range=255, full=True)
        assert mt.masked_ssim(render, photo, m) == pytest.approx(
            float(full.mean(axis=2)[m].mean()), abs=1e-9)
