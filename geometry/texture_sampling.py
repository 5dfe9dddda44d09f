"""Reading images and textures at continuous coordinates, and where texels lie on a mesh.

Pixel coordinates put pixel centres at integers, origin top-left, v down (OpenCV's and the
cameras' convention). UV coordinates are glTF-style 0-1 with V up, as ``MeshData.uv`` stores
them; texel (row, col) of an S x S texture has its centre at ((col + 0.5) / S, 1 - (row + 0.5)
/ S).
"""

from __future__ import annotations

import numpy as np

from ..core.appearance import CLAMP, MIRROR
from ..core.mesh import MeshData


def sample_nearest(image: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Values of ``image`` at the nearest pixel centre of each (u, v); pix must be inside."""
    h, w = image.shape[:2]
    x = np.clip(np.rint(pix[:, 0]).astype(np.int64), 0, w - 1)
    y = np.clip(np.rint(pix[:, 1]).astype(np.int64), 0, h - 1)
    return image[y, x]


def sample_bilinear(image: np.ndarray, pix: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Bilinear samples of an (H, W, C) image at (u, v) pixel coordinates (centres = ints),
    clamped to the edge, computed in float64 and returned as ``dtype``."""
    h, w = image.shape[:2]
    x = np.clip(pix[:, 0], 0, w - 1)
    y = np.clip(pix[:, 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2) if w > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2) if h > 1 else np.zeros(len(y), np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(dtype)


def sample_bilinear_uv(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup at UV (V up) with clamp-to-edge, as a viewer samples a texture
    (float64)."""
    h, w = image.shape[:2]
    pix = np.stack([uv[:, 0] * w - 0.5, (1.0 - uv[:, 1]) * h - 0.5], axis=1)
    return sample_bilinear(image, pix, np.float64)


def wrap(coord: np.ndarray, mode: int) -> np.ndarray:
    """Texture coordinates folded into [0, 1] by a glTF (OpenGL) sampler wrap mode."""
    if mode == CLAMP:
        return np.clip(coord, 0.0, 1.0)
    if mode == MIRROR:
        f = np.mod(coord, 2.0)
        return np.where(f > 1.0, 2.0 - f, f)
    return np.mod(coord, 1.0)


def sample_wrapped(image: np.ndarray, uv: np.ndarray, wrap_s: int, wrap_t: int,
                   nearest: bool = False) -> np.ndarray:
    """(T, C) float32 samples of ``image`` (H, W, C) at texture coordinates ``uv`` with t down
    (glTF's texcoords), as a glTF sampler reads them: each axis wrapped by its mode (REPEAT
    reaches across the edge for its bilinear neighbour), bilinear unless ``nearest``."""
    h, w = image.shape[:2]
    x = wrap(uv[:, 0], wrap_s) * w - 0.5
    y = wrap(uv[:, 1], wrap_t) * h - 0.5
    if nearest:
        return sample_nearest(image, np.stack([x, y], axis=1)).astype(np.float32)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None].astype(np.float32), (y - y0)[:, None].astype(np.float32)

    def index(i: np.ndarray, n: int, mode: int) -> np.ndarray:
        return np.clip(i, 0, n - 1) if mode in (CLAMP, MIRROR) else np.mod(i, n)

    xa, xb = index(x0, w, wrap_s), index(x0 + 1, w, wrap_s)
    ya, yb = index(y0, h, wrap_t), index(y0 + 1, h, wrap_t)
    return ((image[ya, xa] * (1 - fx) + image[ya, xb] * fx) * (1 - fy)
            + (image[yb, xa] * (1 - fx) + image[yb, xb] * fx) * fy).astype(np.float32)


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


def texel_uv(index: np.ndarray, size: int) -> np.ndarray:
    """UV (V up) of texel centres given flat indices (row 0 = top of the image)."""
    row, col = np.divmod(index, size)
    return np.stack([(col + 0.5) / size, 1.0 - (row + 0.5) / size], axis=1)


def uv_barycentric(mesh: MeshData, faces: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (T, 3) of UV points in the given faces' UV triangles (clamped
    to the face, renormalised; one numba pass)."""
    from ._texel_numba import uv_barycentric as kernel

    return kernel(np.ascontiguousarray(mesh.uv, np.float64),
                  np.ascontiguousarray(mesh.faces, np.int64),
                  np.ascontiguousarray(faces, np.int64), np.ascontiguousarray(uv, np.float64))


def texel_barycentric(mesh: MeshData, faces: np.ndarray, index: np.ndarray, size: int
                      ) -> np.ndarray:
    """``uv_barycentric(mesh, faces, texel_uv(index, size))`` in one numba pass (the same
    values; the bake's 2-3M texels need no UV array)."""
    from ._texel_numba import texel_barycentric as kernel

    return kernel(np.ascontiguousarray(mesh.uv, np.float64),
                  np.ascontiguousarray(mesh.faces, np.int64),
                  np.ascontiguousarray(faces, np.int64), np.ascontiguousarray(index, np.int64),
                  int(size))


def texel_surface(mesh: MeshData, face_raster: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The covered texels of a UV raster of face ids (``Renderer.rasterize_uv_faces``: (S, S),
    row 0 at the top, -1 where empty) as ``Renderer.rasterize_uv_texels`` gives them: (flat
    index (T,) int64 in image order; position (T, 3) float64 at the texel centre; unit
    normal (T, 3) float64, interpolated from ``mesh.vertex_normals`` when present, else the
    face's geometric normal (zero for a degenerate face); face (T,) int64), computed in
    float64 from the texel centres' barycentric coordinates (``texel_barycentric``).

    Why not the GPU's interpolation: reading two float32 attachments back (128 MB at 2048 px)
    and gathering them costs the texture stage 3-5 times what one integer attachment and two
    numba passes do."""
    from ._texel_numba import texel_points

    size = face_raster.shape[0]
    flat = face_raster.reshape(-1)
    index = np.flatnonzero(flat >= 0)
    fids = flat[index].astype(np.int64)
    bary = texel_barycentric(mesh, fids, index, size)
    per_face = mesh.vertex_normals is None
    if per_face:
        from .derived import face_normals

        normals = face_normals(mesh)
    else:
        normals = mesh.vertex_normals
    pos, nrm = texel_points(np.ascontiguousarray(mesh.vertices, np.float64),
                            np.ascontiguousarray(mesh.faces, np.int64), fids, bary,
                            np.ascontiguousarray(normals, np.float64), per_face)
    return index, pos, nrm, fids


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
