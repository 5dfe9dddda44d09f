"""Cameras from the silhouettes: the shoot's elevation, lens and per-view corrections.

Why: a merchant's photos say at best which side each shows. A visual hull carved with the wrong
elevation or lens cuts the product away (eight views cut more than four). The classical fix is
silhouette consistency: with the right cameras, the hull carved from all silhouettes reproduces
every one of them; with wrong ones it falls short of some. So the cameras are searched for the
ones whose hull agrees best with the photos, starting from what the catalog and the labels say,
each with the trust it deserves (a prior penalty), coarse to fine on small grids and
low-resolution masks (tens of milliseconds per trial: a field on a 32-48^3 grid, marching cubes,
the hull rendered into each view).

The parameters, in the order they are searched:

1. one elevation shared by the views (a turntable, or a photographer's habit), scanned over
   ``elevation_range_deg`` and refined. A round product's silhouettes agree at any elevation;
   its base or rim, seen as an ellipse (``rim_elevation``), then decides.
2. the lens: the vertical field of view. The camera distance moves with it so the object keeps
   its image size, i.e. the search is over perspective strength; the distance (in units of the
   product's size) follows from the fitted hull.
3. per view: a small azimuth correction (labels name a side, not an angle), a small elevation
   correction (a hand-held shoot) and a shift of the image centre (photos are not framed on the
   turntable's axis), each found against the hull carved from the *other* views, the shift by
   correlating the silhouette with that hull's projection.

A view that stays inconsistent after all this is named (``FitResult.outliers``): the hull of the
other views covers too little of its silhouette. For each such view the azimuth that would fit it
best is searched too, which tells a mislabelled photo (it fits, at another angle) from a photo of
something else (it fits nowhere). A view whose silhouette the others cover but which fills
clearly less of their hull than each of them fills the hull of the rest has an incomplete mask:
the photo is right, but its background removal lost part of the product (a white product on a
white background), and carving with it would cut the product away.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.camera import Camera, look_at
from .rim_elevation import arc_elevation, find_arcs
from .visual_hull import Grid, march, mask_sdf, view_field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShootHints:
    """What the catalog said about the shoot; what it did not say is searched freely.

    fov_deg: the vertical field of view the cameras were built with.
    fov_known: that value came from the catalog (``fov_deg``), not a default.
    distance: the camera distance the cameras were built with (units of the product's size).
    distance_known: that value came from the catalog (``camera_distance``).
    elevation_known: per view, its elevation came from the catalog (``@azimuth,elevation``).
    default_elevation_deg: the elevation to fall back on where nothing else decides.
    """

    fov_deg: float = 30.0
    fov_known: bool = False
    distance: float = 2.5
    distance_known: bool = False
    elevation_known: tuple[bool, ...] = ()
    default_elevation_deg: float = 15.0

    def to_dict(self) -> dict:
        return {"fov_deg": self.fov_deg, "fov_known": self.fov_known, "distance": self.distance,
                "distance_known": self.distance_known,
                "elevation_known": list(self.elevation_known),
                "default_elevation_deg": self.default_elevation_deg}

    @classmethod
    def from_dict(cls, d: dict) -> ShootHints:
        return cls(float(d.get("fov_deg", 30.0)), bool(d.get("fov_known", False)),
                   float(d.get("distance", 2.5)), bool(d.get("distance_known", False)),
                   tuple(bool(x) for x in d.get("elevation_known", ())),
                   float(d.get("default_elevation_deg", 15.0)))


@dataclass(frozen=True)
class FitOptions:
    """The search and the trust in each starting value.

    elevation_range_deg: where an unknown shared elevation is searched.
    fov_range_deg: where an unknown field of view is searched.
    azimuth_range_deg / view_elevation_range_deg: per-view corrections searched, +-.
    shift_range: per-view image-centre correction searched, +- a fraction of the image side.
    sigma_*: the prior's standard deviations (the trust): a known elevation, a known field of
        view (relative), a label's azimuth, a per-view elevation change, a centre shift
        (fraction of the side), a rim's elevation, and a default field of view (relative).
    prior_weight: how much one sigma of departure costs, in units of silhouette IoU.
    prior_cap: a departure costs at most this many sigma^2 (robust: strong silhouette evidence
        overrules a catalog value or a rim that is wrong).
    outlier_gain: how much leaving one view out must raise the others' agreement (the mean
        covered fraction of their silhouettes) for that view to be called inconsistent.
    pair_floor: two views are called a contradicting pair only when, on the finer grid,
        leaving one out raises the others' agreement by at least this multiple of what their
        hull still leaves uncovered: on a product with thin parts (chair legs, frames) the
        grids leave much of every silhouette uncovered, and opposite views disagree by about
        that much for that reason alone (a single odd view is judged without this test).
    incomplete_gap: how much less of the others' hull a view's silhouette must fill than the
        other views fill theirs for its mask to be called incomplete (it lost part of the
        product: a white product on a white background, an over-exposed photo).
    elevation_scan: the grid the unknown shared elevation is scanned on: "fine" (the finer
        grid, which also decides between the candidates) or "coarse" (cheaper, but a product's
        details are lost there and its best basins may miss the true elevation).
    stated_gain: a fully stated shoot (every view's elevation and the lens from the catalog)
        keeps its cameras unless the fitted ones raise the consistency by this much: the
        silhouettes must clearly disagree with the catalog, not merely prefer another camera
        by the small grid's noise.
    """

    elevation_range_deg: tuple[float, float] = (-10.0, 60.0)
    fov_range_deg: tuple[float, float] = (12.0, 65.0)
    azimuth_range_deg: float = 8.0
    view_elevation_range_deg: float = 6.0
    shift_range: float = 0.05
    sigma_known_elevation_deg: float = 2.0
    sigma_known_fov: float = 0.05
    sigma_default_fov: float = 0.5
    sigma_azimuth_deg: float = 5.0
    sigma_view_elevation_deg: float = 2.0
    sigma_shift: float = 0.015
    sigma_rim_deg: float = 1.5
    prior_weight: float = 0.002
    prior_cap: float = 9.0
    coarse_px: int = 96
    fine_px: int = 160
    coarse_grid: int = 32
    fine_grid: int = 44
    outlier_gain: float = 0.04
    pair_floor: float = 1.5
    incomplete_gap: float = 0.15
    stated_gain: float = 0.02
    candidates: int = 3         # the small grid's best basins that the finer grid re-ranks
    per_view: bool = True       # search a per-view elevation too (a hand-held shoot)
    elevation_scan: str = "fine"  # the grid the shared elevation is scanned on ("coarse")


@dataclass
class FitResult:
    """The fitted cameras and what the fit says about them (for metrics and provenance)."""

    cameras: list[Camera]
    elevation_deg: float
    fov_deg: float
    distance: float                    # camera distance / the hull's largest extent
    view_iou: dict[str, float]         # each silhouette against the hull of all views
    start_iou: float                   # mean view IoU with the cameras as given (fine level)
    azimuth_shift_deg: dict[str, float] = field(default_factory=dict)
    elevation_shift_deg: dict[str, float] = field(default_factory=dict)
    centre_shift_px: dict[str, tuple[float, float]] = field(default_factory=dict)
    rim_elevation_deg: float | None = None
    outliers: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0           # this process's CPU time (the wall time on a quiet core)

    @property
    def consistency(self) -> float:
        return float(np.mean(list(self.view_iou.values()))) if self.view_iou else 0.0

    def metrics(self) -> dict:
        """Flat values for the catalog (prefix them with the stage's name)."""
        r = lambda x: round(float(x), 3)
        return {
            "camera_elevation_deg": r(self.elevation_deg),
            "camera_fov_deg": r(self.fov_deg),
            "camera_distance": r(self.distance),
            "camera_consistency": r(self.consistency),
            "camera_consistency_start": r(self.start_iou),
            "camera_consistency_min": r(min(self.view_iou.values())) if self.view_iou else None,
            "camera_azimuth_shift_max_deg": r(max((abs(v) for v in
                                                   self.azimuth_shift_deg.values()), default=0)),
            "camera_elevation_spread_deg": r(np.ptp(list(self.elevation_shift_deg.values()))
                                             if self.elevation_shift_deg else 0.0),
            "camera_centre_shift_max_px": r(max((math.hypot(*v) for v in
                                                 self.centre_shift_px.values()), default=0)),
            "camera_rim_elevation_deg": None if self.rim_elevation_deg is None
            else r(self.rim_elevation_deg),
            "camera_outliers": ",".join(
                o["label"] + (f"+{o['partner']}" if o.get("partner") else "")
                for o in self.outliers),
            "camera_seconds": r(self.seconds),
            "camera_cpu_seconds": r(self.cpu_seconds),
        }

    def provenance(self) -> dict:
        return {"elevation_deg": self.elevation_deg, "fov_deg": self.fov_deg,
                "distance": self.distance, "view_iou": self.view_iou,
                "start_iou": self.start_iou, "azimuth_shift_deg": self.azimuth_shift_deg,
                "elevation_shift_deg": self.elevation_shift_deg,
                "centre_shift_px": {k: list(v) for k, v in self.centre_shift_px.items()},
                "rim_elevation_deg": self.rim_elevation_deg, "outliers": self.outliers,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}


# ------------------------------------------------------------------------ the camera model

@dataclass
class _Params:
    elevation: float
    fov: float
    d_el: np.ndarray      # (N,) per-view elevation change
    d_az: np.ndarray      # (N,) per-view azimuth change
    shift: np.ndarray     # (N, 2) principal point shift, full-resolution pixels

    def copy(self) -> _Params:
        return _Params(self.elevation, self.fov, self.d_el.copy(), self.d_az.copy(),
                       self.shift.copy())


class _Shoot:
    """The views, their masks at the working resolutions and the camera model."""

    def __init__(self, cameras: list[Camera], masks: list[np.ndarray], hints: ShootHints,
                 options: FitOptions) -> None:
        self.base = cameras
        self.labels = [c.label for c in cameras]
        self.n = len(cameras)
        self.hints = hints
        self.options = options
        self.fov0 = hints.fov_deg
        self.d0 = float(np.mean([np.linalg.norm(c.position) for c in cameras]))
        self.azimuth = np.array([c.azimuth_deg for c in cameras], float)
        self.elev0 = np.array([c.elevation_deg for c in cameras], float)
        self.polar = np.abs(self.elev0) >= 89.0      # top/bottom views keep their elevation
        known = hints.elevation_known if len(hints.elevation_known) == self.n else ()
        self.known_el = np.array(known or [False] * self.n, bool) | self.polar
        self.masks = masks
        self._levels: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def level(self, px: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(soft masks, SDFs) at ``px`` pixels (area-averaged from full resolution)."""
        if px not in self._levels:
            import cv2

            soft, sdfs = [], []
            for m in self.masks:
                s = cv2.resize(m.astype(np.float32), (px, px), interpolation=cv2.INTER_AREA)
                soft.append(s)
                sdfs.append(mask_sdf(s >= 0.5))
            self._levels[px] = (soft, sdfs)
        return self._levels[px]

    def camera(self, i: int, p: _Params, px: int | None = None) -> Camera:
        c = self.base[i]
        t = math.tan(math.radians(self.fov0) / 2) / math.tan(math.radians(p.fov) / 2)
        dist = self.d0 * t
        el = self.elev0[i] if self.polar[i] else p.elevation + p.d_el[i]
        az = self.azimuth[i] + (0.0 if self.polar[i] else p.d_az[i])
        a, e = math.radians(az), math.radians(el)
        eye = dist * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
        # a top or bottom view keeps its image's up direction as ingest built it
        up = tuple(c.world_to_camera[1, :3]) if self.polar[i] else (0.0, 1.0, 0.0)
        K = c.K.copy()
        K[0, 0] *= t
        K[1, 1] *= t
        K[0, 1] *= t
        K[0, 2] += p.shift[i, 0]
        K[1, 2] += p.shift[i, 1]
        cam = Camera(c.label, K, look_at(eye, np.zeros(3), up), c.width, c.height, float(az),
                     float(el))
        if px is not None and px != c.width:
            cam = cam.cropped(0, 0, c.width, px)
        return cam

    def distance(self, p: _Params) -> float:
        t = math.tan(math.radians(self.fov0) / 2) / math.tan(math.radians(p.fov) / 2)
        return self.d0 * t


# ------------------------------------------------------------------------ consistency

class _Carver:
    """Hull fields on a fixed grid; the hull's reprojection against each silhouette."""

    def __init__(self, shoot: _Shoot, box: tuple[np.ndarray, np.ndarray], px: int, res: int):
        from ..geometry.render import get_renderer

        self.shoot = shoot
        self.px = px
        self.grid = Grid.over(box[0], box[1], res)
        axes = [self.grid.lo[i] + np.arange(n) * self.grid.spacing[i]
                for i, n in enumerate(self.grid.shape)]
        g = np.meshgrid(*axes, indexing="ij")
        self.points = np.stack([a.ravel() for a in g], 1)
        self.soft, self.sdfs = shoot.level(px)
        self.renderer = get_renderer()
        self.trials = 0

    def fields(self, p: _Params, views: list[int] | None = None) -> dict[int, np.ndarray]:
        views = range(self.shoot.n) if views is None else views
        out = {}
        for i in views:
            cam = self.shoot.camera(i, p, self.px)
            out[i] = view_field(cam, self.sdfs[i], self.points)[0].astype(np.float32)
        return out

    def hull(self, fields: dict[int, np.ndarray], skip: int | None = None):
        vol = None
        for i, f in fields.items():
            if i == skip:
                continue
            vol = f.copy() if vol is None else np.minimum(vol, f, out=vol)
        if vol is None or not (vol > 0).any():
            return None
        return march(vol.reshape(self.grid.shape), self.grid, None)

    def coverage(self, mesh, cam: Camera) -> np.ndarray:
        """Soft silhouette (0-1 coverage) of ``mesh`` in ``cam``, 2x supersampled."""
        self.trials += 1
        return self.renderer.coverage(mesh, cam, ssaa=2) / 255.0

    def view_ious(self, p: _Params) -> np.ndarray:
        mesh = self.hull(self.fields(p))
        if mesh is None:
            return np.zeros(self.shoot.n)
        return np.array([_soft_iou(self.coverage(mesh, self.shoot.camera(i, p, self.px)),
                                   self.soft[i]) for i in range(self.shoot.n)])


def _soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = float(np.maximum(a, b).sum())
    return float(np.minimum(a, b).sum() / union) if union > 0 else 0.0


def _best_shift(mask: np.ndarray, proj: np.ndarray, max_px: float) -> tuple[np.ndarray, float]:
    """The translation of ``proj`` (within +-max_px) that covers ``mask`` best, and the fraction
    of ``mask`` it then covers (the projection of the other views' hull may be larger than the
    silhouette without contradicting it; only the silhouette's uncovered part does)."""
    import cv2

    r = max(1, math.ceil(max_px))
    padded = cv2.copyMakeBorder(mask.astype(np.float32), r, r, r, r, cv2.BORDER_CONSTANT, 0)
    win = cv2.matchTemplate(padded, proj.astype(np.float32), cv2.TM_CCORR)
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    best = float(win[iy, ix])
    sub = np.zeros(2)
    for axis, (i, n) in enumerate(((ix, win.shape[1]), (iy, win.shape[0]))):
        if 0 < i < n - 1:
            line = win[iy, i - 1:i + 2] if axis == 0 else win[i - 1:i + 2, ix]
            den = line[0] - 2 * line[1] + line[2]
            if den < 0:
                sub[axis] = 0.5 * (line[0] - line[2]) / den
    shift = np.array([ix - r + sub[0], iy - r + sub[1]])
    total = float(mask.sum())
    return shift, (min(best / total, 1.0) if total > 0 else 0.0)


# ------------------------------------------------------------------------ the search

def fit_cameras(cameras: list[Camera], masks: list[np.ndarray], hints: ShootHints,
                options: FitOptions = FitOptions()) -> FitResult:
    """Cameras that make the silhouettes agree, starting from ``cameras`` (as ingest built them
    from the catalog's labels and hints). Needs two or more views.

    One inconsistent view would drag the whole fit (with four views, far), so the views are
    screened first, at a plausible shoot (the rim's elevation, else the catalog's or the
    default one): if leaving one view out makes the others agree, the others are fitted alone
    and the suspect is judged against their hull; otherwise all are fitted and screened again.
    Two views that contradict only each other (with four views, a mislabelled side against its
    opposite) are named together: silhouettes cannot tell which of the two is wrong.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    if len(cameras) < 2:
        raise ValueError("fit_cameras needs two or more views")
    masks = [np.asarray(m, bool) for m in masks]
    shoot = _Shoot(cameras, masks, hints, options)
    n = shoot.n
    rim = _rim(shoot)
    found = None
    if n >= 4:
        p0 = _start(shoot)
        if not shoot.known_el[~shoot.polar].any():
            e = rim.elevation(p0.fov) if rim else None
            p0.elevation = e if e is not None else hints.default_elevation_deg
        screen = _Carver(shoot, _object_box(shoot, p0), options.coarse_px, options.coarse_grid)
        found = _culprit(screen, p0, options)
    if found is not None:
        suspect = found[0]
        keep = [i for i in range(n) if i != suspect]
        sub_hints = replace(hints, elevation_known=tuple(shoot.known_el[keep]))
        sub = _Shoot([cameras[i] for i in keep], [masks[i] for i in keep], sub_hints, options)
        p_sub, info = _fit(sub, options, rim)
        p = _expand(p_sub, keep, n, shoot)
        box = _object_box(shoot, p)
        carver = _Carver(shoot, box, options.coarse_px, options.coarse_grid)
        # at the others' cameras, does leaving the suspect out still make them agree?
        again = _culprit(carver, p, options)
        verdict = None
        if again is not None and suspect in again:
            other = again[1] if again[0] == suspect else again[0]
            # the suspect is judged with the per-view corrections any photo may have (a
            # hand-held shot's azimuth, elevation and framing): uncorrected, an off-centre
            # photo of the same product looks like another product
            judged = p.copy()
            _per_view(_Carver(shoot, box, options.fine_px, options.fine_grid), judged,
                      options, shoot.known_el, views=[suspect])
            verdict = _judge(carver, judged, suspect, options, other)
        if verdict is not None and not _confirmed(shoot, p, suspect, options):
            verdict = None
        if verdict is not None:
            result = _result(shoot, p, info, rim, exclude=suspect)
            result.outliers = [verdict]
            result.seconds = time.perf_counter() - t0
            result.cpu_seconds = time.process_time() - c0
            _log(result, info)
            return result
    p, info = _fit(shoot, options, rim)
    result = _result(shoot, p, info, rim)
    if n >= 3:
        # judged with every correction the fit may make, even where the catalog's cameras stay
        q = info["fitted"]
        carver = _Carver(shoot, _object_box(shoot, q), options.coarse_px, options.coarse_grid)
        found = _culprit(carver, q, options)
        if found is not None:
            verdict = _judge(carver, q, found[0], options, found[1])
            if verdict is not None and not _confirmed(shoot, q, found[0], options):
                verdict = None
            result.outliers = [verdict] if verdict is not None else []
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    _log(result, info)
    return result


def single_view(camera: Camera, mask: np.ndarray, hints: ShootHints,
                options: FitOptions = FitOptions()) -> tuple[Camera, float | None]:
    """One photo: its camera at the elevation a rim shows, when the catalog gave none.

    Returns the camera and the rim's elevation (None when no rim was found: the camera keeps
    the catalog's or the default elevation it was built with)."""
    known = bool(hints.elevation_known[0]) if hints.elevation_known else False
    if known or abs(camera.elevation_deg) >= 89.0:
        return camera, None
    shoot = _Shoot([camera], [np.asarray(mask, bool)], hints, options)
    rim = _rim(shoot).elevation(hints.fov_deg)
    if rim is None:
        return camera, None
    p = _start(shoot)
    p.elevation = float(np.clip(rim, *options.elevation_range_deg))
    return shoot.camera(0, p), rim


def _log(result: FitResult, info: dict) -> None:
    log.info("camera fit: elevation %.1f, fov %.1f, distance %.2f, consistency %.3f -> %.3f "
             "(%d trials, %.2f s)%s", result.elevation_deg, result.fov_deg, result.distance,
             result.start_iou, result.consistency, info["trials"], result.seconds,
             f", inconsistent: {[o['label'] for o in result.outliers]}" if result.outliers
             else "")


class _Rims:
    """The rims the silhouettes show (round products), and their elevation for a lens: a
    rim's ellipse depends on the focal length it is seen through."""

    def __init__(self, shoot: _Shoot) -> None:
        self.shoot = shoot
        self.arcs = [(int(i), arc) for i in np.flatnonzero(~shoot.polar)
                     for arc in find_arcs(shoot.masks[i])]
        self._cache: dict[float, float | None] = {}

    def __bool__(self) -> bool:
        return bool(self.arcs)

    def elevation(self, fov: float) -> float | None:
        key = round(float(fov), 2)
        if key not in self._cache:
            p = _start(self.shoot)
            p.fov = key
            found = []
            for i, arc in self.arcs:
                e = arc_elevation(arc, self.shoot.camera(i, p))
                if e is not None:
                    found.append(e - p.d_el[i])
            self._cache[key] = float(np.median(found)) if found else None
        return self._cache[key]


def _rim(shoot: _Shoot) -> _Rims:
    return _Rims(shoot)


def _start(shoot: _Shoot) -> _Params:
    """The cameras as given: the shared elevation is the median, catalog differences stay."""
    n = shoot.n
    free = ~shoot.polar
    start_el = float(np.median(shoot.elev0[free])) if free.any() else 0.0
    p = _Params(start_el, shoot.hints.fov_deg, np.zeros(n), np.zeros(n), np.zeros((n, 2)))
    p.d_el = np.where(free, shoot.elev0 - start_el, 0.0)
    return p


def _expand(p: _Params, keep: list[int], n: int, shoot: _Shoot) -> _Params:
    """Parameters of a subset's fit for all ``n`` views (the left-out ones uncorrected)."""
    out = _Params(p.elevation, p.fov, np.zeros(n), np.zeros(n), np.zeros((n, 2)))
    start = _start(shoot)
    out.d_el = start.d_el.copy()
    out.d_el[keep] = p.d_el
    out.d_az[keep] = p.d_az
    out.shift[keep] = p.shift
    return out


def _fit(shoot: _Shoot, options: FitOptions, rim: _Rims) -> tuple[_Params, dict]:
    """The search itself (see the module docstring): shared elevation, lens, per view."""
    hints = shoot.hints
    n = shoot.n
    known_el = shoot.known_el
    free = ~shoot.polar
    p = _start(shoot)
    start_el = p.elevation
    coarse = _Carver(shoot, _object_box(shoot, p), options.coarse_px, options.coarse_grid)
    cap = options.prior_cap

    def prior(q: _Params) -> float:
        cost = 0.0
        if known_el[free].any():
            dev = (q.elevation + q.d_el - shoot.elev0)[free & known_el]
            cost += float(np.mean(np.minimum((dev / options.sigma_known_elevation_deg) ** 2,
                                             4 * cap)))
        elif rim:
            e = rim.elevation(q.fov)
            if e is not None:
                cost += min(((q.elevation - e) / options.sigma_rim_deg) ** 2, cap)
        sig = options.sigma_known_fov if hints.fov_known else options.sigma_default_fov
        cost += min((math.log(q.fov / hints.fov_deg) / sig) ** 2, 4 * cap)
        return options.prior_weight * cost

    def objective(carver: _Carver, q: _Params) -> float:
        return 1.0 - float(carver.view_ious(q).mean()) + prior(q)

    # The small grid ranks the lens's candidates; the finer one decides between the best few.
    # On the small grid a product's details (a cake's candles, a frame's bars) are lost and
    # its score is flat and noisy over tens of degrees: eight views of a cake scored -11
    # degrees best there, which the finer grid scores far below the true 15. The elevation is
    # scanned on the finer grid itself: with exact masks of the same cake, the small grid's
    # three best basins (-10, -2.5, 5) did not include the true one at all.
    def fine_at(q: _Params) -> _Carver:
        return _Carver(shoot, _object_box(shoot, q), options.fine_px, options.fine_grid)

    fine = fine_at(p)

    # 1. the shared elevation (the per-view catalog offsets ride along)
    if free.any():
        if known_el[free].all():
            lo, hi, step = start_el - 6.0, start_el + 6.0, 3.0
        else:
            lo, hi = options.elevation_range_deg
            step = 7.5
        scan = coarse if options.elevation_scan == "coarse" else fine
        cands = _candidates(lambda e: objective(scan, replace(p, elevation=e)), lo, hi, step,
                            options.candidates)
        best = min(cands, key=lambda e: objective(fine, replace(p, elevation=e)))
        p.elevation = _golden(lambda e: objective(fine, replace(p, elevation=e)),
                              best - step / 2, best + step / 2, 4)

    # 2. the lens
    if not hints.fov_known:
        lo_f, hi_f = options.fov_range_deg
        step = (math.log(hi_f) - math.log(lo_f)) / 5
        cands = _candidates(lambda lf: objective(coarse, replace(p, fov=math.exp(lf))),
                            math.log(lo_f), math.log(hi_f), step, options.candidates)
        best = min(cands, key=lambda lf: objective(fine_at(replace(p, fov=math.exp(lf))),
                                                   replace(p, fov=math.exp(lf))))
        fine = fine_at(replace(p, fov=math.exp(best)))
        p.fov = math.exp(_golden(lambda lf: objective(fine, replace(p, fov=math.exp(lf))),
                                 best - step / 2, best + step / 2, 3))
        if free.any():
            p.elevation = _golden(lambda e: objective(fine, replace(p, elevation=e)),
                                  p.elevation - 3.0, p.elevation + 3.0, 3)

    # 3. per view, against the others' hull, at the finer level; kept only where they make
    # the photos agree better as a whole (each view's correction is found against the others'
    # hull alone, and eight views' small corrections can add up to a worse hull)
    fine = fine_at(p)
    if n >= 3:
        before = p.copy()
        score_before = float(fine.view_ious(before).mean())
        _per_view(fine, p, options, known_el)
        _recentre(shoot, p)
        if float(fine.view_ious(p).mean()) < score_before:
            p = before
    ious = fine.view_ious(p)
    stated = _start(shoot)
    start_ious = fine.view_ious(stated)
    start_iou = float(start_ious.mean())
    fitted = p
    # the labels' (or the catalog's) cameras stand where the fit does not beat them, prior
    # included (a rim's elevation may cost a little consistency on a coarse grid)
    worse = 1.0 - ious.mean() + prior(p) > 1.0 - start_iou + prior(stated)
    if worse or (_fully_stated(shoot) and ious.mean() < start_iou + options.stated_gain):
        p, ious = stated, start_ious
    mesh = fine.hull(fine.fields(p))
    extent = float(np.ptp(mesh.vertices, axis=0).max()) if mesh is not None else 1.0
    return p, {"start_iou": start_iou, "ious": dict(zip(shoot.labels, ious.tolist())),
               "extent": extent, "trials": coarse.trials + fine.trials, "fitted": fitted}


def _fully_stated(shoot: _Shoot) -> bool:
    """The catalog gave the lens and every (non-polar) view's elevation: nothing is unknown,
    only the per-view corrections a fit could add."""
    free = ~shoot.polar
    return bool(shoot.hints.fov_known and shoot.known_el[free].all())


def _result(shoot: _Shoot, p: _Params, info: dict, rim: _Rims,
            exclude: int | None = None) -> FitResult:
    n = shoot.n
    labels = shoot.labels
    return FitResult(
        cameras=[shoot.camera(i, p) for i in range(n)], elevation_deg=float(p.elevation),
        fov_deg=float(p.fov), distance=_distance(shoot, p, info["extent"]),
        view_iou={k: float(v) for k, v in info["ious"].items()}, start_iou=info["start_iou"],
        azimuth_shift_deg={labels[i]: float(p.d_az[i]) for i in range(n) if i != exclude},
        elevation_shift_deg={labels[i]: float(p.d_el[i]) for i in range(n) if i != exclude},
        centre_shift_px={labels[i]: (float(p.shift[i, 0]), float(p.shift[i, 1]))
                         for i in range(n) if i != exclude},
        rim_elevation_deg=rim.elevation(p.fov) if rim else None)


def _distance(shoot: _Shoot, p: _Params, extent: float) -> float:
    """The camera distance in units of the product's largest extent: with the catalog's
    ``camera_distance`` the world is in those units already (the hull's extent on the small
    grid, thin parts lost, would misreport it); otherwise the fitted hull's extent is the unit."""
    if shoot.hints.distance_known:
        return shoot.distance(p)
    return shoot.distance(p) / max(extent, 1e-9)


def _per_view(carver: _Carver, p: _Params, options: FitOptions, known_el: np.ndarray,
              views: list[int] | None = None) -> None:
    """Each view's azimuth, then elevation, with its centre, against the hull of the others
    (in place; coordinate search: five trials per parameter); ``views``: only these."""
    shoot = carver.shoot
    fields = carver.fields(p)
    px = carver.px
    width = shoot.base[0].width
    scale = width / px                        # full-resolution pixels per working pixel
    max_shift = options.shift_range * px

    def cost(i: int, mesh, q: _Params) -> tuple[float, np.ndarray]:
        q.shift[i] = 0.0
        proj = carver.coverage(mesh, shoot.camera(i, q, px))
        shift, covered = _best_shift(carver.soft[i], proj, max_shift)
        full = shift * scale
        c = 1.0 - covered + options.prior_weight * (
            (q.d_az[i] / options.sigma_azimuth_deg) ** 2
            + (q.d_el[i] / options.sigma_view_elevation_deg) ** 2
            + float((full ** 2).sum()) / (options.sigma_shift * width) ** 2)
        return c, full

    for i in range(shoot.n) if views is None else views:
        if shoot.polar[i]:
            continue
        mesh = carver.hull(fields, skip=i)
        if mesh is None:
            continue
        params = [("d_az", options.azimuth_range_deg)]
        if options.per_view and not known_el[i]:
            params.append(("d_el", options.view_elevation_range_deg))
        best_shift = p.shift[i].copy()
        for name, reach in params:
            trials = []
            for step in np.linspace(-reach, reach, 5):
                q = p.copy()
                getattr(q, name)[i] += step
                c, full = cost(i, mesh, q)
                trials.append((c, float(getattr(q, name)[i]), full))
            c, value, full = min(trials, key=lambda t: t[0])
            getattr(p, name)[i] = value
            best_shift = full
        p.shift[i] = best_shift
        fields.update(carver.fields(p, [i]))


def _recentre(shoot: _Shoot, p: _Params) -> None:
    """Per-view corrections carry no common part: the mean azimuth change is a turn of the
    whole product, the mean elevation change belongs to the shared elevation."""
    free = ~shoot.polar
    if free.sum() >= 2:
        p.d_az[free] -= p.d_az[free].mean()
        mean_el = p.d_el[free].mean()
        p.elevation += mean_el
        p.d_el[free] -= mean_el


def _covered(carver: _Carver, mesh, cam: Camera, i: int) -> float:
    """The fraction of view ``i``'s silhouette that ``mesh`` covers in ``cam``."""
    m = carver.soft[i]
    return float(np.minimum(m, carver.coverage(mesh, cam)).sum() / max(m.sum(), 1e-9))


def _culprit(carver: _Carver, p: _Params, options: FitOptions, pair_floor: float = 0.0
             ) -> tuple[int, int | None] | None:
    """(the view whose removal makes the others agree, None) if one does; (j, k) when either
    of two views does and no third (they contradict each other); None when the views agree.

    For each view j, the hull of the others is projected into every other view: the mean
    covered fraction says how well the rest agree without j. A view is the culprit when
    leaving it out raises that agreement by ``outlier_gain`` over the whole set and clearly more
    than leaving out any other view does (thin parts lost on the small grid lower every score
    alike, so only the differences count). With ``pair_floor``, two views are named together
    only when that raise is at least that multiple of what the rest's hull still leaves
    uncovered (a thin product's opposite views disagree by about that much alone).
    """
    shoot = carver.shoot
    n = shoot.n
    if n < 3:
        return None
    fields = carver.fields(p)
    cams = [shoot.camera(i, p, carver.px) for i in range(n)]
    full = carver.hull(fields)
    s_all = (float(np.mean([_covered(carver, full, cams[i], i) for i in range(n)]))
             if full is not None else 0.0)
    scores = []
    for j in range(n):
        rest = carver.hull(fields, skip=j)
        scores.append(np.mean([_covered(carver, rest, cams[i], i) for i in range(n) if i != j])
                      if rest is not None else 0.0)
    order = np.argsort(-np.asarray(scores))
    best, second = float(scores[order[0]]), float(scores[order[1]])
    third = float(scores[order[2]]) if n >= 3 else s_all
    gain = best - s_all
    if gain < options.outlier_gain:
        return None
    if best - second >= 0.4 * gain:
        return int(order[0]), None
    if second - third >= 0.4 * gain and gain >= pair_floor * (1.0 - best):
        return int(order[0]), int(order[1])
    return None


def _confirmed(shoot: _Shoot, p: _Params, suspect: int, options: FitOptions) -> bool:
    """A verdict found on the coarse grid holds on the fine one too: thin parts (chair legs,
    handles) that the coarse grid loses make a photo look inconsistent there, but a photo of
    another product or a mislabelled one stays the odd one out at any resolution. A pair must
    also stand out of what the fine grid still leaves uncovered (``pair_floor``)."""
    fine = _Carver(shoot, _object_box(shoot, p), options.fine_px, options.fine_grid)
    again = _culprit(fine, p, options, options.pair_floor)
    return again is not None and suspect in again


def _judge(carver: _Carver, p: _Params, j: int, options: FitOptions,
           partner: int | None = None) -> dict | None:
    """What the inconsistent view ``j`` looks like: a mislabelled photo (another azimuth fits
    it as well as the others fit each other) or a photo of something else (no azimuth does);
    with a ``partner``, the two contradict each other."""
    shoot = carver.shoot
    n = shoot.n
    fields = carver.fields(p)
    rest = carver.hull(fields, skip=j)
    if rest is None:
        return None
    cams = [shoot.camera(i, p, carver.px) for i in range(n)]
    others = [i for i in range(n) if i != j]
    sub = {i: fields[i] for i in others}
    typical = float(np.mean([_covered(carver, carver.hull(sub), cams[i], i) for i in others]))
    own = _covered(carver, rest, cams[j], j)
    entry = {"label": shoot.labels[j], "covered": round(own, 3),
             "others_covered": round(typical, 3),
             "labelled_azimuth_deg": float(shoot.azimuth[j])}
    if partner is None and own >= typical - options.outlier_gain:
        # the others explain its silhouette as well as they explain each other. Either what
        # they disagree about is what the small grid loses (thin parts), not this photo, or its
        # silhouette lies inside theirs but falls short of it: its mask lost part of the
        # product (a white product on a white background, an over-exposed photo)
        return _incomplete(carver, fields, j, rest, cams, entry, options)
    if partner is not None:
        # two photos contradict each other when leaving one out lets the other agree with the
        # rest as well as the rest agree; thin parts lost on the small grid lower both alike
        # and leaving one out helps the other little
        cover = {i: _covered(carver, rest, cams[i], i) for i in others}
        third = [cover[i] for i in others if i != partner]
        if third and cover[partner] < float(np.mean(third)) - options.outlier_gain:
            return None
        entry.update(kind="pair", partner=shoot.labels[partner],
                     partner_azimuth_deg=float(shoot.azimuth[partner]))
        return entry
    fits = []
    for az in np.arange(0.0, 360.0, 15.0):
        q = p.copy()
        q.d_az[j] = az - shoot.azimuth[j]
        proj = carver.coverage(rest, shoot.camera(j, q, carver.px))
        _, covered = _best_shift(carver.soft[j], proj, options.shift_range * carver.px)
        fits.append((covered, float(az)))
    fit_cov, fit_az = max(fits)
    if fit_cov >= typical - options.outlier_gain and _angle(fit_az, shoot.azimuth[j]) > 20.0:
        entry.update(kind="mislabelled", fits_azimuth_deg=fit_az, fits_covered=round(fit_cov, 3))
    else:
        entry.update(kind="other_object", fits_covered=round(fit_cov, 3))
    return entry


def _filled(carver: _Carver, mesh, cam: Camera, i: int) -> float:
    """The fraction of ``mesh``'s projection in ``cam`` that view ``i``'s silhouette fills."""
    proj = carver.coverage(mesh, cam)
    return float(np.minimum(carver.soft[i], proj).sum() / max(proj.sum(), 1e-9))


def _incomplete(carver: _Carver, fields: dict[int, np.ndarray], j: int, rest,
                cams: list[Camera], entry: dict, options: FitOptions) -> dict | None:
    """The verdict on view ``j`` when the others' hull covers its silhouette: an incomplete
    mask if its silhouette fills clearly less of that hull's projection than each other view
    fills the hull carved without it (the fair comparison: a view never fills less of a hull
    it carved itself), else None (nothing wrong with the photo).

    A consistent view fills the others' hull up to what only it can carve (a gap only it sees
    through), which the others show alike when left out of theirs; a mask that lost part of
    the product leaves much of the hull unfilled, and carving with it cut the product away.
    ``fields``: every view's hull field, as ``_judge`` computed them."""
    others = [i for i in range(carver.shoot.n) if i != j]
    own = _filled(carver, rest, cams[j], j)
    fills = []
    for i in others:
        without = carver.hull({k: fields[k] for k in others if k != i})
        if without is not None:
            fills.append(_filled(carver, without, cams[i], i))
    if not fills:
        return None
    typical = float(np.mean(fills))
    if own >= typical - options.incomplete_gap:
        return None
    entry.update(kind="incomplete_mask", filled=round(own, 3), others_filled=round(typical, 3))
    return entry


def _angle(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def _object_box(shoot: _Shoot, p: _Params) -> tuple[np.ndarray, np.ndarray]:
    """The box the object lies in under ``p``: a coarse hull's box, grown by a margin so the
    search's other cameras still find the object inside it."""
    half = 0.6 * shoot.distance(p)
    grid = Grid.over(np.full(3, -half), np.full(3, half), 24)
    _, sdfs = shoot.level(64)
    fields = [lambda pts, i=i: view_field(shoot.camera(i, p, 64), sdfs[i], pts)[0]
              for i in range(shoot.n)]
    vol = grid.evaluate(lambda pts: np.min([f(pts) for f in fields], axis=0))
    inside = np.argwhere(vol > -grid.spacing.max())
    if len(inside) == 0:
        return np.full(3, -half / 2), np.full(3, half / 2)
    lo = grid.lo + inside.min(0) * grid.spacing
    hi = grid.lo + inside.max(0) * grid.spacing
    margin = 0.2 * float((hi - lo).max()) + grid.spacing.max()
    return lo - margin, hi + margin


def _candidates(f, lo: float, hi: float, step: float, k: int) -> list[float]:
    """The ``k`` best local minima of ``f`` on a scan of [lo, hi] (the ends count), best
    first: the basins worth a closer look."""
    xs = np.arange(lo, hi + 1e-9, step)
    vals = np.array([f(float(x)) for x in xs])
    pad = np.concatenate([[np.inf], vals, [np.inf]])
    minima = [i for i in range(len(xs)) if pad[i + 1] <= pad[i] and pad[i + 1] <= pad[i + 2]]
    minima.sort(key=lambda i: vals[i])
    return [float(xs[i]) for i in minima[:max(1, k)]]


def _golden(f, lo: float, hi: float, iters: int) -> float:
    """Golden-section minimum of ``f`` on [lo, hi] after ``iters`` narrowing steps."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return c if fc < fd else d
