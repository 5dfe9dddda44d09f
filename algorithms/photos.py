"""Product photos: safe decoding (EXIF rotation, 16-bit/palette/CMYK, ICC profiles,
decompression bombs, truncated files) and square, centred object crops."""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np

from ..core.errors import InputError
from .masking import border_ring, has_transparency

log = logging.getLogger(__name__)

FORMATS = ("PNG", "JPEG", "MPO", "WEBP")  # MPO: multi-picture JPEG from phone cameras


FORMAT_FIX = "re-export the photo as PNG, JPEG or WebP"


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
                         fix=FORMAT_FIX, code="corrupt") from exc
    with im:
        if im.format not in FORMATS:
            raise InputError(f"image {name} is {im.format}, not PNG, JPEG or WebP",
                             fix=FORMAT_FIX, code="unsupported_format")
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


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys = np.nonzero(mask.any(axis=1))[0]
    xs = np.nonzero(mask.any(axis=0))[0]
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def bbox_side(mask: np.ndarray) -> int:
    x0, y0, x1, y1 = _bbox(mask)
    return max(x1 - x0, y1 - y0)


def resolution_flags(mask: np.ndarray, size: int, margin: float) -> list[str]:
    flags = []
    edge = border_ring(*mask.shape, 1)
    touching = int((mask & edge).sum())
    if touching >= max(2, int(0.005 * edge.sum())):
        flags.append("touches_border")
    if size * (1.0 - 2.0 * margin) / bbox_side(mask) > 2.0:  # upscaled more than 2x
        flags.append("low_resolution")
    return flags


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
