"""texture: project the product photos onto the UV atlas as a base-colour texture.

Why this shape: every texel of the atlas is a point on the surface (rasterised in UV space), so
texturing is "which photos see this point, and how well". A photo sees a texel when the texel
lands inside the (eroded) object mask and its depth matches the view's depth map; it sees it
well when the surface faces the camera. Colours are averaged in linear light (photos are
sRGB), texels no photo saw are inpainted from the nearest observed texels in 3D (UV-space
neighbours may lie on another part of the product), and the colour is dilated past the chart
borders so mipmapping does not pull in the background.

The numerical steps are plain numpy functions (tested on their own); only ``texture`` reads
artifacts and only ``_render_inputs`` touches the renderer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..core.artifacts import load_cameras, load_image, load_mesh, save_image
from ..core.camera import Camera
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult

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
    """

    size: int = 1024
    incidence_power: float = 2.0
    depth_tolerance: float = 0.01
    mask_erode_px: int = 2
    front_back_prior: float = 1.5
    fill: str = "nearest3d"

    def __post_init__(self) -> None:
        s = self.size
        check(16 <= s <= 8192 and s & (s - 1) == 0, f"texture.size must be a power of two "
              f"in 16..8192, got {s}")
        check(self.incidence_power >= 0, "texture.incidence_power must be >= 0")
        check(0 < self.depth_tolerance < 1, "texture.depth_tolerance must be in (0, 1)")
        check(self.mask_erode_px >= 0, "texture.mask_erode_px must be >= 0")
        check(self.front_back_prior > 0, "texture.front_back_prior must be > 0")
        check(self.fill in FILLS, f"texture.fill must be one of {FILLS}, got {self.fill!r}")


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


def blend_views(grid: TexelGrid, views: list[ViewInput], options: TextureOptions
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Weighted linear-light average of every view's colour per texel.

    Returns (colour (T, 3) float32 linear, weight sum (T,), labels of views that saw any texel).
    """
    acc = np.zeros((len(grid.index), 3), np.float64)
    wsum = np.zeros(len(grid.index), np.float64)
    used: list[str] = []
    for v in views:
        vis, pix = visible_texels(grid.positions, v.camera, v.depth, v.mask,
                                  options.depth_tolerance)
        idx = np.flatnonzero(vis)
        if len(idx) == 0:
            continue
        w = incidence_weights(grid.positions[idx], grid.normals[idx], v.camera.position,
                              options.incidence_power) * view_prior(v.camera,
                                                                    options.front_back_prior)
        keep = w > 1e-8
        idx, w = idx[keep], w[keep]
        if len(idx) == 0:
            continue
        acc[idx] += w[:, None] * sample_bilinear(v.linear_rgb, pix[idx])
        wsum[idx] += w
        used.append(v.label)
    colour = acc / np.maximum(wsum, 1e-12)[:, None]
    return colour.astype(np.float32), wsum, used


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


def compose_texture(grid: TexelGrid, colours: np.ndarray, margin: int) -> np.ndarray:
    """Texel colours (linear) -> the final (S, S, 3) uint8 sRGB texture with a dilated margin.

    Texels beyond the margin get the mean colour: smaller mip levels then average to it.
    """
    s = grid.size
    img = np.zeros((s * s, 3), np.float32)
    ok = np.zeros(s * s, bool)
    img[grid.index] = colours
    ok[grid.index] = True
    img, ok = dilate(img.reshape(s, s, 3), ok.reshape(s, s), margin)
    if (~ok).any():
        img[~ok] = colours.mean(0) if len(colours) else np.asarray(NEUTRAL_GREY, np.float32)
    return to_uint8(linear_to_srgb(img))


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
    inputs = [ViewInput(cam.label, cam, image_to_linear(rgb), erode_mask(mask, options.mask_erode_px),
                        np.asarray(r.depth(mesh, cam), np.float32))
              for cam, rgb, mask in views]
    return grid, inputs


# ---------------------------------------------------------------- the stage

def texture_colours(grid: TexelGrid, views: list[ViewInput], options: TextureOptions
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(colour (T, 3) linear, observed (T,), filled (T,), views used) for the covered texels."""
    colour, wsum, used = blend_views(grid, views, options)
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


@stage(NAME, "1", TextureOptions, Resources(cpus=1, memory_mb=2048))
def texture(state: AssetState, options: TextureOptions) -> StageResult:
    """Bake the photos into ``texture/base_color`` over the mesh's UV atlas."""
    mesh = load_mesh(state, "mesh")
    if mesh.uv is None:
        raise ProcessingError("the mesh artifact 'mesh' has no UVs to texture",
                              "run the uv stage before texture")
    views = read_views(state)
    grid, inputs = _render_inputs(mesh, views, options)
    if len(grid.index) == 0:
        raise ProcessingError("the UV atlas covers no texel (all UVs outside 0-1 or degenerate)",
                              "re-run the uv stage; check the mesh has non-degenerate faces")
    if inputs:
        colour, observed, filled, used = texture_colours(grid, inputs, options)
    else:
        observed = np.zeros(len(grid.index), bool)
        filled = np.ones(len(grid.index), bool)
        used = []
        if mesh.vertex_colors is not None:
            colour = vertex_colour_texels(mesh, grid)
        else:
            colour = np.tile(srgb_to_linear(np.asarray(NEUTRAL_GREY)), (len(grid.index), 1))
    image = compose_texture(grid, colour, margin_texels(options.size))
    n = len(grid.index)
    log.info("%s %s: %d views -> %d used, %dx%d texels, observed %.1f%%, filled %.1f%%",
             state.sku, NAME, len(inputs), len(used), options.size, options.size,
             100.0 * observed.sum() / n, 100.0 * filled.sum() / n)
    return StageResult(
        artifacts={"texture/base_color": save_image(state, image)},
        metrics={
            "texture_observed_frac": float(observed.sum() / n),
            "texture_filled_frac": float(filled.sum() / n),
            "texture_size": int(options.size),
            "texture_views_used": len(used),
        },
    )
