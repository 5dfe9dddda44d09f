"""Render "product photos" of the demo products, as a studio would shoot them.

The camera is exactly what the factory assumes when a catalog row gives only a view label,
azimuth and elevation: it looks at the centre of the product's bounding box from
``DISTANCE * largest extent`` with a ``FOV_DEG`` vertical field of view, +Y up (equivalently: the
product normalised to largest extent 1, centred at the origin, camera at distance ``DISTANCE``).
"""

from __future__ import annotations

import numpy as np

from ..core.camera import Camera, orbit_camera
from ..core.mesh import MeshData
from ..geometry.render import get_renderer

FOV_DEG = 30.0
DISTANCE = 2.5          # in units of the product's largest extent
PHOTO_SIZE = 512
SSAA = 2


def shoot_camera(mesh: MeshData, label: str, azimuth_deg: float, elevation_deg: float,
                 size: int = PHOTO_SIZE) -> Camera:
    """The camera of one labelled photo, in the product's (metric) frame."""
    lo, hi = mesh.bounds()
    extent = float((hi - lo).max())
    return orbit_camera(label, azimuth_deg, elevation_deg, DISTANCE * extent,
                        fov_y_deg=FOV_DEG, size=size, target=(lo + hi) / 2)


def shoot(mesh: MeshData, texture: np.ndarray | None, label: str, azimuth_deg: float,
          elevation_deg: float, *, rgba: bool = False, size: int = PHOTO_SIZE) -> np.ndarray:
    """One photo: lambert-shaded on white. (H, W, 3) uint8, or (H, W, 4) with alpha = coverage."""
    cam = shoot_camera(mesh, label, azimuth_deg, elevation_deg, size)
    img = get_renderer().render(mesh, cam, texture=texture, shading="lambert",
                                background=(1.0, 1.0, 1.0), ssaa=SSAA)
    return img if rgba else np.ascontiguousarray(img[..., :3])
