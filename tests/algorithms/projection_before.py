"""The projection kernel as it was before texels facing away were dropped before their
projection and the upper pyramid level was skipped at weight 0 (``accumulate_view`` at
3835422), kept as the reference the current kernel must match bit for bit."""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=False, nogil=True, error_model="numpy")


@jit
def _nearest(x, n):
    i = int(np.rint(x))
    return min(max(i, 0), n - 1)


@jit
def _bilinear(img, off, h, w, x, y, out):
    """Bilinear sample of level (off, h, w) of the packed pyramid (P, 4) at pixel (x, y),
    clamped to the edge (pixel centres at integers), written to out[0..3] as float32."""
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0 = min(int(np.floor(x)), w - 2) if w > 1 else 0
    y0 = min(int(np.floor(y)), h - 2) if h > 1 else 0
    x1 = min(x0 + 1, w - 1)
    y1 = min(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    a, b = off + y0 * w, off + y1 * w
    for k in range(4):
        top = img[a + x0, k] * (1 - fx) + img[a + x1, k] * fx
        bottom = img[b + x0, k] * (1 - fx) + img[b + x1, k] * fx
        out[k] = np.float32(top * (1 - fy) + bottom * fy)


@jit
def accumulate_view(positions, normals, faces, rot, trans, K, cam_pos, depth, mask, edge,
                    tolerance, power, prior, edge_weight, footprint, mip_bias, pyr, pyr_off,
                    pyr_h, pyr_w, acc, wsum, clean, light_dir, ambient, feather):
    """Add one view's weighted colour to ``acc`` / ``wsum`` of every texel it sees and mark
    ``clean`` the texels it sees outside its edge band.

    ``edge``: (H, W) bool, or (0, 0) for no band; ``pyr``: image levels packed as (P, 4)
    float32 rows at offsets ``pyr_off`` with shapes ``pyr_h`` x ``pyr_w``: with ``footprint``
    ((M,) px per texel per face) the mask-premultiplied pyramid (rgb x mask, mask), read at
    each texel's level; with an empty ``footprint`` the plain photo (rgb, 1), read bilinearly.
    ``light_dir``: the studio light's direction in the camera frame ((3,)), or (0,) for none;
    with a light, each colour read is divided by its shading there (``delight.Light.shade``:
    ``ambient + (1 - ambient) * max(0, n_cam . light_dir)``).
    ``feather``: (H, W) float32 weight factor per pixel (the ramp away from the mask border
    and the depth steps, ``projection.edge_feather``), or (0, 0) for none.
    Returns (texels kept, sum of level * weight, sum of weight).
    """
    h, w = depth.shape
    has_edge = edge.shape[0] > 0
    use_mip = footprint.shape[0] > 0
    has_light = light_dir.shape[0] == 3
    has_feather = feather.shape[0] > 0
    top = len(pyr_off) - 1
    sample = np.empty(4, np.float32)
    kept = 0
    lv_acc = 0.0
    lv_w = 0.0
    for i in range(len(positions)):
        px, py, pz = positions[i, 0], positions[i, 1], positions[i, 2]
        cx = px * rot[0, 0] + py * rot[0, 1] + pz * rot[0, 2] + trans[0]
        cy = px * rot[1, 0] + py * rot[1, 1] + pz * rot[1, 2] + trans[1]
        cz = px * rot[2, 0] + py * rot[2, 1] + pz * rot[2, 2] + trans[2]
        z = -cz
        zz = z if abs(z) >= 1e-12 else 1e-12
        u = K[0, 0] * cx / zz + K[0, 1] * (-cy) / zz + K[0, 2]
        v = K[1, 1] * (-cy) / zz + K[1, 2]
        if not (z > 0 and u > -0.5 and u < w - 0.5 and v > -0.5 and v < h - 0.5):
            continue
        xi, yi = _nearest(u, w), _nearest(v, h)
        d = np.float64(depth[yi, xi])
        if not (np.isfinite(d) and abs(z - d) <= tolerance * abs(d)) or not mask[yi, xi]:
            continue
        # incidence: max(0, n . unit(camera - p)) ** power
        dx, dy, dz = cam_pos[0] - px, cam_pos[1] - py, cam_pos[2] - pz
        dn = max(np.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
        cos = max((normals[i, 0] * dx + normals[i, 1] * dy + normals[i, 2] * dz) / dn, 0.0)
        if power != 0:
            wt = cos ** power
        else:
            wt = 1.0 if cos > 0 else 0.0
        wt *= prior
        on_edge = has_edge and edge[yi, xi]
        if on_edge:
            wt *= edge_weight
        if has_feather:
            wt *= feather[yi, xi]
        if not wt > 1e-8:
            continue
        kept += 1
        if use_mip:
            level = max(np.log2(max(footprint[faces[i]], 1e-6)) + mip_bias, 0.0)
            lvc = min(max(level, 0.0), top)
            lo = int(np.floor(lvc))
            frac = np.float32(lvc - lo)
            c0 = c1 = c2 = cm = np.float32(0.0)
            for step in range(2):
                li = lo if step == 0 else min(lo + 1, top)
                wl = np.float32(1.0) - frac if step == 0 else frac
                scale = 2.0 ** li
                _bilinear(pyr, pyr_off[li], pyr_h[li], pyr_w[li], (u + 0.5) / scale - 0.5,
                          (v + 0.5) / scale - 0.5, sample)
                c0 += wl * sample[0]
                c1 += wl * sample[1]
                c2 += wl * sample[2]
                cm += wl * sample[3]
            den = max(cm, np.float32(1e-6))
            col0, col1, col2 = c0 / den, c1 / den, c2 / den
            wt = wt * min(max(np.float64(cm), 0.0), 1.0)
            lv_acc += level * wt
            lv_w += wt
        else:  # ``pyr`` is then the plain photo (one level)
            _bilinear(pyr, pyr_off[0], pyr_h[0], pyr_w[0], u, v, sample)
            col0, col1, col2 = sample[0], sample[1], sample[2]
        if has_light:
            nx, ny, nz = normals[i, 0], normals[i, 1], normals[i, 2]
            dl = ((nx * rot[0, 0] + ny * rot[0, 1] + nz * rot[0, 2]) * light_dir[0]
                  + (nx * rot[1, 0] + ny * rot[1, 1] + nz * rot[1, 2]) * light_dir[1]
                  + (nx * rot[2, 0] + ny * rot[2, 1] + nz * rot[2, 2]) * light_dir[2])
            shade = np.float32(ambient + (1.0 - ambient) * max(dl, 0.0))
            col0, col1, col2 = col0 / shade, col1 / shade, col2 / shade
        acc[i, 0] += wt * col0
        acc[i, 1] += wt * col1
        acc[i, 2] += wt * col2
        wsum[i] += wt
        if not on_edge:
            clean[i] = True
    return kept, lv_acc, lv_w
