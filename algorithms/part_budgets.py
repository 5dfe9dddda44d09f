"""Per-part face budgets: how a decimation's total is shared between a mesh's parts.

Each part p gets budget_p = total x w_p / sum(w), w_p = A_p x (1 + k x S_p), where A_p is its
area and S_p the area-weighted mean of sqrt(kappa x sqrt(A_p)) over its faces (kappa: the
normal curvature along each face's edges); see ``tasks/simplify.py`` for why the square root.
Budgets are integers that sum to the total exactly (water-filling between a floor and each
part's own face count, then largest remainders).
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from .qem_placement import _kernels

MIN_PART_FACES = 4  # a part's budget floor (or its own face count when smaller)


CURVATURE_SAMPLES = 100_000  # faces whose curvature estimates the part weights


def part_weights(mesh: MeshData, wid: np.ndarray,
                 curvature_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(part labels, face counts, weights w_p = A_p x (1 + k x S_p)) of the dense mesh's
    parts; see the module docstring for S_p and why it averages sqrt(curvature)."""
    labels, inv, counts = _label_index(mesh.face_labels)
    P = int(wid.max()) + 1
    vn, pos, area = _kernels()["welded_normals"](
        np.ascontiguousarray(mesh.vertices, np.float64), np.ascontiguousarray(mesh.faces, np.int64),
        np.ascontiguousarray(wid, np.int64), P)
    # the mean over a part is a statistic: a strided sample of ~CURVATURE_SAMPLES faces
    # gives it (a part with no sampled face, a tiny one, falls back to its area alone)
    pick = np.arange(0, mesh.n_faces, max(1, mesh.n_faces // CURVATURE_SAMPLES))
    area_s, inv_s = area[pick], inv[pick]
    kappa = _kernels()["edge_curvature"](np.ascontiguousarray(wid[mesh.faces[pick]], np.int64),
                                         vn, pos)
    part_area = np.bincount(inv, area, len(labels))
    scale = np.sqrt(part_area)
    s = np.bincount(inv_s, area_s * np.sqrt(kappa * scale[inv_s]), len(labels)) \
        / np.maximum(np.bincount(inv_s, area_s, len(labels)), 1e-300)
    return labels, counts, part_area * (1 + curvature_weight * s)


def _label_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(labels, return_inverse=True, return_counts=True) for small non-negative
    integer labels, by counting instead of sorting."""
    labels = np.asarray(labels)
    if not len(labels) or labels.min() < 0 or labels.max() > 4 * len(labels) + 1024:
        u, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
        return u, inv.reshape(-1), counts
    all_counts = np.bincount(labels)
    present = np.flatnonzero(all_counts)
    rank = np.zeros(len(all_counts), np.int64)
    rank[present] = np.arange(len(present))
    return present.astype(labels.dtype), rank[labels], all_counts[present]


def allocate_budgets(total: int, weights: np.ndarray, counts: np.ndarray,
                     floor: int = MIN_PART_FACES) -> np.ndarray:
    """Integer budgets proportional to ``weights`` that sum to ``total`` exactly (or to the
    faces there are, when fewer), each within [min(floor, count), count]; a part held at
    either bound hands the rest to the others (water-filling), then the fractions are rounded
    by largest remainders. When the floors alone exceed ``total`` the floors are returned
    (the caller trims the few extra faces)."""
    w = np.maximum(np.asarray(weights, np.float64), 0.0)
    counts = np.asarray(counts, np.int64)
    lo = np.minimum(floor, counts)
    total = min(int(total), int(counts.sum()))
    if lo.sum() >= total:
        return lo.copy()
    fixed = np.zeros(len(w), bool)
    budget = np.zeros(len(w))
    for _ in range(len(w) + 1):
        free = ~fixed
        left = total - budget[fixed].sum()
        wf = w[free].sum()
        share = np.where(free, left * (w / wf if wf > 0 else 1.0 / free.sum()), budget)
        over = free & (share > counts)  # caps first: what they free may lift a floor part
        under = free & (share < lo) if not over.any() else np.zeros(len(w), bool)
        if not (over.any() or under.any()):
            budget = share
            break
        budget[over], budget[under] = counts[over], lo[under]
        fixed |= over | under
        if fixed.all():
            break
    out = np.floor(budget + 1e-9).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        frac = np.where(out < counts, budget - out, -np.inf)
        out[np.argsort(-frac, kind="stable")[:short]] += 1
    return out
