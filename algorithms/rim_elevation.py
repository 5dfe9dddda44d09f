"""The camera's elevation from a round rim or base seen as an ellipse in one silhouette.

Why: a horizontal circle (a cup's base, a bottle's cap, a lamp's foot) seen from elevation
``e`` projects to an ellipse whose minor/major axis ratio is ``sin(a)``, ``a`` the angle between
the line of sight to the circle's centre and the circle's plane. Silhouette consistency cannot
tell the elevation of a round product (every view shows the same outline), and one photo has no
other view to agree with, but the outline's bottom (the base's near half) or top (the rim's far
half) still carries it.

How: below the lowest wall of the silhouette, the half-width ``w`` of each row falls to zero as
the ellipse closes: ``w^2 = alpha t + beta t^2`` with ``t`` the distance (rows) from the tip,
``alpha = 2 a^2 / b`` and ``beta = -a^2 / b^2`` for semi-axes ``a`` (across) and ``b`` (down).
A least-squares fit of ``w^2`` gives ``a`` and ``b``. The arc is accepted only where it
looks like a rim: a square-root tip (a box corner is a V: ``w`` linear in ``t``), a near-vertical
wall of the ellipse's width above it (a ball's outline narrows again), a centre line that does
not drift, a small fit residual and a ratio well below 1. Then ``e = a - atan((v_c - c_y) / f)``
corrects for the circle's centre lying off the optical axis (``v_c`` its image row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.camera import Camera

#: Flatter than this is no rim: a ball's or a capsule's round end looks like a steep ellipse,
#: and product shots are rarely taken from higher than ~50 degrees.
MAX_RATIO = 0.75


@dataclass(frozen=True)
class RimEstimate:
    """One rim seen in one silhouette."""

    elevation_deg: float
    side: str               # "bottom" (a base's near half) or "top" (a rim's far half)
    ratio: float            # minor / major axis
    half_width_px: float    # a
    rows: int               # rows the arc spans
    residual: float         # RMS of the half-width fit, in units of a


@dataclass(frozen=True)
class Arc:
    """A rim's outline in one silhouette: its points (u, v) and the fitted half-ellipse."""

    side: str
    points: np.ndarray
    ratio: float
    half_width_px: float
    residual: float


def find_arcs(mask: np.ndarray) -> list[Arc]:
    """The rims at the bottom and top of one silhouette (0, 1 or 2); no camera needed."""
    m = np.asarray(mask, bool)
    h = m.shape[0]
    out = []
    for side in ("bottom", "top"):
        arc = _arc(m if side == "bottom" else m[::-1])
        if arc is None:
            continue
        a, b, _, res, pts = arc
        if side == "top":
            pts = np.stack([pts[:, 0], h - 1 - pts[:, 1]], 1)
        out.append(Arc(side, pts, b / a, a, res))
    return out


def arc_elevation(arc: Arc, camera: Camera) -> float | None:
    """The elevation at which ``camera`` sees ``arc`` as a horizontal circle."""
    return _rectified_elevation(arc.points, camera)


def rim_elevations(mask: np.ndarray, camera: Camera) -> list[RimEstimate]:
    """The rims found at the bottom and top of one silhouette, with their elevations."""
    out = []
    for arc in find_arcs(mask):
        elev = arc_elevation(arc, camera)
        if elev is not None:
            out.append(RimEstimate(elev, arc.side, arc.ratio, arc.half_width_px,
                                   len(arc.points) // 2, arc.residual))
    return out


def rim_elevation(mask: np.ndarray, camera: Camera) -> RimEstimate | None:
    """The most trustworthy rim of one silhouette (the longer arc), or None."""
    found = rim_elevations(mask, camera)
    return max(found, key=lambda r: r.rows) if found else None


def _rectified_elevation(points: np.ndarray, camera: Camera) -> float | None:
    """The camera pitch at which ``points`` (image u, v on a horizontal circle) back-project
    onto a horizontal plane as a circle, not an ellipse: exact under perspective.

    The plane's height only scales the back-projection, so it needs no distance; the ratio of
    the fitted ellipse's axes (across / along the view) falls monotonically with the pitch.
    """
    K = camera.K
    dx = (points[:, 0] - K[0, 2] - K[0, 1] * (points[:, 1] - K[1, 2]) / K[1, 1]) / K[0, 0]
    dy = -(points[:, 1] - K[1, 2]) / K[1, 1]

    def ratio(pitch_deg: float) -> float | None:
        c, s = math.cos(math.radians(pitch_deg)), math.sin(math.radians(pitch_deg))
        wy = dy * c - s           # camera looks down by ``pitch``: (dx, dy, -1) in world axes
        wz = -dy * s - c
        if not ((wy < -1e-6).all() or (wy > 1e-6).all()):
            return None
        t = 1.0 / np.abs(wy)
        x, z = dx * t, wz * t
        # axis-aligned ellipse A x^2 + C z^2 + D x + E z = 1 (A, C share a sign: negative
        # when the camera's foot lies outside the circle)
        A = np.stack([x * x, z * z, x, z], 1)
        coef, *_ = np.linalg.lstsq(A, np.ones_like(x), rcond=None)
        if coef[0] * coef[1] <= 0:
            return None
        return math.sqrt(coef[1] / coef[0])      # x radius / z radius

    grid = np.arange(-10.0, 80.1, 5.0)
    values = [ratio(float(g)) for g in grid]
    bracket = None
    for g0, g1, r0, r1 in zip(grid[:-1], grid[1:], values[:-1], values[1:]):
        if r0 is not None and r1 is not None and (r0 - 1.0) * (r1 - 1.0) <= 0:
            bracket = (float(g0), float(g1), r0)
            break
    if bracket is None:
        return None
    lo, hi, r_lo = bracket
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        r = ratio(mid)
        if r is None:
            return None
        if (r - 1.0) * (r_lo - 1.0) > 0:
            lo, r_lo = mid, r
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _arc(mask: np.ndarray) -> tuple[float, float, float, float, np.ndarray] | None:
    """(a, b, tip row, residual, arc points (u, v)) of a rim closing at the mask's last rows,
    or None.

    The mask's last row with object is the tip; half-widths are measured from the row's centre.
    """
    rows = np.flatnonzero(mask.any(1))
    if len(rows) < 12:
        return None
    tip = int(rows[-1])
    top = int(rows[0])
    # sub-pixel row extents from the anti-aliasing-free mask: first/last column per row
    any_col = mask.any(1)
    left = np.where(any_col, mask.argmax(1), -1).astype(float)
    right = np.where(any_col, mask.shape[1] - 1 - mask[:, ::-1].argmax(1), -1).astype(float)
    # a row must be one run (a chair's legs, a handle's loop are not a rim)
    runs = np.abs(np.diff(mask.astype(np.int8), axis=1)).sum(1)
    width = right - left + 1.0
    half = width / 2.0
    centre = (left + right) / 2.0
    height = tip - top + 1
    reach = np.arange(tip, tip - int(0.45 * height) - 1, -1)      # rows upward from the tip
    if (runs[reach] > 2).any():
        return None
    w = half[reach]
    if w.max() < 6:
        return None
    # the wall starts where the half-width stops growing fast (an ellipse's slope falls to 0
    # at its widest row; a wall, even a tapered one, changes by a fraction of a pixel per row)
    slope = np.convolve(np.diff(w), np.ones(3) / 3.0, mode="same")
    flat = np.flatnonzero((slope < 0.3) & (np.arange(len(slope)) >= 3))
    if len(flat) == 0:
        return None
    t_wall = int(flat[0])
    if t_wall < 4:
        return None
    t = np.arange(1, t_wall + 1, dtype=float) - 0.5   # the tip's edge is half a row below it
    wt = w[1:len(t) + 1]
    # w^2 = alpha t + beta t^2 (least squares on w^2: the wide rows, measured best, count most)
    A = np.stack([t, t * t], 1)
    coef, *_ = np.linalg.lstsq(A, wt * wt, rcond=None)
    alpha, beta = float(coef[0]), float(coef[1])
    if alpha <= 0 or beta >= 0:
        return None
    b = alpha / (2 * -beta)
    a = alpha / (2 * math.sqrt(-beta))
    a_wall = float(w[t_wall])
    if not (0.9 * a_wall <= a <= 1.1 * a_wall) or not (0.6 * t_wall <= b <= 1.6 * t_wall):
        return None
    if b < 2.0 or b / a > MAX_RATIO or b / a < 0.02:
        return None
    w = wt
    t_rows = list(reach[1:t_wall + 1])
    model = np.sqrt(np.maximum(alpha * t + beta * t * t, 0.0))
    residual = float(np.sqrt(np.mean((model - w) ** 2)) / a)
    if residual > 0.05:
        return None
    # a rim: the ellipse's full depth lies inside the arc rows' reach, and above it a wall as
    # wide as the ellipse (a ball narrows again), and the centre line stays put
    wall_rows = np.arange(max(top, int(tip - b - max(3, 0.5 * b))), int(tip - b) + 1)
    if len(wall_rows) < 3 or (half[wall_rows] < 0.93 * a).any() or (runs[wall_rows] > 2).any():
        return None
    if np.ptp(centre[t_rows + list(wall_rows)]) > 0.08 * a + 1.5:
        return None
    # the arc must be a smooth tip, not a V: w^2 nearly linear in t near the tip
    near = t <= max(2.0, 0.35 * b)
    if near.sum() >= 3:
        lin = np.polyfit(t[near], w[near], 1)
        sq = np.polyfit(np.sqrt(t[near]), w[near], 1)
        r_lin = np.mean((np.polyval(lin, t[near]) - w[near]) ** 2)
        r_sq = np.mean((np.polyval(sq, np.sqrt(t[near])) - w[near]) ** 2)
        if r_lin < r_sq * 0.8:
            return None
    # the arc's outline, short of the wall (where the silhouette leaves the circle)
    rows = np.array([y for y, tt in zip(t_rows, t) if tt <= 0.85 * t_wall])
    pts = np.concatenate([np.stack([left[rows] - 0.5, rows], 1),
                          np.stack([right[rows] + 0.5, rows], 1),
                          [[centre[tip], tip + 0.5]]])
    return a, b, float(tip + 0.5), residual, pts
