"""camera_fit: cameras from silhouettes, on procedural products shot from known rigs."""

from __future__ import annotations

import numpy as np
import pytest

from assetfactory.algorithms.camera_fit import FitOptions, ShootHints, fit_cameras, single_view
from assetfactory.tasks.ingest import IngestOptions
from tests.procedural_shoot import LABELS4, LABELS8, product, shoot

UNKNOWN = ShootHints(default_elevation_deg=0.0)
#: Smaller grids and masks than the factory's: the same search, a few times faster.
FAST = {"coarse_px": 72, "fine_px": 112, "coarse_grid": 26, "fine_grid": 34}


def _fit(views, hints=UNKNOWN, **options):
    return fit_cameras([v.camera for v in views], [v.mask for v in views], hints,
                       FitOptions(**{**FAST, **options}))


@pytest.mark.parametrize(("elevation", "fov", "fov_known"),
                         [(22.0, 30.0, False), (8.0, 25.0, False), (28.0, 45.0, True)])
def test_an_unknown_elevation_is_recovered_within_a_few_degrees(elevation, fov, fov_known):
    # (four views trade elevation against perspective: 18 degrees at fov 30 carves almost as
    # well as 22 at 40, so a far-off lens is given where it matters)
    assumed = IngestOptions(fov_deg=fov) if fov_known else IngestOptions()
    views, _ = shoot(product("asym"), LABELS4, elevation=elevation, fov=fov, assumed=assumed)
    hints = ShootHints(fov_deg=assumed.fov_deg, fov_known=fov_known, default_elevation_deg=0.0)
    fit = _fit(views, hints)
    assert fit.elevation_deg == pytest.approx(elevation, abs=3.0)
    # the photos agree better than with the labels' level cameras (both at the fine level;
    # 8 degrees off costs little consistency, 22 a lot)
    assert fit.consistency > fit.start_iou + (0.02 if elevation > 15 else 0.005)
    assert fit.consistency > 0.95
    assert fit.outliers == []
    assert len(fit.cameras) == 4 and all(c.width == 256 for c in fit.cameras)
    m = fit.metrics()
    assert m["camera_elevation_deg"] == pytest.approx(fit.elevation_deg, abs=1e-3)
    assert 0 < m["camera_seconds"] < 60


def test_the_scan_hands_the_finer_grid_its_best_basins():
    from assetfactory.algorithms.camera_fit import _candidates

    f = {0.0: 0.5, 1.0: 0.2, 2.0: 0.4, 3.0: 0.1, 4.0: 0.3, 5.0: 0.25}
    assert _candidates(lambda x: f[round(x)], 0.0, 5.0, 1.0, 3) == [3.0, 1.0, 5.0]
    assert _candidates(lambda x: f[round(x)], 0.0, 5.0, 1.0, 1) == [3.0]


def test_the_elevation_is_scanned_where_a_products_details_survive():
    # a drum with thin candles, eight views: on the small grid the candles vanish and the
    # drum's silhouettes agree nearly as well at 17 degrees as at 25 (the coarse scan's answer
    # there); the finer grid, on which the elevation is scanned, keeps them
    views, _ = shoot(product("cake"), LABELS8, elevation=25.0, fov=30.0)
    fit = _fit(views)
    assert fit.elevation_deg == pytest.approx(25.0, abs=3.5)
    assert fit.consistency >= fit.start_iou


def test_eight_views_end_no_worse_than_the_labels_cameras():
    # eight views: the small grid's score is flatter, the per-view corrections more; what the
    # fit returns must agree with the photos at least as well as the labels' cameras do
    views, _ = shoot(product("asym"), LABELS8, elevation=15.0, fov=30.0)
    fit = _fit(views, ShootHints(default_elevation_deg=15.0))
    assert fit.elevation_deg == pytest.approx(15.0, abs=3.0)
    assert fit.consistency >= fit.start_iou - 1e-6
    assert fit.outliers == []


def test_catalog_values_that_are_right_stay():
    known = IngestOptions(fov_deg=35.0, default_elevation_deg=18.0)
    views, _ = shoot(product("asym"), LABELS4, elevation=18.0, fov=35.0, assumed=known)
    fit = _fit(views, ShootHints(fov_deg=35.0, fov_known=True, elevation_known=(True,) * 4))
    assert fit.elevation_deg == pytest.approx(18.0, abs=1.5)
    assert fit.fov_deg == pytest.approx(35.0, rel=0.1)
    assert max(abs(a) for a in fit.azimuth_shift_deg.values()) <= 4.0


def test_a_round_product_takes_its_elevation_from_the_rim():
    # every silhouette of a cylinder is the same: only its base's ellipse tells the elevation
    views, _ = shoot(product("cylinder"), LABELS4, elevation=18.0, fov=30.0)
    fit = _fit(views)
    assert fit.rim_elevation_deg is not None
    assert fit.elevation_deg == pytest.approx(18.0, abs=3.0)


def test_a_mislabelled_photo_is_named_with_the_side_it_shows():
    # eight views: the photo labelled "right" was taken from the left
    views, _ = shoot(product("asym"), LABELS8, elevation=15.0, fov=30.0,
                     azimuths={"right": 270.0})
    fit = _fit(views)
    assert [o["label"] for o in fit.outliers] == ["right"]
    (bad,) = fit.outliers
    assert bad["kind"] == "mislabelled"
    assert abs(bad["fits_azimuth_deg"] - 270.0) <= 20.0
    # the others were fitted without it
    assert fit.elevation_deg == pytest.approx(15.0, abs=4.0)


def test_two_photos_that_contradict_only_each_other_are_named_together():
    # four views: "right" shows the left side; front and back cannot tell which side is wrong
    views, _ = shoot(product("asym"), LABELS4, elevation=15.0, fov=30.0,
                     azimuths={"right": 270.0})
    fit = _fit(views)
    (bad,) = fit.outliers
    assert bad["kind"] == "pair"
    assert {bad["label"], bad["partner"]} == {"right", "left"}


def test_a_photo_of_another_product_is_named():
    views, _ = shoot(product("asym"), LABELS8, elevation=15.0, fov=30.0)
    other, _ = shoot(product("sphere"), LABELS8, elevation=15.0, fov=30.0)
    views[4].mask = other[4].mask
    fit = _fit(views)
    assert [(o["label"], o["kind"]) for o in fit.outliers] == [("back", "other_object")]


def lose_part(mask: np.ndarray, keep: float = 0.3, seed: int = 0) -> np.ndarray:
    """The mask a background removal leaves of a product that blends into the background: only
    scattered blobs of it (a white product on white, an over-exposed photo)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = mask.shape
    noise = cv2.resize(rng.random((h // 12 + 1, w // 12 + 1)), (w, h),
                       interpolation=cv2.INTER_CUBIC)
    return mask & (noise > np.quantile(noise[mask], 1.0 - keep))


@pytest.mark.parametrize("labels", [LABELS4, LABELS8], ids=["4 views", "8 views"])
def test_a_photo_whose_mask_lost_part_of_the_product_is_named(labels):
    views, _ = shoot(product("asym"), labels, elevation=18.0, fov=30.0)
    views[0].mask = lose_part(views[0].mask)
    fit = _fit(views)
    assert [(o["label"], o["kind"]) for o in fit.outliers] == [("front", "incomplete_mask")]
    (bad,) = fit.outliers
    assert bad["filled"] < bad["others_filled"] - 0.15
    # the others were fitted without it, and their cameras are right
    assert fit.elevation_deg == pytest.approx(18.0, abs=4.0)


def test_consistent_photos_name_no_one_and_per_view_corrections_stay_small():
    views, _ = shoot(product("box"), LABELS4, elevation=12.0, fov=30.0)
    fit = _fit(views)
    assert fit.outliers == []
    assert max(abs(a) for a in fit.azimuth_shift_deg.values()) <= 6.0


def test_a_thin_product_shot_with_exact_cameras_names_no_one():
    # a thin neck vanishes on the coarse grid from every side alike: not a photo's fault
    exact = IngestOptions(fov_deg=30.0, default_elevation_deg=15.0)
    views, _ = shoot(product("thin"), LABELS4, elevation=15.0, fov=30.0, assumed=exact)
    fit = _fit(views, ShootHints(fov_deg=30.0, fov_known=True, elevation_known=(True,) * 4))
    assert fit.outliers == []
    assert fit.elevation_deg == pytest.approx(15.0, abs=2.0)


def test_a_chair_whose_opposite_views_disagree_on_the_small_grids_names_no_one(shared_data):
    # a real dining chair (thin legs, an open back) shot from 20 degrees with a 35-degree lens:
    # front and back disagree on the fit's small grids by what the grids lose of the legs,
    # which once named them a contradicting pair and failed the SKU
    import math

    import trimesh

    from tests.procedural_shoot import _mesh

    m = trimesh.load(shared_data / "models" / "basemesh_dining_chair_01.glb", force="mesh")
    m.apply_translation(-m.bounds.mean(0))
    m.apply_scale(1.0 / m.extents.max())
    chair = _mesh(m)
    radius = float(np.linalg.norm(chair.vertices, axis=1).max())
    views, _ = shoot(chair, LABELS4, elevation=20.0, fov=35.0, photo=512, size=384,
                     distance=1.08 * radius / math.sin(math.radians(35.0) / 2))
    cams, masks = [v.camera for v in views], [v.mask for v in views]
    hints = ShootHints(default_elevation_deg=15.0)
    fit = fit_cameras(cams, masks, hints, FitOptions())
    assert fit.outliers == []
    assert fit.elevation_deg == pytest.approx(20.0, abs=3.0)
    assert fit.fov_deg == pytest.approx(35.0, abs=5.0)
    # without the floor, the same photos are called a contradicting pair
    strict = fit_cameras(cams, masks, hints, FitOptions(pair_floor=0.0))
    assert [o["kind"] for o in strict.outliers] == ["pair"]
    # and a real contradiction on the same chair is still named: "front" shot from the right
    views, _ = shoot(chair, LABELS4, elevation=20.0, fov=35.0, photo=512, size=384,
                     distance=1.08 * radius / math.sin(math.radians(35.0) / 2),
                     azimuths={"front": 90.0})
    fit = fit_cameras([v.camera for v in views], [v.mask for v in views], hints, FitOptions())
    assert [(o["kind"], {o["label"], o["partner"]}) for o in fit.outliers] == [
        ("pair", {"front", "back"})]


def test_one_photo_takes_the_rim_elevation_or_keeps_its_camera():
    views, truth = shoot(product("cylinder"), ("front",), elevation=20.0, fov=30.0)
    hints = ShootHints(elevation_known=(False,))
    cam, rim = single_view(views[0].camera, views[0].mask, hints)
    assert rim == pytest.approx(20.0, abs=3.0)
    assert cam.elevation_deg == pytest.approx(rim)
    # the camera looks down from the rim's elevation now, as the true one did
    assert np.degrees(np.arcsin(cam.position[1] / np.linalg.norm(cam.position))) == \
        pytest.approx(truth[0].elevation_deg, abs=3.0)
    box, _ = shoot(product("box"), ("front",), elevation=20.0, fov=30.0)
    same, none = single_view(box[0].camera, box[0].mask, hints)
    assert none is None and same is box[0].camera
    known = ShootHints(elevation_known=(True,))
    assert single_view(views[0].camera, views[0].mask, known) == (views[0].camera, None)


def test_a_hand_held_shoot_is_not_called_inconsistent():
    # per-view azimuth (+-6), elevation (+-4) and framing (+-25 px) jitter: every photo shows
    # the same product, so none may be named once its own corrections are fitted (this seed's
    # "right" photo looked like another product when judged uncorrected)
    views, _ = shoot(product("asym"), LABELS4, elevation=20.0, fov=35.0, jitter_el=4.0,
                     jitter_az=6.0, shift_px=25.0, seed=0)
    fit = _fit(views)
    assert fit.outliers == []
    assert fit.consistency > 0.93


def test_a_fully_stated_shoot_keeps_its_cameras_unless_the_photos_clearly_disagree():
    # a thin product (a neck the small grids lose, like a chair's legs): its silhouettes agree
    # poorly at any camera, and a free fit wanders (21 degrees, a photo named) from the truth
    exact = IngestOptions(fov_deg=30.0, default_elevation_deg=15.0, distance=2.5)
    stated = ShootHints(fov_deg=30.0, fov_known=True, distance=2.5, distance_known=True,
                        elevation_known=(True,) * 4)
    views, _ = shoot(product("thin"), LABELS4, elevation=15.0, fov=30.0, distance=2.5,
                     assumed=exact)
    fit = _fit(views, stated)
    for given, used in zip(views, fit.cameras):
        np.testing.assert_allclose(used.world_to_camera, given.camera.world_to_camera, atol=1e-9)
        np.testing.assert_allclose(used.K, given.camera.K, atol=1e-9)
    assert fit.distance == pytest.approx(2.5)
    assert fit.elevation_deg == pytest.approx(15.0)
    assert fit.consistency == pytest.approx(fit.start_iou)
    assert fit.outliers == []
    # photos framed off-centre (+-25 px): the stated cameras clearly disagree with them, and
    # the fit corrects the centres
    views, _ = shoot(product("asym"), LABELS4, elevation=15.0, fov=30.0, distance=2.5,
                     assumed=exact, shift_px=25.0, seed=1)
    fit = _fit(views, stated)
    assert fit.consistency > fit.start_iou + 0.05
    assert max(np.hypot(*s) for s in fit.centre_shift_px.values()) > 5.0
    assert fit.distance == pytest.approx(2.5)
    assert fit.outliers == []
