"""ingest: product photos -> square, centred object crops, masks and consistent cameras.

Every later stage reads photos through what this stage writes (``image/<label>``,
``mask/<label>``, ``cameras``; ``load_views`` reads them back), so this is where the messy
inputs of real catalogs end: EXIF rotation, 16-bit/palette/CMYK files, decompression bombs,
truncated downloads, photos without a cut-out.

Masks. An alpha channel with real transparency is the mask. Otherwise the background colour is
estimated from the photo's border; on a near-uniform background the object is what a flood fill
from the border cannot reach, refined with OpenCV GrabCut initialised from that fill; on a busy
background GrabCut starts from "the object is inside the frame" (flag ``busy_background``).
Masks are cleaned: specks smaller than a tenth of the largest part go, pin holes are filled (real
openings such as a mug's handle stay).

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
import io
import logging
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from ..core.artifacts import load_cameras, load_image, save_cameras, save_image, save_json
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

log = logging.getLogger(__name__)

FORMATS = ("PNG", "JPEG", "MPO", "WEBP")  # MPO: multi-picture JPEG from phone cameras
_FORMAT_FIX = "re-export the photo as PNG, JPEG or WebP"
_EMPTY_FIX = "photograph the product on a plain background or supply an RGBA cut-out"
LOW_CONTRAST = 80.0  # median RGB distance object-background below which masks get unsure
_WORK_SIDE = 512  # GrabCut and colour statistics run at most at this size (speed)


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
    """

    size: int = 512
    margin: float = 0.08
    max_pixels: int = 64_000_000
    max_bytes: int = 50_000_000
    fov_deg: float = 30.0
    distance: float = 2.5
    default_elevation_deg: float = 0.0

    def __post_init__(self) -> None:
        check(16 <= self.size <= 8192, f"ingest: size {self.size} not in [16, 8192]")
        check(0.0 <= self.margin < 0.45, f"ingest: margin {self.margin} not in [0, 0.45)")
        check(self.max_pixels > 0, "ingest: max_pixels must be positive")
        check(self.max_bytes > 0, "ingest: max_bytes must be positive")
        check(1.0 <= self.fov_deg <= 150.0, f"ingest: fov_deg {self.fov_deg} not in [1, 150]")
        check(self.distance > 0.5, f"ingest: distance {self.distance} must exceed 0.5 (the "
              "camera must be outside the object)")
        check(-90.0 <= self.default_elevation_deg <= 90.0,
              "ingest: default_elevation_deg must be in [-90, 90]")


@dataclass(frozen=True)
class View:
    """One ingested photo as later stages use it: crop, silhouette and camera."""

    label: str
    camera: Camera
    rgb: np.ndarray   # (H, W, 3) uint8, background white
    mask: np.ndarray  # (H, W) bool, True on the object

    @property
    def pose_known(self) -> bool:
        return pose_known(self.label)


def pose_known(label: str) -> bool:
    """False for ``view<i>`` labels: photos whose camera direction is a guess."""
    base = re.sub(r"_\d+$", "", label)
    return base in VIEW_AZIMUTHS or base in VIEW_ELEVATIONS or bool(re.fullmatch(r"az\d{3}", base))


def load_views(state: AssetState) -> list[View]:
    """The views ingest wrote (with the current ``cameras``, e.g. moved by cleanup)."""
    if "cameras" not in state.artifacts:
        return []
    views = []
    for cam in load_cameras(state):
        rgb = load_image(state, f"image/{cam.label}")
        mask = load_image(state, f"mask/{cam.label}")
        rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
        views.append(View(cam.label, cam, rgb, (mask if mask.ndim == 2 else mask[..., 0]) > 127))
    return views


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class _Pose:
    label: str
    azimuth_deg: float
    elevation_deg: float


@stage("ingest", "3", IngestOptions, Resources(cpus=1))
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
    for image, pose in zip(spec.images, poses):
        data = read_image_bytes(spec, image, options.max_bytes)
        total_bytes += len(data)
        rgb, alpha = decode_image(data, image.uri, options.max_pixels)
        mask, view_flags, source = object_mask(rgb, alpha)
        if not _has_object(mask):
            raise InputError(f"no object found in {image.uri} (view {pose.label}, mask from "
                             f"{source})", fix=_EMPTY_FIX, code="empty_mask")
        view_flags += _resolution_flags(mask, options.size, options.margin)
        x0, y0, side = crop_box(mask, options.margin)
        crop_rgb, crop_mask = crop_view(rgb, alpha, mask, (x0, y0, side), options.size)
        cam = photo_camera(pose, rgb.shape[1], rgb.shape[0], options)
        cameras.append(cam.cropped(x0, y0, side, options.size))
        artifacts[f"image/{pose.label}"] = save_image(state, crop_rgb)
        artifacts[f"mask/{pose.label}"] = save_image(state, crop_mask)
        frac = float(mask.mean())
        fracs.append(frac)
        object_px.append(_bbox_side(mask))
        flags += [f"{pose.label}:{f}" for f in view_flags]
        log.info("%s ingest: %s <- %s %dx%d, mask from %s, object %.1f%% of the photo%s",
                 state.sku, pose.label, image.uri, rgb.shape[1], rgb.shape[0], source,
                 100 * frac, f", flags {','.join(view_flags)}" if view_flags else "")
    artifacts["cameras"] = save_cameras(state, cameras)
    artifacts["camera_hints"] = save_json(state, shoot_hints(spec, options))
    return StageResult(artifacts=artifacts, metrics={
        "ingest_views": len(cameras),
        "ingest_views_posed": sum(pose_known(c.label) for c in cameras),
        "ingest_flags": ",".join(flags),
        "ingest_mask_frac_min": min(fracs),
        "ingest_object_px_min": min(object_px),
        "ingest_input_bytes": total_bytes,
    })


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
    ``tasks/camera_fit.py``). ``options`` are the row's options after ``camera_hints``."""
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
        raise InputError(f"image {image.uri} is an empty file", fix=_FORMAT_FIX, code="corrupt")
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


def decode_image(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """PNG/JPEG/WebP bytes -> (RGB uint8 (H, W, 3), alpha uint8 (H, W) or None), upright."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InputError(f"image {name} is too large to decode safely ({exc})",
                         fix="downscale the photo", code="too_large") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image {name} is not a readable PNG, JPEG or WebP file",
                         fix=_FORMAT_FIX, code="corrupt") from exc
    with im:
        if im.format not in FORMATS:
            raise InputError(f"image {name} is {im.format}, not PNG, JPEG or WebP",
                             fix=_FORMAT_FIX, code="unsupported_format")
        w, h = im.size
        if w * h > max_pixels or w < 1 or h < 1:
            raise InputError(f"image {name} is {w}x{h} = {w * h / 1e6:.1f} Mpx, over the limit "
                             f"of {max_pixels / 1e6:.1f} Mpx",
                             fix="downscale the photo or raise ingest max_pixels",
                             code="too_large")
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"image {name} is corrupt or truncated ({exc})",
                             fix="download or export the photo again", code="corrupt") from exc
        upright = _exif_upright(im, ImageOps, name)
        return to_rgb8(upright)


def _exif_upright(im, image_ops, name: str):
    try:
        return image_ops.exif_transpose(im)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError) as exc:
        log.warning("ingest: %s has unreadable EXIF orientation (%s); used as stored", name, exc)
        return im


def to_rgb8(im) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> 8-bit sRGB (+ alpha). 16-bit grey is scaled, not clipped."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them.
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if (mode.startswith("I;16") or arr.max() > 255) else 255.0
        if mode == "F":
            top = max(float(arr.max()), 1e-12) if arr.max() > 1.0 else 1.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None
    if "transparency" in im.info and mode in ("P", "L", "RGB") or mode in ("LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
    im = _to_srgb(im)
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.shape[2] == 4:
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    return np.ascontiguousarray(arr), None


def _to_srgb(im):
    """Apply an embedded ICC profile (CMYK press profiles, Display P3 phone photos)."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"),
                                         outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        log.warning("ingest: ignored an unusable ICC profile (%s)", exc)
        return im


# --------------------------------------------------------------------------- masks


def has_transparency(alpha: np.ndarray | None) -> bool:
    """Real transparency: some pixels clearly transparent and some clearly opaque."""
    if alpha is None:
        return False
    return bool((alpha < 128).mean() > 0.001 and (alpha >= 128).mean() > 0.001)


def object_mask(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, list[str], str]:
    """(object mask, flags, source) from the alpha channel or, failing that, the background."""
    if has_transparency(alpha):
        return clean_mask(alpha >= 128), [], "alpha"
    mask, flags = background_mask(rgb)
    return clean_mask(mask), flags, "background"


def background_mask(rgb: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Segment the object from a photo without alpha, assuming a plain-ish background.

    The background is modelled as a smooth (quadratic) colour field fitted to the photo's
    border, which also covers the grey-to-white gradients of studio sweeps.
    """
    h, w = rgb.shape[:2]
    ring = _ring(h, w, max(1, round(0.02 * min(h, w))))
    img = rgb.astype(np.float32)
    dist = np.sqrt(((img - _background_field(img, ring)) ** 2).sum(axis=2))
    tol = float(np.clip(2.5 * np.percentile(dist[ring], 75) + 8.0, 10.0, 40.0))
    if (dist[ring] <= tol).mean() < 0.6:
        return _grabcut_rect(rgb), ["busy_background"]
    background_like = dist <= tol
    fg = _flood_from_border(background_like)
    fg &= ~_enclosed_background(fg & background_like, dist, tol, int(fg.sum()))
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


def _enclosed_background(candidates: np.ndarray, dist: np.ndarray, tol: float,
                         object_area: int) -> np.ndarray:
    """Background seen through openings of the product (a chair's back, a handle's loop).

    A flood fill from the border cannot reach them. Regions that are large and match the
    background closely are openings; small ones are kept as object (noise, white details).
    """
    from scipy import ndimage

    labels, n = ndimage.label(candidates)
    if n == 0:
        return np.zeros_like(candidates)
    area = np.bincount(labels.ravel())
    mean = np.bincount(labels.ravel(), weights=dist.ravel()) / np.maximum(area, 1)
    opening = (area >= _hole_limit(object_area)) & (mean <= 0.6 * tol)
    opening[0] = False
    return opening[labels]


def _hole_limit(object_area: int) -> float:
    """Holes smaller than this are noise to fill; larger ones are real openings."""
    return max(16.0, 0.002 * object_area)


def _ring(h: int, w: int, width: int) -> np.ndarray:
    ring = np.zeros((h, w), bool)
    ring[:width], ring[-width:], ring[:, :width], ring[:, -width:] = True, True, True, True
    return ring


def _flood_from_border(background_like: np.ndarray) -> np.ndarray:
    """Object = everything a flood fill through background-coloured pixels cannot reach."""
    from scipy import ndimage

    labels, _ = ndimage.label(background_like, structure=np.ones((3, 3), bool))
    edge = _ring(*labels.shape, 1)
    reached = np.unique(labels[edge & background_like])
    return ~np.isin(labels, reached[reached > 0])


def _work_scale(h: int, w: int) -> float:
    return min(1.0, _WORK_SIDE / max(h, w))


def _resize_bool(mask: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) >= 128


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
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), gc, None, np.zeros((1, 65)),
                    np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        log.debug("ingest: GrabCut refinement skipped (%s)", exc)
        return fg
    keep = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    keep = cv2.dilate(keep.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    refined = fg & _resize_bool(keep, w, h)
    return refined if refined.sum() >= 0.5 * fg.sum() else fg


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
        edge_ids = np.unique(holes[_ring(*out.shape, 1)])
        small = hole_sizes < _hole_limit(int(out.sum()))
        small[edge_ids] = False
        small[0] = False
        out |= small[holes]
    return out


def _has_object(mask: np.ndarray) -> bool:
    return int(mask.sum()) >= max(16, int(1e-4 * mask.size))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys = np.nonzero(mask.any(axis=1))[0]
    xs = np.nonzero(mask.any(axis=0))[0]
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _bbox_side(mask: np.ndarray) -> int:
    x0, y0, x1, y1 = _bbox(mask)
    return max(x1 - x0, y1 - y0)


def _resolution_flags(mask: np.ndarray, size: int, margin: float) -> list[str]:
    flags = []
    edge = _ring(*mask.shape, 1)
    touching = int((mask & edge).sum())
    if touching >= max(2, int(0.005 * edge.sum())):
        flags.append("touches_border")
    if size * (1.0 - 2.0 * margin) / _bbox_side(mask) > 2.0:  # upscaled more than 2x
        flags.append("low_resolution")
    return flags


# --------------------------------------------------------------------------- crop


def crop_box(mask: np.ndarray, margin: float) -> tuple[int, int, int]:
    """(x0, y0, side) of a square around the object's bbox with ``margin`` on each side."""
    x0, y0, x1, y1 = _bbox(mask)
    side = max(1, math.ceil(max(x1 - x0, y1 - y0) / (1.0 - 2.0 * margin)))
    return round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2), side


def crop_view(rgb: np.ndarray, alpha: np.ndarray | None, mask: np.ndarray,
              box: tuple[int, int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop (padding with background), composite onto white, resize: (RGB, mask 0/255)."""
    import cv2

    x0, y0, side = box
    if alpha is not None and has_transparency(alpha):
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        cover = alpha.astype(np.float32) / 255.0 * grown
    else:
        cover = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
    comp = rgb.astype(np.float32) * cover[..., None] + 255.0 * (1.0 - cover[..., None])
    comp_c = _pad_crop(comp, x0, y0, side, 255.0)
    mask_c = _pad_crop(mask.astype(np.float32), x0, y0, side, 0.0)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    out_rgb = cv2.resize(comp_c, (size, size), interpolation=interp)
    out_mask = cv2.resize(mask_c, (size, size), interpolation=interp) >= 0.5
    out_rgb = np.clip(out_rgb + 0.5, 0, 255).astype(np.uint8)
    return out_rgb, out_mask.astype(np.uint8) * 255


def _pad_crop(img: np.ndarray, x0: int, y0: int, side: int, fill: float) -> np.ndarray:
    h, w = img.shape[:2]
    out = np.full((side, side) + img.shape[2:], fill, img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out
