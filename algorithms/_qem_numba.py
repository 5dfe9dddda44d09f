"""The simplify stage's numba kernels (dense quadrics, adjacency, the closed check, the
placement's cell errors), at module level so that numba's on-disk cache holds them (a kernel
that calls another through a closure is compiled again in every process). Imported on first
use only: importing numba costs ~0.5 s."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy")
def quadrics(v, f, n_points):
    # acc[:, 0:6] = upper triangle of sum w n n^T, acc[:, 6:9] = sum -w d n; w = area / 3
    acc = np.zeros((n_points, 9))
    for k in range(f.shape[0]):
        a, b, c = f[k, 0], f[k, 1], f[k, 2]
        # scalars only: a small array per face (v[b] - v[a]) costs more than the arithmetic
        ux, uy, uz = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
        wx, wy, wz = v[c, 0] - v[a, 0], v[c, 1] - v[a, 1], v[c, 2] - v[a, 2]
        nx = uy * wz - uz * wy
        ny = uz * wx - ux * wz
        nz = ux * wy - uy * wx
        a2 = np.sqrt(nx * nx + ny * ny + nz * nz)
        if a2 == 0.0:
            continue
        nx, ny, nz = nx / a2, ny / a2, nz / a2
        w = a2 / 6.0
        d = -(nx * v[a, 0] + ny * v[a, 1] + nz * v[a, 2])
        q0, q1, q2 = w * nx * nx, w * nx * ny, w * nx * nz
        q3, q4, q5 = w * ny * ny, w * ny * nz, w * nz * nz
        q6, q7, q8 = -w * d * nx, -w * d * ny, -w * d * nz
        for j in range(3):
            r = f[k, j]
            acc[r, 0] += q0
            acc[r, 1] += q1
            acc[r, 2] += q2
            acc[r, 3] += q3
            acc[r, 4] += q4
            acc[r, 5] += q5
            acc[r, 6] += q6
            acc[r, 7] += q7
            acc[r, 8] += q8
    return acc


@numba.njit(cache=True, nogil=True, error_model="numpy")
def adjacency(f, n_points):
    # CSR vertex adjacency from faces: each face links each corner to the other two
    # (an interior edge appears twice; harmless for a search)
    indptr = np.zeros(n_points + 1, np.int64)
    for k in range(f.shape[0]):
        for c in range(3):
            indptr[f[k, c] + 1] += 2
    for i in range(n_points):
        indptr[i + 1] += indptr[i]
    fill = indptr[:-1].copy()
    indices = np.empty(indptr[-1], np.int64)
    for k in range(f.shape[0]):
        for c in range(3):
            u = f[k, c]
            indices[fill[u]] = f[k, (c + 1) % 3]
            indices[fill[u] + 1] = f[k, (c + 2) % 3]
            fill[u] += 2
    return indptr, indices


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def point_triangle_d2(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    # squared distance from p to triangle abc (Ericson, Real-Time Collision Detection
    # 5.1.5), on scalars: small numba arrays would allocate in the inner loop
    abx, aby, abz = bx - ax, by - ay, bz - az
    acx, acy, acz = cx - ax, cy - ay, cz - az
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
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
        elif vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
            u, v = d1 / (d1 - d3), 0.0
        elif d6 >= 0.0 and d5 <= d6:
            u, v = 0.0, 1.0
        elif vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
            u, v = 0.0, d2 / (d2 - d6)
        elif va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
            w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
            u, v = 1.0 - w, w
        elif va + vb + vc > 0.0:
            den = 1.0 / (va + vb + vc)
            u, v = vb * den, vc * den
        else:  # degenerate (zero-area) triangle: its first corner stands for it
            u, v = 0.0, 0.0
    rx = apx - u * abx - v * acx
    ry = apy - u * aby - v * acy
    rz = apz - u * abz - v * acz
    return rx * rx + ry * ry + rz * rz


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ring_d2(p, x, c, ring_ptr, ring, faces):
    best = np.inf
    for j in range(ring_ptr[c], ring_ptr[c + 1]):
        f = ring[j]
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        d = point_triangle_d2(p[0], p[1], p[2], x[i0, 0], x[i0, 1], x[i0, 2],
                              x[i1, 0], x[i1, 1], x[i1, 2], x[i2, 0], x[i2, 1], x[i2, 2])
        best = min(best, d)
    return best


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cell_errors(points, weight, cell, ring_ptr, ring, faces, x0, x1, n_cells, stride):
    # per cell, for the positions x0 and x1: sum over its dense points (every stride-th)
    # of weight x squared distance to the one-ring of the cell's simplified vertex (the
    # local part of the dense -> simple error)
    e0 = np.zeros(n_cells)
    e1 = np.zeros(n_cells)
    for p in range(0, points.shape[0], stride):
        c = cell[p]
        if c < 0:
            continue
        e0[c] += weight[p] * ring_d2(points[p], x0, c, ring_ptr, ring, faces)
        e1[c] += weight[p] * ring_d2(points[p], x1, c, ring_ptr, ring, faces)
    return e0, e1


@numba.njit(cache=True, nogil=True)
def closed_oriented(indptr, indices):
    # around every vertex the "next" corners of its faces must be exactly its "prev"
    # corners, each once: every half-edge u->v has one twin v->u (adjacency() stores the
    # pair (next, prev) per incident face)
    for u in range(indptr.shape[0] - 1):
        a, b = indptr[u], indptr[u + 1]
        for i in range(a, b, 2):  # O(degree^2) without allocating: degrees are small
            v = indices[i]
            as_next, as_prev = 0, 0
            for j in range(a, b, 2):
                as_next += indices[j] == v
                as_prev += indices[j + 1] == v
            if as_next != 1 or as_prev != 1:
                return False
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def welded_normals(v, f, wid, n_points):
    """(unit area-weighted normal per welded position, welded positions, face areas): one
    pass over the faces for the part weights' curvature."""
    vn = np.zeros((n_points, 3))
    pos = np.zeros((n_points, 3))
    area = np.empty(f.shape[0])
    for i in range(v.shape[0]):
        pos[wid[i]] = v[i]
    for k in range(f.shape[0]):
        a, b, c = f[k, 0], f[k, 1], f[k, 2]
        ux, uy, uz = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
        wx, wy, wz = v[c, 0] - v[a, 0], v[c, 1] - v[a, 1], v[c, 2] - v[a, 2]
        nx = 0.5 * (uy * wz - uz * wy)
        ny = 0.5 * (uz * wx - ux * wz)
        nz = 0.5 * (ux * wy - uy * wx)
        area[k] = np.sqrt(nx * nx + ny * ny + nz * nz)
        for j in range(3):
            w = wid[f[k, j]]
            vn[w, 0] += nx
            vn[w, 1] += ny
            vn[w, 2] += nz
    for i in range(n_points):
        norm = np.sqrt(vn[i, 0] ** 2 + vn[i, 1] ** 2 + vn[i, 2] ** 2)
        if norm > 0.0:
            vn[i, 0] /= norm
            vn[i, 1] /= norm
            vn[i, 2] /= norm
    return vn, pos, area


@numba.njit(cache=True, nogil=True, error_model="numpy")
def edge_curvature(wf, vn, pos):
    """Mean over each face's three edges of |n_b - n_a| / |b - a| (welded unit normals and
    positions; a zero-length edge counts 0)."""
    kappa = np.zeros(wf.shape[0])
    for k in range(wf.shape[0]):
        acc = 0.0
        for j in range(3):
            a, b = wf[k, j], wf[k, (j + 1) % 3]
            dn = np.sqrt((vn[b, 0] - vn[a, 0]) ** 2 + (vn[b, 1] - vn[a, 1]) ** 2
                         + (vn[b, 2] - vn[a, 2]) ** 2)
            dl = np.sqrt((pos[b, 0] - pos[a, 0]) ** 2 + (pos[b, 1] - pos[a, 1]) ** 2
                         + (pos[b, 2] - pos[a, 2]) ** 2)
            if dl > 0.0:
                acc += dn / dl
        kappa[k] = acc / 3.0
    return kappa
