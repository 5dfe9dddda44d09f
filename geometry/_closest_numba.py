"""Exact (float64) point-triangle distances behind ``geometry.closest.exact_distances``, at
module level so that numba's on-disk cache holds them. Imported on first use only: importing
numba costs ~0.5 s."""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@numba.njit(cache=True, nogil=True, inline="always")
def _edges(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    """(squared distance, u, v) from p to the nearest point of triangle abc's three edges,
    q = a + u (b - a) + v (c - a); the first edge wins a tie (a degenerate triangle, or a
    point the barycentric regions miss by rounding)."""
    best = np.inf
    u = v = 0.0
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
        dd = qx * qx + qy * qy + qz * qz
        if dd < best:
            best = dd
            if k == 0:
                u, v = t, 0.0
            elif k == 1:
                u, v = 1.0 - t, t
            else:
                u, v = 0.0, 1.0 - t
    return best, u, v


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
        return _edges(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz)[0]
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


# ---------------------------------------------------------------------------- coherent queries


@numba.njit(cache=True, nogil=True, inline="always")
def _closest_bary(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    """(squared distance, u, v) from p to its closest point q = a + u (b - a) + v (c - a) on
    triangle abc (Ericson, Real-Time Collision Detection 5.1.5, float64; the weights of a, b,
    c are (1 - u - v, u, v), as Embree reports them). A degenerate triangle falls through to
    the nearest of its edges."""
    abx, aby, abz = bx - ax, by - ay, bz - az
    acx, acy, acz = cx - ax, cy - ay, cz - az
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
    u = v = 0.0
    if d1 <= 0.0 and d2 <= 0.0:
        u, v = 0.0, 0.0
    else:
        bpx, bpy, bpz = px - bx, py - by, pz - bz
        d3 = abx * bpx + aby * bpy + abz * bpz
        d4 = acx * bpx + acy * bpy + acz * bpz
        cpx, cpy, cpz = px - cx, py - cy, pz - cz
        d5 = abx * cpx + aby * cpy + abz * cpz
        d6 = acx * cpx + acy * cpy + acz * cpz
        vc = d1 * d4 - d3 * d2
        vb = d5 * d2 - d1 * d6
        va = d3 * d6 - d5 * d4
        if d3 >= 0.0 and d4 <= d3:
            u, v = 1.0, 0.0
        elif vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0 and d1 - d3 > 0.0:
            u, v = d1 / (d1 - d3), 0.0
        elif d6 >= 0.0 and d5 <= d6:
            u, v = 0.0, 1.0
        elif vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0 and d2 - d6 > 0.0:
            u, v = 0.0, d2 / (d2 - d6)
        elif va <= 0.0 and d4 - d3 >= 0.0 and d5 - d6 >= 0.0 and (d4 - d3) + (d5 - d6) > 0.0:
            t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
            u, v = 1.0 - t, t
        elif va + vb + vc > 0.0 and va >= 0.0 and vb >= 0.0 and vc >= 0.0:
            denom = va + vb + vc
            u, v = vb / denom, vc / denom
        else:  # degenerate (or rounding left no region): the nearest point of the three edges
            _, u, v = _edges(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz)
    qx = ax + abx * u + acx * v - px
    qy = ay + aby * u + acy * v - py
    qz = az + abz * u + acz * v - pz
    return qx * qx + qy * qy + qz * qz, u, v


@jit
def face_boxes(vertices, faces):
    """(face box low (F, 3), face box high (F, 3), the mesh's low (3,) and high (3,) corner
    over its faces, the faces' mean area), in one pass."""
    nf = faces.shape[0]
    flo = np.empty((nf, 3))
    fhi = np.empty((nf, 3))
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    area = 0.0
    for f in range(nf):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        for d in range(3):
            flo[f, d] = min(vertices[a, d], vertices[b, d], vertices[c, d])
            fhi[f, d] = max(vertices[a, d], vertices[b, d], vertices[c, d])
            lo[d] = min(lo[d], flo[f, d])
            hi[d] = max(hi[d], fhi[f, d])
        ux, uy, uz = (vertices[b, 0] - vertices[a, 0], vertices[b, 1] - vertices[a, 1],
                      vertices[b, 2] - vertices[a, 2])
        vx, vy, vz = (vertices[c, 0] - vertices[a, 0], vertices[c, 1] - vertices[a, 1],
                      vertices[c, 2] - vertices[a, 2])
        cx, cy, cz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        area += 0.5 * np.sqrt(cx * cx + cy * cy + cz * cz)
    return flo, fhi, lo, hi, area / max(nf, 1)


@jit
def build_grid(flo, fhi, lo, h, nx, ny, nz):
    """Uniform grid of cell edge ``h`` from ``lo`` (nx x ny x nz cells): every face listed in
    each cell its bounding box (``flo``, ``fhi``) overlaps. Returns (start (cells + 1,)
    int64, faces by cell (int32))."""
    nf = flo.shape[0]
    start = np.zeros(nx * ny * nz + 1, np.int64)
    cells = np.empty((nf, 6), np.int32)
    dims = (nx, ny, nz)
    for f in range(nf):
        for d in range(3):
            cells[f, d] = min(max(int(np.floor((flo[f, d] - lo[d]) / h)), 0), dims[d] - 1)
            cells[f, 3 + d] = min(max(int(np.floor((fhi[f, d] - lo[d]) / h)), 0), dims[d] - 1)
        for i in range(cells[f, 0], cells[f, 3] + 1):
            for j in range(cells[f, 1], cells[f, 4] + 1):
                for k in range(cells[f, 2], cells[f, 5] + 1):
                    start[(i * ny + j) * nz + k + 1] += 1
    for c in range(nx * ny * nz):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    items = np.empty(start[-1], np.int32)
    for f in range(nf):
        for i in range(cells[f, 0], cells[f, 3] + 1):
            for j in range(cells[f, 1], cells[f, 4] + 1):
                for k in range(cells[f, 2], cells[f, 5] + 1):
                    c = (i * ny + j) * nz + k
                    items[fill[c]] = f
                    fill[c] += 1
    return start, items


@numba.njit(cache=True, nogil=True, inline="always")
def _visit_cell(c, start, items, stamp, q, px, py, pz, vertices, faces, flo, fhi, best):
    """Test the faces of cell ``c`` not yet tested for query ``q`` against ``best`` =
    [squared distance, face, u, v] (updated in place)."""
    for s in range(start[c], start[c + 1]):
        f = items[s]
        if stamp[f] == q:
            continue
        stamp[f] = q
        gx = max(0.0, flo[f, 0] - px, px - fhi[f, 0])
        gy = max(0.0, flo[f, 1] - py, py - fhi[f, 1])
        gz = max(0.0, flo[f, 2] - pz, pz - fhi[f, 2])
        if gx * gx + gy * gy + gz * gz > best[0]:
            continue
        a, b, cc = faces[f, 0], faces[f, 1], faces[f, 2]
        d2, u, v = _closest_bary(px, py, pz, vertices[a, 0], vertices[a, 1], vertices[a, 2],
                                 vertices[b, 0], vertices[b, 1], vertices[b, 2],
                                 vertices[cc, 0], vertices[cc, 1], vertices[cc, 2])
        if d2 < best[0] or (d2 == best[0] and f < best[1]):
            best[0], best[1], best[2], best[3] = d2, f, u, v


@jit
def closest_in_grid(points, vertices, faces, lo, h, nx, ny, nz, start, items, flo, fhi):
    """Exact closest point on the mesh of each point: (distance (T,), face (T,), u (T,),
    v (T,)), the weights of the face's corners being (1 - u - v, u, v).

    Coherent: the previous point's face bounds the search (its distance to this point), so a
    run of nearby points (texels in image order) each visits the one or few grid cells within
    that bound; without a close bound the cells around the point are searched ring by ring
    until a face is met, then every cell within the distance found."""
    t = points.shape[0]
    dist = np.empty(t)
    face = np.empty(t, np.int64)
    uu = np.empty(t)
    vv = np.empty(t)
    stamp = np.full(faces.shape[0], -1, np.int64)
    best = np.empty(4)
    prev = -1
    dims = (nx, ny, nz)
    cl = np.empty(3, np.int64)
    ch = np.empty(3, np.int64)
    cp = np.empty(3, np.int64)
    for q in range(t):
        px, py, pz = points[q, 0], points[q, 1], points[q, 2]
        best[0], best[1], best[2], best[3] = np.inf, -1.0, 0.0, 0.0
        if prev >= 0:
            a, b, c = faces[prev, 0], faces[prev, 1], faces[prev, 2]
            d2, u, v = _closest_bary(px, py, pz, vertices[a, 0], vertices[a, 1],
                                     vertices[a, 2], vertices[b, 0], vertices[b, 1],
                                     vertices[b, 2], vertices[c, 0], vertices[c, 1],
                                     vertices[c, 2])
            best[0], best[1], best[2], best[3] = d2, prev, u, v
        pp = (px, py, pz)
        for d in range(3):
            cp[d] = min(max(int(np.floor((pp[d] - lo[d]) / h)), 0), dims[d] - 1)
        if not best[0] <= 0.25 * h * h:
            # no close bound: rings of cells around the point until one holds a face
            k = 0
            while True:
                met = False
                for i in range(max(cp[0] - k, 0), min(cp[0] + k, nx - 1) + 1):
                    for j in range(max(cp[1] - k, 0), min(cp[1] + k, ny - 1) + 1):
                        for m in range(max(cp[2] - k, 0), min(cp[2] + k, nz - 1) + 1):
                            if max(abs(i - cp[0]), abs(j - cp[1]), abs(m - cp[2])) != k:
                                continue
                            c = (i * ny + j) * nz + m
                            if start[c + 1] > start[c]:
                                met = True
                                _visit_cell(c, start, items, stamp, q, px, py, pz, vertices,
                                            faces, flo, fhi, best)
                if met or (k > cp[0] and k > cp[1] and k > cp[2] and k >= nx - cp[0]
                           and k >= ny - cp[1] and k >= nz - cp[2]):
                    break
                k += 1
        # every cell within the distance found
        r = np.sqrt(best[0])
        for d in range(3):
            cl[d] = min(max(int(np.floor((pp[d] - r - lo[d]) / h)), 0), dims[d] - 1)
            ch[d] = min(max(int(np.floor((pp[d] + r - lo[d]) / h)), 0), dims[d] - 1)
        for i in range(cl[0], ch[0] + 1):
            for j in range(cl[1], ch[1] + 1):
                for m in range(cl[2], ch[2] + 1):
                    _visit_cell((i * ny + j) * nz + m, start, items, stamp, q, px, py, pz,
                                vertices, faces, flo, fhi, best)
        f = int(best[1])
        dist[q] = np.sqrt(best[0])
        face[q] = f
        uu[q] = best[2]
        vv[q] = best[3]
        prev = f
    return dist, face, uu, vv


@jit
def interpolate_normals(face, u, v, faces, normals):
    """Unit ``normals`` (V, 3) interpolated at (face, u, v) with weights (1 - u - v, u, v)."""
    t = face.shape[0]
    out = np.empty((t, 3))
    for i in range(t):
        f = face[i]
        w0 = 1.0 - u[i] - v[i]
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        nx = w0 * normals[a, 0] + u[i] * normals[b, 0] + v[i] * normals[c, 0]
        ny = w0 * normals[a, 1] + u[i] * normals[b, 1] + v[i] * normals[c, 1]
        nz = w0 * normals[a, 2] + u[i] * normals[b, 2] + v[i] * normals[c, 2]
        n = np.sqrt(nx * nx + ny * ny + nz * nz)
        if not n > 1e-30:
            n = 1.0
        out[i, 0], out[i, 1], out[i, 2] = nx / n, ny / n, nz / n
    return out
