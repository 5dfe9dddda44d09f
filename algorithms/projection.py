"""Texture projection: product photos blended onto the texels of a UV atlas.

Every texel of the atlas is a point on the surface (rasterised in UV space), so texturing is
"which photos see this point, and how well". A photo sees a texel when the texel lands inside
the (eroded) object mask and its depth matches the view's depth map; it sees it well when the
surface faces the camera. Colours are averaged in linear light, and where a photo is least
trustworthy it counts least (depth discontinuities, mask borders), each texel reading the
photo at the pyramid level of its projected footprint. See ``tasks/texture.py``.

``options`` below is any object with the fields of ``tasks.texture.TextureOptions`` it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..core.camera import Camera
from ..core.mesh import MeshData
from ..geometry.colour import SRGB_LUT as _SRGB_LUT
from ..geometry.colour import srgb_bytes, srgb_to_linear
from ..geometry.dilation import texels_to_image
from ..geometry.texture_sampling import barycentric, sample_nearest
from . import materials as mats
from .inpaint import fill_nearest_3d


class ProjectionSettings(Protocol):
    """What the projection reads of ``tasks.texture.TextureOptions`` (see there)."""

    incidence_power: float
    depth_tolerance: float
    front_back_prior: float
    fill: str
    edge_weight: float
    mip_filter: bool
    mip_bias: float
    # read with getattr (defaults in ``BLEND_DEFAULTS``): settings objects that predate them
    # blend: str            "mean" | "consistent"
    # consistency_sigma: float
    # harmonise: bool


#: What the blend reads with ``getattr`` when a settings object lacks it (see
#: ``tasks.texture.TextureOptions``): plain weighted mean, no exposure harmonisation.
BLEND_DEFAULTS = {"blend": "mean", "consistency_sigma": 0.08, "harmonise": False}
#: Harmonisation: gains are fitted on texels both photos see with at least this linear
#: luminance (darker texels carry noise, not exposure), and clamped to this range.
HARMONISE_MIN_LUMA = 0.02
HARMONISE_RANGE = (0.5, 2.0)

#: Neutral light grey (sRGB) for products with no photo and no vertex colours.
NEUTRAL_GREY = (0.8, 0.8, 0.8)


@dataclass(frozen=True)
class TexelGrid:
    """The atlas as surface samples: one row per covered texel (row-major in the image)."""

    size: int
    index: np.ndarray      # (T,) flat index into the size x size image
    positions: np.ndarray  # (T, 3) float64
    normals: np.ndarray    # (T, 3) float64, unit
    faces: np.ndarray      # (T,) int64 face id

    @classmethod
    def from_raster(cls, position: np.ndarray, normal: np.ndarray, face: np.ndarray) -> TexelGrid:
        size = face.shape[0]
        index = np.flatnonzero(face.reshape(-1) >= 0)
        n = normal.reshape(-1, 3)[index].astype(np.float64)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return cls(size, index, position.reshape(-1, 3)[index].astype(np.float64), n,
                   face.reshape(-1)[index].astype(np.int64))


@dataclass(frozen=True)
class ViewInput:
    """One photo as the texture stage needs it: camera, linear RGB, eroded mask, depth map."""

    label: str
    camera: Camera
    linear_rgb: np.ndarray  # (H, W, 3) float32 linear light
    mask: np.ndarray        # (H, W) bool, already eroded
    depth: np.ndarray       # (H, W) float32 view-axis depth of the mesh, inf where empty
    edge: np.ndarray | None = None            # (H, W) bool: distrusted band (discontinuities)
    face_footprint: np.ndarray | None = None  # (M,) px one texel spans in this view, per face
    pyramid: tuple | None = None              # ((premultiplied rgb, mask) per level), level 0 first
    feather: np.ndarray | None = None         # (H, W) float32 weight ramp (``edge_feather``)


def incidence_weights(positions: np.ndarray, normals: np.ndarray, camera_position: np.ndarray,
                      power: float) -> np.ndarray:
    """max(0, n . dir_to_camera) ** power: grazing views smear the photo over the surface."""
    d = np.asarray(camera_position, np.float64)[None, :] - positions
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    cos = np.maximum(np.einsum("ij,ij->i", normals, d), 0.0)
    return cos ** power if power != 0 else (cos > 0).astype(np.float64)


def view_prior(camera: Camera, front_back_prior: float) -> float:
    """Per-view weight that favours views along the front/back (Z) axis.

    Uses the viewing direction rather than the label or azimuth metadata so it holds for any
    camera in the asset frame: 1 for side/top views, ``front_back_prior`` for head-on front or
    back views, smooth in between.
    """
    fz = float(camera.forward[2])
    return 1.0 + (front_back_prior - 1.0) * fz * fz


def visible_texels(positions: np.ndarray, camera: Camera, depth: np.ndarray, mask: np.ndarray,
                   tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """(visible bool (T,), pixel coordinates (T, 2)) of texels in one view.

    Visible = in front of the camera, inside the image, inside the mask, and not occluded: its
    depth is within ``tolerance`` (relative) of what the view's depth map holds there.
    """
    pix, z = camera.project(positions)
    h, w = depth.shape
    ok = (z > 0) & (pix[:, 0] > -0.5) & (pix[:, 0] < w - 0.5) & (pix[:, 1] > -0.5) & \
         (pix[:, 1] < h - 0.5)
    idx = np.flatnonzero(ok)
    d_map = sample_nearest(depth, pix[idx]).astype(np.float64)
    in_mask = sample_nearest(mask, pix[idx]).astype(bool)
    near = np.isfinite(d_map) & (np.abs(z[idx] - d_map) <= tolerance * np.abs(d_map))
    vis = np.zeros(len(positions), bool)
    vis[idx[near & in_mask]] = True
    return vis, pix


def erode_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Shrink a mask by ``px`` pixels (a disc), so silhouette pixels never colour the surface."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype != bool:
        m = m > 127
    if px <= 0:
        return m
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.erode(m.astype(np.uint8), k, borderValue=0).astype(bool)


def _edge_sources(depth: np.ndarray, mask: np.ndarray, rel_jump: float) -> np.ndarray:
    """(H, W) bool: the depth discontinuities of the mesh and the photo's mask border."""
    import cv2

    finite = np.isfinite(depth)
    big = np.float32(3.0e38)
    d = np.where(finite, depth, 0).astype(np.float32)
    k3 = np.ones((3, 3), np.uint8)
    dmax = cv2.dilate(d, k3, borderType=cv2.BORDER_REPLICATE)
    dmin = cv2.erode(np.where(finite, depth, big).astype(np.float32), k3,
                     borderType=cv2.BORDER_REPLICATE)
    inner = cv2.erode(finite.astype(np.uint8), k3, borderValue=0).astype(bool)
    jump = np.zeros(depth.shape, bool)
    jump[finite] = (dmax[finite] - dmin[finite]) > rel_jump * d[finite]
    disc = finite & (jump | ~inner)
    m = np.asarray(mask, bool)
    border = m & ~cv2.erode(m.astype(np.uint8), k3, borderValue=0).astype(bool)
    return disc | border


def edge_band(depth: np.ndarray, mask: np.ndarray, px: int, rel_jump: float) -> np.ndarray:
    """(H, W) bool: pixels within ``px`` of a depth discontinuity or of the mask border.

    A discontinuity is a pixel whose 3x3 neighbourhood spans more than ``rel_jump`` of its own
    depth, or touches empty background (the mesh's silhouette). There the photo and the mesh
    disagree by a pixel or so and the colour may belong to the other surface.
    """
    import cv2

    if px <= 0:
        return np.zeros(depth.shape, bool)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(_edge_sources(depth, mask, rel_jump).astype(np.uint8), k).astype(bool)


def edge_feather(depth: np.ndarray, mask: np.ndarray, px: int, rel_jump: float,
                 feather_px: float, edge_weight: float) -> np.ndarray | None:
    """(H, W) float32 weight factor rising from ``edge_weight`` just outside the edge band
    (``px`` from a depth step or the mask border) to 1 at ``px + feather_px``; 1 inside the
    band (the band's own ``edge_weight`` applies there). None when ``feather_px`` is 0.

    Why: a binary band leaves a step in each photo's weight a few pixels from its silhouette,
    and the pixels just past it are still the least certain (the hull is widest, and a pixel
    of misregistration still mixes in the other surface there). A ramp lets the photo that
    sees a point well inside its silhouette win smoothly over one that sees it near the edge.
    """
    import cv2

    if feather_px <= 0:
        return None
    src = _edge_sources(depth, mask, rel_jump)
    dist = cv2.distanceTransform((~src).astype(np.uint8), cv2.DIST_L2, 5)
    ramp = np.clip((dist - max(px, 0)) / float(feather_px), 0.0, 1.0)
    out = edge_weight + (1.0 - edge_weight) * ramp
    if px > 0:
        out[edge_band(depth, mask, px, rel_jump)] = 1.0
    return out.astype(np.float32)


def uv_texel_inverse(mesh: MeshData, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ok (M,) bool, inv(dT) (K, 2, 2) of the faces where ``ok``): each face's texel-space
    edge matrix dT (columns: its UV edges in texels at ``size``) inverted where it is not
    degenerate (|det| > 1e-12). It depends on the UVs alone, so ``face_footprints`` of several
    views share it."""
    tri = mesh.faces
    T = np.asarray(mesh.uv, np.float64)[tri] * size        # (M, 3, 2)
    dT = np.stack([T[:, 1] - T[:, 0], T[:, 2] - T[:, 0]], axis=2)
    det = dT[:, 0, 0] * dT[:, 1, 1] - dT[:, 0, 1] * dT[:, 1, 0]
    ok = np.abs(det) > 1e-12
    return ok, np.linalg.inv(dT[ok]) if ok.any() else np.zeros((0, 2, 2))


def face_footprints(mesh: MeshData, camera: Camera, size: int,
                    uv_inverse: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(M,) how many photo pixels one texel of face f spans in this view (largest axis).

    The face's affine map texel -> pixel is its Jacobian J = dP inv(dT) (P projected corners,
    T texel corners); its largest singular value is the footprint, as GPUs choose mip levels.
    ``uv_inverse``: ``uv_texel_inverse(mesh, size)``, computed here when not given (the same
    for every view of a mesh).
    """
    tri = mesh.faces
    ok, inv = uv_texel_inverse(mesh, size) if uv_inverse is None else uv_inverse
    out = np.ones(len(tri), np.float64)
    if ok.any():
        pix, _ = camera.project(mesh.vertices)
        P = pix[tri[ok]]                                        # (K, 3, 2)
        dP = np.stack([P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]], axis=2)   # (K, 2, 2) columns
        J = dP @ inv
        out[ok] = np.linalg.svd(J, compute_uv=False)[:, 0]
    return np.nan_to_num(out, nan=1.0, posinf=1.0)


@dataclass(frozen=True)
class BlendStats:
    """What the blend saw: views used, texels whose weight came only from edge bands, mean
    pyramid level read (0 = full resolution)."""

    used: list
    edge_only: int = 0
    mean_level: float = 0.0


def blend_views(grid: TexelGrid, views: list[ViewInput], options: ProjectionSettings
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Weighted linear-light average of every view's colour per texel.

    Returns (colour (T, 3) float32 linear, weight sum (T,), labels of views that saw any texel).
    """
    colour, wsum, stats = blend_views_stats(grid, views, options)
    return colour, wsum, stats.used


def pack_levels(levels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image levels ((H, W, 3) colour, (H, W) alpha) -> one (P, 4) float32 array and the
    offset, height and width of each level (what the projection kernel reads)."""
    rows, off, hs, ws = [], [], [], []
    start = 0
    for c, m in levels:
        h, w = m.shape
        rows.append(np.concatenate([np.asarray(c, np.float32).reshape(-1, 3),
                                    np.asarray(m, np.float32).reshape(-1, 1)], axis=1))
        off.append(start)
        hs.append(h)
        ws.append(w)
        start += h * w
    return (np.concatenate(rows), np.asarray(off, np.int64), np.asarray(hs, np.int64),
            np.asarray(ws, np.int64))


def blend_views_stats(grid: TexelGrid, views: list[ViewInput], options: ProjectionSettings,
                      light=None) -> tuple[np.ndarray, np.ndarray, BlendStats]:
    """``blend_views`` plus the statistics the stage reports; with a ``light``
    (``delight.Light``), each photo's colour is divided by its shading first.

    Per view, one numba pass over the texels (``_projection_numba.accumulate_view``) does
    what ``visible_texels``, ``incidence_weights`` and ``sample_pyramid`` describe: project,
    test depth and mask at the nearest pixel, weight by incidence, view prior, edge band and
    feather, read the photo (at the texel's pyramid level with ``mip_filter``) and accumulate.

    With ``harmonise`` or ``blend == "consistent"`` each view's colour per texel is kept apart
    first: ``harmonise_gains`` then evens out the photos' exposure and white balance, and
    ``consistent_blend`` lets the views that agree with the best one decide.
    """
    from ._projection_numba import accumulate_view

    blend = getattr(options, "blend", BLEND_DEFAULTS["blend"])
    harmonise = bool(getattr(options, "harmonise", BLEND_DEFAULTS["harmonise"]))
    per_view = blend != "mean" or harmonise
    t = len(grid.index)
    acc = np.zeros((t, 3), np.float64)
    wsum = np.zeros(t, np.float64)
    clean = np.zeros(t, bool)
    used: list[str] = []
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []   # per view: texels, rgb, w
    lv_acc = lv_w = 0.0
    positions = np.ascontiguousarray(grid.positions, np.float64)
    normals = np.ascontiguousarray(grid.normals, np.float64)
    faces = np.ascontiguousarray(grid.faces, np.int64)
    no_edge = np.zeros((0, 0), bool)
    no_feather = np.zeros((0, 0), np.float32)
    light_dir = (np.zeros(0, np.float64) if light is None
                 else np.ascontiguousarray(light.direction, np.float64))
    ambient = 0.0 if light is None else float(light.ambient)
    for v in views:
        mip = options.mip_filter and v.pyramid is not None and v.face_footprint is not None
        if mip:
            pyr = pack_levels(v.pyramid)
            footprint = np.ascontiguousarray(v.face_footprint, np.float64)
        else:
            rgb = np.asarray(v.linear_rgb, np.float32)
            pyr = pack_levels([(rgb, np.ones(rgb.shape[:2], np.float32))])
            footprint = np.zeros(0, np.float64)
        cam = v.camera
        if per_view:
            acc[:] = 0.0
            wsum[:] = 0.0
        kept, la, lw = accumulate_view(
            positions, normals, faces, np.ascontiguousarray(cam.world_to_camera[:3, :3]),
            np.ascontiguousarray(cam.world_to_camera[:3, 3]), np.asarray(cam.K, np.float64),
            np.asarray(cam.position, np.float64), np.ascontiguousarray(v.depth, np.float32),
            np.ascontiguousarray(v.mask, bool),
            no_edge if v.edge is None else np.ascontiguousarray(v.edge, bool),
            float(options.depth_tolerance), float(options.incidence_power),
            float(view_prior(cam, options.front_back_prior)), float(options.edge_weight),
            footprint, float(options.mip_bias), *pyr, acc, wsum, clean, light_dir, ambient,
            no_feather if v.feather is None else np.ascontiguousarray(v.feather, np.float32))
        if kept:
            used.append(v.label)
            lv_acc += la
            lv_w += lw
        if per_view:
            idx = np.flatnonzero(wsum > 0)
            seen.append((idx, (acc[idx] / wsum[idx, None]).astype(np.float32),
                         wsum[idx].astype(np.float32)))
    if per_view:
        if harmonise:
            gains = harmonise_gains(seen, t)
            seen = [(i, c * g, w) for (i, c, w), g in zip(seen, gains, strict=True)]
        if blend == "consistent":
            sigma = float(getattr(options, "consistency_sigma",
                                  BLEND_DEFAULTS["consistency_sigma"]))
            colour, wsum = consistent_blend(seen, t, sigma)
        else:
            colour, wsum = mean_blend(seen, t)
    else:
        colour = weighted_mean(acc, wsum)
    stats = BlendStats(used, int(((wsum > 0) & ~clean).sum()),
                       lv_acc / lv_w if lv_w > 0 else 0.0)
    return colour.astype(np.float32, copy=False), wsum, stats


def weighted_mean(acc: np.ndarray, wsum: np.ndarray) -> np.ndarray:
    """(T, 3) float32 ``acc / max(wsum, 1e-12)`` (float64 sums of weight x colour and of
    weight), in one numba pass (``_projection_numba.weighted_mean``; the numpy expression
    makes two full-length float64 temporaries)."""
    from ._projection_numba import weighted_mean as kernel

    return kernel(np.ascontiguousarray(acc, np.float64), np.ascontiguousarray(wsum, np.float64))


def mean_blend(seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]], t: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of per-view texel colours ``seen`` = [(texels, (n, 3) rgb, (n,) w)]."""
    acc = np.zeros((t, 3), np.float64)
    wsum = np.zeros(t, np.float64)
    for idx, c, w in seen:
        acc[idx] += w[:, None].astype(np.float64) * c
        wsum[idx] += w
    return (acc / np.maximum(wsum, 1e-12)[:, None]).astype(np.float32), wsum


def consistent_blend(seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]], t: int,
                     sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per texel, the weighted mean of the views that agree with the best-weighted one.

    Why: where the shape is right every photo shows the same colour at a texel and averaging
    only removes noise; where it is wrong (a visual hull's bulge between the photos, a
    misregistered edge) each photo shows a different point of the product there, and their
    mean is a colour no view shows (ghosts, doubled edges, washed-out seams). Each view's
    weight is multiplied by ``exp(-(d / sigma)^2)``, ``d`` the distance of its colour to the
    best view's in a perceptual-ish space (square root of linear light, ~ sRGB): agreeing
    views still average, disagreeing ones drop out. ``sigma`` <= 0 keeps the best view only.
    """
    best_w = np.zeros(t, np.float32)
    best_c = np.zeros((t, 3), np.float32)
    for idx, c, w in seen:
        better = w > best_w[idx]
        best_w[idx[better]] = w[better]
        best_c[idx[better]] = c[better]
    ref = np.sqrt(np.maximum(best_c, 0.0))
    acc = np.zeros((t, 3), np.float64)
    wsum = np.zeros(t, np.float64)
    for idx, c, w in seen:
        d2 = ((np.sqrt(np.maximum(c, 0.0)) - ref[idx]) ** 2).sum(1)
        if sigma > 0:
            k = np.exp(-d2 / (sigma * sigma))
        else:
            k = (w >= best_w[idx]).astype(np.float32)
        wk = w.astype(np.float64) * k
        acc[idx] += wk[:, None] * c
        wsum[idx] += wk
    # a texel whose every view dropped out keeps its best view (cannot happen with sigma > 0:
    # the best view agrees with itself)
    lost = (wsum <= 0) & (best_w > 0)
    acc[lost] = best_c[lost]
    wsum[lost] = best_w[lost]
    return (acc / np.maximum(wsum, 1e-12)[:, None]).astype(np.float32), wsum


def harmonise_gains(seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]], t: int
                    ) -> list[np.ndarray]:
    """(3,) RGB gain per view that evens out the photos' exposure and white balance.

    Why: photos of one product are often shot with different exposure or white balance
    (automatic camera settings, a light that moved); blended as they are, each texel takes the
    brightness of whichever photo weighs most there, and the texture shows seams where that
    changes. For every pair of views, the median of log(colour_a / colour_b) over the texels
    both see (bright enough to carry a ratio) is their relative gain per channel; the gains
    are the least-squares solution of all pairs with the geometric mean fixed at 1 (the
    photos' average exposure is kept), clamped to ``HARMONISE_RANGE``. Views that share no
    texel with another keep gain 1. With the studio light divided out (``delight``) first, the
    ratios hold exposure alone.
    """
    n = len(seen)
    gains = [np.ones(3, np.float32) for _ in range(n)]
    if n < 2:
        return gains
    rows, rhs, weights = [], [], []
    for a in range(n):
        ia, ca, _ = seen[a]
        for b in range(a + 1, n):
            ib, cb, _ = seen[b]
            both, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
            if len(both) < 50:
                continue
            x, y = ca[pa].astype(np.float64), cb[pb].astype(np.float64)
            ok = (x.mean(1) > HARMONISE_MIN_LUMA) & (y.mean(1) > HARMONISE_MIN_LUMA) & \
                (x.min(1) > 0) & (y.min(1) > 0)
            if ok.sum() < 50:
                continue
            r = np.zeros(n)
            r[a], r[b] = 1.0, -1.0
            rows.append(r)
            # gain_a * x = gain_b * y  =>  log g_a - log g_b = median log(y / x)
            rhs.append(np.median(np.log(y[ok] / x[ok]), axis=0))
            weights.append(np.sqrt(ok.sum()))
    if not rows:
        return gains
    linked = np.abs(np.array(rows)).sum(0) > 0
    A = np.array(rows) * np.array(weights)[:, None]
    B = np.array(rhs) * np.array(weights)[:, None]
    # the mean log gain of the linked views is 0
    A = np.vstack([A, linked.astype(float) * max(weights)])
    B = np.vstack([B, np.zeros((1, 3))])
    logg, *_ = np.linalg.lstsq(A, B, rcond=None)
    lo, hi = HARMONISE_RANGE
    for i in range(n):
        if linked[i]:
            gains[i] = np.clip(np.exp(logg[i]), lo, hi).astype(np.float32)
    return gains


def vertex_colour_texels(mesh: MeshData, grid: TexelGrid) -> np.ndarray:
    """Linear-light colour per texel interpolated from the mesh's (sRGB) vertex colours."""
    tri = mesh.faces[grid.faces]
    v = mesh.vertices
    bary = barycentric(grid.positions, v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]])
    lin = _SRGB_LUT[np.asarray(mesh.vertex_colors)[:, :3]]
    return np.einsum("ik,ikc->ic", bary, lin[tri]).astype(np.float32)


def compose_values(grid: TexelGrid, values: np.ndarray, margin: int,
                   background: np.ndarray | None = None) -> np.ndarray:
    """Per-texel values (T, C) -> an (S, S, C) float image, dilated ``margin`` texels past the
    charts; texels beyond the margin get ``background`` (default: the mean value)."""
    if background is None:
        background = values.mean(0) if len(values) else np.zeros(values.shape[1], np.float32)
    return texels_to_image(grid.size, grid.index, values, margin, background)


def compose_texture(grid: TexelGrid, colours: np.ndarray, margin: int) -> np.ndarray:
    """Texel colours (linear) -> the final (S, S, 3) uint8 sRGB texture with a dilated margin.

    Texels beyond the margin get the mean colour: smaller mip levels then average to it.
    """
    bg = None if len(colours) else np.asarray(NEUTRAL_GREY, np.float32)
    return srgb_bytes(compose_values(grid, colours, margin, bg))


def texture_colours(grid: TexelGrid, views: list[ViewInput], options: ProjectionSettings
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(colour (T, 3) linear, observed (T,), filled (T,), views used) for the covered texels."""
    colour, observed, filled, stats = texture_colours_stats(grid, views, options)
    return colour, observed, filled, stats.used


def texture_colours_stats(grid: TexelGrid, views: list[ViewInput], options: ProjectionSettings,
                          threads: int = -1, light=None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, BlendStats]:
    """``texture_colours`` with the blend statistics; ``threads`` bounds the fill's KD-tree
    query (-1 = all cores); ``light``: see ``blend_views_stats``."""
    colour, wsum, used = blend_views_stats(grid, views, options, light)
    observed = wsum > 0
    if not observed.any():
        grey = srgb_to_linear(np.asarray(NEUTRAL_GREY))
        return np.tile(grey, (len(colour), 1)), observed, np.ones_like(observed), used
    if options.fill == "nearest3d":
        colour = fill_nearest_3d(grid.positions, grid.normals, colour, observed,
                                 threads=threads)
    else:
        colour[~observed] = colour[observed].mean(0)
    return colour, observed, ~observed, used


def margin_texels(size: int) -> int:
    """Dilation margin: enough for the mip levels a viewer actually samples (4 at 1024)."""
    return max(2, size // 256)


def orm_texels(parts: np.ndarray, table: dict, ao: np.ndarray | None) -> np.ndarray:
    """(T, 3) linear ORM: R = ambient occlusion (1 without a bake), G = roughness, B = metal."""
    rough = np.full(len(parts), mats.MATERIALS[mats.DEFAULT].roughness, np.float32)
    metal = np.full(len(parts), mats.MATERIALS[mats.DEFAULT].metallic, np.float32)
    for key, row in table["parts"].items():
        sel = parts == int(key)
        rough[sel], metal[sel] = row["roughness"], row["metallic"]
    occ = np.ones(len(parts), np.float32) if ao is None else np.asarray(ao, np.float32)
    return np.stack([occ, rough, metal], axis=1)
