"""Exact (float64) point-triangle distances behind ``geometry.closest.exact_distances``, at
module level so that numba's on-disk cache holds them. Imported on first use only: importing
numba costs ~0.5 s."""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@numba.njit(cache=True, nogil=True, inline="always")
def _dist2(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    """Squared distance from p to triangle abc (Ericson, Real-Time Collision Detection 5.1.5,
    in float64; a degenerate triangle falls through to its edges)."""
    abx, aby, abz = bx - ax, by - ay, bz - az
    acx, acy, acz = cx - ax, cy - ay, cz - az
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
    if d1 <= 0.0 and d2 <= 0.0:
        return apx * apx + apy * apy + apz * apz
    bpx, bpy, bpz = px - bx, py - by, pz - bz
    d3 = abx * bpx + aby * bpy + abz * bpz
    d4 = acx * bpx + acy * bpy + acz * bpz
    if d3 >= 0.0 and d4 <= d3:
        return bpx * bpx + bpy * bpy + bpz * bpz
    cpx, cpy, cpz = px - cx, py - cy, pz - cz
    d5 = abx * cpx + aby * cpy + abz * cpz
    d6 = acx * cpx + acy * cpy + acz * cpz
    if d6 >= 0.0 and d5 <= d6:
        return cpx * cpx + cpy * cpy + cpz * cpz
    vc = d1 * d4 - d3 * d2
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    denom = va + vb + vc
    if denom <= 0.0 or vc < 0.0 or va < 0.0 or vb < 0.0:
        # on an edge (or a sliver too thin for the barycentric test): the nearest of the three
        best = np.inf
        for k in range(3):
            if k == 0:
                sx, sy, sz, ex, ey, ez = ax, ay, az, bx, by, bz
            elif k == 1:
                sx, sy, sz, ex, ey, ez = bx, by, bz, cx, cy, cz
            else:
                sx, sy, sz, ex, ey, ez = cx, cy, cz, ax, ay, az
            dx, dy, dz = ex - sx, ey - sy, ez - sz
            ll = dx * dx + dy * dy + dz * dz
            t = 0.0
            if ll > 0.0:
                t = ((px - sx) * dx + (py - sy) * dy + (pz - sz) * dz) / ll
                t = min(1.0, max(0.0, t))
            qx, qy, qz = sx + t * dx - px, sy + t * dy - py, sz + t * dz - pz
            best = min(best, qx * qx + qy * qy + qz * qz)
        return best
    v = vb / denom
    w = vc / denom
    qx = ax + abx * v + acx * w - px
    qy = ay + aby * v + acy * w - py
    qz = az + abz * v + acz * w - pz
    return qx * qx + qy * qy + qz * qz


@jit
def candidate_distances(points, vertices, faces, prim):
    """Exact distance from each point to its candidate face ``prim`` (an upper bound of its
    distance to the mesh, equal to it when the candidate is the nearest face)."""
    out = np.empty(points.shape[0])
    for i in range(points.shape[0]):
        f = prim[i]
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        out[i] = np.sqrt(_dist2(points[i, 0], points[i, 1], points[i, 2],
                                vertices[a, 0], vertices[a, 1], vertices[a, 2],
                                vertices[b, 0], vertices[b, 1], vertices[b, 2],
                                vertices[c, 0], vertices[c, 1], vertices[c, 2]))
    return out


@jit
def nearest_brute(p, vertices, faces, lo, hi, order, bound):
    """Exact distance from ``p`` to the nearest face, over every face whose bounding box lies
    within ``bound`` of it (faces visited in ``order``, sorted by lo[:, 0])."""
    best2 = bound * bound
    px, py, pz = p[0], p[1], p[2]
    for j in range(order.shape[0]):
        f = order[j]
        if lo[f, 0] - px > 0.0 and (lo[f, 0] - px) ** 2 > best2:
            break  # sorted by the box's low x: every later box is farther in x
        gx = max(0.0, lo[f, 0] - px, px - hi[f, 0])
        gy = max(0.0, lo[f, 1] - py, py - hi[f, 1])
        gz = max(0.0, lo[f, 2] - pz, pz - hi[f, 2])
        if gx * gx + gy * gy + gz * gz > best2:
            continue
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        d2 = _dist2(px, py, pz, vertices[a, 0], vertices[a, 1], vertices[a, 2],
                    vertices[b, 0], vertices[b, 1], vertices[b, 2],
                    vertices[c, 0], vertices[c, 1], vertices[c, 2])
        best2 = min(best2, d2)
    return np.sqrt(best2)


@jit
def exact_top(points, upper, vertices, faces, lo, hi, order):
    """Exact distances of the points with the largest upper bounds, largest first, until the
    next bound is no larger than the largest exact distance found: then no other point can
    be farther. Returns (the points checked, in that order; their exact distances)."""
    rank = np.argsort(-upper)
    exact = np.empty(len(rank))
    top = 0.0
    n = 0
    for k in range(len(rank)):
        i = rank[k]
        if upper[i] <= top:
            break
        d = nearest_brute(points[i], vertices, faces, lo, hi, order, upper[i])
        exact[k] = d
        n = k + 1
        top = max(top, d)
    return rank[:n], exact[:n]


@jit
def closest_normals(points, q, prim, uv, faces, normals):
    """(distance (T,), unit normal (T, 3)) at Embree's closest points: ``q`` (T, 3) float32
    points, ``prim`` (T,) faces and ``uv`` (T, 2) float32 barycentric (u, v) as Embree
    reports them; the normal is ``normals`` (V, 3) interpolated with weights (1 - u - v, u,
    v). One pass in float64, in the order of the numpy formulation it replaces (gather,
    einsum, norm, divide), so the values are the same to the bit."""
    t = len(prim)
    dist = np.empty(t)
    out = np.empty((t, 3))
    for i in range(t):
        dx = np.float64(q[i, 0]) - points[i, 0]
        dy = np.float64(q[i, 1]) - points[i, 1]
        dz = np.float64(q[i, 2]) - points[i, 2]
        dist[i] = np.sqrt(dx * dx + dy * dy + dz * dz)
        f = prim[i]
        u, v = np.float64(uv[i, 0]), np.float64(uv[i, 1])
        w0 = 1.0 - u - v
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        nx = w0 * normals[a, 0] + u * normals[b, 0] + v * normals[c, 0]
        ny = w0 * normals[a, 1] + u * normals[b, 1] + v * normals[c, 1]
        nz = w0 * normals[a, 2] + u * normals[b, 2] + v * normals[c, 2]
        n = np.sqrt(nx * nx + ny * ny + nz * nz)
        if not n > 1e-30:
            n = 1.0
        out[i, 0], out[i, 1], out[i, 2] = nx / n, ny / n, nz / n
    return dist, out
