"""Cut the wedge a visual hull grows under a product that every photo sees from above.

Why: when every camera looks down, no silhouette constrains the hull below the product's base:
the cones of opposite views meet under it in a wedge about half the footprint x tan(elevation)
deep. The asset comes out too tall, and scaled to the catalog's height, too small. The catalog's
height fixes it where it is given (``models/silhouette.ground_trim``); this needs no catalog.

How: a product rests on its lowest points, and every photo shows the ones near its camera. For
a camera looking down, the first surface point along a pixel's ray is also the highest one
there, so cutting the hull at height ``y`` uncovers exactly the pixels whose first hit lies
below ``y``. The hull is cut at the highest ``y`` that uncovers at most ``tolerance`` of any
view's silhouette: the lowest point some photo still needs. A wedge no photo needs goes; a
product whose base every photo sees keeps it.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.camera import Camera
from ..core.mesh import MeshData

#: Below this elevation (degrees) a camera may see the base itself: no cut.
MIN_ELEVATION_DEG = 2.0


def needed_floor(mesh: MeshData, cameras: list[Camera], masks: list[np.ndarray],
                 tolerance: float = 0.002) -> float | None:
    """The lowest height (world y) the silhouettes still need from ``mesh``; None when some
    camera does not look down (or nothing is visible)."""
    from ..geometry.render import get_renderer

    if mesh.n_faces == 0 or not cameras:
        return None
    for cam in cameras:
        pos = cam.position
        if math.degrees(math.asin(pos[1] / max(np.linalg.norm(pos), 1e-12))) < MIN_ELEVATION_DEG:
            return None
    r = get_renderer()
    floors = []
    for cam, mask in zip(cameras, masks):
        depth = r.depth(mesh, cam)
        sel = np.isfinite(depth) & np.asarray(mask, bool)
        if sel.sum() < 20:
            continue
        v, u = np.nonzero(sel)
        d = depth[sel].astype(np.float64)
        K = cam.K
        yc = -(v - K[1, 2]) / K[1, 1] * d
        xc = (u - K[0, 2] - K[0, 1] * (v - K[1, 2]) / K[1, 1]) / K[0, 0] * d
        pc = np.stack([xc, yc, -d, np.ones_like(d)], 1)
        world = pc @ np.linalg.inv(cam.world_to_camera).T
        floors.append(float(np.quantile(world[:, 1], tolerance)))
    return min(floors) if floors else None


def cut_below(vol: np.ndarray, y_axis: np.ndarray, y_cut: float) -> None:
    """Make every voxel of ``vol`` (positive inside; axis 1 is y) below ``y_cut`` outside."""
    np.minimum(vol, (y_axis - y_cut).astype(np.float32)[None, :, None], out=vol)
