"""Object masks of product photos: what is the product, what is background.

An alpha channel with real transparency is the mask. Otherwise the background colour is
estimated from the photo's border; on a near-uniform background the object is what a flood fill
from the border cannot reach, refined with OpenCV GrabCut initialised from that fill; on a busy
background GrabCut starts from "the object is inside the frame" (flag ``busy_background``).
Masks are cleaned: specks smaller than a tenth of the largest part go, pin holes are filled (real
openings such as a mug's handle stay). An enclosed region is an opening only where its median
colour is the background's within the border's noise, and GrabCut punches no hole inside the
object: a false opening carves a tunnel through the visual hull. A learned segmentation (``object_mask``'s ``learned``,
which the ingest stage builds from ``models.masks``) is tried before the classical mask when
given; an implausible answer falls back to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

LOW_CONTRAST = 80.0  # median RGB distance object-background below which masks get unsure


_WORK_SIDE = 512  # GrabCut and colour statistics run at most at this size (speed)


def has_transparency(alpha: np.ndarray | None) -> bool:
    """Real transparency: some pixels clearly transparent and some clearly opaque."""
    if alpha is None:
        return False
    return bool((alpha < 128).mean() > 0.001 and (alpha >= 128).mean() > 0.001)


#: A learned segmentation's answer for one photo: (object mask, or None when it is implausible
#: and the classical mask should be used, flags). The stage passes one in (``models.masks``).
LearnedMask = Callable[[np.ndarray], tuple[np.ndarray | None, list[str]]]


def object_mask(rgb: np.ndarray, alpha: np.ndarray | None,
                learned: LearnedMask | None = None) -> tuple[np.ndarray, list[str], str]:
    """(object mask, flags, source) from the alpha channel, the ``learned`` mask (when given
    and plausible) or, failing those, the background."""
    if has_transparency(alpha):
        return clean_mask(alpha >= 128), [], "alpha"
    flags: list[str] = []
    if learned is not None:
        mask, flags = learned(rgb)
        if mask is not None:
            return clean_mask(mask), flags, "model"
    mask, more = background_mask(rgb)
    return clean_mask(mask), flags + more, "background"


def background_mask(rgb: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Segment the object from a photo without alpha, assuming a plain-ish background.

    The background is modelled as a smooth (quadratic) colour field fitted to the photo's
    border, which also covers the grey-to-white gradients of studio sweeps.
    """
    h, w = rgb.shape[:2]
    ring = border_ring(h, w, max(1, round(0.02 * min(h, w))))
    img = rgb.astype(np.float32)
    resid = img - _background_field(img, ring)
    dist = np.sqrt((resid ** 2).sum(axis=2))
    tol = float(np.clip(2.5 * np.percentile(dist[ring], 75) + 8.0, 10.0, 40.0))
    if (dist[ring] <= tol).mean() < 0.6:
        return _grabcut_rect(rgb), ["busy_background"]
    background_like = dist <= tol
    fg = _flood_from_border(background_like)
    fg &= ~_enclosed_background(fg & background_like, dist, tol, int(fg.sum()), resid,
                                _border_noise(resid, ring & background_like))
    fg = _grabcut_refine(rgb, fg, dist <= 0.5 * tol, fg & (dist > 3.0 * tol))
    flags = []
    if fg.any() and float(np.median(dist[fg])) < max(3.0 * tol, LOW_CONTRAST):
        flags.append("low_contrast")
    return fg, flags


def _background_field(img: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """A per-channel quadratic in (x, y) fitted robustly to the border pixels."""
    h, w = ring.shape
    ys, xs = np.nonzero(ring)
    u, v = xs / max(w - 1, 1) - 0.5, ys / max(h - 1, 1) - 0.5
    A = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)
    colours = img[ys, xs].astype(np.float64)
    # Objects may touch the border: drop outliers with a shrinking residual threshold, so a
    # first fit skewed by them cannot hide them, while smooth gradients stay inliers.
    inliers = np.ones(len(u), bool)
    for threshold in (90.0, 45.0, 20.0, 10.0):
        coef, *_ = np.linalg.lstsq(A[inliers], colours[inliers], rcond=None)
        resid = np.linalg.norm(A @ coef - colours, axis=1)
        new = resid <= threshold
        if new.mean() < 0.4 or new.sum() < 6:  # no dominant smooth background: stop here
            break
        inliers = new
    coef, *_ = np.linalg.lstsq(A[inliers], colours[inliers], rcond=None)
    gu = (np.arange(w) / max(w - 1, 1) - 0.5)[None, :, None]
    gv = (np.arange(h) / max(h - 1, 1) - 0.5)[:, None, None]
    c = coef.astype(np.float32)
    return (c[0] + c[1] * gu + c[2] * gv + c[3] * gu * gu + c[4] * gu * gv
            + c[5] * gv * gv).astype(np.float32)


def _border_noise(resid: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Per channel: the background's pixel noise on the border (robust standard deviation of
    the residual from the fitted field; 0 for a flat rendered or keyed background)."""
    r = resid[ring]
    if len(r) < 6:
        return np.zeros(resid.shape[2], np.float32)
    return (1.4826 * np.median(np.abs(r - np.median(r, axis=0)), axis=0)).astype(np.float32)


#: How far (colour levels, on top of twice the border's noise) an opening's typical colour may
#: sit from the background's: the fitted field's error inside the frame.
OPENING_OFFSET = 1.0


def _enclosed_background(candidates: np.ndarray, dist: np.ndarray, tol: float,
                         object_area: int, resid: np.ndarray | None = None,
                         noise: np.ndarray | None = None) -> np.ndarray:
    """Background seen through openings of the product (a chair's back, a handle's loop).

    A flood fill from the border cannot reach them. Regions that are large and match the
    background closely are openings; small ones are kept as object (noise, white details).
    With the residual from the background field (``resid``) and the border's noise, a region
    is an opening only if its median colour is the background's, within the noise: white
    icing, a white van's panel seams or a lit white top sit a few levels off the background,
    consistently (their median is off), whereas real background seen through a gap has the
    border's colour up to noise. Why it matters: every opening carves a tunnel through the
    visual hull, and a false one in any photo cuts the product apart, so more photos made
    worse shapes (each adds its own false openings).
    """
    from scipy import ndimage

    labels, n = ndimage.label(candidates)
    if n == 0:
        return np.zeros_like(candidates)
    area = np.bincount(labels.ravel())
    mean = np.bincount(labels.ravel(), weights=dist.ravel()) / np.maximum(area, 1)
    opening = (area >= _hole_limit(object_area)) & (mean <= 0.6 * tol)
    opening[0] = False
    if resid is not None and noise is not None:
        limit = OPENING_OFFSET + 2.0 * noise
        for i in np.flatnonzero(opening):
            typical = np.median(resid[labels == i], axis=0)
            opening[i] = bool((np.abs(typical) <= limit).all())
    return opening[labels]


def _hole_limit(object_area: int) -> float:
    """Holes smaller than this are noise to fill; larger ones are real openings."""
    return max(16.0, 0.002 * object_area)


def border_ring(h: int, w: int, width: int) -> np.ndarray:
    ring = np.zeros((h, w), bool)
    ring[:width], ring[-width:], ring[:, :width], ring[:, -width:] = True, True, True, True
    return ring


def _flood_from_border(background_like: np.ndarray) -> np.ndarray:
    """Object = everything a flood fill through background-coloured pixels cannot reach."""
    from scipy import ndimage

    labels, _ = ndimage.label(background_like, structure=np.ones((3, 3), bool))
    edge = border_ring(*labels.shape, 1)
    reached = np.unique(labels[edge & background_like])
    return ~np.isin(labels, reached[reached > 0])


def _work_scale(h: int, w: int) -> float:
    return min(1.0, _WORK_SIDE / max(h, w))


def _resize_bool(mask: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) >= 128


def _seed_grabcut(cv2) -> None:
    """GrabCut seeds its colour models with k-means from OpenCV's per-thread random generator,
    whose state is whatever the thread's earlier calls left: the same photo got a different
    mask depending on which SKUs a worker had masked before it. Reset it to its initial state
    (seed 0 means OpenCV's default) before each call, so a mask depends on its photo alone."""
    cv2.setRNGSeed(0)


def _grabcut_refine(rgb: np.ndarray, fg: np.ndarray, sure_bg: np.ndarray,
                    distinct: np.ndarray) -> np.ndarray:
    """Let GrabCut drop what the flood fill wrongly kept (soft shadows, halos).

    Only pixels clearly unlike the background (``distinct``) are fixed as object; faint ones,
    where shadows live, are GrabCut's to decide.
    """
    import cv2

    h, w = fg.shape
    s = _work_scale(h, w)
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    fg_s, bg_s = _resize_bool(fg, sw, sh), _resize_bool(sure_bg, sw, sh)
    inner = cv2.erode(_resize_bool(distinct, sw, sh).astype(np.uint8),
                      np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() < 50 or bg_s.sum() < 50:
        return fg
    gc = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    gc[fg_s] = cv2.GC_PR_FGD
    gc[inner] = cv2.GC_FGD
    gc[bg_s & ~fg_s] = cv2.GC_BGD
    try:
        _seed_grabcut(cv2)
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), gc, None, np.zeros((1, 65)),
                    np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        log.debug("ingest: GrabCut refinement skipped (%s)", exc)
        return fg
    keep = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    keep = cv2.dilate(keep.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    refined = _no_new_holes(fg, fg & _resize_bool(keep, w, h))
    return refined if refined.sum() >= 0.5 * fg.sum() else fg


def _no_new_holes(fg: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """``refined`` with what GrabCut removed away from the background given back.

    GrabCut trims what touches the background (a shadow, a halo at the outline, the edge of an
    opening); a patch it removed inside the object, touching neither the outside nor an
    accepted opening, is a part coloured like the background (white icing on a white sweep),
    and a hole there would carve a tunnel through the visual hull."""
    from scipy import ndimage

    removed = fg & ~refined
    if not removed.any():
        return refined
    labels, n = ndimage.label(removed, structure=np.ones((3, 3), bool))
    near_bg = ndimage.binary_dilation(~fg, structure=np.ones((3, 3), bool))
    touches = np.zeros(n + 1, bool)
    touches[np.unique(labels[near_bg & removed])] = True
    touches[0] = True
    return refined | ~touches[labels]


def _grabcut_rect(rgb: np.ndarray) -> np.ndarray:
    """Busy background: GrabCut from 'the object is inside the frame, away from the edges'."""
    import cv2

    h, w = rgb.shape[:2]
    s = _work_scale(h, w)
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    inset = max(1, round(0.03 * min(sw, sh)))
    if sw <= 2 * inset + 2 or sh <= 2 * inset + 2:
        return np.zeros((h, w), bool)
    gc = np.zeros((sh, sw), np.uint8)
    try:
        _seed_grabcut(cv2)
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), gc,
                    (inset, inset, sw - 2 * inset, sh - 2 * inset), np.zeros((1, 65)),
                    np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_RECT)
    except cv2.error as exc:
        log.debug("ingest: GrabCut failed (%s)", exc)
        return np.zeros((h, w), bool)
    return _resize_bool((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), w, h)


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the product's parts (components >= 10% of the largest), fill pin holes."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = np.nonzero(sizes >= max(0.1 * sizes.max(), 4))[0]
    out = np.isin(labels, keep)
    holes, m = ndimage.label(~out)
    if m:
        hole_sizes = np.bincount(holes.ravel())
        hole_sizes[0] = 0
        edge_ids = np.unique(holes[border_ring(*out.shape, 1)])
        small = hole_sizes < _hole_limit(int(out.sum()))
        small[edge_ids] = False
        small[0] = False
        out |= small[holes]
    return out


def has_object(mask: np.ndarray) -> bool:
    return int(mask.sum()) >= max(16, int(1e-4 * mask.size))
