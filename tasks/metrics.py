"""metrics: the last stage, per-asset quality numbers that triage rules and the dashboard read.

Why a stage of its own: every number here is measured on the final artefacts (the shipped mesh,
its texture, the GLB), not on intermediate states, so a rule like "watertight and IoU > 0.9"
judges what a customer gets. Topology is measured on vertices merged by position, because the
UV stage splits vertices along seams and would otherwise make every closed mesh look open. The
weld, edge classification and components are the geometry layer's linear-time kernels
(``geometry.weld``, ``geometry.closed``, ``geometry.components``), not ``np.unique`` sorts.

Definitions (decided here, written down for the catalog):

* ``metrics_watertight``: every edge is shared by exactly two faces (closed surface).
* ``metrics_manifold``: no edge is shared by more than two faces, and every edge shared by two
  faces has them wound consistently (opposite half-edges). Boundary edges are allowed, so an
  open but clean surface is manifold and not watertight; holes are counted apart
  (``metrics_boundary_edges``). Vertex (bow-tie) manifoldness is not checked.
* ``metrics_volume_m3``: enclosed volume when watertight, else None; ``metrics_outward`` says
  whether the faces wind outward (positive signed volume).
* ``metrics_iou_*``: silhouette IoU between the mesh rendered at each input camera and that
  view's mask (cameras are already in the asset frame).
* ``metrics_psnr_*``: the textured mesh rendered unlit at each input view against the photo,
  inside the view's mask (a first look at texture fidelity); when the texture stage divided
  the studio light out of the photos (``lighting``), rendered under that light instead, so an
  albedo texture is compared with the photos as they were lit.
* ``metrics_ssim_*``: SSIM (scikit-image, 7x7 uniform window, per RGB channel) of
  the same pair, averaged over the pixels inside the mask: PSNR says how far colours are,
  SSIM whether edges and patterns sit where the photo has them.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from ..core.artifacts import load_cameras, load_image, load_json, load_mesh
from ..core.camera import Camera
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from ..geometry.closed import edge_stats, signed_volume
from ..geometry.components import count_components
from ..geometry.weld import weld

log = logging.getLogger(__name__)

NAME = "metrics"
IOU_VIEWS = ("inputs", "none")


@dataclass(frozen=True)
class MetricsOptions:
    """What to measure.

    iou_views: "inputs" compares silhouettes (and the texture) at the input cameras; "none"
        skips every rendered comparison (geometry only, no renderer needed).
    weld_tolerance: vertices closer than this fraction of the bounding-box diagonal are one
        vertex for topology (UV seams and normal splits duplicate vertices at equal positions).
    """

    iou_views: str = "inputs"
    weld_tolerance: float = 1e-7

    def __post_init__(self) -> None:
        check(self.iou_views in IOU_VIEWS,
              f"iou_views must be one of {IOU_VIEWS}, got {self.iou_views!r}")
        check(0 <= self.weld_tolerance < 0.01, "weld_tolerance must be in [0, 0.01)")


# ---------------------------------------------------------------- topology


def geometry_metrics(mesh: MeshData, weld_tolerance: float = 1e-7) -> dict:
    """Counts, bounding box, topology and volume of the final mesh (asset frame, metres)."""
    v, f = weld(mesh.vertices, mesh.faces, weld_tolerance)
    stats = edge_stats(f)
    lo, hi = mesh.bounds()
    size = hi - lo
    vol = signed_volume(v, f) if stats.watertight else None
    return {
        "metrics_tris": mesh.n_faces,
        "metrics_verts": mesh.n_vertices,
        "metrics_verts_welded": len(np.unique(f)) if len(f) else 0,
        "metrics_components": count_components(len(v), f),
        "metrics_watertight": stats.watertight,
        "metrics_manifold": stats.manifold,
        "metrics_boundary_edges": stats.boundary,
        "metrics_nonmanifold_edges": stats.nonmanifold,
        "metrics_inconsistent_edges": stats.inconsistent,
        "metrics_bbox_x_m": float(size[0]),
        "metrics_bbox_y_m": float(size[1]),
        "metrics_bbox_z_m": float(size[2]),
        "metrics_volume_m3": None if vol is None else abs(vol),
        "metrics_outward": None if vol is None else bool(vol > 0),
    }


# ---------------------------------------------------------------- image comparisons

def silhouette_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """Intersection over union of two boolean masks; None when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int((a | b).sum())
    return None if union == 0 else float((a & b).sum() / union)


def masked_psnr(render: np.ndarray, photo: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR (dB, 8-bit peak) of RGB inside ``mask``; None for an empty mask, capped at 99."""
    m = np.asarray(mask, bool)
    if not m.any():
        return None
    d = render[..., :3].astype(np.float64)[m] - photo[..., :3].astype(np.float64)[m]
    mse = float((d * d).mean())
    return 99.0 if mse <= 1e-10 else float(min(99.0, 10 * np.log10(255.0 ** 2 / mse)))


def masked_ssim(render: np.ndarray, photo: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean SSIM of the RGB images over the pixels inside ``mask``; None for an empty mask.

    Outside the mask the render takes the photo's pixels, so windows that straddle the
    silhouette compare only what differs inside it (the background is not the asset's).
    """
    from skimage.metrics import structural_similarity

    m = np.asarray(mask, bool)
    if not m.any() or min(m.shape) < 7:
        return None
    # Only the mask's bounding box, grown by the 7 px window's reach, can differ: SSIM at a
    # pixel reads its 7x7 window alone, so cropping leaves every in-mask value as it was
    # (to rounding) and skips the background (most of a product photo).
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    pad = 4
    y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, m.shape[0])
    x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, m.shape[1])
    if min(y1 - y0, x1 - x0) < 7:
        y0, y1, x0, x1 = 0, m.shape[0], 0, m.shape[1]
    m = m[y0:y1, x0:x1]
    a = np.array(render[y0:y1, x0:x1, :3], copy=True)
    b = np.asarray(photo[y0:y1, x0:x1, :3])
    a[~m] = b[~m]
    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    return float(full.mean(axis=2)[m].mean())


def _mask_bool(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    return (m[..., 0] if m.ndim == 3 else m) > 127


def _input_views(state: AssetState) -> list[tuple[Camera, np.ndarray]]:
    """(camera, mask) for each input camera that has its mask."""
    if "cameras" not in state.artifacts:
        return []
    out = []
    for cam in load_cameras(state):
        key = f"mask/{cam.label}"
        if key not in state.artifacts:
            continue
        mask = _mask_bool(load_image(state, key))
        if mask.shape != (cam.height, cam.width):
            raise ProcessingError(
                f"mask {key!r} is {mask.shape[1]}x{mask.shape[0]} px but its camera is "
                f"{cam.width}x{cam.height}",
                "re-run ingest and generate so cameras and masks come from one crop")
        out.append((cam, mask))
    return out


def _summary(prefix: str, per_view: dict[str, float]) -> dict:
    vals = list(per_view.values())
    return {
        f"metrics_{prefix}_mean": float(np.mean(vals)) if vals else None,
        f"metrics_{prefix}_min": float(np.min(vals)) if vals else None,
        f"metrics_{prefix}_views": json.dumps({k: round(v, 4) for k, v in per_view.items()},
                                              sort_keys=True),
    }


def view_metrics(state: AssetState, mesh: MeshData) -> dict:
    """Silhouette IoU per input view and, with a texture, PSNR of the unlit render per view."""
    views = _input_views(state)
    if not views:
        return {**_summary("iou", {}), **_summary("psnr", {}), **_summary("ssim", {})}
    from ..geometry.render import get_renderer

    r = get_renderer()
    tex = None
    if "texture/base_color" in state.artifacts and mesh.uv is not None:
        tex = load_image(state, "texture/base_color")
    light = None
    if "lighting" in state.artifacts:
        lit = load_json(state, "lighting")
        light = (lit["direction_camera"], lit["ambient"])
    ious: dict[str, float] = {}
    psnrs: dict[str, float] = {}
    ssims: dict[str, float] = {}
    with ExitStack() as stack:  # the texture uploaded once for every view
        if tex is not None:
            tex = stack.enter_context(r.texture_uploaded(tex))
        _compare_views(r, mesh, views, state, tex, light, ious, psnrs, ssims)
    return {**_summary("iou", ious), **_summary("psnr", psnrs), **_summary("ssim", ssims)}


def _compare_views(r, mesh: MeshData, views, state: AssetState, tex, light, ious: dict,
                   psnrs: dict, ssims: dict) -> None:
    """Fill ``ious``, ``psnrs`` and ``ssims`` per view label (see ``view_metrics``)."""
    for cam, mask in views:
        iou = silhouette_iou(r.mask(mesh, cam), mask)
        if iou is not None:
            ious[cam.label] = iou
        key = f"image/{cam.label}"
        if tex is not None and key in state.artifacts:
            photo = load_image(state, key)
            render = (r.render(mesh, cam, texture=tex, shading="unlit") if light is None else
                      r.render(mesh, cam, texture=tex, shading="lambert", light=light))
            if photo.ndim == 3 and photo.shape[:2] == mask.shape:
                p = masked_psnr(render, photo, mask)
                if p is not None:
                    psnrs[cam.label] = p
                q = masked_ssim(render, photo, mask)
                if q is not None:
                    ssims[cam.label] = q


# ---------------------------------------------------------------- the stage

@stage(NAME, "2", MetricsOptions, Resources(cpus=1, memory_mb=1024))
def metrics(state: AssetState, options: MetricsOptions) -> StageResult:
    """Measure the final asset; writes no artifact, only metrics."""
    mesh = load_mesh(state, "mesh")
    out = geometry_metrics(mesh, options.weld_tolerance)
    if options.iou_views == "inputs":
        out.update(view_metrics(state, mesh))
    if "glb" in state.artifacts:
        ref = state.ref("glb")
        out["metrics_glb_bytes"] = int(ref.size)
    log.info("%s %s: %d tris, %d components, watertight=%s manifold=%s, iou_mean=%s",
             state.sku, NAME, out["metrics_tris"], out["metrics_components"],
             out["metrics_watertight"], out["metrics_manifold"], out.get("metrics_iou_mean"))
    return StageResult(metrics=out)
