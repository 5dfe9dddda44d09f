"""texture: project the product photos onto the UV atlas as a base-colour texture.

Why this shape: every texel of the atlas is a point on the surface (rasterised in UV space), so
texturing is "which photos see this point, and how well". A photo sees a texel when the texel
lands inside the (eroded) object mask and its depth matches the view's depth map; it sees it
well when the surface faces the camera. Colours are averaged in linear light (photos are
sRGB), texels no photo saw are inpainted from the nearest observed texels in 3D (UV-space
neighbours may lie on another part of the product), and the colour is dilated past the chart
borders so mipmapping does not pull in the background.

Where a photo is least trustworthy it counts least: pixels near depth discontinuities of the
mesh (occlusion borders, where a one-pixel misalignment swaps foreground and background) and
near the photo's mask border get ``edge_weight``; and each texel reads the photo at the pyramid
level matching its projected footprint (the per-face Jacobian texel -> pixel), so a small
texture seeing a detailed photo, or a grazing view, averages instead of aliasing.

PBR per part: each part (``face_labels``) gets a material from ``tasks/materials.py`` (catalog
hint + colour statistics); the stage writes ``texture/orm`` (R = AO from ``texture/ao`` when a
bake stage made one, else 1; G = roughness; B = metallic; linear) and a ``materials`` JSON.
An optional pass (``flatten_shading``) divides out the low-frequency luminance per part, so
studio lighting baked into the photos does not become shading painted on the albedo.

The numerical steps are plain numpy functions (tested on their own); only ``texture`` reads
artifacts and only ``_render_inputs`` touches the renderer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..core.artifacts import load_cameras, load_image, load_mesh, save_image, save_json
from ..core.camera import Camera
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from . import materials as mats

log = logging.getLogger(__name__)

NAME = "texture"
FILLS = ("nearest3d", "mean")
#: Neutral light grey (sRGB) for products with no photo and no vertex colours.
NEUTRAL_GREY = (0.8, 0.8, 0.8)


@dataclass(frozen=True)
class TextureOptions:
    """How the photos become a base-colour texture.

    size: texture edge in pixels (power of two, 16-8192).
    incidence_power: weight = cos(angle between normal and view ray) ** power; higher trusts
        head-on views more and blends less.
    depth_tolerance: a texel is visible when its depth is within this fraction of the view's
        depth map (relative, so it works at any scale).
    mask_erode_px: shrink each object mask by this many pixels before use, so background at
        the silhouette never lands on the surface.
    front_back_prior: extra weight for views looking along the front/back axis (product photos
        are usually best there); 1 means no preference.
    fill: how texels no photo saw get a colour: "nearest3d" (inverse-distance weighted from the
        nearest observed texels in 3D, normals agreeing) or "mean" (mean observed colour).
    edge_px: width (px) of the band around the mesh's depth discontinuities and the photo's
        mask border where a view is distrusted (0 disables it).
    depth_edge: relative depth jump between neighbouring pixels that counts as a discontinuity.
    edge_weight: weight factor of a view inside that band (0 excludes it; small but non-zero
        keeps a colour for texels that only an edge sees).
    mip_filter: sample each view at the pyramid level of the texel's projected footprint.
    mip_bias: levels added to log2(footprint). The textbook level (0) blurs twice, since the
        viewer's own mipmapping filters the texture again: on the real-model benchmark it cost
        2.5 dB at the input views against -1 (filter only where a texel spans > 2 px), which
        still removes the aliasing of fine photo detail on a small texture.
    flatten_shading: divide out the low-frequency luminance of each part (baked-in studio
        lighting); off by default because it also removes real albedo gradients.
    flatten_cells: resolution of the 3D grid (cells along the longest side) the low-frequency
        luminance is estimated on; fewer cells flatten broader light falloff only.
    delight: estimate the studio light fixed to the camera (``tasks/delight.py``) from the
        points several photos see, and divide it out of every photo before blending, so the
        texture is albedo (what a viewer should light); skipped when no such light explains
        the photos.
    pbr: write ``texture/orm`` and the ``materials`` artifact (material per part).
    """

    size: int = 1024
    incidence_power: float = 2.0
    depth_tolerance: float = 0.01
    mask_erode_px: int = 2
    front_back_prior: float = 1.5
    fill: str = "nearest3d"
    edge_px: int = 2
    depth_edge: float = 0.05
    edge_weight: float = 0.02
    mip_filter: bool = True
    mip_bias: float = -1.0
    flatten_shading: bool = False
    flatten_cells: int = 12
    delight: bool = True
    pbr: bool = True

    def __post_init__(self) -> None:
        s = self.size
        check(16 <= s <= 8192 and s & (s - 1) == 0, f"texture.size must be a power of two "
              f"in 16..8192, got {s}")
        check(self.incidence_power >= 0, "texture.incidence_power must be >= 0")
        check(0 < self.depth_tolerance < 1, "texture.depth_tolerance must be in (0, 1)")
        check(self.mask_erode_px >= 0, "texture.mask_erode_px must be >= 0")
        check(self.front_back_prior > 0, "texture.front_back_prior must be > 0")
        check(self.fill in FILLS, f"texture.fill must be one of {FILLS}, got {self.fill!r}")
        check(0 <= self.edge_px <= 64, "texture.edge_px must be in 0..64")
        check(self.depth_edge > 0, "texture.depth_edge must be > 0")
        check(0 <= self.edge_weight <= 1, "texture.edge_weight must be in [0, 1]")
        check(2 <= self.flatten_cells <= 256, "texture.flatten_cells must be in 2..256")
        check(-4 <= self.mip_bias <= 4, "texture.mip_bias must be in -4..4")


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


# ---------------------------------------------------------------- colour space

def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in 0..1 -> linear light (IEC 61966-2-1)."""
    x = np.asarray(x, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in 0..1 -> sRGB-encoded values."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


_SRGB_LUT = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)


def image_to_linear(rgb: np.ndarray) -> np.ndarray:
    """A uint8 photo (gray, RGB or RGBA) -> (H, W, 3) float32 linear light."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return _SRGB_LUT[a]
    return srgb_to_linear(a.astype(np.float32) / (255.0 if a.max() > 1.0 else 1.0))


def to_uint8(srgb: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(srgb) * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- weighting

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


def sample_nearest(image: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Values of ``image`` at the nearest pixel centre of each (u, v); pix must be inside."""
    h, w = image.shape[:2]
    x = np.clip(np.rint(pix[:, 0]).astype(np.int64), 0, w - 1)
    y = np.clip(np.rint(pix[:, 1]).astype(np.int64), 0, h - 1)
    return image[y, x]


def sample_bilinear(image: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W, C) float image at (u, v) pixel coordinates (centres = ints)."""
    h, w = image.shape[:2]
    x = np.clip(pix[:, 0], 0, w - 1)
    y = np.clip(pix[:, 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2) if w > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2) if h > 1 else np.zeros(len(y), np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


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


def edge_band(depth: np.ndarray, mask: np.ndarray, px: int, rel_jump: float) -> np.ndarray:
    """(H, W) bool: pixels within ``px`` of a depth discontinuity or of the mask border.

    A discontinuity is a pixel whose 3x3 neighbourhood spans more than ``rel_jump`` of its own
    depth, or touches empty background (the mesh's silhouette). There the photo and the mesh
    disagree by a pixel or so and the colour may belong to the other surface.
    """
    import cv2

    if px <= 0:
        return np.zeros(depth.shape, bool)
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
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate((disc | border).astype(np.uint8), k).astype(bool)


def face_footprints(mesh: MeshData, camera: Camera, size: int) -> np.ndarray:
    """(M,) how many photo pixels one texel of face f spans in this view (largest axis).

    The face's affine map texel -> pixel is its Jacobian J = dP inv(dT) (P projected corners,
    T texel corners); its largest singular value is the footprint, as GPUs choose mip levels.
    """
    tri = mesh.faces
    pix, _ = camera.project(mesh.vertices)
    P = pix[tri]                                           # (M, 3, 2)
    T = np.asarray(mesh.uv, np.float64)[tri] * size        # (M, 3, 2)
    dP = np.stack([P[:, 1] - P[:, 0], P[:, 2] - P[:, 0]], axis=2)   # (M, 2, 2) columns
    dT = np.stack([T[:, 1] - T[:, 0], T[:, 2] - T[:, 0]], axis=2)
    det = dT[:, 0, 0] * dT[:, 1, 1] - dT[:, 0, 1] * dT[:, 1, 0]
    ok = np.abs(det) > 1e-12
    out = np.ones(len(tri), np.float64)
    if ok.any():
        J = dP[ok] @ np.linalg.inv(dT[ok])
        out[ok] = np.linalg.svd(J, compute_uv=False)[:, 0]
    return np.nan_to_num(out, nan=1.0, posinf=1.0)


def build_pyramid(linear_rgb: np.ndarray, mask: np.ndarray, levels: int = 6) -> tuple:
    """((colour x mask, mask) per level): a Gaussian pyramid of the masked photo.

    Premultiplying by the mask and dividing after sampling keeps the background out of the
    coarse levels, which would otherwise bleed white into every silhouette.
    """
    import cv2

    m = np.asarray(mask, np.float32)
    c = np.asarray(linear_rgb, np.float32) * m[..., None]
    out = [(c, m)]
    for _ in range(levels - 1):
        if min(m.shape) < 16:
            break
        c, m = cv2.pyrDown(c), cv2.pyrDown(m)
        out.append((c, m))
    return tuple(out)


def sample_pyramid(pyramid: tuple, pix: np.ndarray, level: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(colour (N, 3), coverage (N,)): trilinear samples at continuous pyramid ``level``."""
    top = len(pyramid) - 1
    level = np.clip(level, 0, top)
    lo = np.floor(level).astype(np.int64)
    frac = (level - lo).astype(np.float32)
    acc_c = np.zeros((len(pix), 3), np.float32)
    acc_m = np.zeros(len(pix), np.float32)
    for lv in np.unique(lo):
        sel = np.flatnonzero(lo == lv)
        for li, wt in ((lv, 1.0 - frac[sel]), (min(lv + 1, top), frac[sel])):
            c, m = pyramid[li]
            q = (pix[sel] + 0.5) / float(2 ** li) - 0.5
            acc_c[sel] += wt[:, None] * sample_bilinear(c, q)
            acc_m[sel] += wt * sample_bilinear(m[..., None], q)[:, 0]
    colour = acc_c / np.maximum(acc_m, 1e-6)[:, None]
    return colour, acc_m


@dataclass(frozen=True)
class BlendStats:
    """What the blend saw: views used, texels whose weight came only from edge bands, mean
    pyramid level read (0 = full resolution)."""

    used: list
    edge_only: int = 0
    mean_level: float = 0.0


def blend_views(grid: TexelGrid, views: list[ViewInput], options: TextureOptions
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Weighted linear-light average of every view's colour per texel.

    Returns (colour (T, 3) float32 linear, weight sum (T,), labels of views that saw any texel).
    """
    colour, wsum, stats = blend_views_stats(grid, views, options)
    return colour, wsum, stats.used


def blend_views_stats(grid: TexelGrid, views: list[ViewInput], options: TextureOptions,
                      light=None) -> tuple[np.ndarray, np.ndarray, BlendStats]:
    """``blend_views`` plus the statistics the stage reports; with a ``light``
    (``delight.Light``), each photo's colour is divided by its shading first."""
    acc = np.zeros((len(grid.index), 3), np.float64)
    wsum = np.zeros(len(grid.index), np.float64)
    clean = np.zeros(len(grid.index), bool)
    used: list[str] = []
    lv_acc = lv_w = 0.0
    for v in views:
        vis, pix = visible_texels(grid.positions, v.camera, v.depth, v.mask,
                                  options.depth_tolerance)
        idx = np.flatnonzero(vis)
        if len(idx) == 0:
            continue
        w = incidence_weights(grid.positions[idx], grid.normals[idx], v.camera.position,
                              options.incidence_power) * view_prior(v.camera,
                                                                    options.front_back_prior)
        on_edge = np.zeros(len(idx), bool)
        if v.edge is not None:
            on_edge = sample_nearest(v.edge, pix[idx]).astype(bool)
            w = np.where(on_edge, w * options.edge_weight, w)
        keep = w > 1e-8
        idx, w, on_edge = idx[keep], w[keep], on_edge[keep]
        if len(idx) == 0:
            continue
        if options.mip_filter and v.pyramid is not None and v.face_footprint is not None:
            level = np.maximum(np.log2(np.maximum(v.face_footprint[grid.faces[idx]], 1e-6))
                               + options.mip_bias, 0.0)
            col, cover = sample_pyramid(v.pyramid, pix[idx], level)
            w = w * np.clip(cover, 0.0, 1.0)
            lv_acc += float((level * w).sum())
            lv_w += float(w.sum())
        else:
            col = sample_bilinear(v.linear_rgb, pix[idx])
        if light is not None:
            col = col / light.shade(grid.normals[idx] @ v.camera.world_to_camera[:3, :3].T
                                    )[:, None].astype(np.float32)
        acc[idx] += w[:, None] * col
        wsum[idx] += w
        clean[idx[~on_edge]] = True
        used.append(v.label)
    colour = acc / np.maximum(wsum, 1e-12)[:, None]
    stats = BlendStats(used, int(((wsum > 0) & ~clean).sum()),
                       lv_acc / lv_w if lv_w > 0 else 0.0)
    return colour.astype(np.float32), wsum, stats


# ---------------------------------------------------------------- inpainting and dilation

def _cell_means(keys: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group rows by integer cell key; return (inverse index, per-cell means of each array)."""
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    means = []
    for a in arrays:
        acc = np.zeros((len(counts), a.shape[1]), np.float64)
        np.add.at(acc, inverse, a)
        means.append((acc / counts[:, None]).astype(np.float32))
    return inverse, means


def fill_nearest_3d(positions: np.ndarray, normals: np.ndarray, colours: np.ndarray,
                    observed: np.ndarray, k: int = 8, grid: int = 256) -> np.ndarray:
    """Colour every unobserved texel from its k nearest observed texels in 3D.

    Why 3D and not UV: UV neighbours across a chart border are usually far apart on the
    product. Neighbours whose normal points away (n . n' <= 0: the other side of a thin wall)
    are ignored; where none agree, plain inverse-distance weighting is used. Returns a copy.

    Why cells: a KD-tree query from millions of unseen texels (the back of a product shot from
    the front) into millions of seen ones is slow when the two sets are far apart. Both sets
    are first averaged into cubic cells (``grid`` cells along the longest side, ~1 mm on a
    shoe box), which keeps the query to a few hundred thousand points at any texture size.
    """
    out = np.array(colours, np.float32, copy=True)
    src = np.flatnonzero(observed)
    dst = np.flatnonzero(~observed)
    if len(dst) == 0 or len(src) == 0:
        return out
    from scipy.spatial import cKDTree

    lo = positions.min(0)
    cell = max(float((positions.max(0) - lo).max()) / grid, 1e-12)

    def cells(idx: np.ndarray) -> np.ndarray:
        return np.floor((positions[idx] - lo) / cell).astype(np.int64)

    _, (s_pos, s_nrm, s_col) = _cell_means(cells(src), positions[src], normals[src], colours[src])
    d_inv, (d_pos, d_nrm) = _cell_means(cells(dst), positions[dst], normals[dst])
    s_nrm /= np.maximum(np.linalg.norm(s_nrm, axis=1, keepdims=True), 1e-12)
    k = min(k, len(s_pos))
    dist, nn = cKDTree(s_pos).query(d_pos, k=k, workers=-1)
    dist, nn = dist.reshape(len(d_pos), k), nn.reshape(len(d_pos), k)
    w = 1.0 / np.maximum(dist, 1e-9)
    agree = np.einsum("ikj,ij->ik", s_nrm[nn], d_nrm) > 0
    w_agree = w * agree
    any_agree = w_agree.sum(1) > 0
    w = np.where(any_agree[:, None], w_agree, w)
    w /= w.sum(1, keepdims=True)
    filled = np.einsum("ik,ikc->ic", w, s_col[nn]).astype(np.float32)
    out[dst] = filled[d_inv]
    return out


def dilate(image: np.ndarray, valid: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the colour ``iterations`` texels past the valid region (mean of valid neighbours).

    Why: bilinear filtering and mipmaps read texels just outside a chart; without a margin they
    read the empty background and seams show a dark line.
    """
    import cv2

    img = np.array(image, np.float32, copy=True)
    ok = np.array(valid, bool, copy=True)
    for _ in range(iterations):
        m = ok.astype(np.float32)
        count = cv2.boxFilter(m, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        grow = (~ok) & (count > 0)
        if not grow.any():
            break
        summed = cv2.boxFilter(img * m[..., None], -1, (3, 3), normalize=False,
                               borderType=cv2.BORDER_CONSTANT)
        img[grow] = summed[grow] / count[grow][:, None]
        ok |= grow
    return img, ok


def barycentric(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (T, 3) of points in (possibly 3D) triangles, clamped to the face."""
    v0, v1, v2 = b - a, c - a, points - a
    d00 = np.einsum("ij,ij->i", v0, v0)
    d01 = np.einsum("ij,ij->i", v0, v1)
    d11 = np.einsum("ij,ij->i", v1, v1)
    d20 = np.einsum("ij,ij->i", v2, v0)
    d21 = np.einsum("ij,ij->i", v2, v1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-30, 1e-30, den)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - v - w, v, w], axis=1), 0, None)
    return bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)


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
    s, c = grid.size, values.shape[1]
    img = np.zeros((s * s, c), np.float32)
    ok = np.zeros(s * s, bool)
    img[grid.index] = values
    ok[grid.index] = True
    img, ok = dilate(img.reshape(s, s, c), ok.reshape(s, s), margin)
    if (~ok).any():
        if background is None:
            background = values.mean(0) if len(values) else np.zeros(c, np.float32)
        img[~ok] = background
    return img


def compose_texture(grid: TexelGrid, colours: np.ndarray, margin: int) -> np.ndarray:
    """Texel colours (linear) -> the final (S, S, 3) uint8 sRGB texture with a dilated margin.

    Texels beyond the margin get the mean colour: smaller mip levels then average to it.
    """
    bg = None if len(colours) else np.asarray(NEUTRAL_GREY, np.float32)
    return to_uint8(linear_to_srgb(compose_values(grid, colours, margin, bg)))


# ---------------------------------------------------------------- shading and materials

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def flatten_shading(positions: np.ndarray, colours: np.ndarray, parts: np.ndarray,
                    cells: int = 12, max_gain: float = 3.0) -> np.ndarray:
    """Divide out each part's low-frequency luminance (baked-in light falloff and shadows).

    Why per part and in 3D: a part is one material, so a smooth brightness change across it is
    most likely light, not albedo; neighbours in 3D (not UV) are what the light shares. The
    luminance is averaged on a coarse grid of cubic cells, read back at every texel as a
    Gaussian-weighted mean of its nearest cells (sigma 0.75 cell, so the estimate is smooth
    across cell borders), and every texel is scaled by (part mean / local mean), clamped to
    [1/max_gain, max_gain]. Chromaticity is kept. Returns a copy.
    """
    from scipy.spatial import cKDTree

    out = np.array(colours, np.float32, copy=True)
    if len(out) == 0:
        return out
    lo = positions.min(0)
    cell = max(float((positions.max(0) - lo).max()) / cells, 1e-12)
    lum = out @ LUMA
    for part in np.unique(parts):
        idx = np.flatnonzero(parts == part)
        keys = np.floor((positions[idx] - lo) / cell).astype(np.int64)
        inv, (cpos, clum) = _cell_means(keys, positions[idx], lum[idx, None])
        counts = np.bincount(inv, minlength=len(cpos)).astype(np.float64)
        k = min(8, len(cpos))
        dist, nn = cKDTree(cpos).query(positions[idx], k=k, workers=-1)
        dist, nn = dist.reshape(len(idx), k), nn.reshape(len(idx), k)
        w = np.exp(-0.5 * (dist / (0.75 * cell)) ** 2) * counts[nn] + 1e-12
        low = (w * clum[nn, 0]).sum(1) / w.sum(1)
        target = float(lum[idx].mean())
        gain = np.clip(target / np.maximum(low, 1e-6), 1 / max_gain, max_gain)
        out[idx] *= gain[:, None].astype(np.float32)
    return np.clip(out, 0.0, 1.0)


def part_colours(grid: TexelGrid, mesh: MeshData, colour: np.ndarray, observed: np.ndarray
                 ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(part id per texel, {part: sRGB colours of its observed texels (all if none seen)})."""
    parts = np.asarray(mesh.face_labels, np.int64)[grid.faces]
    srgb = linear_to_srgb(colour)
    out: dict[int, np.ndarray] = {}
    for part in np.unique(parts):
        sel = parts == part
        seen = sel & observed
        out[int(part)] = srgb[seen if seen.any() else sel]
    return parts, out


def orm_texels(parts: np.ndarray, table: dict, ao: np.ndarray | None) -> np.ndarray:
    """(T, 3) linear ORM: R = ambient occlusion (1 without a bake), G = roughness, B = metal."""
    rough = np.full(len(parts), mats.MATERIALS[mats.DEFAULT].roughness, np.float32)
    metal = np.full(len(parts), mats.MATERIALS[mats.DEFAULT].metallic, np.float32)
    for key, row in table["parts"].items():
        sel = parts == int(key)
        rough[sel], metal[sel] = row["roughness"], row["metallic"]
    occ = np.ones(len(parts), np.float32) if ao is None else np.asarray(ao, np.float32)
    return np.stack([occ, rough, metal], axis=1)


def read_ao(state: AssetState, grid: TexelGrid) -> np.ndarray | None:
    """Per-texel AO (0-1) from a bake stage's ``texture/ao``, resized to the atlas, or None."""
    if "texture/ao" not in state.artifacts:
        return None
    import cv2

    ao = load_image(state, "texture/ao")
    if ao.ndim == 3:
        ao = ao[..., 0]
    ao = ao.astype(np.float32) / (255.0 if ao.dtype == np.uint8 else 65535.0
                                  if ao.dtype == np.uint16 else 1.0)
    if ao.shape != (grid.size, grid.size):
        ao = cv2.resize(ao, (grid.size, grid.size), interpolation=cv2.INTER_AREA)
    return ao.reshape(-1)[grid.index]


# ---------------------------------------------------------------- reading inputs

def read_views(state: AssetState) -> list[tuple[Camera, np.ndarray, np.ndarray]]:
    """(camera, rgb, mask) for every camera that has its image and mask; [] for mesh-only SKUs."""
    if "cameras" not in state.artifacts:
        return []
    views = []
    for cam in load_cameras(state):
        ik, mk = f"image/{cam.label}", f"mask/{cam.label}"
        if ik not in state.artifacts or mk not in state.artifacts:
            log.info("%s %s: camera %r has no %s/%s, skipped", state.sku, NAME, cam.label, ik, mk)
            continue
        rgb, mask = load_image(state, ik), load_image(state, mk)
        if rgb.shape[:2] != (cam.height, cam.width) or mask.shape[:2] != rgb.shape[:2]:
            raise ProcessingError(
                f"view {cam.label!r}: image {rgb.shape[:2]} / mask {mask.shape[:2]} do not match "
                f"its camera ({cam.height}, {cam.width})",
                "re-run ingest and generate so cameras, images and masks come from one crop")
        views.append((cam, rgb, mask))
    return views


def _renderer():
    from ..core.render import get_renderer

    return get_renderer()


def _render_inputs(mesh: MeshData, views, options: TextureOptions
                   ) -> tuple[TexelGrid, list[ViewInput]]:
    r = _renderer()
    position, normal, face = r.rasterize_uv(mesh, options.size)
    grid = TexelGrid.from_raster(np.asarray(position), np.asarray(normal), np.asarray(face))
    inputs = []
    for cam, rgb, mask in views:
        lin = image_to_linear(rgb)
        m = erode_mask(mask, options.mask_erode_px)
        depth = np.asarray(r.depth(mesh, cam), np.float32)
        inputs.append(ViewInput(
            cam.label, cam, lin, m, depth,
            edge=edge_band(depth, m, options.edge_px, options.depth_edge),
            face_footprint=face_footprints(mesh, cam, options.size) if options.mip_filter
            else None,
            pyramid=build_pyramid(lin, m) if options.mip_filter else None))
    return grid, inputs


# ---------------------------------------------------------------- the studio light

def estimate_light(grid: TexelGrid, views: list[ViewInput], options: TextureOptions,
                   max_texels: int = 20000, seed: int = 0):
    """The light fixed to the camera (``delight.fit_light``) from texels two photos see, or
    None. Texels in a photo's edge band and very dark ones (noisy ratios) are left out."""
    from .delight import fit_light

    if len(grid.index) == 0:
        return None
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(len(grid.index), min(max_texels, len(grid.index)), replace=False))
    pos, nrm = grid.positions[sub], grid.normals[sub]
    lum = np.full((len(views), len(sub)), np.nan)
    ncam = np.zeros((len(views), len(sub), 3))
    for k, v in enumerate(views):
        vis, pix = visible_texels(pos, v.camera, v.depth, v.mask, options.depth_tolerance)
        if v.edge is not None:
            vis[vis] &= ~sample_nearest(v.edge, pix[vis]).astype(bool)
        lum[k, vis] = sample_bilinear(v.linear_rgb, pix[vis]) @ LUMA
        ncam[k] = nrm @ v.camera.world_to_camera[:3, :3].T
    na, nb, ratio = [], [], []
    for a in range(len(views)):
        for b in range(a + 1, len(views)):
            both = np.flatnonzero((lum[a] > 0.02) & (lum[b] > 0.02))
            if len(both):
                na.append(ncam[a, both])
                nb.append(ncam[b, both])
                ratio.append(np.log(lum[a, both] / lum[b, both]))
    if not ratio:
        return None
    return fit_light(np.concatenate(na), np.concatenate(nb), np.concatenate(ratio))


# ---------------------------------------------------------------- the stage

def texture_colours(grid: TexelGrid, views: list[ViewInput], options: TextureOptions
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(colour (T, 3) linear, observed (T,), filled (T,), views used) for the covered texels."""
    colour, observed, filled, stats = texture_colours_stats(grid, views, options)
    return colour, observed, filled, stats.used


def texture_colours_stats(grid: TexelGrid, views: list[ViewInput], options: TextureOptions,
                          light=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, BlendStats]:
    """``texture_colours`` with the blend statistics."""
    colour, wsum, used = blend_views_stats(grid, views, options, light)
    observed = wsum > 0
    if not observed.any():
        grey = srgb_to_linear(np.asarray(NEUTRAL_GREY))
        return np.tile(grey, (len(colour), 1)), observed, np.ones_like(observed), used
    if options.fill == "nearest3d":
        colour = fill_nearest_3d(grid.positions, grid.normals, colour, observed)
    else:
        colour[~observed] = colour[observed].mean(0)
    return colour, observed, ~observed, used


def margin_texels(size: int) -> int:
    """Dilation margin: enough for the mip levels a viewer actually samples (4 at 1024)."""
    return max(2, size // 256)


@stage(NAME, "3", TextureOptions, Resources(cpus=1, memory_mb=2048))
def texture(state: AssetState, options: TextureOptions) -> StageResult:
    """Bake the photos into ``texture/base_color`` over the mesh's UV atlas; with ``pbr``, also
    ``texture/orm`` and the ``materials`` table (one material per part)."""
    mesh = load_mesh(state, "mesh")
    if mesh.uv is None:
        raise ProcessingError("the mesh artifact 'mesh' has no UVs to texture",
                              "run the uv stage before texture")
    views = read_views(state)
    grid, inputs = _render_inputs(mesh, views, options)
    if len(grid.index) == 0:
        raise ProcessingError("the UV atlas covers no texel (all UVs outside 0-1 or degenerate)",
                              "re-run the uv stage; check the mesh has non-degenerate faces")
    stats = BlendStats([])
    light = estimate_light(grid, inputs, options) if options.delight and len(inputs) > 1 \
        else None
    if inputs:
        colour, observed, filled, stats = texture_colours_stats(grid, inputs, options, light)
    else:
        observed = np.zeros(len(grid.index), bool)
        filled = np.ones(len(grid.index), bool)
        if mesh.vertex_colors is not None:
            colour = vertex_colour_texels(mesh, grid)
        else:
            colour = np.tile(srgb_to_linear(np.asarray(NEUTRAL_GREY)), (len(grid.index), 1))
    parts = np.asarray(mesh.face_labels, np.int64)[grid.faces]
    if options.flatten_shading and observed.any():
        colour = flatten_shading(grid.positions, colour, parts, options.flatten_cells)
    margin = margin_texels(options.size)
    artifacts = {"texture/base_color": save_image(state, compose_texture(grid, colour, margin))}
    n = len(grid.index)
    metrics: dict = {
        "texture_observed_frac": float(observed.sum() / n),
        "texture_filled_frac": float(filled.sum() / n),
        "texture_edge_only_frac": float(stats.edge_only / n),
        "texture_mip_level_mean": float(stats.mean_level),
        "texture_size": int(options.size),
        "texture_views_used": len(stats.used),
        "texture_flattened": bool(options.flatten_shading),
        "texture_delit": light is not None,
    }
    if light is not None:
        artifacts["lighting"] = save_json(state, light.to_dict())
        metrics.update(texture_light_ambient=round(light.ambient, 3),
                       texture_light_direction=",".join(f"{x:.3f}" for x in light.direction),
                       texture_light_explained=round(light.explained, 3))
    if options.pbr:
        _, by_part = part_colours(grid, mesh, colour, observed)
        table = mats.assign(by_part, state.spec.material, mats.asset_name(state.sku))
        ao = read_ao(state, grid)
        orm = compose_values(grid, orm_texels(parts, table, ao), margin)
        artifacts["texture/orm"] = save_image(state, to_uint8(orm))
        artifacts["materials"] = save_json(state, table)
        names = sorted({row["material"] for row in table["parts"].values()})
        metrics.update(texture_parts=len(table["parts"]), texture_materials=",".join(names),
                       texture_has_ao=ao is not None)
    log.info("%s %s: %d views -> %d used, %dx%d texels, observed %.1f%%, filled %.1f%%, "
             "mip level %.2f, materials %s", state.sku, NAME, len(inputs), len(stats.used),
             options.size, options.size, 100.0 * observed.sum() / n, 100.0 * filled.sum() / n,
             stats.mean_level, metrics.get("texture_materials", "-"))
    return StageResult(artifacts=artifacts, metrics=metrics)
