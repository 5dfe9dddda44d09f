"""uv: unwrap the simplified mesh into one square 0-1 atlas with xatlas, in parallel.

Why xatlas: it segments charts, parametrises and packs with padding, and it keeps the input's
face order, so per-face labels need no remapping; only vertices split along seams (``vmapping``
says which input vertex each output vertex copies).

Why partitions: xatlas's chart segmentation grows faster than linearly with the face count
(here 10k faces ~1 s, 23k ~7 s, 100k ~95 s on one core), and it crashed (SIGSEGV) on an
80k-face icosphere. So above ``chunk_faces`` the mesh is cut into partitions (one per part
label, and a big part by recursive coordinate bisection of its face centroids, which keeps
partitions balanced and compact), each partition is unwrapped by its own xatlas call in a
process pool (each at one texel per metre, so charts keep their relative scale), and all
charts are packed into ONE atlas by ``pack_charts`` (each chart turned to its minimum-area
rectangle, rasterised by its actual shape on a coarse cell grid and placed first-fit, as xatlas
packs: overlap-free by construction; it filled 0.52-0.59 of the square on 3k-23k-face meshes,
where the shelf packer it replaced filled 0.35-0.41 and one serial xatlas call 0.59-0.77). A partition border is always a seam; a halo of
neighbouring faces would not change that, so partitions have none. Every xatlas call runs in a
child process, so a crash there becomes a ``ProcessingError`` instead of killing the worker.

Partition size: about ``faces * partition_texels / resolution**2`` faces, between 1000 and
``chunk_faces`` (``unwrap.partition_size``). xatlas's cost per face falls steeply with smaller
partitions, and a partition border's seam costs a strip of padding, which matters less the
more texels the atlas has per face: at 2048 px over 23k faces (the demo), partitions of
~1,400 faces instead of ~5,700 halved uv's CPU time with utilisation, stretch, seam length
and the baked-normal error no worse (texture PSNR within the noise of a neutral re-layout);
at 1024 px they lowered a faceted scan's utilisation, so there the rule keeps ~7,900.

Serial-mode atlas size: xatlas estimates a texel density for ``resolution`` but may return an atlas a little
larger (charts did not fit) or smaller and non-square. A larger one is re-packed at the density
scaled to fit, so the requested padding holds in texture pixels; a smaller one is scaled
isotropically into the unit square, so texel density stays uniform on a square texture.
UVs are stored 0-1 with V up (glTF's V-down flip is the exporter's job).

Metrics (``uv_metrics``): utilisation (UV area share of the square), charts (UV-connected
components), seam length (3D length of cut edges / sqrt(surface area)), area and angle stretch
(area-weighted mean and p95; 1 is ideal), texel-density spread (coefficient of variation),
overlaps (texels whose centre two triangles cover, from an exact rasterisation at
``resolution``; must be 0) and whether all UVs lie in 0-1.

No texel covered twice: xatlas now and then folds a triangle over its neighbours or lets a
chart's border run over the chart itself (a dense faceted scan left 12-21 such texels). After
either mode, faces that are folded or cover a texel another face covers are detached into charts
of their own and the atlas is packed again (``chart_packing.without_overlaps``).

The algorithms live in ``assetfactory.algorithms``: ``unwrap`` (xatlas calls, partitions, the
process pool), ``chart_packing`` (``pack_charts``) and ``uv_quality`` (``uv_metrics``); this
module is the stage over them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..algorithms.unwrap import apply_unwrap, unwrap_guarded
from ..algorithms.uv_quality import uv_metrics
from ..core.artifacts import load_mesh, save_mesh
from ..core.errors import ProcessingError
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult

log = logging.getLogger(__name__)

NAME = "uv"
MODES = ("auto", "serial", "parallel")


@dataclass(frozen=True)
class UVOptions:
    """Options of the uv stage.

    resolution: texture size (px, square) the atlas is packed for; padding is measured in it.
    padding: texels kept free around each chart, so mipmaps and bilinear filtering do not
        bleed neighbouring charts into each other.
    max_chart_area: largest chart, as a share of the surface area (0 = no limit); smaller
        charts mean less distortion but more seams.
    mode: "serial" (one xatlas call on the whole mesh), "parallel" (partitions unwrapped in a
        process pool, then packed together) or "auto" (parallel above ``chunk_faces``).
    chunk_faces: largest partition given to one xatlas call in parallel mode; smaller is
        faster but adds seams along partition borders.
    partition_texels: atlas area (texels at ``resolution``) a partition should fill at
        least; partitions hold about ``faces * partition_texels / resolution**2`` faces,
        between 1000 and ``chunk_faces`` (0: always ``chunk_faces``). See
        ``unwrap.partition_size``.
    workers: processes for parallel mode (0 = the CPUs the stage was granted: its declared
        ``Resources.cpus`` under the runner, every core elsewhere).
    """

    resolution: int = 1024
    padding: int = 4
    max_chart_area: float = 0.0
    mode: str = "auto"
    chunk_faces: int = 8000
    partition_texels: int = 360_000
    workers: int = 0

    def __post_init__(self) -> None:
        check(isinstance(self.resolution, int) and 64 <= self.resolution <= 16384,
              f"resolution must be an integer in 64..16384, got {self.resolution!r}")
        check(isinstance(self.padding, int) and 0 <= self.padding <= 64,
              f"padding must be an integer in 0..64, got {self.padding!r}")
        check(0.0 <= self.max_chart_area <= 1.0,
              f"max_chart_area must be in [0, 1], got {self.max_chart_area}")
        check(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        check(isinstance(self.chunk_faces, int) and 500 <= self.chunk_faces <= 1_000_000,
              f"chunk_faces must be an integer in 500..1000000, got {self.chunk_faces!r}")
        check(isinstance(self.partition_texels, int) and 0 <= self.partition_texels <= 1 << 28,
              f"partition_texels must be an integer in 0..{1 << 28}, "
              f"got {self.partition_texels!r}")
        check(isinstance(self.workers, int) and 0 <= self.workers <= 256,
              f"workers must be an integer in 0..256, got {self.workers!r}")


# ---------------------------------------------------------------------------- the stage


@stage(NAME, "0.4.0", UVOptions, Resources(cpus=1, memory_mb=1024))
def uv(state: AssetState, options: UVOptions) -> StageResult:
    """Unwrap ``mesh`` and write it back as ``mesh`` with per-vertex UVs."""
    mesh = load_mesh(state, "mesh")
    if mesh.n_faces == 0:
        raise ProcessingError("the mesh to unwrap has no faces",
                              "check the simplify and cleanup outputs for this SKU")
    result, mode = unwrap_guarded(mesh, options)
    out = apply_unwrap(mesh, result)
    metrics = uv_metrics(out, options.resolution)
    if metrics["uv_overlaps"]:  # xatlas folds a triangle now and then; triage decides
        log.warning("%s uv: %d texels covered twice (folded or overlapping charts)",
                    state.sku, metrics["uv_overlaps"])
    metrics.update(uv_verts_out=out.n_vertices, uv_parallel=mode == "parallel")
    log.info("%s uv: %s, %d charts, utilisation %.2f, stretch area %.2f angle %.2f, "
             "verts %d -> %d", state.sku, mode, metrics["uv_charts"], metrics["uv_utilization"],
             metrics["uv_stretch_area_mean"], metrics["uv_stretch_angle_mean"], mesh.n_vertices,
             out.n_vertices)
    return StageResult(artifacts={"mesh": save_mesh(state, out)}, metrics=metrics)
