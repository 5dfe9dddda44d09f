"""ground_cut: the lowest point the photos still need, on a hull with a wedge under it."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from assetfactory.algorithms.ground_cut import cut_below, needed_floor
from assetfactory.core.camera import orbit_camera
from assetfactory.core.mesh import MeshData

LABELS = (("front", 0.0), ("right", 90.0), ("back", 180.0), ("left", 270.0))


def _box(lo_y: float) -> MeshData:
    m = trimesh.creation.box(bounds=[[-0.35, lo_y, -0.2], [0.35, 0.25, 0.2]])
    return MeshData(np.asarray(m.vertices), np.asarray(m.faces))


def _shoot(renderer, mesh: MeshData, elevation: float):
    cams = [orbit_camera(lb, az, elevation, 2.5, 30.0, 96) for lb, az in LABELS]
    return cams, [renderer.mask(mesh, c) for c in cams]


def test_a_hull_taller_than_the_product_is_cut_at_the_products_base(renderer):
    product = _box(-0.25)
    cams, masks = _shoot(renderer, product, 20.0)
    hull = _box(-0.6)  # what the cones grow under a product seen from above
    floor = needed_floor(hull, cams, masks)
    assert floor == pytest.approx(-0.25, abs=0.03)
    # the product itself needs all of its height
    assert needed_floor(product, cams, masks) == pytest.approx(-0.25, abs=0.03)


def test_a_camera_that_does_not_look_down_keeps_the_base(renderer):
    product = _box(-0.25)
    cams, masks = _shoot(renderer, product, 0.0)
    assert needed_floor(_box(-0.6), cams, masks) is None
    assert needed_floor(MeshData(np.zeros((0, 3)), np.zeros((0, 3), np.int64)), cams,
                        masks) is None


def test_cut_below_makes_the_voxels_under_the_cut_outside():
    vol = np.ones((3, 5, 2), np.float32)
    y = np.linspace(-1.0, 1.0, 5)
    cut_below(vol, y, 0.0)
    assert (vol[:, y < 0] < 0).all() and (vol[:, y >= 0] == np.minimum(1.0, y[y >= 0])[:, None]).all()
    assert vol[0, 0, 0] == pytest.approx(-1.0)
