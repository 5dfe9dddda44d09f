"""Silhouette fields on voxel grids: the visual hull's building blocks.

Each view's field is the mask's signed distance (distance transform inside minus outside, in
pixels) sampled bilinearly at the projection of a world point and scaled to world units by
depth / focal length: positive inside the view's silhouette cone, roughly the world distance to
its surface. The minimum over views is the visual hull's field; its zero level, meshed by
marching cubes, is smooth at sub-pixel precision instead of stair-stepped by the pixels.

The silhouette backend carves with these at full resolution; camera estimation carves with the
same code on small grids and low-resolution masks, many times per SKU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.camera import Camera
from ..core.mesh import MeshData

#: Field value for points no view can vouch for (behind a camera): far outside.
FAR = -1e3
#: Points evaluated per batch; bounds memory at ~100 MB whatever the resolution.
CHUNK = 1 << 20


def mask_sdf(mask: np.ndarray) -> np.ndarray:
    """Signed distance to the silhouette edge in pixels, positive inside, zero on the edge.

    Pixel centres sit half a pixel from the edge, hence the 0.5 offsets.
    """
    import cv2

    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(m > 0, inside - 0.5, 0.5 - outside).astype(np.float32)


def sample(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
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


def focal(cam: Camera) -> float:
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
    s = sample(sdf, u, v)
    s = np.where(off > 0, np.minimum(s, 0.0) - off, s)
    val = s * np.maximum(depth, 1e-6) / focal(cam)
    val = np.where(depth > 1e-6, val, FAR)
    if extra is not None:
        return val, depth, sample(extra, u, v)  # type: ignore[return-value]
    return val, depth


@dataclass(frozen=True)
class Grid:
    lo: np.ndarray        # (3,) first voxel centre, in the grid frame
    spacing: np.ndarray   # (3,)
    shape: tuple[int, int, int]

    @classmethod
    def over(cls, lo: np.ndarray, hi: np.ndarray, res: int,
             min_spacing: np.ndarray | None = None) -> Grid:
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
        step = max(1, CHUNK // (ny * nz))
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


def march(vol: np.ndarray, grid: Grid, to_world: np.ndarray | None) -> MeshData:
    """Zero level of ``vol`` (positive inside) as a closed mesh in world coordinates."""
    from skimage.measure import marching_cubes

    padded = np.pad(vol, 1, constant_values=min(float(vol.min()), -1e-3))
    verts, faces, _, _ = marching_cubes(padded, level=0.0, spacing=tuple(grid.spacing),
                                        allow_degenerate=False)
    verts = verts.astype(np.float64) + (grid.lo - grid.spacing)
    if to_world is not None:
        verts = verts @ to_world[:3, :3].T + to_world[:3, 3]
    return MeshData(verts, faces.astype(np.int64))
