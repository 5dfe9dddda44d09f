"""The default, weight-free backend: a shape from the product's silhouettes.

Two or more labelled views give a visual hull: every point whose projection falls inside every
mask. One view gives an inflated closed surface, as deep as a fraction of its width. Neither
needs a GPU or weights, so a catalog always gets *some* closed mesh whose silhouettes match the
photos; learned backends plug in beside it for better shapes.

Both build a signed field on a voxel grid (positive inside, roughly in world units) and mesh
its zero level with marching cubes. Each view's field is the mask's signed distance
(distance transform inside minus outside, in pixels) sampled bilinearly at the projection and
scaled to world units by depth / focal length, so the surface is smooth at sub-pixel precision
instead of stair-stepped by the pixels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..core.camera import Camera
from ..core.errors import InputError, ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check
from ..geometry import closed
from ..geometry.closed import is_closed
from ..geometry.components import largest_component
from .base import DenseMesh, GenerateRequest

log = logging.getLogger(__name__)

#: Field value for points no view can vouch for (behind a camera): far outside.
_FAR = -1e3
#: Points evaluated per batch; bounds memory at ~100 MB whatever the resolution.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SilhouetteConfig:
    """Options of the silhouette backend.

    resolution: voxels along the longest side of the object's box (dense mesh ~ 6 res^2 faces).
    inflation: one view only: depth of the inflated shape relative to its width (a round
        silhouette with 1.0 gives a sphere; 0.35 suits boxes and bottles seen from the front).
    coarse_resolution: voxels per side of the first pass that finds the object's box.
    keep_largest: keep only the largest connected piece (floaters come from noisy masks).
    """

    name: ClassVar[str] = "silhouette"
    resolution: int = 128
    device: str = "cpu"
    inflation: float = 0.35
    coarse_resolution: int = 48
    keep_largest: bool = True

    def __post_init__(self) -> None:
        check(16 <= self.resolution <= 512, f"silhouette: resolution {self.resolution} not in "
              "16..512")
        check(8 <= self.coarse_resolution <= 256, "silhouette: coarse_resolution not in 8..256")
        check(self.device == "cpu", f"silhouette: runs on numpy; device {self.device!r} must be "
              "'cpu'")
        check(0.0 < self.inflation <= 4.0, f"silhouette: inflation {self.inflation} not in (0, 4]")

    def build(self) -> SilhouetteGenerator:
        return SilhouetteGenerator(self)

    def weights_sha256(self) -> str | None:
        return None


class SilhouetteGenerator:
    """Visual hull from 2+ views, inflation from 1; deterministic (the seed is ignored)."""

    def __init__(self, config: SilhouetteConfig) -> None:
        self.config = config

    def generate(self, request: GenerateRequest) -> DenseMesh:
        views = list(request.views)
        if not views:
            raise InputError(
                f"{request.sku}: the silhouette backend needs at least one view with a mask, "
                "and none was given",
                "add product photos to the catalog row, or give a mesh_uri")
        # Photos whose direction is a guess (ingest's ``view<i>``) would carve away real parts.
        used = [v for v in views if getattr(v, "pose_known", True)] or views[:1]
        masks = [_check_mask(v) for v in used]
        cams = [v.camera for v in used]
        if len(used) == 1:
            mesh, info = inflate(cams[0], masks[0], self.config)
        else:
            mesh, info = visual_hull(cams, masks, self.config, dims_m=request.dims_m)
        info = {"views": len(views), "views_used": len(used), "voxels": self.config.resolution,
                **info}
        log.info("%s generate/silhouette: %s from %d of %d view(s) -> %d faces", request.sku,
                 info["method"], len(used), len(views), mesh.n_faces)
        # Every view's camera goes back unchanged: texturing still projects the unused photos.
        return DenseMesh(mesh=mesh, cameras=[v.camera for v in views], info=info)


# --- masks and their signed distance ---------------------------------------------------------

def _check_mask(view) -> np.ndarray:
    mask = np.asarray(view.mask)
    if mask.ndim == 3:
        mask = mask[..., -1] if mask.shape[2] in (2, 4) else mask[..., 0]
    mask = mask > (127 if mask.dtype == np.uint8 else 0)
    cam: Camera = view.camera
    if mask.shape != (cam.height, cam.width):
        raise InputError(
            f"mask of view {view.label!r} is {mask.shape[1]}x{mask.shape[0]} px but its camera "
            f"is {cam.width}x{cam.height}",
            "re-run ingest so masks and cameras come from the same crop")
    if not mask.any():
        raise InputError(f"mask of view {view.label!r} is empty: no object found in the photo",
                         "use a photo where the product stands out from the background")
    return mask


def mask_sdf(mask: np.ndarray) -> np.ndarray:
    """Signed distance to the silhouette edge in pixels, positive inside, zero on the edge.

    Pixel centres sit half a pixel from the edge, hence the 0.5 offsets.
    """
    import cv2

    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(m > 0, inside - 0.5, 0.5 - outside).astype(np.float32)


def _sample(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup at pixel coordinates (centres at integers), edge values replicated."""
    import cv2

    n = len(u)
    cols = 1024
    rows = max(1, -(-n // cols))
    pad = rows * cols - n
    mu = np.pad(u.astype(np.float32), (0, pad)).reshape(rows, cols)
    mv = np.pad(v.astype(np.float32), (0, pad)).reshape(rows, cols)
    out = cv2.remap(img, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1)[:n]


def _focal(cam: Camera) -> float:
    return 0.5 * float(cam.K[0, 0] + cam.K[1, 1])


def view_field(cam: Camera, sdf: np.ndarray, points: np.ndarray,
               extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One view's signed field at world points (world units, positive inside the view's cone).

    Points projecting outside the image count as outside, by their pixel distance to the frame.
    Returns the field and the depths; ``extra`` (another per-pixel map) is sampled too when given.
    """
    uv, depth = cam.project(points)
    u = np.clip(uv[:, 0], -0.5, cam.width - 0.5)
    v = np.clip(uv[:, 1], -0.5, cam.height - 0.5)
    off = np.hypot(uv[:, 0] - u, uv[:, 1] - v)
    s = _sample(sdf, u, v)
    s = np.where(off > 0, np.minimum(s, 0.0) - off, s)
    val = s * np.maximum(depth, 1e-6) / _focal(cam)
    val = np.where(depth > 1e-6, val, _FAR)
    if extra is not None:
        return val, depth, _sample(extra, u, v)  # type: ignore[return-value]
    return val, depth


# --- grids and meshing ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Grid:
    lo: np.ndarray        # (3,) first voxel centre, in the grid frame
    spacing: np.ndarray   # (3,)
    shape: tuple[int, int, int]

    @classmethod
    def over(cls, lo: np.ndarray, hi: np.ndarray, res: int,
             min_spacing: np.ndarray | None = None) -> _Grid:
        ext = np.maximum(hi - lo, 1e-9)
        h = np.full(3, ext.max() / (res - 1))
        if min_spacing is not None:
            h = np.minimum(h, min_spacing)
        shape = tuple(int(x) for x in np.ceil(ext / h).astype(int) + 1)
        return cls(np.asarray(lo, float), h, shape)  # type: ignore[arg-type]

    def evaluate(self, field: Callable[[np.ndarray], np.ndarray],
                 to_world: np.ndarray | None = None) -> np.ndarray:
        """The field at every voxel centre, (nx, ny, nz) float32, in slabs to bound memory."""
        nx, ny, nz = self.shape
        xs, ys, zs = (self.lo[i] + np.arange(n) * self.spacing[i] for i, n in enumerate(self.shape))
        vol = np.empty(self.shape, np.float32)
        step = max(1, _CHUNK // (ny * nz))
        yy, zz = np.meshgrid(ys, zs, indexing="ij")
        for i0 in range(0, nx, step):
            xi = xs[i0:i0 + step]
            pts = np.empty((len(xi), ny, nz, 3))
            pts[..., 0] = xi[:, None, None]
            pts[..., 1] = yy[None]
            pts[..., 2] = zz[None]
            pts = pts.reshape(-1, 3)
            if to_world is not None:
                pts = pts @ to_world[:3, :3].T + to_world[:3, 3]
            vol[i0:i0 + step] = field(pts).reshape(len(xi), ny, nz)
        return vol


def _march(vol: np.ndarray, grid: _Grid, to_world: np.ndarray | None) -> MeshData:
    """Zero level of ``vol`` (positive inside) as a closed mesh in world coordinates."""
    from skimage.measure import marching_cubes

    padded = np.pad(vol, 1, constant_values=min(float(vol.min()), -1e-3))
    verts, faces, _, _ = marching_cubes(padded, level=0.0, spacing=tuple(grid.spacing),
                                        allow_degenerate=False)
    verts = verts.astype(np.float64) + (grid.lo - grid.spacing)
    if to_world is not None:
        verts = verts @ to_world[:3, :3].T + to_world[:3, 3]
    return MeshData(verts, faces.astype(np.int64))


def signed_volume(mesh: MeshData) -> float:
    return closed.signed_volume(mesh.vertices, mesh.faces)


def _finish(mesh: MeshData, config: SilhouetteConfig, method: str) -> tuple[MeshData, dict]:
    if mesh.n_faces == 0:
        raise ProcessingError(f"{method} produced no surface",
                              "check the masks and the view labels")
    pieces = 1
    if config.keep_largest:
        mesh, pieces = largest_component(mesh)
    vol = signed_volume(mesh)
    if vol < 0:
        mesh = mesh.replace(faces=mesh.faces[:, ::-1].copy())
        vol = -vol
    if not np.isfinite(mesh.vertices).all():
        raise ProcessingError(f"{method} produced non-finite vertices",
                              "report this SKU; the cameras may be degenerate")
    return mesh, {"method": method, "components": pieces, "volume": vol,
                  "watertight": is_closed(mesh.faces)}


# --- two or more views: visual hull ---------------------------------------------------------

def visual_hull(cameras: list[Camera], masks: list[np.ndarray],
                config: SilhouetteConfig, dims_m: tuple = (None, None, None)
                ) -> tuple[MeshData, dict]:
    """Carve a grid with every view's silhouette cone; a coarse pass finds the object's box."""
    sdfs = [mask_sdf(m) for m in masks]

    def field(pts: np.ndarray) -> np.ndarray:
        out = np.full(len(pts), np.inf, np.float32)
        for cam, sdf in zip(cameras, sdfs):
            out = np.minimum(out, view_field(cam, sdf, pts)[0])
        return out

    # The object was normalised to ~unit size near the origin; look well beyond that but stay
    # in front of every camera.
    half = 0.6 * min(float(np.linalg.norm(c.position)) for c in cameras)
    coarse = _Grid.over(np.full(3, -half), np.full(3, half), config.coarse_resolution)
    vol = coarse.evaluate(field)
    near = vol > -2.0 * coarse.spacing.max()
    if not (vol > 0).any():
        raise ProcessingError(
            f"the {len(cameras)} silhouettes do not intersect in space: no point projects "
            "inside every mask",
            "check the view labels (front/left/...) and that all photos show the same product")
    idx = np.argwhere(near)
    lo = coarse.lo + (idx.min(0) - 1) * coarse.spacing
    hi = coarse.lo + (idx.max(0) + 1) * coarse.spacing
    fine = _Grid.over(lo, hi, config.resolution)
    vol = fine.evaluate(field)
    trim = ground_trim(vol, fine, cameras, dims_m)
    mesh, info = _finish(_march(vol, fine, None), config, "visual_hull")
    info["grid"] = "x".join(str(n) for n in fine.shape)
    info["ground_trim"] = trim
    return mesh, info


def ground_trim(vol: np.ndarray, grid: _Grid, cameras: list[Camera],
                dims_m: tuple) -> float:
    """Cut away the wedge a visual hull grows under a product shot only from above.

    Why: no silhouette constrains the hull below the product's base when every camera looks
    down, so the hull ends in a wedge (about half the footprint x tan(elevation) deep) and the
    asset comes out too tall. With the catalog's height and at least one horizontal dimension,
    the horizontal extents (which the wedge does not change) fix the scale, and everything more
    than the catalog height below the hull's top is carved away. Modifies ``vol`` in place;
    returns the trimmed depth in grid units (0 when nothing was trimmed).
    """
    width, height, depth = (dims_m + (None, None, None))[:3]
    if not height or not (width or depth):
        return 0.0
    if min(c.elevation_deg for c in cameras) < 2.0:
        return 0.0  # a view from the horizon or below sees the base: nothing to trim
    inside = vol > 0
    if not inside.any():
        return 0.0
    occ = [np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != i)))
           for i in range(3)]
    ext = [(o.max() - o.min()) * grid.spacing[i] for i, o in enumerate(occ)]
    ratios = [d / e for d, e in ((width, ext[0]), (depth, ext[2])) if d and e > 0]
    if not ratios:
        return 0.0
    scale = float(np.exp(np.mean(np.log(ratios))))          # metres per grid unit
    y_top = grid.lo[1] + occ[1].max() * grid.spacing[1]
    y_bottom = grid.lo[1] + occ[1].min() * grid.spacing[1]
    y_cut = y_top - height / scale
    if y_cut <= y_bottom + grid.spacing[1]:
        return 0.0
    ys = grid.lo[1] + np.arange(vol.shape[1]) * grid.spacing[1]
    np.minimum(vol, (ys - y_cut).astype(np.float32)[None, :, None], out=vol)
    return float(y_cut - y_bottom)


# --- one view: inflation --------------------------------------------------------------------

def inflate(camera: Camera, mask: np.ndarray, config: SilhouetteConfig) -> tuple[MeshData, dict]:
    """A closed, rounded volume whose silhouette from ``camera`` is ``mask``.

    The depth profile is a circle-like rounding of the mask's distance transform
    (``h = k * sqrt(d (2R - d))``, R the inscribed radius: a disc becomes an ellipsoid of depth
    ``k`` times its width), mirrored front and back around the plane through the world origin
    facing the camera; built in the camera frame, then moved to world with the camera.
    """
    sdf = mask_sdf(mask)
    f = _focal(camera)
    V = camera.world_to_camera
    d0 = float(-V[2, 3])
    if d0 <= 1e-6:
        raise InputError(f"camera of view {camera.label!r} does not look at the object "
                         "(world origin behind it)", "re-run ingest to rebuild the cameras")
    d_world = np.maximum(sdf, 0.0) * d0 / f
    R = float(d_world.max())
    half_depth = (config.inflation * np.sqrt(np.maximum(d_world * (2 * R - d_world), 0.0)))
    half_depth = half_depth.astype(np.float32)
    hmax = float(half_depth.max())

    def field(pts: np.ndarray) -> np.ndarray:
        s, depth, h = view_field(camera, sdf, pts, extra=half_depth)
        return np.minimum(s, h - np.abs(depth - d0)).astype(np.float32)

    lo, hi = _camera_box(camera, mask, d0, hmax)
    res = config.resolution
    # Keep >= 8 voxels across the thickness however flat the inflation.
    min_spacing = np.array([np.inf, np.inf, max(2 * hmax / 8, 1e-6)])
    grid = _Grid.over(lo, hi, res, min_spacing=min_spacing)
    to_world = np.linalg.inv(V)
    vol = grid.evaluate(field, to_world)
    mesh, info = _finish(_march(vol, grid, to_world), config, "inflate")
    info["grid"] = "x".join(str(n) for n in grid.shape)
    return mesh, info


def _camera_box(camera: Camera, mask: np.ndarray, d0: float,
                hmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space box (x right, y up, z = -depth) around the back-projected mask."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    u = np.array([cols[0] - 1.5, cols[-1] + 1.5])
    v = np.array([rows[0] - 1.5, rows[-1] + 1.5])
    margin = 0.05 * hmax + 1e-3
    depths = np.array([max(d0 - hmax - margin, 1e-3), d0 + hmax + margin])
    K = camera.K
    uu, vv, dd = (a.ravel() for a in np.meshgrid(u, v, depths, indexing="ij"))
    ys = -(vv - K[1, 2]) / K[1, 1] * dd
    xs = (uu - K[0, 2] - K[0, 1] * (vv - K[1, 2]) / K[1, 1]) / K[0, 0] * dd
    lo = np.array([xs.min(), ys.min(), -depths.max()])
    hi = np.array([xs.max(), ys.max(), -depths.min()])
    if not np.isfinite(lo).all() or math.isclose(float((hi - lo).min()), 0.0):
        raise ProcessingError("inflate: degenerate camera box", "check the view's camera")
    return lo, hi
