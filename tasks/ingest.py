"""ingest: product photos -> square, centred object crops, masks and consistent cameras.

Every later stage reads photos through what this stage writes (``image/<label>``,
``mask/<label>``, ``cameras``; ``core.views.load_views`` reads them back), so this is where the messy
inputs of real catalogs end: EXIF rotation, 16-bit/palette/CMYK files, decompression bombs,
truncated downloads, photos without a cut-out.

Masks. An alpha channel with real transparency is the mask. Otherwise the background colour is
estimated from the photo's border; on a near-uniform background the object is what a flood fill
from the border cannot reach, refined with OpenCV GrabCut initialised from that fill; on a busy
background GrabCut starts from "the object is inside the frame" (flag ``busy_background``).
Masks are cleaned: specks smaller than a tenth of the largest part go, pin holes are filled (real
openings such as a mug's handle stay). With ``mask_model`` set, a segmentation model
(``models.masks``) gives the mask of photos without transparency; where its mask is implausible
the classical one is used and the photo flagged ``learned_mask_fallback``.

Cameras. Catalog photos come without calibration. We assume the photographer centred the
product and shot every view of a SKU with the same lens and distance (a turntable rig or a
consistent studio habit): a pinhole with vertical field of view ``fov_deg`` looking at the
object's centre from ``distance`` times the object's largest extent, at the view's azimuth and
elevation, principal point at the photo's centre. ``Camera.cropped`` then gives the camera of the
crop, so silhouettes from several views stay mutually consistent, which is what the visual hull
carves with. World units: the object's largest extent is about 1, centred at the origin.

Labels. The catalog's view label; else one derived from the azimuth (``right``, or ``az030``
between the canonical ones; ``top``/``bottom`` at elevation +-90); else ``front`` for the first
unlabelled photo when no other photo is the front, and ``view<i>`` (i = 1-based position) after.
``view<i>`` photos have an unknown pose: their camera is a guess (front), and
``View.pose_known`` is False for them; backends should not carve with them. Repeated labels get
``_2``, ``_3``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from ..algorithms.masking import LearnedMask, has_object, object_mask
from ..algorithms.photos import (
    FORMAT_FIX,
    bbox_side,
    crop_box,
    crop_view,
    decode_image,
    resolution_flags,
)
from ..core.artifacts import save_cameras, save_image, save_json
from ..core.camera import Camera, orbit_camera
from ..core.errors import InputError
from ..core.stage import check, stage
from ..core.storage import read_ref
from ..core.types import (
    VIEW_AZIMUTHS,
    VIEW_ELEVATIONS,
    AssetState,
    ImageSpec,
    Resources,
    SkuSpec,
    StageResult,
)
from ..core.views import pose_known

log = logging.getLogger(__name__)

_EMPTY_FIX = "photograph the product on a plain background or supply an RGBA cut-out"


@dataclass(frozen=True)
class IngestOptions:
    """How photos become crops and cameras.

    size: side of the square output crops, pixels.
    margin: border around the object, as a fraction of the crop's side on each side.
    max_pixels: refuse larger images (decompression-bomb protection), per image.
    max_bytes: refuse larger files, per image.
    fov_deg: assumed vertical field of view of the catalog's camera.
    distance: assumed camera distance, in units of the object's largest extent.
    default_elevation_deg: assumed elevation when the catalog gives none.
    mask_model: a segmentation model's weights (local folder or cached repo id) for the object
        masks of photos without transparency ("" = the classical mask only); see
        ``models.masks``. Implausible model masks fall back to the classical one (flagged).
    mask_device: where the mask model runs ("cpu", "auto", "cuda", "cuda:N").
    """

    size: int = 512
    margin: float = 0.08
    max_pixels: int = 64_000_000
    max_bytes: int = 50_000_000
    fov_deg: float = 30.0
    distance: float = 2.5
    default_elevation_deg: float = 0.0
    mask_model: str = ""
    mask_device: str = "cpu"

    def __post_init__(self) -> None:
        check(16 <= self.size <= 8192, f"size {self.size} not in [16, 8192]")
        check(0.0 <= self.margin < 0.45, f"margin {self.margin} not in [0, 0.45)")
        check(self.max_pixels > 0, "max_pixels must be positive")
        check(self.max_bytes > 0, "max_bytes must be positive")
        check(1.0 <= self.fov_deg <= 150.0, f"fov_deg {self.fov_deg} not in [1, 150]")
        check(self.distance > 0.5, f"distance {self.distance} must exceed 0.5 (the "
              "camera must be outside the object)")
        check(-90.0 <= self.default_elevation_deg <= 90.0,
              "default_elevation_deg must be in [-90, 90]")
        check(self.mask_device in ("cpu", "auto", "cuda") or (
            self.mask_device.startswith("cuda:") and self.mask_device[5:].isdigit()),
            f"mask_device {self.mask_device!r} must be cpu, auto, cuda or cuda:N")


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class _Pose:
    label: str
    azimuth_deg: float
    elevation_deg: float


@stage("ingest", "5", IngestOptions, Resources(cpus=1),
       reads=("images", "fov_deg", "camera_distance"))
def ingest(state: AssetState, options: IngestOptions) -> StageResult:
    spec = state.spec
    if not spec.images:
        log.info("%s ingest: no images (mesh-only SKU), nothing to do", state.sku)
        return StageResult()
    poses = view_poses(spec.images, options.default_elevation_deg)
    options = camera_hints(spec, options)
    artifacts = {}
    cameras: list[Camera] = []
    flags: list[str] = []
    fracs: list[float] = []
    object_px: list[int] = []
    total_bytes = 0
    learned = learned_mask(options)
    for image, pose in zip(spec.images, poses):
        data = read_image_bytes(spec, image, options.max_bytes)
        total_bytes += len(data)
        rgb, alpha = decode_image(data, image.uri, options.max_pixels)
        mask, view_flags, source = object_mask(rgb, alpha, learned)
        if not has_object(mask):
            raise InputError(f"no object found in {image.uri} (view {pose.label}, mask from "
                             f"{source})", fix=_EMPTY_FIX, code="empty_mask")
        view_flags += resolution_flags(mask, options.size, options.margin)
        x0, y0, side = crop_box(mask, options.margin)
        crop_rgb, crop_mask = crop_view(rgb, alpha, mask, (x0, y0, side), options.size)
        cam = photo_camera(pose, rgb.shape[1], rgb.shape[0], options)
        cameras.append(cam.cropped(x0, y0, side, options.size))
        artifacts[f"image/{pose.label}"] = save_image(state, crop_rgb)
        artifacts[f"mask/{pose.label}"] = save_image(state, crop_mask)
        frac = float(mask.mean())
        fracs.append(frac)
        object_px.append(bbox_side(mask))
        flags += [f"{pose.label}:{f}" for f in view_flags]
        log.info("%s ingest: %s <- %s %dx%d, mask from %s, object %.1f%% of the photo%s",
                 state.sku, pose.label, image.uri, rgb.shape[1], rgb.shape[0], source,
                 100 * frac, f", flags {','.join(view_flags)}" if view_flags else "")
    artifacts["cameras"] = save_cameras(state, cameras)
    artifacts["camera_hints"] = save_json(state, shoot_hints(spec, options))
    extra = {}
    if options.mask_model:  # which segmentation weights made the masks (provenance)
        from ..models.masks import MaskModelConfig

        extra["ingest_mask_model_sha256"] = MaskModelConfig(options.mask_model).load_weights(
            ).digest
    return StageResult(artifacts=artifacts, metrics={
        **extra,
        "ingest_views": len(cameras),
        "ingest_views_posed": sum(pose_known(c.label) for c in cameras),
        "ingest_flags": ",".join(flags),
        "ingest_mask_frac_min": min(fracs),
        "ingest_object_px_min": min(object_px),
        "ingest_input_bytes": total_bytes,
    })


def learned_mask(options: IngestOptions) -> LearnedMask | None:
    """The configured segmentation model's mask function (loaded once per process), or None
    for the classical mask only. ``algorithms.masking.object_mask`` calls it for photos without
    transparency and falls back to the classical mask when it answers None."""
    if not options.mask_model:
        return None
    from ..models.masks import MaskModelConfig, load_mask_model

    config = MaskModelConfig(options.mask_model, device=options.mask_device)

    def mask(rgb: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
        return load_mask_model(config).object_mask(rgb)  # loaded at the first photo that needs it

    return mask


# --------------------------------------------------------------------------- labels and cameras


def view_poses(images: tuple[ImageSpec, ...] | list[ImageSpec],
               default_elevation_deg: float = 0.0) -> list[_Pose]:
    """A unique label and a camera direction for each photo (see the module docstring)."""
    bases: list[str | None] = [_clean_label(img.view) or _label_from_angles(img)
                               for img in images]
    front_taken = "front" in bases
    used: set[str] = set()
    poses = []
    for i, (img, base) in enumerate(zip(images, bases), start=1):
        if base is None:
            base = "front" if not front_taken else f"view{i}"
            front_taken = True
        label, k = base, 2
        while label in used:
            label, k = f"{base}_{k}", k + 1
        used.add(label)
        az = img.azimuth_deg if img.azimuth_deg is not None else VIEW_AZIMUTHS.get(base, 0.0)
        el = img.elevation_deg if img.elevation_deg is not None else VIEW_ELEVATIONS.get(
            base, default_elevation_deg)
        poses.append(_Pose(label, float(az), float(el)))
    return poses


def _clean_label(view: str) -> str:
    """Labels name artifact keys: lower case, letters, digits and underscores only."""
    return re.sub(r"[^a-z0-9_]+", "_", view.strip().lower()).strip("_")


def _label_from_angles(img: ImageSpec) -> str | None:
    if img.elevation_deg is not None and abs(img.elevation_deg) >= 89.5:
        return "top" if img.elevation_deg > 0 else "bottom"
    if img.azimuth_deg is None:
        return None
    az = img.azimuth_deg % 360.0
    for name, canon in VIEW_AZIMUTHS.items():
        if min(abs(az - canon), 360.0 - abs(az - canon)) < 0.5:
            return name
    return f"az{round(az) % 360:03d}"


def camera_hints(spec: SkuSpec, options: IngestOptions) -> IngestOptions:
    """Per-row camera hints: optional catalog columns ``fov_deg`` (vertical field of view) and
    ``camera_distance`` (in units of the product's largest extent) override the assumed shoot.

    Why per row: one catalog often mixes photographers and lenses; a row that knows its camera
    gets a tighter visual hull. Unusable values are ignored with a log line, never an error.
    """
    changes: dict[str, float] = {}
    for column, field_name, lo, hi in (("fov_deg", "fov_deg", 1.0, 120.0),
                                       ("camera_distance", "distance", 0.6, 100.0)):
        raw = (spec.metadata or {}).get(column)
        if raw in (None, ""):
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            log.warning("%s ingest: ignoring %s=%r (not a number)", spec.sku, column, raw)
            continue
        if lo <= value <= hi:
            changes[field_name] = value
        else:
            log.warning("%s ingest: ignoring %s=%r (outside %g..%g)", spec.sku, column, raw, lo, hi)
    return dataclasses.replace(options, **changes) if changes else options


def shoot_hints(spec: SkuSpec, options: IngestOptions) -> dict:
    """What the catalog said about the shoot and what ingest assumed (``camera_hints``): the
    cameras were built from both, and generate may correct what the catalog did not say (see
    ``algorithms/camera_fit.py``). ``options`` are the row's options after ``camera_hints``."""
    meta = spec.metadata or {}
    return {"fov_deg": options.fov_deg,
            "fov_known": _hint_value(meta.get("fov_deg")) == options.fov_deg,
            "distance": options.distance,
            "distance_known": _hint_value(meta.get("camera_distance")) == options.distance,
            "elevation_known": [img.elevation_deg is not None for img in spec.images],
            "default_elevation_deg": options.default_elevation_deg}


def _hint_value(raw) -> float | None:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def photo_camera(pose: _Pose, width: int, height: int, options: IngestOptions) -> Camera:
    """The assumed camera of the original photo (W x H, principal point at its centre)."""
    orbit = orbit_camera(pose.label, pose.azimuth_deg, pose.elevation_deg, options.distance,
                         options.fov_deg, size=max(width, height))
    f = 0.5 * height / math.tan(math.radians(options.fov_deg) / 2)
    K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    return Camera(pose.label, K, orbit.world_to_camera, int(width), int(height),
                  pose.azimuth_deg, pose.elevation_deg)


# --------------------------------------------------------------------------- reading, decoding


def read_image_bytes(spec: SkuSpec, image: ImageSpec, max_bytes: int) -> bytes:
    """The photo's bytes: a path relative to the catalog's folder, file:// or s3://."""
    if image.uri.startswith("s3://"):
        data = _read_s3(image.uri)
    else:
        path = _local_path(spec, image.uri)
        try:
            size = path.stat().st_size
            if not path.is_file():  # a folder, or a FIFO that would block the read
                raise IsADirectoryError(21, "not a regular file")
            if size > max_bytes:
                raise InputError(f"image {image.uri} is {size / 1e6:.1f} MB, over the limit of "
                                 f"{max_bytes / 1e6:.1f} MB",
                                 fix="downscale the photo or raise ingest max_bytes",
                                 code="too_large")
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"image {image.uri} cannot be read ({exc.strerror or exc})",
                             fix="check the path in the catalog (relative to the catalog "
                             "file's folder) and the file's permissions",
                             code="unreadable") from exc
    if len(data) > max_bytes:
        raise InputError(f"image {image.uri} is {len(data) / 1e6:.1f} MB, over the limit of "
                         f"{max_bytes / 1e6:.1f} MB",
                         fix="downscale the photo or raise ingest max_bytes", code="too_large")
    if not data:
        raise InputError(f"image {image.uri} is an empty file", fix=FORMAT_FIX, code="corrupt")
    return data


def _local_path(spec: SkuSpec, uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    path = Path(uri)
    if path.is_absolute() or not spec.catalog_root:
        return path
    root = Path(spec.catalog_root).resolve()
    full = (root / path).resolve()
    if not full.is_relative_to(root):  # specs built in code skip the catalog's checks
        raise InputError(f"image {uri} leads outside the catalog folder {root}",
                         fix="copy the photo into the catalog's folder", code="outside_root")
    return full


def _read_s3(uri: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return read_ref(uri)
    except (BotoCoreError, ClientError, OSError) as exc:
        raise InputError(f"image {uri} cannot be read from S3 ({exc})",
                         fix="check the bucket, the key and the S3 credentials/endpoint "
                         "(AWS_ENDPOINT_URL)", code="unreadable") from exc


# --------------------------------------------------------------------------- crop


