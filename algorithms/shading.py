"""Baked-in lighting: the low-frequency luminance of each part divided out of its albedo."""

from __future__ import annotations

import numpy as np

from ..core.stage import stage_cpus
from .inpaint import _cell_means

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def flatten_shading(positions: np.ndarray, colours: np.ndarray, parts: np.ndarray,
                    cells: int = 12, max_gain: float = 3.0, threads: int = 1) -> np.ndarray:
    """Divide out each part's low-frequency luminance (baked-in light falloff and shadows).

    Why per part and in 3D: a part is one material, so a smooth brightness change across it is
    most likely light, not albedo; neighbours in 3D (not UV) are what the light shares. The
    luminance is averaged on a coarse grid of cubic cells, read back at every texel as a
    Gaussian-weighted mean of its nearest cells (sigma 0.75 cell, so the estimate is smooth
    across cell borders), and every texel is scaled by (part mean / local mean), clamped to
    [1/max_gain, max_gain]. Chromaticity is kept. Returns a copy. ``threads``: KD-tree query
    workers (the CPUs the calling stage declares; -1 = every core).
    """
    from scipy.spatial import cKDTree

    out = np.array(colours, np.float32, copy=True)
    if len(out) == 0:
        return out
    lo = positions.min(0)
    cell = max(float((positions.max(0) - lo).max()) / cells, 1e-12)
    lum = out @ LUMA
    for part in np.unique(parts):
        idx = np.flatnonzero(parts == part)
        keys = np.floor((positions[idx] - lo) / cell).astype(np.int64)
        inv, (cpos, clum) = _cell_means(keys, positions[idx], lum[idx, None])
        counts = np.bincount(inv, minlength=len(cpos)).astype(np.float64)
        k = min(8, len(cpos))
        dist, nn = cKDTree(cpos).query(positions[idx], k=k,
                                       workers=threads if threads > 0 else stage_cpus())
        dist, nn = dist.reshape(len(idx), k), nn.reshape(len(idx), k)
        w = np.exp(-0.5 * (dist / (0.75 * cell)) ** 2) * counts[nn] + 1e-12
        low = (w * clum[nn, 0]).sum(1) / w.sum(1)
        target = float(lum[idx].mean())
        gain = np.clip(target / np.maximum(low, 1e-6), 1 / max_gain, max_gain)
        out[idx] *= gain[:, None].astype(np.float32)
    return np.clip(out, 0.0, 1.0)
