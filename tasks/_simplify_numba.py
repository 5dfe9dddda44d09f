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
        e1 = v[b] - v[a]
        e2 = v[c] - v[a]
        nx = e1[1] * e2[2] - e1[2] * e2[1]
        ny = e1[2] * e2[0] - e1[0] * e2[2]
        nz = e1[0] * e2[1] - e1[1] * e2[0]
        a2 = np.sqrt(nx * nx + ny * ny + nz * nz)
        if a2 == 0.0:
            continue
        nx, ny, nz = nx / a2, ny / a2, nz / a2
        w = a2 / 6.0
        d = -(nx * v[a, 0] + ny * v[a, 1] + nz * v[a, 2])
        q = (w * nx * nx, w * nx * ny, w * nx * nz, w * ny * ny, w * ny * nz, w * nz * nz,
             -w * d * nx, -w * d * ny, -w * d * nz)
        for corner in (a, b, c):
            for i in range(9):
                acc[corner, i] += q[i]
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
