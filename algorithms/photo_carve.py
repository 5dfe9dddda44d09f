"""Carve the visual hull where the photos disagree about its colour.

Why: a visual hull cannot see concavities or the phantoms between parts (a cup's inside seen
from above, the space between a cake's candles): every point there projects inside every
silhouette. But the real surface shows the same colour to every photo that sees it, while a
phantom point borrows its colour from whatever lies behind it in each photo, and those differ.

How (one pass, like a plane sweep per photo): for each photo's pixel, walk its ray into the hull
and stop at the first point where a neighbouring photo (the nearest ones around the product)
sees the same colour: that is where the surface starts; the hull in front of it is a phantom
and gets a vote. Voxels with votes from ``min_votes`` photos are carved.

Made conservative for product photos:

* colour is compared as chromaticity (the direction of the linear RGB vector), which the studio
  light's shading does not change; rays from dark or grey pixels (no reliable chromaticity)
  carve nothing, and a ray with no agreeing point carves nothing;
* a voxel that projects onto any photo's silhouette border is never carved (the silhouette
  needs it), and at most ``max_fraction`` of the hull goes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..core.camera import Camera
from .visual_hull import Grid, march

log = logging.getLogger(__name__)

_x = np.arange(256, dtype=np.float32) / 255.0
#: uint8 sRGB -> linear light (IEC 61966-2-1).
_SRGB_TO_LINEAR = np.where(_x <= 0.04045, _x / 12.92, ((_x + 0.055) / 1.055) ** 2.4
                           ).astype(np.float32)


@dataclass(frozen=True)
class CarveOptions:
    """How hard the photos may carve (see the module docstring).

    px: the photos are compared at this size (pixels per side).
    stride: every ``stride``-th pixel casts a ray.
    depth_voxels: how deep a ray walks into the hull, in voxels.
    neighbours: how many nearest other photos a ray's points are compared with.
    angle_deg: chromaticity difference that counts as disagreement.
    min_saturation: rays from greyer pixels (sine of the angle to grey) carve nothing.
    min_luminance: rays from darker pixels (linear) carve nothing.
    min_votes: photos that must call a voxel a phantom before it goes.
    border_px: a voxel this close to any photo's silhouette border stays.
    max_fraction: never carve more than this share of the hull.
    """

    px: int = 256
    stride: int = 2
    depth_voxels: int = 64
    neighbours: int = 2
    angle_deg: float = 6.0
    min_saturation: float = 0.15
    min_luminance: float = 0.02
    min_votes: int = 2
    border_px: float = 2.0
    max_fraction: float = 0.4


def photo_carve(vol: np.ndarray, grid: Grid, cameras: list[Camera], masks: list[np.ndarray],
                images: list[np.ndarray], options: CarveOptions = CarveOptions()) -> dict:
    """Carve ``vol`` (positive inside; modified in place) where the photos disagree.

    ``images``: the photos as (H, W, 3) uint8 sRGB, aligned with ``masks`` and ``cameras``.
    Returns counts for the metrics.
    """
    import cv2

    from ..geometry.render import get_renderer

    inside = vol > 0
    total = int(inside.sum())
    if total == 0 or len(cameras) < 2:
        return {"carved_fraction": 0.0}
    r = get_renderer()
    px = options.px
    cams = [c.cropped(0, 0, c.width, px) if c.width != px else c for c in cameras]
    chroma, usable, border = [], [], []
    for cam, img, m in zip(cams, images, masks):
        lin = cv2.resize(_SRGB_TO_LINEAR[np.asarray(img)[..., :3]], (px, px),
                         interpolation=cv2.INTER_AREA)
        lin = cv2.GaussianBlur(lin, (0, 0), 0.7)
        norm = np.linalg.norm(lin, axis=2, keepdims=True)
        c = lin / np.maximum(norm, 1e-9)
        sat = np.sqrt(np.maximum(1.0 - (c.sum(2) / np.sqrt(3.0)) ** 2, 0.0))
        mk = cv2.resize(np.asarray(m, np.uint8), (px, px), interpolation=cv2.INTER_NEAREST)
        chroma.append(c)
        usable.append((mk > 0) & (sat >= options.min_saturation)
                      & (lin.mean(2) >= options.min_luminance))
        dist = cv2.distanceTransform(mk, cv2.DIST_L2, 3)
        border.append((mk > 0) & (dist <= options.border_px))
    mesh = march(vol, grid, None)
    h = float(grid.spacing.max())
    votes = np.zeros(vol.shape, np.int16)
    centres = np.array([c.position for c in cams])
    cos_agree = np.cos(np.radians(options.angle_deg))
    for k, cam in enumerate(cams):
        depth = r.depth(mesh, cam)
        vv, uu = np.nonzero(usable[k] & np.isfinite(depth))
        keep = (vv % options.stride == 0) & (uu % options.stride == 0)
        vv, uu = vv[keep], uu[keep]
        if len(vv) == 0:
            continue
        ref = chroma[k][vv, uu]                                   # (R, 3)
        dirs = _rays(cam, uu, vv)                                 # (R, 3) world, unit
        t0 = depth[vv, uu] / np.maximum(-(dirs @ cam.world_to_camera[2, :3]), 1e-9)
        steps = np.arange(options.depth_voxels) * h
        pts = cam.position + dirs[:, None, :] * (t0[:, None] + steps[None, :])[..., None]
        idx = np.floor((pts - grid.lo) / grid.spacing + 0.5).astype(np.int64)
        valid = ((idx >= 0) & (idx < np.array(vol.shape))).all(-1)
        idc = np.where(valid[..., None], idx, 0)
        in_hull = valid & inside[idc[..., 0], idc[..., 1], idc[..., 2]]
        others = np.argsort(np.linalg.norm(centres - centres[k], axis=1))[1:1 + options.neighbours]
        agree = np.zeros(in_hull.shape, bool)
        flat = pts.reshape(-1, 3)
        for o in others:
            uv, z = cams[o].project(flat)
            u = np.rint(uv[:, 0]).astype(np.int64)
            v = np.rint(uv[:, 1]).astype(np.int64)
            ok = (z > 0) & (u >= 0) & (v >= 0) & (u < px) & (v < px)
            c = np.zeros((len(flat), 3), np.float32)
            c[ok] = chroma[o][v[ok], u[ok]]
            agree |= (np.einsum("rsc,rc->rs", c.reshape(pts.shape), ref) >= cos_agree)
        agree &= in_hull
        hit = agree.any(1)
        first = np.where(hit, agree.argmax(1), 0)
        # phantom: inside the hull, more than a voxel in front of the first agreeing point
        phantom = in_hull & (np.arange(len(steps))[None, :] < (first - 1)[:, None]) \
            & hit[:, None]
        pv = idx[phantom]
        if len(pv):
            hits = np.zeros(vol.shape, bool)
            hits[tuple(pv.T)] = True
            votes += hits
    carve = inside & (votes >= options.min_votes)
    if carve.any():
        cidx = np.argwhere(carve)
        pts = grid.lo + cidx * grid.spacing
        safe = np.ones(len(cidx), bool)
        for cam, b in zip(cams, border):
            uv, z = cam.project(pts)
            u = np.clip(np.rint(uv[:, 0]).astype(np.int64), 0, px - 1)
            v = np.clip(np.rint(uv[:, 1]).astype(np.int64), 0, px - 1)
            safe &= ~b[v, u]
        cidx = cidx[safe]
        if len(cidx) > options.max_fraction * total:
            log.info("photo carve: would carve %.0f%% of the hull; left alone",
                     100.0 * len(cidx) / total)
            return {"carved_fraction": 0.0}
        vol[tuple(cidx.T)] = np.minimum(vol[tuple(cidx.T)], -0.5 * h)
        frac = len(cidx) / total
    else:
        frac = 0.0
    log.info("photo carve: %.1f%% of the hull carved", 100.0 * frac)
    return {"carved_fraction": float(frac)}


def _rays(cam: Camera, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit world directions of the rays through pixels (u, v)."""
    K = cam.K
    y = -(v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] + K[0, 1] * y) / K[0, 0]
    d = np.stack([x, y, -np.ones_like(x)], 1) @ cam.world_to_camera[:3, :3]
    return d / np.linalg.norm(d, axis=1, keepdims=True)
