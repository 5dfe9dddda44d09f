"""The silhouette backend against shapes whose silhouettes and hulls are known analytically."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from assetfactory.core.camera import Camera, orbit_camera
from assetfactory.core.errors import InputError, OptionsError, ProcessingError
from assetfactory.models.base import GenerateRequest
from assetfactory.models.silhouette import (
    SilhouetteConfig,
    is_closed,
    largest_component,
    mask_sdf,
    signed_volume,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RADIUS = 0.45
HALF_BOX = np.array([0.4, 0.3, 0.25])


# ---------------------------------------------------------------- analytic silhouettes

def _pixel_rays(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre and unit world direction through every pixel centre (row-major)."""
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(float)
    K = cam.K
    d = np.stack([(u - K[0, 2]) / K[0, 0], -(v - K[1, 2]) / K[1, 1], -np.ones_like(u)], -1)
    d = d.reshape(-1, 3) @ cam.world_to_camera[:3, :3]  # camera -> world: R^T d
    return cam.position, d / np.linalg.norm(d, axis=1, keepdims=True)


def _hits_sphere(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    t = dirs @ -origin
    return (origin @ origin - t ** 2 < RADIUS ** 2) & (t > 0)


def _hits_box(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t1, t2 = (-HALF_BOX - origin) * inv, (HALF_BOX - origin) * inv
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    return (tmax >= tmin) & (tmax > 0)


HITS = {"sphere": _hits_sphere, "box": _hits_box}
VOLUME = {"sphere": 4 / 3 * np.pi * RADIUS ** 3, "box": float(np.prod(2 * HALF_BOX))}


def _views(shape: str, n: int, size: int = 256, elevation: float = 15.0) -> list:
    views = []
    for az in np.arange(n) * 360.0 / n:
        cam = orbit_camera(f"az{az:03.0f}", az, elevation, 2.5, 30.0, size)
        mask = HITS[shape](*_pixel_rays(cam)).reshape(size, size)
        views.append(SimpleNamespace(label=cam.label, camera=cam, mask=mask,
                                     rgb=np.zeros((size, size, 3), np.uint8)))
    return views


def _exact_hull_volume(shape: str, cams: list[Camera], lo, hi, n: int = 200_000) -> float:
    """Monte Carlo volume of the true visual hull: points whose ray from every camera hits."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(lo, hi, size=(n, 3))
    inside = np.ones(n, bool)
    for cam in cams:
        d = pts - cam.position
        inside &= HITS[shape](cam.position, d / np.linalg.norm(d, axis=1, keepdims=True))
    return float(inside.mean() * np.prod(np.asarray(hi) - np.asarray(lo)))


def _render_mask(mesh, cam: Camera) -> np.ndarray:
    """Silhouette of a mesh: every projected triangle filled (sub-pixel, 1/16 px)."""
    uv, _ = cam.project(mesh.vertices)
    tris = np.round(uv[mesh.faces] * 16).astype(np.int32)
    img = np.zeros((cam.height, cam.width), np.uint8)
    for tri in tris:
        cv2.fillConvexPoly(img, tri, 1, lineType=cv2.LINE_8, shift=4)
    return img > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _generate(views, **cfg):
    return SilhouetteConfig(**cfg).build().generate(GenerateRequest(sku="t", views=views))


def _check_dense(out) -> None:
    mesh = out.mesh
    assert 1e4 <= mesh.n_faces <= 1e6
    assert np.isfinite(mesh.vertices).all()
    assert signed_volume(mesh) > 0
    assert is_closed(mesh.faces)
    assert out.info["watertight"] is True
    assert len(mesh.face_labels) == mesh.n_faces


# ---------------------------------------------------------------- visual hull

@pytest.mark.parametrize("n", [4, 8])
def test_visual_hull_of_sphere_has_its_volume_and_silhouettes(n):
    views = _views("sphere", n)
    out = _generate(views, resolution=96)
    _check_dense(out)
    assert out.info["method"] == "visual_hull" and out.info["views"] == n
    vol = signed_volume(out.mesh)
    assert vol == pytest.approx(out.info["volume"])
    # A hull contains the object and, from 4+ views around it, is within ~15% of a sphere.
    assert 0.97 * VOLUME["sphere"] <= vol <= 1.15 * VOLUME["sphere"]
    for v in views:
        assert _iou(_render_mask(out.mesh, v.camera), v.mask) > 0.97, v.label
    assert [c.label for c in out.cameras] == [v.label for v in views]


def test_visual_hull_of_box_matches_the_exact_hull():
    views = _views("box", 4)
    out = _generate(views, resolution=96)
    _check_dense(out)
    lo, hi = out.mesh.bounds()
    lo, hi = lo - 0.05, hi + 0.05
    exact = _exact_hull_volume("box", [v.camera for v in views], lo, hi)
    vol = signed_volume(out.mesh)
    assert vol == pytest.approx(exact, rel=0.05)
    assert vol >= 0.97 * VOLUME["box"]
    # The hull contains the box (its bounds do, within a voxel) and not much more: perspective
    # widens it sideways, and views all from above leave a wedge under the bottom.
    lo, hi = out.mesh.bounds()
    assert (lo <= -HALF_BOX + 0.01).all() and (hi >= HALF_BOX - 0.01).all()
    assert ((hi - lo) / (2 * HALF_BOX) < 1.3).all()
    for v in views:
        assert _iou(_render_mask(out.mesh, v.camera), v.mask) > 0.97, v.label


def test_views_with_unknown_pose_do_not_carve():
    views = _views("sphere", 4)
    bogus = _views("box", 1)[0]
    bogus.label = "view5"
    bogus.mask = np.zeros_like(bogus.mask)
    bogus.mask[:40, :40] = True  # would carve everything away if it were used
    bogus.pose_known = False
    out = _generate(views + [bogus], resolution=48)
    assert out.info["views"] == 5 and out.info["views_used"] == 4
    assert len(out.cameras) == 5


def test_silhouettes_that_do_not_intersect_raise_processing_error():
    views = _views("sphere", 2)
    views[1].mask = np.zeros_like(views[1].mask)
    views[1].mask[:20, :20] = True
    with pytest.raises(ProcessingError, match="do not intersect"):
        _generate(views, resolution=32)


# ---------------------------------------------------------------- the ground under the product

def test_the_wedge_under_a_product_seen_from_above_is_cut():
    views = _views("box", 4, elevation=20.0)
    cut = _generate(views, resolution=64)
    kept = _generate(views, resolution=64, ground_cut=False)
    bottom = -HALF_BOX[1]
    # without the cut the hull hangs a wedge ~ half the footprint x tan(20) below the base
    assert kept.mesh.bounds()[0][1] < bottom - 0.08
    assert cut.mesh.bounds()[0][1] == pytest.approx(bottom, abs=0.03)
    assert cut.info["ground_cut"] > 0.05 and kept.info["ground_cut"] == 0.0
    # the box stays whole (four views also widen the hull sideways: it is not the box)
    assert VOLUME["box"] * 0.98 < signed_volume(cut.mesh) < signed_volume(kept.mesh) * 0.95
    for v in views:  # every photo is still explained
        assert _iou(_render_mask(cut.mesh, v.camera), v.mask) > 0.95, v.label


def test_a_level_shoot_keeps_its_base():
    views = _views("box", 4, elevation=0.0)
    out = _generate(views, resolution=48)
    assert out.info["ground_cut"] == 0.0


# ---------------------------------------------------------------- estimated cameras

def _shoot(**kw):
    from tests.procedural_shoot import LABELS4, product, shoot

    views, _ = shoot(product("asym"), LABELS4, **kw)
    return views


FAST_FIT = {"coarse_px": 72, "fine_px": 112, "coarse_grid": 26, "fine_grid": 34}


def _generate_hinted(views, **cfg):
    from unittest import mock

    from assetfactory.algorithms import camera_fit

    hints = {"fov_deg": 30.0, "fov_known": False, "distance": 2.5, "distance_known": False,
             "elevation_known": [False] * len(views), "default_elevation_deg": 0.0}
    fit = camera_fit.fit_cameras
    fast = camera_fit.FitOptions(**FAST_FIT)  # smaller grids than the factory's: faster
    with mock.patch.object(camera_fit, "fit_cameras", lambda c, m, h: fit(c, m, h, fast)):
        return SilhouetteConfig(**cfg).build().generate(
            GenerateRequest(sku="t", views=views, camera_hints=hints))


def test_cameras_without_hints_are_taken_as_given():
    # a render set with exact cameras: no ``camera_hints``, nothing estimated (the estimation
    # itself, its metrics and report: tests/tasks/test_generate.py)
    views = _shoot(elevation=18.0, fov=30.0)
    plain = _generate(views, resolution=48)
    assert "camera_elevation_deg" not in plain.info and plain.report is None
    assert [c.elevation_deg for c in plain.cameras] == [0.0] * 4


def test_a_mislabelled_photo_fails_the_sku_naming_it_or_is_dropped():
    # "back" shows the right side; with four views it contradicts the front
    views = _shoot(elevation=15.0, fov=30.0, azimuths={"back": 90.0})
    with pytest.raises(InputError, match="'back'") as err:
        _generate_hinted(views, resolution=48)
    assert err.value.code == "inconsistent_views"
    assert "label" in err.value.fix and "'back'" in err.value.fix
    out = _generate_hinted(views, resolution=48, on_inconsistent="drop")
    dropped = set(out.info["camera_dropped"].split(","))
    assert "back" in dropped
    assert out.info["views_used"] == 4 - len(dropped)
    assert "back" not in [c.label for c in out.cameras]


def test_a_photo_whose_mask_lost_part_of_the_product_fails_naming_it_or_only_textures():
    from tests.algorithms.test_camera_fit import lose_part

    views = _shoot(elevation=18.0, fov=30.0)
    whole = _generate_hinted(views, resolution=48)
    views[0].mask = lose_part(views[0].mask)
    with pytest.raises(InputError, match="mask of photo 'front' lost part") as err:
        _generate_hinted(views, resolution=48)
    assert err.value.code == "incomplete_mask"
    assert "contrasts" in err.value.fix and "'front'" in err.value.fix
    out = _generate_hinted(views, resolution=48, on_inconsistent="drop")
    assert out.info["camera_dropped"] == "front" and out.info["views_used"] == 3
    # the photo still textures, at a fitted camera like the others'
    front = next(c for c in out.cameras if c.label == "front")
    assert len(out.cameras) == 4
    assert front.elevation_deg == pytest.approx(out.cameras[1].elevation_deg, abs=3.0)
    # carved by the three good photos, the product keeps (nearly) all its volume
    assert signed_volume(out.mesh) > 0.9 * signed_volume(whole.mesh)


# ---------------------------------------------------------------- one view

def test_one_view_inflates_a_closed_shape_with_the_views_silhouette():
    view = _views("sphere", 1, elevation=0.0)[0]
    out = _generate([view], resolution=96, inflation=1.0)
    _check_dense(out)
    assert out.info["method"] == "inflate"
    # A disc inflated with ratio 1 is close to the sphere that cast it.
    assert signed_volume(out.mesh) == pytest.approx(VOLUME["sphere"], rel=0.15)
    assert _iou(_render_mask(out.mesh, view.camera), view.mask) > 0.97
    lo, hi = out.mesh.bounds()
    assert np.abs((lo + hi) / 2).max() < 0.05  # centred on the world origin


def test_inflation_sets_depth_relative_to_width_in_the_world_frame():
    view = _views("sphere", 1, elevation=0.0)[0]  # front view: depth is along world Z
    out = _generate([view], resolution=64, inflation=0.35)
    size = out.mesh.bounds()[1] - out.mesh.bounds()[0]
    assert size[2] / size[0] == pytest.approx(0.35, abs=0.06)
    assert size[1] == pytest.approx(size[0], rel=0.05)  # +Y up: height is the disc's width


# ---------------------------------------------------------------- inputs and helpers

def test_bad_masks_raise_input_error():
    view = _views("sphere", 1, size=64)[0]
    view.mask = np.zeros_like(view.mask)
    with pytest.raises(InputError, match="empty"):
        _generate([view], resolution=32)
    view.mask = np.ones((10, 10), bool)
    with pytest.raises(InputError, match="camera"):
        _generate([view], resolution=32)
    with pytest.raises(InputError, match="at least one view"):
        _generate([], resolution=32)


@pytest.mark.parametrize("bad", [{"resolution": 4}, {"device": "cuda"}, {"inflation": 0.0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(OptionsError):
        SilhouetteConfig(**bad)


def test_config_is_weight_free_and_hashable():
    cfg = SilhouetteConfig()
    assert cfg.weights_sha256() is None and hash(cfg) == hash(SilhouetteConfig())


def test_mask_sdf_is_zero_on_the_pixel_edge():
    mask = np.zeros((9, 9), bool)
    mask[:, :4] = True
    sdf = mask_sdf(mask)
    assert sdf[4, 3] == pytest.approx(0.5) and sdf[4, 4] == pytest.approx(-0.5)
    assert sdf[4, 0] == pytest.approx(3.5) and sdf[4, 8] == pytest.approx(-4.5)


def test_largest_component_drops_floaters():
    from assetfactory.core.mesh import MeshData

    tri = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    mesh = MeshData(np.random.default_rng(0).random((7, 3)), tri)
    kept, pieces = largest_component(mesh)
    assert pieces == 2 and kept.n_faces == 2 and kept.n_vertices == 4


def test_pieces_that_hold_volume_stay_and_floaters_go():
    # a base and a lid with a gap between them: eight views cut the lid free of the base (four
    # leave a phantom bridge), and keeping only the largest piece threw the lid away
    import trimesh

    from assetfactory.core.mesh import MeshData
    from assetfactory.geometry.components import pieces_by_volume
    from assetfactory.geometry.render import get_renderer

    base = trimesh.creation.box([0.6, 0.35, 0.6])
    base.apply_translation([0, -0.2, 0])
    lid = trimesh.creation.box([0.5, 0.15, 0.5])
    lid.apply_translation([0, 0.2, 0])
    product = MeshData.concatenate([MeshData(np.asarray(m.vertices), np.asarray(m.faces))
                                    for m in (base, lid)])
    r = get_renderer()
    views = []
    for az in np.arange(8) * 45.0:
        cam = orbit_camera(f"az{az:03.0f}", az, 10.0, 2.5, 30.0, 128)
        views.append(SimpleNamespace(label=cam.label, camera=cam, mask=r.mask(product, cam)))
    out = _generate(views, resolution=64, ground_cut=False)
    assert out.info["components"] == 2 and out.info["components_kept"] == 2
    assert out.mesh.vertices[:, 1].max() > 0.25        # the lid's top is there
    assert out.mesh.vertices[:, 1].min() < -0.3        # and the base's bottom
    # a sliver floater (no volume) still goes
    sliver = MeshData(np.array([[2.0, 0, 0], [2.1, 0, 0], [2.0, 0.1, 0]]), np.array([[0, 1, 2]]))
    kept, pieces, n_kept = pieces_by_volume(MeshData.concatenate([out.mesh, sliver]), 0.005)
    assert (pieces, n_kept) == (3, 2) and kept.n_faces == out.mesh.n_faces


# ---------------------------------------------------------------- real renders

def test_hull_from_real_renders_reprojects_onto_their_masks():
    folder = SHARED / "renders" / "3dc_Mixer" / "4views"
    if not folder.is_dir():
        pytest.skip(f"shared test data not found at {folder.resolve()}")
    from PIL import Image

    meta = json.loads((folder / "cameras.json").read_text())
    views = []
    for v in meta["views"]:
        h, w = v["image_size"][1], v["image_size"][0]
        cam = Camera(v["label"], np.asarray(v["K"], float),
                     np.asarray(v["world_to_camera"], float), w, h, v["azimuth_deg"],
                     v["elevation_deg"])
        mask = np.asarray(Image.open(folder / f"mask_{v['label']}.png").convert("L")) > 127
        views.append(SimpleNamespace(label=v["label"], camera=cam, mask=mask))
    out = _generate(views, resolution=96)
    _check_dense(out)
    for v in views:
        assert _iou(_render_mask(out.mesh, v.camera), v.mask) > 0.93, v.label
