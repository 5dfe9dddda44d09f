"""The photos of one asset as stages and backends use them: crop, silhouette and camera.

Ingest writes ``image/<label>``, ``mask/<label>`` and ``cameras``; ``load_views`` reads them
back (with the current cameras, e.g. moved into the asset frame by cleanup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .artifacts import load_cameras, load_image
from .camera import Camera
from .types import VIEW_AZIMUTHS, VIEW_ELEVATIONS, AssetState


@dataclass(frozen=True)
class View:
    """One ingested photo as later stages use it: crop, silhouette and camera."""

    label: str
    camera: Camera
    rgb: np.ndarray   # (H, W, 3) uint8, background white
    mask: np.ndarray  # (H, W) bool, True on the object

    @property
    def pose_known(self) -> bool:
        return pose_known(self.label)


def pose_known(label: str) -> bool:
    """False for ``view<i>`` labels: photos whose camera direction is a guess."""
    base = re.sub(r"_\d+$", "", label)
    return base in VIEW_AZIMUTHS or base in VIEW_ELEVATIONS or bool(re.fullmatch(r"az\d{3}", base))


def load_views(state: AssetState) -> list[View]:
    """The views ingest wrote (with the current ``cameras``, e.g. moved by cleanup)."""
    if "cameras" not in state.artifacts:
        return []
    views = []
    for cam in load_cameras(state):
        rgb = load_image(state, f"image/{cam.label}")
        mask = load_image(state, f"mask/{cam.label}")
        rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
        views.append(View(cam.label, cam, rgb, (mask if mask.ndim == 2 else mask[..., 0]) > 127))
    return views
