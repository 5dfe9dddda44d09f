"""The poster: a front three-quarter render of the asset on white."""

from __future__ import annotations

import math

import numpy as np

from ..core.camera import Camera, orbit_camera
from ..core.mesh import MeshData

POSTER_AZIMUTH_DEG = 35.0


POSTER_ELEVATION_DEG = 20.0


POSTER_FOV_DEG = 30.0


def poster_camera(mesh: MeshData, size: int, margin: float = 1.1) -> Camera:
    """Front three-quarter view (azimuth 35, elevation 20) aimed at the bounding-box centre,
    as close as it can be with every vertex inside the frame (``margin`` leaves a border)."""
    lo, hi = mesh.bounds()
    centre = (lo + hi) / 2
    probe = orbit_camera("poster", POSTER_AZIMUTH_DEG, POSTER_ELEVATION_DEG, 1.0,
                         fov_y_deg=POSTER_FOV_DEG, size=size, target=centre)
    q = (mesh.vertices - centre) @ probe.world_to_camera[:3, :3].T
    tan_half = math.tan(math.radians(POSTER_FOV_DEG) / 2) / margin
    # a vertex at lateral offset a and height b (camera axes) and q_z towards the camera is
    # inside the frustum when max(|a|, |b|) <= tan_half * (distance - q_z)
    need = q[:, 2] + np.maximum(np.abs(q[:, 0]), np.abs(q[:, 1])) / tan_half
    distance = max(float(need.max()), 1e-6)
    return orbit_camera("poster", POSTER_AZIMUTH_DEG, POSTER_ELEVATION_DEG, distance,
                        fov_y_deg=POSTER_FOV_DEG, size=size, target=centre)


def render_poster(mesh: MeshData, texture: np.ndarray | None, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB on white."""
    from ..geometry.render import get_renderer

    rgba = get_renderer().render(mesh, poster_camera(mesh, size), texture=texture,
                                 shading="lambert", background=(1.0, 1.0, 1.0), ssaa=2)
    return np.ascontiguousarray(rgba[..., :3])
