"""Procedural products shot from labelled views, cropped the way ingest crops photos.

A test knows the true shoot (elevation, lens, per-view jitter) and hands the estimators what a
merchant's catalog would give: the crops and the cameras ingest assumes from the labels.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import trimesh

from assetfactory.algorithms.photos import crop_box, crop_view
from assetfactory.core.camera import orbit_camera
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import VIEW_AZIMUTHS
from assetfactory.geometry.render import get_renderer
from assetfactory.tasks.ingest import IngestOptions, _Pose, photo_camera

LABELS4 = ("front", "right", "back", "left")
LABELS8 = ("front", "front_right", "right", "back_right", "back", "back_left", "left",
           "front_left")


def _mesh(m: trimesh.Trimesh) -> MeshData:
    return MeshData(np.asarray(m.vertices), np.asarray(m.faces))


def product(kind: str) -> MeshData:
    """A small product centred near the origin, largest extent ~1, +Y up, front +Z."""
    if kind == "cylinder":      # a tumbler: a round body on a flat base
        m = trimesh.creation.cylinder(radius=0.33, height=0.9, sections=96)
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        return _mesh(m)
    if kind == "asym":          # a box with a handle on the right and a block at the back top
        body = trimesh.creation.box([0.6, 0.45, 0.4])
        handle = trimesh.creation.box([0.2, 0.12, 0.12])
        handle.apply_translation([0.4, 0.05, 0.0])
        block = trimesh.creation.box([0.25, 0.2, 0.15])
        block.apply_translation([-0.12, 0.32, -0.1])
        foot = trimesh.creation.box([0.15, 0.1, 0.3])
        foot.apply_translation([-0.2, -0.27, 0.1])
        return MeshData.concatenate([_mesh(x) for x in (body, handle, block, foot)])
    if kind == "thin":          # a guitar-like board: a flat body and a long thin neck
        body = trimesh.creation.box([0.42, 0.5, 0.08])
        body.apply_translation([0.0, -0.22, 0.0])
        neck = trimesh.creation.box([0.05, 0.5, 0.03])
        neck.apply_translation([0.0, 0.28, 0.0])
        return MeshData.concatenate([_mesh(x) for x in (body, neck)])
    if kind == "cake":          # a low twelve-sided drum with six thin candles on top
        body = trimesh.creation.cylinder(radius=0.5, height=0.36, sections=12)
        body.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        parts = [body]
        for k in range(6):
            a = 2 * np.pi * k / 6 + 0.3
            candle = trimesh.creation.cylinder(radius=0.025, height=0.2, sections=8)
            candle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2,
                                                                           [1, 0, 0]))
            candle.apply_translation([0.36 * np.cos(a), 0.28, 0.36 * np.sin(a)])
            parts.append(candle)
        return MeshData.concatenate([_mesh(x) for x in parts])
    if kind == "box":
        return _mesh(trimesh.creation.box([0.7, 0.5, 0.4]))
    if kind == "sphere":
        return _mesh(trimesh.creation.icosphere(subdivisions=3, radius=0.45))
    raise ValueError(kind)


def shoot(mesh: MeshData, labels=LABELS4, elevation: float = 20.0, fov: float = 30.0,
          distance: float | None = None, photo: int = 384, size: int = 256,
          assumed: IngestOptions = IngestOptions(), jitter_el: float = 0.0,
          jitter_az: float = 0.0, shift_px: float = 0.0, seed: int = 0,
          azimuths: dict | None = None):
    """(views for the estimators, the true cameras): each view a SimpleNamespace with
    ``label``, ``camera`` (what ingest assumes from the label), ``mask`` and ``rgb`` crops.
    ``distance`` defaults to framing the product; ``azimuths`` overrides the true azimuth of
    some labels (a mislabelled photo)."""
    rng = np.random.default_rng(seed)
    r = get_renderer()
    if distance is None:  # the bounding sphere fills ~90% of the frame, whatever the lens
        radius = float(np.linalg.norm(mesh.vertices, axis=1).max())
        distance = 1.1 * radius / np.sin(np.radians(fov) / 2)
    views, truth = [], []
    for label in labels:
        az = (azimuths or {}).get(label, VIEW_AZIMUTHS[label])
        az += rng.uniform(-jitter_az, jitter_az)
        el = elevation + rng.uniform(-jitter_el, jitter_el)
        cam = orbit_camera(label, az, el, distance, fov, photo)
        if shift_px:
            K = cam.K.copy()
            K[:2, 2] += rng.uniform(-shift_px, shift_px, 2)
            cam = cam.__class__(cam.label, K, cam.world_to_camera, photo, photo, az, el)
        mask = r.mask(mesh, cam)
        rgb = np.where(mask[..., None], np.uint8(90), np.uint8(255)).repeat(3, axis=2)
        box = crop_box(mask, assumed.margin)
        crop_rgb, crop_mask = crop_view(rgb, None, mask, box, size)
        guess = photo_camera(_Pose(label, VIEW_AZIMUTHS[label], assumed.default_elevation_deg),
                             photo, photo, assumed)
        views.append(SimpleNamespace(label=label, camera=guess.cropped(box[0], box[1], box[2],
                                                                       size),
                                     mask=crop_mask > 127, rgb=crop_rgb))
        truth.append(cam)
    return views, truth
