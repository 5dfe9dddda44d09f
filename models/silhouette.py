"""The default, weight-free backend: a shape from the product's silhouettes.

Two or more labelled views give a visual hull: every point whose projection falls inside every
mask. One view gives an inflated closed surface, as deep as a fraction of its width. Neither
needs a GPU or weights, so a catalog always gets *some* closed mesh whose silhouettes match the
photos; learned backends plug in beside it for better shapes.

Both build a signed field on a voxel grid (positive inside, roughly in world units) and mesh
its zero level with marching cubes. Each view's field is the mask's signed distance
(distance transform inside minus outside, in pixels) sampled bilinearly at the projection and
scaled to world units by depth / focal length, so the surface is smooth at sub-pixel precision
instead of stair-stepped by the pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..algorithms.visual_hull import Grid, focal, march, mask_sdf, view_field
from ..core.camera import Camera
from ..core.errors import InputError, ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check
from ..core.types import Resources
from ..geometry import closed
from ..geometry.closed import is_closed
from ..geometry.components import largest_component, pieces_by_volume
from .base import DenseMesh, GenerateRequest

__all__ = ["SilhouetteConfig", "SilhouetteGenerator", "inflate", "is_closed",
           "largest_component", "mask_sdf", "signed_volume", "visual_hull"]

log = logging.getLogger(__name__)

INCONSISTENT = ("fail", "drop")


@dataclass(frozen=True)
class SilhouetteConfig:
    """Options of the silhouette backend.

    resolution: voxels along the longest side of the object's box (dense mesh ~ 6 res^2 faces).
    inflation: one view only: depth of the inflated shape relative to its width (a round
        silhouette with 1.0 gives a sphere; 0.35 suits boxes and bottles seen from the front).
    coarse_resolution: voxels per side of the first pass that finds the object's box.
    keep_largest: drop the pieces that enclose less than ``min_piece`` of the largest one's
        volume (floaters come from noisy masks); every piece that holds volume stays: more
        views cut a product's separate parts (a cake's candles, a lid, a frame's bars) free of
        each other, and keeping only the largest then threw most of the product away.
    min_piece: see ``keep_largest``.
    estimate_cameras: fit what the catalog did not say about the shoot (elevation, lens,
        per-view azimuth, elevation and centre) to the silhouettes (``algorithms/camera_fit.py``);
        one photo: the elevation from a rim seen as an ellipse. Only when ingest recorded the
        catalog's camera hints; cameras given without hints are used as they are.
    on_inconsistent: a photo that disagrees with the others (mislabelled, another product, or
        a mask that lost part of the product): "fail" the SKU naming the photo, or "drop" it
        from the carving (a photo with an incomplete mask still textures).
    ground_cut: remove the wedge a hull grows under a product seen only from above, up to the
        lowest point every photo still needs (``ground_cut``).
    photo_carve: carve the hull where the photos disagree about its colour (concavities and
        phantoms between parts; ``algorithms/photo_carve.py``).
    """

    name: ClassVar[str] = "silhouette"
    resolution: int = 128
    device: str = "cpu"
    inflation: float = 0.35
    coarse_resolution: int = 48
    keep_largest: bool = True
    min_piece: float = 0.005
    estimate_cameras: bool = True
    on_inconsistent: str = "fail"
    ground_cut: bool = True
    photo_carve: bool = False

    def __post_init__(self) -> None:
        check(16 <= self.resolution <= 512, f"silhouette: resolution {self.resolution} not in "
              "16..512")
        check(8 <= self.coarse_resolution <= 256, "silhouette: coarse_resolution not in 8..256")
        check(self.device == "cpu", f"silhouette: runs on numpy; device {self.device!r} must be "
              "'cpu'")
        check(0.0 <= self.min_piece <= 1.0, f"silhouette: min_piece {self.min_piece} not in "
              "[0, 1]")
        check(0.0 < self.inflation <= 4.0, f"silhouette: inflation {self.inflation} not in (0, 4]")
        check(self.on_inconsistent in INCONSISTENT, f"silhouette: on_inconsistent must be one of "
              f"{INCONSISTENT}, got {self.on_inconsistent!r}")

    def build(self) -> SilhouetteGenerator:
        return SilhouetteGenerator(self)

    def weights_sha256(self) -> str | None:
        return None

    def resources(self) -> Resources:
        return Resources(cpus=1)  # numpy carving on one core


class SilhouetteGenerator:
    """Visual hull from 2+ views, inflation from 1; deterministic (the seed is ignored)."""

    def __init__(self, config: SilhouetteConfig) -> None:
        self.config = config

    def generate(self, request: GenerateRequest) -> DenseMesh:
        views = list(request.views)
        if not views:
            raise InputError(
                f"{request.sku}: the silhouette backend needs at least one view with a mask, "
                "and none was given",
                "add product photos to the catalog row, or give a mesh_uri")
        # Photos whose direction is a guess (ingest's ``view<i>``) would carve away real parts.
        posed = [i for i, v in enumerate(views) if getattr(v, "pose_known", True)] or [0]
        masks = [_check_mask(views[i]) for i in posed]
        cams = [views[i].camera for i in posed]
        info: dict = {}
        report = None
        texture_only: dict[str, Camera] = {}
        if request.camera_hints is not None and self.config.estimate_cameras:
            cams, posed, masks, info, report, texture_only = self._cameras(
                request, views, posed, masks, cams)
        if len(posed) == 1:
            mesh, hull_info = inflate(cams[0], masks[0], self.config)
        else:
            images = [np.asarray(views[i].rgb) for i in posed] if self.config.photo_carve \
                else None
            mesh, hull_info = visual_hull(cams, masks, self.config, dims_m=request.dims_m,
                                          images=images)
        info = {"views": len(views), "views_used": len(posed), "voxels": self.config.resolution,
                **hull_info, **info}
        log.info("%s generate/silhouette: %s from %d of %d view(s) -> %d faces", request.sku,
                 info["method"], len(posed), len(views), mesh.n_faces)
        # Every view's camera goes back (estimated where it was): texturing still projects the
        # photos that did not carve; a photo dropped as inconsistent is not projected either.
        # A photo dropped for its incomplete mask still textures, at its fitted camera.
        out = [texture_only.get(v.label, v.camera) for v in views]
        for i, cam in zip(posed, cams):
            out[i] = cam
        dropped = set(str(info.get("camera_dropped") or "").split(",")) - {""} \
            - set(texture_only)
        out = [c for c in out if c.label not in dropped]
        return DenseMesh(mesh=mesh, cameras=out, info=info, report=report)

    def _cameras(self, request: GenerateRequest, views: list, posed: list[int],
                 masks: list[np.ndarray], cams: list[Camera]):
        """Estimated cameras for the posed views (see ``algorithms/camera_fit.py``); a photo that
        disagrees with the others fails the SKU or is dropped (``on_inconsistent``). Also
        returns {label: fitted camera} of a photo dropped from the carving for its incomplete
        mask only, which still textures."""
        from ..algorithms.camera_fit import ShootHints, fit_cameras, single_view

        raw = dict(request.camera_hints or {})
        known = list(raw.get("elevation_known") or [])
        raw["elevation_known"] = [bool(known[i]) if i < len(known) else False for i in posed]
        hints = ShootHints.from_dict(raw)
        if len(posed) == 1:
            cam, found = single_view(cams[0], masks[0], hints)
            info = {"camera_elevation_deg": round(cam.elevation_deg, 3),
                    "camera_rim_elevation_deg": None if found is None else round(found, 3),
                    "camera_elevation_source": "rim" if found is not None else
                    ("catalog" if hints.elevation_known[0] else "default")}
            return [cam], posed, masks, info, {"camera_fit": info}, {}
        fit = fit_cameras(cams, masks, hints)
        dropped = []
        texture_only: dict[str, Camera] = {}
        if fit.outliers:
            bad = fit.outliers[0]
            if self.config.on_inconsistent == "fail":
                raise _inconsistent(bad, len(posed))
            labels = [views[i].label for i in posed]
            gone = {labels.index(bad["label"])}
            if bad.get("partner"):
                gone.add(labels.index(bad["partner"]))
            dropped.append(bad)
            if bad.get("kind") == "incomplete_mask":
                texture_only[bad["label"]] = fit.cameras[labels.index(bad["label"])]
            keep = [k for k in range(len(posed)) if k not in gone]
            posed, masks, cams = ([seq[k] for k in keep] for seq in (posed, masks, fit.cameras))
            raw["elevation_known"] = [raw["elevation_known"][k] for k in keep]
            if len(posed) >= 2:
                fit = fit_cameras(cams, masks, ShootHints.from_dict(raw))
                cams = fit.cameras
        else:
            cams = fit.cameras
        info = {k: v for k, v in fit.metrics().items()}
        info["camera_dropped"] = ",".join(
            x for d in dropped for x in (d["label"], d.get("partner")) if x)
        report = {"camera_fit": {**fit.provenance(), "hints": hints.to_dict(),
                                 "dropped": dropped}}
        return cams, posed, masks, info, report, texture_only


def _inconsistent(bad: dict, n: int) -> InputError:
    label = bad["label"]
    if bad.get("kind") == "pair":
        other = bad["partner"]
        return InputError(
            f"photos {label!r} and {other!r} contradict each other (the other photos agree with "
            f"either one alone): one of them is probably mislabelled or shows another product",
            f"check the view labels (or @azimuth) of photos {label!r} and {other!r} in the "
            "catalog", code="inconsistent_views")
    if bad.get("kind") == "incomplete_mask":
        return InputError(
            f"the mask of photo {label!r} lost part of the product: it fills "
            f"{100 * bad['filled']:.0f}% of the outline the other {n - 1} photos give the product "
            f"from its side (they fill {100 * bad['others_filled']:.0f}% of each other's), so "
            "carving with it would cut the product away; the background removal could not tell "
            "product from background (too little contrast, or an over-exposed photo)",
            f"shoot photo {label!r} on a background that contrasts with the product, or give it "
            "an alpha channel (a cut-out PNG); or leave it out of the carving with "
            "-B on_inconsistent=drop (it still textures)", code="incomplete_mask")
    if bad.get("kind") == "mislabelled":
        return InputError(
            f"photo {label!r} disagrees with the other {n - 1} photos: it matches the product "
            f"seen from azimuth {bad['fits_azimuth_deg']:.0f} degrees, not "
            f"{bad['labelled_azimuth_deg']:.0f} as labelled (the others explain "
            f"{100 * bad['covered']:.0f}% of its silhouette as labelled, "
            f"{100 * bad['fits_covered']:.0f}% at that azimuth)",
            f"correct the view label (or @azimuth) of photo {label!r} in the catalog, or remove "
            "the photo", code="inconsistent_views")
    return InputError(
        f"photo {label!r} disagrees with the other {n - 1} photos at every angle: it seems to "
        f"show a different product (the others explain {100 * bad['covered']:.0f}% of its "
        "silhouette)", f"remove or replace photo {label!r}", code="inconsistent_views")


# --- masks ------------------------------------------------------------------------------------

def _check_mask(view) -> np.ndarray:
    mask = np.asarray(view.mask)
    if mask.ndim == 3:
        mask = mask[..., -1] if mask.shape[2] in (2, 4) else mask[..., 0]
    mask = mask > (127 if mask.dtype == np.uint8 else 0)
    cam: Camera = view.camera
    if mask.shape != (cam.height, cam.width):
        raise InputError(
            f"mask of view {view.label!r} is {mask.shape[1]}x{mask.shape[0]} px but its camera "
            f"is {cam.width}x{cam.height}",
            "re-run ingest so masks and cameras come from the same crop")
    if not mask.any():
        raise InputError(f"mask of view {view.label!r} is empty: no object found in the photo",
                         "use a photo where the product stands out from the background")
    return mask


def signed_volume(mesh: MeshData) -> float:
    return closed.signed_volume(mesh.vertices, mesh.faces)


def _finish(mesh: MeshData, config: SilhouetteConfig, method: str) -> tuple[MeshData, dict]:
    if mesh.n_faces == 0:
        raise ProcessingError(f"{method} produced no surface",
                              "check the masks and the view labels")
    pieces = kept = 1
    if config.keep_largest:
        mesh, pieces, kept = pieces_by_volume(mesh, config.min_piece)
    vol = signed_volume(mesh)
    if vol < 0:
        mesh = mesh.replace(faces=mesh.faces[:, ::-1].copy())
        vol = -vol
    if not np.isfinite(mesh.vertices).all():
        raise ProcessingError(f"{method} produced non-finite vertices",
                              "report this SKU; the cameras may be degenerate")
    return mesh, {"method": method, "components": pieces, "components_kept": kept,
                  "volume": vol,
                  "watertight": is_closed(mesh.faces)}


# --- two or more views: visual hull ---------------------------------------------------------

def visual_hull(cameras: list[Camera], masks: list[np.ndarray],
                config: SilhouetteConfig, dims_m: tuple = (None, None, None),
                images: list[np.ndarray] | None = None) -> tuple[MeshData, dict]:
    """Carve a grid with every view's silhouette cone; a coarse pass finds the object's box."""
    sdfs = [mask_sdf(m) for m in masks]

    def field(pts: np.ndarray) -> np.ndarray:
        out = np.full(len(pts), np.inf, np.float32)
        for cam, sdf in zip(cameras, sdfs):
            out = np.minimum(out, view_field(cam, sdf, pts)[0])
        return out

    # The object was normalised to ~unit size near the origin; look well beyond that but stay
    # in front of every camera.
    half = 0.6 * min(float(np.linalg.norm(c.position)) for c in cameras)
    coarse = Grid.over(np.full(3, -half), np.full(3, half), config.coarse_resolution)
    vol = coarse.evaluate(field)
    near = vol > -2.0 * coarse.spacing.max()
    if not (vol > 0).any():
        raise ProcessingError(
            f"the {len(cameras)} silhouettes do not intersect in space: no point projects "
            "inside every mask",
            "check the view labels (front/left/...) and that all photos show the same product")
    idx = np.argwhere(near)
    lo = coarse.lo + (idx.min(0) - 1) * coarse.spacing
    hi = coarse.lo + (idx.max(0) + 1) * coarse.spacing
    fine = Grid.over(lo, hi, config.resolution)
    vol = fine.evaluate(field)
    cut = _ground_cut(vol, fine, cameras, masks) if config.ground_cut else 0.0
    trim = ground_trim(vol, fine, cameras, dims_m)
    carve = {}
    if config.photo_carve and images is not None:
        from ..algorithms.photo_carve import photo_carve

        carve = photo_carve(vol, fine, cameras, masks, images)
    mesh, info = _finish(march(vol, fine, None), config, "visual_hull")
    info["grid"] = "x".join(str(n) for n in fine.shape)
    info["ground_trim"] = trim
    info["ground_cut"] = cut
    info.update(carve)
    return mesh, info


def _ground_cut(vol: np.ndarray, grid: Grid, cameras: list[Camera],
                masks: list[np.ndarray]) -> float:
    """Cut the unseen wedge under the product (``algorithms/ground_cut.py``); modifies ``vol`` in
    place and returns the depth removed, relative to the hull's largest extent."""
    from ..algorithms.ground_cut import cut_below, needed_floor

    inside = vol > 0
    if not inside.any():
        return 0.0
    floor = needed_floor(march(vol, grid, None), cameras, masks)
    if floor is None:
        return 0.0
    ys = grid.lo[1] + np.arange(vol.shape[1]) * grid.spacing[1]
    rows = np.flatnonzero(inside.any(axis=(0, 2)))
    bottom = ys[rows[0]]
    if floor <= bottom + grid.spacing[1]:
        return 0.0
    cut_below(vol, ys, floor)
    extent = float(max((np.ptp(np.flatnonzero(inside.any(axis=tuple(a for a in range(3)
                                                                     if a != i))))
                        * grid.spacing[i]) for i in range(3)))
    return float((floor - bottom) / max(extent, 1e-12))


def ground_trim(vol: np.ndarray, grid: Grid, cameras: list[Camera],
                dims_m: tuple) -> float:
    """Cut away the wedge a visual hull grows under a product shot only from above.

    Why: no silhouette constrains the hull below the product's base when every camera looks
    down, so the hull ends in a wedge (about half the footprint x tan(elevation) deep) and the
    asset comes out too tall. With the catalog's height and at least one horizontal dimension,
    the horizontal extents (which the wedge does not change) fix the scale, and everything more
    than the catalog height below the hull's top is carved away. Modifies ``vol`` in place;
    returns the trimmed depth in grid units (0 when nothing was trimmed).
    """
    width, height, depth = (dims_m + (None, None, None))[:3]
    if not height or not (width or depth):
        return 0.0
    if min(c.elevation_deg for c in cameras) < 2.0:
        return 0.0  # a view from the horizon or below sees the base: nothing to trim
    inside = vol > 0
    if not inside.any():
        return 0.0
    occ = [np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != i)))
           for i in range(3)]
    ext = [(o.max() - o.min()) * grid.spacing[i] for i, o in enumerate(occ)]
    ratios = [d / e for d, e in ((width, ext[0]), (depth, ext[2])) if d and e > 0]
    if not ratios:
        return 0.0
    scale = float(np.exp(np.mean(np.log(ratios))))          # metres per grid unit
    y_top = grid.lo[1] + occ[1].max() * grid.spacing[1]
    y_bottom = grid.lo[1] + occ[1].min() * grid.spacing[1]
    y_cut = y_top - height / scale
    if y_cut <= y_bottom + grid.spacing[1]:
        return 0.0
    ys = grid.lo[1] + np.arange(vol.shape[1]) * grid.spacing[1]
    np.minimum(vol, (ys - y_cut).astype(np.float32)[None, :, None], out=vol)
    return float(y_cut - y_bottom)


# --- one view: inflation --------------------------------------------------------------------

def inflate(camera: Camera, mask: np.ndarray, config: SilhouetteConfig) -> tuple[MeshData, dict]:
    """A closed, rounded volume whose silhouette from ``camera`` is ``mask``.

    The depth profile is a circle-like rounding of the mask's distance transform
    (``h = k * sqrt(d (2R - d))``, R the inscribed radius: a disc becomes an ellipsoid of depth
    ``k`` times its width), mirrored front and back around the plane through the world origin
    facing the camera; built in the camera frame, then moved to world with the camera.
    """
    sdf = mask_sdf(mask)
    f = focal(camera)
    V = camera.world_to_camera
    d0 = float(-V[2, 3])
    if d0 <= 1e-6:
        raise InputError(f"camera of view {camera.label!r} does not look at the object "
                         "(world origin behind it)", "re-run ingest to rebuild the cameras")
    d_world = np.maximum(sdf, 0.0) * d0 / f
    R = float(d_world.max())
    half_depth = (config.inflation * np.sqrt(np.maximum(d_world * (2 * R - d_world), 0.0)))
    half_depth = half_depth.astype(np.float32)
    hmax = float(half_depth.max())

    def field(pts: np.ndarray) -> np.ndarray:
        s, depth, h = view_field(camera, sdf, pts, extra=half_depth)
        return np.minimum(s, h - np.abs(depth - d0)).astype(np.float32)

    lo, hi = _camera_box(camera, mask, d0, hmax)
    res = config.resolution
    # Keep >= 8 voxels across the thickness however flat the inflation.
    min_spacing = np.array([np.inf, np.inf, max(2 * hmax / 8, 1e-6)])
    grid = Grid.over(lo, hi, res, min_spacing=min_spacing)
    to_world = np.linalg.inv(V)
    vol = grid.evaluate(field, to_world)
    mesh, info = _finish(march(vol, grid, to_world), config, "inflate")
    info["grid"] = "x".join(str(n) for n in grid.shape)
    return mesh, info


def _camera_box(camera: Camera, mask: np.ndarray, d0: float,
                hmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space box (x right, y up, z = -depth) around the back-projected mask."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    u = np.array([cols[0] - 1.5, cols[-1] + 1.5])
    v = np.array([rows[0] - 1.5, rows[-1] + 1.5])
    margin = 0.05 * hmax + 1e-3
    depths = np.array([max(d0 - hmax - margin, 1e-3), d0 + hmax + margin])
    K = camera.K
    uu, vv, dd = (a.ravel() for a in np.meshgrid(u, v, depths, indexing="ij"))
    ys = -(vv - K[1, 2]) / K[1, 1] * dd
    xs = (uu - K[0, 2] - K[0, 1] * (vv - K[1, 2]) / K[1, 1]) / K[0, 0] * dd
    lo = np.array([xs.min(), ys.min(), -depths.max()])
    hi = np.array([xs.max(), ys.max(), -depths.min()])
    if not np.isfinite(lo).all() or math.isclose(float((hi - lo).min()), 0.0):
        raise ProcessingError("inflate: degenerate camera box", "check the view's camera")
    return lo, hi
