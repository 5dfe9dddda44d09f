"""rim_elevation: the elevation of a round base seen as an ellipse, and no rim where none is."""

from __future__ import annotations

import pytest

from assetfactory.algorithms.rim_elevation import rim_elevation, rim_elevations
from assetfactory.tasks.ingest import IngestOptions
from tests.procedural_shoot import LABELS4, product, shoot


@pytest.mark.parametrize(("elevation", "fov"), [(10.0, 30.0), (18.0, 45.0), (30.0, 20.0)])
def test_a_round_base_gives_the_elevation_within_a_few_degrees(elevation, fov):
    # the lens is known (a rim's ellipse depends on it); the elevation is not
    views, _ = shoot(product("cylinder"), labels=("front",), elevation=elevation, fov=fov,
                     assumed=IngestOptions(fov_deg=fov))
    found = rim_elevation(views[0].mask, views[0].camera)
    assert found is not None
    assert found.side == "bottom"
    assert found.elevation_deg == pytest.approx(elevation, abs=3.0)


@pytest.mark.parametrize("kind", ["box", "sphere", "asym"])
def test_corners_balls_and_odd_outlines_are_not_rims(kind):
    views, _ = shoot(product(kind), labels=LABELS4, elevation=20.0, fov=35.0)
    for v in views:
        assert rim_elevations(v.mask, v.camera) == [], v.label


def test_a_level_view_finds_no_slant():
    # at eye level the base is a line; the top, above the eye, curves up a little
    views, _ = shoot(product("cylinder"), labels=("front",), elevation=0.0, fov=30.0)
    found = rim_elevation(views[0].mask, views[0].camera)
    assert found is None or abs(found.elevation_deg) < 3.0
