"""numba kernels of ``algorithms.ambient_occlusion``, at module level so numba's on-disk cache
holds them."""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, error_model="numpy")

GOLDEN = 0.6180339887498949


@jit
def hemisphere_rays(points, normals, k, eps, jitter, out):
    """Fill ``out`` (len(points) * k, 6) float32 with rays (origin, direction): ``k``
    cosine-weighted directions over each normal's hemisphere, stratified in both dimensions (a
    Fibonacci spiral: the j-th ray's height from (j + a) / k, its azimuth from j times the
    golden ratio + b, with (a, b) = ``jitter[i]`` per point), from the point lifted by ``eps``
    along its normal."""
    for i in range(len(points)):
        nx, ny, nz = normals[i, 0], normals[i, 1], normals[i, 2]
        # a tangent: cross(n, the axis least aligned with n)
        ax, ay, az = abs(nx), abs(ny), abs(nz)
        if ax <= ay and ax <= az:
            tx, ty, tz = 0.0, nz, -ny
        elif ay <= az:
            tx, ty, tz = -nz, 0.0, nx
        else:
            tx, ty, tz = ny, -nx, 0.0
        tn = np.sqrt(tx * tx + ty * ty + tz * tz)
        tx, ty, tz = tx / tn, ty / tn, tz / tn
        bx, by, bz = ny * tz - nz * ty, nz * tx - nx * tz, nx * ty - ny * tx
        ox = points[i, 0] + eps * nx
        oy = points[i, 1] + eps * ny
        oz = points[i, 2] + eps * nz
        a, b = jitter[i, 0], jitter[i, 1]
        for j in range(k):
            u1 = (j + a) / k
            phi = 2.0 * np.pi * ((j * GOLDEN + b) % 1.0)
            r = np.sqrt(u1)
            lx, ly, lz = r * np.cos(phi), r * np.sin(phi), np.sqrt(max(1.0 - u1, 0.0))
            row = i * k + j
            out[row, 0] = ox
            out[row, 1] = oy
            out[row, 2] = oz
            out[row, 3] = lx * tx + ly * bx + lz * nx
            out[row, 4] = lx * ty + ly * by + lz * ny
            out[row, 5] = lx * tz + ly * bz + lz * nz


@jit
def lattice_nodes(texel_of, size, stride):
    """(n, n) row of the covered texel at each node of the sample lattice (texel
    (o + stride * a, o + stride * b), o = stride // 2), -1 where that texel is not covered.
    ``texel_of`` maps a flat texel index to its row among the covered texels (-1: empty)."""
    o = stride // 2
    n = (size - o + stride - 1) // stride
    out = np.full((n, n), -1, np.int64)
    for a in range(n):
        for b in range(n):
            out[a, b] = texel_of[(o + stride * a) * size + o + stride * b]
    return out


@jit
def upsample(index, chart, size, stride, node_row, node_value):
    """Per covered texel (flat ``index``, chart id ``chart``): the bilinear interpolation of
    the values at the four lattice nodes around it, over the nodes that were traced and lie
    in the same chart (weights renormalised; their plain mean where those weights are all
    zero). Returns (values, orphan): orphan texels have no such node and get 0."""
    o = stride // 2
    n = node_row.shape[0]
    t = len(index)
    values = np.zeros(t)
    orphan = np.zeros(t, np.bool_)
    for i in range(t):
        r, c = index[i] // size, index[i] % size
        fa = (r - o) / stride
        fb = (c - o) / stride
        a0 = int(np.floor(fa))
        b0 = int(np.floor(fb))
        wa, wb = fa - a0, fb - b0
        acc = wsum = plain = 0.0
        count = 0
        for da in range(2):
            a = a0 + da
            if a < 0 or a >= n:
                continue
            w1 = wa if da else 1.0 - wa
            for db in range(2):
                b = b0 + db
                if b < 0 or b >= n:
                    continue
                row = node_row[a, b]
                if row < 0 or chart[row] != chart[i]:
                    continue
                w = w1 * (wb if db else 1.0 - wb)
                acc += w * node_value[a, b]
                wsum += w
                plain += node_value[a, b]
                count += 1
        if wsum > 1e-9:
            values[i] = acc / wsum
        elif count > 0:
            values[i] = plain / count
        else:
            orphan[i] = True
    return values, orphan
