"""uv: unwrap the simplified mesh into one square 0-1 atlas with xatlas.

Why xatlas: it segments charts, parametrises and packs with padding in one call, and it keeps
the input's face order, so per-face labels need no remapping; only vertices split along seams
(``vmapping`` says which input vertex each output vertex copies).

Atlas size: xatlas estimates a texel density for ``resolution`` but may return an atlas a little
larger (charts did not fit) or smaller and non-square. A larger one is re-packed at the density
scaled to fit, so the requested padding holds in texture pixels; a smaller one is scaled
isotropically into the unit square, so texel density stays uniform on a square texture.
UVs are stored 0-1 with V up (glTF's V-down flip is the exporter's job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..core.artifacts import load_mesh, save_mesh
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult

log = logging.getLogger(__name__)

NAME = "uv"
_MAX_REPACKS = 6


@dataclass(frozen=True)
class UVOptions:
    """Options of the uv stage.

    resolution: texture size (px, square) the atlas is packed for; padding is measured in it.
    padding: texels kept free around each chart, so mipmaps and bilinear filtering do not
        bleed neighbouring charts into each other.
    max_chart_area: largest chart, as a share of the surface area (0 = no limit); smaller
        charts mean less distortion but more seams.
    """

    resolution: int = 1024
    padding: int = 4
    max_chart_area: float = 0.0

    def __post_init__(self) -> None:
        check(isinstance(self.resolution, int) and 64 <= self.resolution <= 16384,
              f"resolution must be an integer in 64..16384, got {self.resolution!r}")
        check(isinstance(self.padding, int) and 0 <= self.padding <= 64,
              f"padding must be an integer in 0..64, got {self.padding!r}")
        check(0.0 <= self.max_chart_area <= 1.0,
              f"max_chart_area must be in [0, 1], got {self.max_chart_area}")


@dataclass(frozen=True)
class Unwrap:
    """xatlas's answer for one mesh, already in the unit square."""

    vmapping: np.ndarray   # (N',) input vertex of each output vertex
    faces: np.ndarray      # (M, 3) same order as the input faces
    uv: np.ndarray         # (N', 2) float32 in [0, 1]
    charts: int
    utilization: float


def _atlas(mesh: MeshData, options: UVOptions, texels_per_unit: float = 0.0):
    import xatlas

    atlas = xatlas.Atlas()
    normals = (None if mesh.vertex_normals is None
               else np.ascontiguousarray(mesh.vertex_normals, np.float32))
    atlas.add_mesh(np.ascontiguousarray(mesh.vertices, np.float32),
                   np.ascontiguousarray(mesh.faces, np.uint32), normals)
    chart = xatlas.ChartOptions()
    if options.max_chart_area > 0:
        chart.max_chart_area = float(options.max_chart_area * _surface_area(mesh))
    pack = xatlas.PackOptions()
    pack.resolution = options.resolution
    pack.padding = options.padding
    pack.bilinear = True
    pack.texels_per_unit = float(texels_per_unit)
    atlas.generate(chart, pack)
    return atlas


def _surface_area(mesh: MeshData) -> float:
    v = mesh.vertices[mesh.faces]
    return float(0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum())


def unwrap(mesh: MeshData, options: UVOptions) -> Unwrap:
    """Charts, parametrisation and packing into one square atlas (see the module docstring)."""
    atlas = _atlas(mesh, options)
    size = max(atlas.width, atlas.height)
    if size > options.resolution or atlas.atlas_count > 1:
        tpu = atlas.texels_per_unit * options.resolution / size * 0.99
        for _ in range(_MAX_REPACKS):
            candidate = _atlas(mesh, options, tpu)
            if candidate.atlas_count == 1:
                atlas = candidate
                break
            tpu *= 0.9
    if atlas.atlas_count != 1:
        raise ProcessingError(
            f"xatlas could not pack mesh ({mesh.n_faces} faces) into one atlas",
            "raise uv resolution or lower padding for this SKU")
    vmapping, faces, uv = atlas[0]
    w, h = atlas.width, atlas.height
    side = float(max(w, h))
    uv = (np.asarray(uv, np.float64) * np.array([w, h]) / side).astype(np.float32)
    return Unwrap(np.asarray(vmapping, np.int64), np.asarray(faces, np.int64).reshape(-1, 3),
                  np.clip(uv, 0.0, 1.0), int(atlas.chart_count),
                  float(atlas.utilization) * w * h / side**2)


def apply_unwrap(mesh: MeshData, result: Unwrap) -> MeshData:
    """The mesh with vertices split at seams; every per-vertex attribute follows ``vmapping``."""
    if not np.array_equal(result.vmapping[result.faces], mesh.faces):
        raise ProcessingError(
            "xatlas changed the face order or connectivity of the mesh",
            "report this as a bug with the mesh artifact attached")
    pick = lambda a: None if a is None else np.asarray(a)[result.vmapping]
    return MeshData(mesh.vertices[result.vmapping], result.faces, mesh.face_labels, result.uv,
                    pick(mesh.vertex_colors), pick(mesh.vertex_normals))


def uv_face_areas(mesh: MeshData) -> np.ndarray:
    """Signed area of each face in UV space (positive = counter-clockwise)."""
    t = np.asarray(mesh.uv, np.float64)[mesh.faces]
    a, b = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


@stage(NAME, "0.1.0", UVOptions, Resources(cpus=1, memory_mb=1024))
def uv(state: AssetState, options: UVOptions) -> StageResult:
    """Unwrap ``mesh`` and write it back as ``mesh`` with per-vertex UVs."""
    mesh = load_mesh(state, "mesh")
    if mesh.n_faces == 0:
        raise ProcessingError("the mesh to unwrap has no faces",
                              "check the simplify and cleanup outputs for this SKU")
    result = unwrap(mesh, options)
    out = apply_unwrap(mesh, result)
    inside = bool(np.all((out.uv >= 0.0) & (out.uv <= 1.0)))
    texel = 1.0 / options.resolution
    degenerate = int(np.sum(np.abs(uv_face_areas(out)) < 1e-3 * texel * texel))
    log.info("%s uv: %d charts, utilisation %.2f, verts %d -> %d", state.sku, result.charts,
             result.utilization, mesh.n_vertices, out.n_vertices)
    return StageResult(artifacts={"mesh": save_mesh(state, out)}, metrics={
        "uv_charts": result.charts,
        "uv_utilization": round(result.utilization, 4),
        "uv_verts_out": out.n_vertices,
        "uv_inside_01": inside,
        "uv_degenerate_faces": degenerate,
    })
