"""numba kernels of the per-texel work of baking and texturing (``geometry.texture_sampling``,
``geometry.tangents``, ``geometry.dilation``), at module level so numba's on-disk cache holds
them. Each is one serial pass over the texels: the numpy formulations they replace built a
dozen (T, 3) temporaries per step, which at 2048 px (2-3M texels) cost more than the
arithmetic.
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@numba.njit(cache=True, nogil=True, inline="always")
def _uv_bary(uv, faces, f, px, py, out, i):
    """Row ``i`` of ``out``: barycentric coordinates of UV point (px, py) in face ``f``."""
    ax, ay = uv[faces[f, 0], 0], uv[faces[f, 0], 1]
    bx, by = uv[faces[f, 1], 0], uv[faces[f, 1], 1]
    cx, cy = uv[faces[f, 2], 0], uv[faces[f, 2], 1]
    v0x, v0y = bx - ax, by - ay
    v1x, v1y = cx - ax, cy - ay
    v2x, v2y = px - ax, py - ay
    den = v0x * v1y - v1x * v0y
    if abs(den) < 1e-30:
        den = 1e-30
    l1 = (v2x * v1y - v1x * v2y) / den
    l2 = (v0x * v2y - v2x * v0y) / den
    l0 = max(1.0 - l1 - l2, 0.0)
    l1 = max(l1, 0.0)
    l2 = max(l2, 0.0)
    s = max(l0 + l1 + l2, 1e-12)
    out[i, 0] = l0 / s
    out[i, 1] = l1 / s
    out[i, 2] = l2 / s


@jit
def uv_barycentric(uv, faces, fids, tuv):
    """Barycentric coordinates (T, 3) of UV points ``tuv`` in faces ``fids`` (clamped to the
    face and renormalised), as ``texture_sampling.uv_barycentric`` defines them."""
    t = len(fids)
    out = np.empty((t, 3))
    for i in range(t):
        _uv_bary(uv, faces, fids[i], tuv[i, 0], tuv[i, 1], out, i)
    return out


@jit
def texel_barycentric(uv, faces, fids, index, size):
    """``uv_barycentric`` at the centres of texels ``index`` (flat, row 0 at the top) of a
    ``size`` px atlas, as ``texture_sampling.texel_uv`` places them: no (T, 2) array of UVs."""
    t = len(fids)
    out = np.empty((t, 3))
    for i in range(t):
        row, col = index[i] // size, index[i] % size
        _uv_bary(uv, faces, fids[i], (col + 0.5) / size, 1.0 - (row + 0.5) / size, out, i)
    return out


@jit
def _unit3(x, y, z):
    n = np.sqrt(x * x + y * y + z * z)
    if n > 1e-30:
        return x / n, y / n, z / n
    return x, y, z


@numba.njit(cache=True, nogil=True, inline="always")
def _interpolate(values, faces, f, bary, i):
    """The per-vertex ``values`` (V, 3) of face ``f`` at barycentric point ``bary[i]``."""
    x = y = z = 0.0
    for k in range(3):
        v = faces[f, k]
        w = bary[i, k]
        x += w * values[v, 0]
        y += w * values[v, 1]
        z += w * values[v, 2]
    return x, y, z


@jit
def surface_frames(vertices, faces, uv, normals, tangents, fids, bary):
    """Per point: position, unit normal, unit tangent, unit bitangent (interpolated
    cross(N, T) * w) and whether the face's UV area is (nearly) zero."""
    t = len(fids)
    pos = np.empty((t, 3))
    nrm = np.empty((t, 3))
    tan = np.empty((t, 3))
    bit = np.empty((t, 3))
    degenerate = np.empty(t, np.bool_)
    for i in range(t):
        f = fids[i]
        px, py, pz = _interpolate(vertices, faces, f, bary, i)
        nx = ny = nz = tx = ty = tz = bx = by = bz = 0.0
        for k in range(3):
            v = faces[f, k]
            w = bary[i, k]
            n0, n1, n2 = normals[v, 0], normals[v, 1], normals[v, 2]
            t0, t1, t2, hw = tangents[v, 0], tangents[v, 1], tangents[v, 2], tangents[v, 3]
            nx += w * n0
            ny += w * n1
            nz += w * n2
            tx += w * t0
            ty += w * t1
            tz += w * t2
            bx += w * (n1 * t2 - n2 * t1) * hw
            by += w * (n2 * t0 - n0 * t2) * hw
            bz += w * (n0 * t1 - n1 * t0) * hw
        pos[i, 0], pos[i, 1], pos[i, 2] = px, py, pz
        nrm[i, 0], nrm[i, 1], nrm[i, 2] = _unit3(nx, ny, nz)
        tan[i, 0], tan[i, 1], tan[i, 2] = _unit3(tx, ty, tz)
        bit[i, 0], bit[i, 1], bit[i, 2] = _unit3(bx, by, bz)
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        d1x, d1y = uv[b, 0] - uv[a, 0], uv[b, 1] - uv[a, 1]
        d2x, d2y = uv[c, 0] - uv[a, 0], uv[c, 1] - uv[a, 1]
        degenerate[i] = abs(d1x * d2y - d2x * d1y) < 1e-14
    return pos, nrm, tan, bit, degenerate


@jit
def encode_tangent_space(tangent, bitangent, normal, degenerate, target):
    """m with normalize([T B N] m) == target; unit, z >= 0; (0, 0, 1) where the frame is
    singular or the face's UVs are degenerate (Cramer's rule on the 3x3 frame)."""
    t = len(target)
    out = np.empty((t, 3))
    for i in range(t):
        ax, ay, az = tangent[i, 0], tangent[i, 1], tangent[i, 2]
        bx, by, bz = bitangent[i, 0], bitangent[i, 1], bitangent[i, 2]
        cx, cy, cz = normal[i, 0], normal[i, 1], normal[i, 2]
        # columns T, B, N: det = T . (B x N)
        det = ax * (by * cz - bz * cy) - ay * (bx * cz - bz * cx) + az * (bx * cy - by * cx)
        if degenerate[i] or abs(det) <= 1e-6:
            out[i, 0], out[i, 1], out[i, 2] = 0.0, 0.0, 1.0
            continue
        rx, ry, rz = target[i, 0], target[i, 1], target[i, 2]
        # x = det([r B N]) / det, y = det([T r N]) / det, z = det([T B r]) / det
        mx = (rx * (by * cz - bz * cy) - ry * (bx * cz - bz * cx) + rz * (bx * cy - by * cx))
        my = (ax * (ry * cz - rz * cy) - ay * (rx * cz - rz * cx) + az * (rx * cy - ry * cx))
        mz = (ax * (by * rz - bz * ry) - ay * (bx * rz - bz * rx) + az * (bx * ry - by * rx))
        mx, my, mz = _unit3(mx / det, my / det, mz / det)
        mz = max(mz, 0.0)
        n = np.sqrt(mx * mx + my * my + mz * mz)
        if n > 1e-30:
            mx, my, mz = mx / n, my / n, mz / n
        out[i, 0], out[i, 1], out[i, 2] = mx, my, mz
    return out


@jit
def dilate(img, ok, iterations):
    """Grow ``img`` (H, W, C) float32 ``iterations`` texels past ``ok`` in place: each round,
    every invalid texel with a valid 8-neighbour takes the mean of those neighbours (values as
    they were at the start of the round). Only the front of the grown region is visited.
    Returns the grown mask."""
    h, w, c = img.shape
    INF = np.int32(1 << 30)
    gen = np.full((h, w), INF, np.int32)   # round in which a texel became valid (0: given)
    front = np.empty(h * w, np.int32)      # flat indices
    nf = 0
    for y in range(h):
        for x in range(w):
            if ok[y, x]:
                gen[y, x] = 0
    for y in range(h):
        for x in range(w):
            if gen[y, x] != 0:
                continue
            edge = False
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    if gen[yy, xx] == INF:
                        edge = True
            if edge:
                front[nf] = y * w + x
                nf += 1
    cand = np.empty(h * w, np.int32)
    acc = np.empty(c, np.float64)
    for it in range(1, iterations + 1):
        nc = 0
        for i in range(nf):  # invalid neighbours of the last front, each once
            y, x = front[i] // w, front[i] % w
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    if gen[yy, xx] == INF:
                        gen[yy, xx] = -it    # queued this round
                        cand[nc] = yy * w + xx
                        nc += 1
        if nc == 0:
            break
        for i in range(nc):
            y, x = cand[i] // w, cand[i] % w
            for k in range(c):
                acc[k] = 0.0
            count = 0
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    g = gen[yy, xx]
                    if 0 <= g < it:
                        count += 1
                        for k in range(c):
                            acc[k] += img[yy, xx, k]
            for k in range(c):
                img[y, x, k] = acc[k] / count
        for i in range(nc):
            gen[cand[i] // w, cand[i] % w] = it
            front[i] = cand[i]
        nf = nc
    grown = np.empty((h, w), np.bool_)
    for y in range(h):
        for x in range(w):
            grown[y, x] = gen[y, x] != INF
    return grown


@jit
def scatter(index, values, size):
    """An (S, S, C) float32 image holding float32 ``values`` (T, C) at flat ``index``, zero
    elsewhere, and its (S, S) mask of set texels."""
    c = values.shape[1]
    img = np.zeros((size * size, c), np.float32)
    ok = np.zeros(size * size, np.bool_)
    for i in range(len(index)):
        j = index[i]
        for k in range(c):
            img[j, k] = values[i, k]
        ok[j] = True
    return img.reshape(size, size, c), ok.reshape(size, size)


@jit
def fill_invalid(img, ok, background):
    """``img[~ok] = background`` in place, one pass."""
    h, w, c = img.shape
    for y in range(h):
        for x in range(w):
            if not ok[y, x]:
                for k in range(c):
                    img[y, x, k] = background[k]


@jit
def encode_normal_ao(img):
    """(S, S, 4) float32 (tangent-space normal xyz, AO) -> (normal map (S, S, 3) uint8 from
    the unit normal as round((n * 0.5 + 0.5) * 255), AO (S, S) float32 clipped to 0-1, AO
    (S, S) uint8). In float32 throughout, in the order of the numpy formulation it replaced
    (``normals.unit``, then ``normal_bake.to_rgb8``), except for exact halves of the normal's
    codes: they round up on even rows and down on odd rows.

    Why the halves alternate: a component 0 (the flat normal (0, 0, 1), the commonest value
    of a bake: every texel where the dense surface lies along the low one) encodes to 127.5,
    which one rounding direction turns into a tilt of 0.32 degrees everywhere; alternating
    rows (127, 128, 127, ...) average to the exact value under the viewer's bilinear filter
    and mipmaps, and keep each row one run of bytes for the PNG's run-length deflate (a
    checkerboard would halve the tilt again but triple the PNG of a flat map)."""
    h, w, _ = img.shape
    normal = np.empty((h, w, 3), np.uint8)
    ao = np.empty((h, w), np.float32)
    ao8 = np.empty((h, w), np.uint8)
    half, full, zero = np.float32(0.5), np.float32(255.0), np.float32(0.0)
    one = np.float32(1.0)
    for y in range(h):
        up = y % 2 == 0
        for x in range(w):
            nx, ny, nz = img[y, x, 0], img[y, x, 1], img[y, x, 2]
            n = np.sqrt(nx * nx + ny * ny + nz * nz)
            if not n > 1e-30:
                n = one
            for k, v in enumerate((nx / n, ny / n, nz / n)):
                s = (v * half + half) * full
                f = np.float32(np.floor(s))
                if s - f == half:
                    e = f + one if up else f
                else:
                    e = np.float32(np.rint(s))
                normal[y, x, k] = np.uint8(min(max(e, zero), full))
            a = min(max(img[y, x, 3], zero), one)
            ao[y, x] = a
            ao8[y, x] = np.uint8(np.rint(a * full))
    return normal, ao, ao8


@jit
def raster_texels(position, normal, face):
    """The covered texels of a UV raster as GL reads it (row 0 at the bottom; ``face`` = id
    + 1, 0 = empty): (flat index with row 0 at the top, in image order; position as float64;
    the normal scaled to unit length in float64 (by at least 1e-12); face id), as
    ``projection.TexelGrid.from_raster`` defines them."""
    s = face.shape[0]
    count = 0
    for y in range(s):
        for x in range(s):
            if face[y, x] > 0:
                count += 1
    index = np.empty(count, np.int64)
    pos = np.empty((count, 3))
    nrm = np.empty((count, 3))
    fid = np.empty(count, np.int64)
    i = 0
    for r in range(s):
        y = s - 1 - r
        for x in range(s):
            if face[y, x] <= 0:
                continue
            index[i] = r * s + x
            nx, ny, nz = (np.float64(normal[y, x, 0]), np.float64(normal[y, x, 1]),
                          np.float64(normal[y, x, 2]))
            n = max(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
            for k in range(3):
                pos[i, k] = position[y, x, k]
            nrm[i, 0], nrm[i, 1], nrm[i, 2] = nx / n, ny / n, nz / n
            fid[i] = face[y, x] - 1
            i += 1
    return index, pos, nrm, fid


@jit
def texel_points(vertices, faces, fids, bary, normals, per_face):
    """(position (T, 3), unit normal (T, 3)) at barycentric points ``bary`` of faces ``fids``:
    the vertices interpolated, and ``normals`` per vertex interpolated (``per_face`` False)
    or per face taken as they are, scaled to unit length (a zero normal stays zero)."""
    t = len(fids)
    pos = np.empty((t, 3))
    nrm = np.empty((t, 3))
    for i in range(t):
        f = fids[i]
        px, py, pz = _interpolate(vertices, faces, f, bary, i)
        if per_face:
            nx, ny, nz = normals[f, 0], normals[f, 1], normals[f, 2]
        else:
            nx, ny, nz = _interpolate(normals, faces, f, bary, i)
        n = max(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
        pos[i, 0], pos[i, 1], pos[i, 2] = px, py, pz
        nrm[i, 0], nrm[i, 1], nrm[i, 2] = nx / n, ny / n, nz / n
    return pos, nrm
