"""Pinhole cameras in the project's one convention.

World: metres or normalised units, +Y up, the product's front facing +Z. ``world_to_camera`` is
an OpenGL view matrix (camera x right, y up, looking down -z). ``K`` holds OpenCV intrinsics
(pixel centres at integer coordinates, origin top-left, v down). Azimuth 0 puts the camera on
+Z looking at the front; 90 puts it on +X (the viewer's right of the front); elevation is
positive above the horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Camera:
    label: str
    K: np.ndarray = field(repr=False)
    world_to_camera: np.ndarray = field(repr=False)
    width: int = 512
    height: int = 512
    azimuth_deg: float = 0.0
    elevation_deg: float = 0.0

    @property
    def position(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_camera)[:3, 3]

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction in world space."""
        return -self.world_to_camera[2, :3] / np.linalg.norm(self.world_to_camera[2, :3])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return p @ self.world_to_camera[:3, :3].T + self.world_to_camera[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points -> (pixel coordinates (u, v), depth along the view axis > 0 in front)."""
        pc = self.to_camera(points)
        depth = -pc[:, 2]
        z = np.where(np.abs(depth) < 1e-12, 1e-12, depth)
        u = self.K[0, 0] * pc[:, 0] / z + self.K[0, 1] * (-pc[:, 1]) / z + self.K[0, 2]
        v = self.K[1, 1] * (-pc[:, 1]) / z + self.K[1, 2]
        return np.stack([u, v], axis=1), depth

    def gl_projection(self, near: float, far: float) -> np.ndarray:
        """OpenGL clip matrix matching ``K`` exactly (pixel-centre convention)."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        w, h = self.width, self.height
        P = np.zeros((4, 4))
        P[0, 0] = 2 * fx / w
        P[0, 2] = 1 - 2 * (cx + 0.5) / w
        P[1, 1] = 2 * fy / h
        P[1, 2] = 2 * (cy + 0.5) / h - 1
        P[2, 2] = -(far + near) / (far - near)
        P[2, 3] = -2 * far * near / (far - near)
        P[3, 2] = -1
        return P

    def transformed(self, world_transform: np.ndarray) -> Camera:
        """The same camera after the world moved by ``world_transform`` (4x4, similarity).

        A uniform scale in the transform moves the camera with the object: the image is unchanged.
        """
        return replace(self, world_to_camera=_rescale_view(self.world_to_camera, world_transform))

    def cropped(self, x0: float, y0: float, crop_size: float, out_size: int) -> Camera:
        """The camera after cropping a square at (x0, y0) of ``crop_size`` px and resizing."""
        s = out_size / crop_size
        K = self.K.copy()
        K[0, 0] *= s
        K[1, 1] *= s
        K[0, 1] *= s
        K[0, 2] = (K[0, 2] - x0 + 0.5) * s - 0.5
        K[1, 2] = (K[1, 2] - y0 + 0.5) * s - 0.5
        return replace(self, K=K, width=out_size, height=out_size)

    def to_dict(self) -> dict:
        return {"label": self.label, "K": self.K.tolist(),
                "world_to_camera": self.world_to_camera.tolist(), "width": self.width,
                "height": self.height, "azimuth_deg": self.azimuth_deg,
                "elevation_deg": self.elevation_deg}

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        return cls(label=d["label"], K=np.asarray(d["K"], float),
                   world_to_camera=np.asarray(d["world_to_camera"], float),
                   width=int(d["width"]), height=int(d["height"]),
                   azimuth_deg=float(d.get("azimuth_deg", 0.0)),
                   elevation_deg=float(d.get("elevation_deg", 0.0)))


def _rescale_view(view: np.ndarray, T: np.ndarray) -> np.ndarray:
    # new_world = T @ old_world; old view V maps old_world -> cam. Camera must keep the same
    # image: V' = S @ V @ inv(T), where S rescales camera space by T's uniform scale.
    scale = float(np.cbrt(abs(np.linalg.det(T[:3, :3]))))
    S = np.diag([scale, scale, scale, 1.0])
    return S @ view @ np.linalg.inv(T)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    eye = np.asarray(eye, float)
    f = np.asarray(target, float) - eye
    f /= np.linalg.norm(f)
    up = np.asarray(up, float)
    if abs(np.dot(f, up)) > 0.999:
        up = np.array([0.0, 0.0, -1.0]) if f[1] > 0 else np.array([0.0, 0.0, 1.0])
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    V = np.eye(4)
    V[0, :3], V[1, :3], V[2, :3] = r, u, -f
    V[:3, 3] = -V[:3, :3] @ eye
    return V


def orbit_camera(label: str, azimuth_deg: float, elevation_deg: float, distance: float,
                 fov_y_deg: float = 30.0, size: int = 512,
                 target=(0.0, 0.0, 0.0)) -> Camera:
    """A camera on a sphere around ``target`` looking at it, +Y up."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = np.asarray(target, float) + distance * np.array(
        [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    f = 0.5 * size / math.tan(math.radians(fov_y_deg) / 2)
    c = (size - 1) / 2.0
    K = np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]])
    return Camera(label, K, look_at(eye, target), size, size, azimuth_deg, elevation_deg)
