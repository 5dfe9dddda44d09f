"""bake: the dense surface's detail as a tangent-space normal map, plus ambient occlusion.

Why: the simplified ``mesh`` (5k-100k triangles) loses the small relief of ``clean_mesh``
(up to millions); a normal map gives it back to the shading at no geometry cost, and AO darkens
creases the way a real-time viewer cannot. Both are baked per texel of the UV atlas: every
covered texel is a point on the low surface (``Renderer.rasterize_uv``).

Normal map convention (glTF 2.0: OpenGL, +Y green up, RGB = n * 0.5 + 0.5):
    Tangent frame = MikkTSpace-style per-vertex tangents: per face, T = dP/du from the UV
    gradients (V up, as ``MeshData.uv`` stores it), projected on each corner's vertex-normal
    plane (Gram-Schmidt) and accumulated with corner-angle weights; handedness
    w = sign of the UV area (+1 for counter-clockwise charts), bitangent B = cross(N, T) * w,
    pointing along +v, i.e. up in the image. This is what Blender computes and exports; glTF
    viewers that derive MikkTSpace from the V-flipped glTF texcoords flip w back (three.js
    ``negateSign``); the exporter writes ``vertex_tangents`` as TANGENT, so viewers need not
    derive a frame at all. Checked against Blender 3.4's Cycles bake of the same low mesh
    (benchmarks/uv_bake.py): its map, decoded in this frame, is within ~0.4 degrees of the dense
    normals (a flipped green channel would be ~13 degrees off). Vertex normals are the exporter's: ``mesh.vertex_normals`` when present, else
    ``geometry.normals.seamless_normals`` (smooth across UV seams).
    Per texel the viewer interpolates N, T and B and decodes n = normalize([T B N] m); the
    bake inverts exactly that (m = [T B N]^-1 n), so a non-orthogonal interpolated frame still
    decodes to the dense normal.
    Target normal: the closest point on the dense mesh (exact, in float64, from a grid of its
    faces, each texel's query starting at the previous texel's face:
    ``geometry.closest.CoherentGrid``), with the dense mesh's smooth vertex normals
    interpolated there. Beyond ``max_distance``, or where
    the closest point faces the other way (the far side of a thin part), the texel keeps the
    low normal (encodes as neutral (128, 128, 255) on even rows, (127, 127, 255) on odd
    ones: exact halves alternate by row, so a flat map averages to the flat normal); texels
    of faces with degenerate UVs are neutral too. Charts are dilated by ``dilate_px`` texels so mipmaps do not bleed.

AO: ``ao_rays`` cosine-weighted rays (stratified: a Fibonacci spiral over the hemisphere,
jittered per point) over the hemisphere of the low surface normal, tested against the low
mesh up to ``ao_distance``; AO = unoccluded fraction. AO varies slowly, so it is traced on a
lattice of ``ao_size`` x ``ao_size`` texels (every 8th texel each way at 2048 px) and each
texel takes the bilinear interpolation of the lattice nodes of its own chart
(``algorithms.ambient_occlusion``); texels no node of their chart reaches are traced
themselves. On the demo mug at 2048 px, against a 1024-ray reference at 20k texels, this is
twice as close as 16 rays at every texel (mean absolute error 0.0044 against 0.0091) with 0.08
of the rays; a lattice twice as dense with half the rays per node (every 4th texel, 32 rays)
is no closer (0.0049) and traces 1.7 times the rays: the noise of few rays per node costs
more than the coarser interpolation (BENCHMARKS.md). Written alone as
``texture/ao`` (grey PNG) and packed as ``texture/orm`` (R = AO, G = roughness, B = metal, the
glTF layout), so a later PBR stage can rewrite G and B per part.

Threads: the ray tracer (Embree through open3d) runs on as many threads as the stage's task was
granted CPUs (``stage_cpus()``: the declared one, or what the executor reserved); the numba
passes are serial.

Metrics: ``bake_normal_error_mean_deg`` / ``_median_deg``: angle between the dense normal and
the normal a viewer would shade with (map decoded from the 8-bit PNG, bilinear) at uniform
samples on the low surface (AssetGen's "baked mean"; the dense normal there from Embree's
closest point, not the bake's own grid); ``bake_normal_error_low_mean_deg``: the
same without the map (what the map buys).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from dataclasses import dataclass

import numpy as np

from ..algorithms.material_transfer import transfer
from ..algorithms.materials import asset_name
from ..algorithms.normal_bake import (
    BakedMaps,
    DenseSurface,
    bake_maps,
    low_normals,
    normal_error,
    orm_image,
)
from ..core.appearance import has_appearance, load_appearance
from ..core.artifacts import load_json, load_mesh, save_bytes, save_image, save_json
from ..core.errors import MissingArtifact, ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage, stage_cpus
from ..core.types import AssetState, Resources, StageResult
from ..geometry.tangents import vertex_tangents

log = logging.getLogger(__name__)

NAME = "bake"
DEVICES = ("cpu",)


@dataclass(frozen=True)
class BakeOptions:
    """Options of the bake stage.

    size: edge of the baked maps in px (power of two, 64..8192); match the texture size.
    ao_rays: rays per AO sample (0 = no AO: AO is 1 everywhere).
    ao_distance: AO ray length as a share of the bounding-box diagonal (occluders further
        away do not darken).
    ao_size: resolution of the lattice AO is traced on (texels between samples = size /
        ao_size, at least 1; ao_size >= size traces every texel).
    max_distance: largest low-to-dense distance, as a share of the bounding-box diagonal,
        for a texel to take the dense normal (further = another surface: keep the low normal).
    dilate_px: texels the maps are grown past chart borders (mipmap and bilinear margin).
    roughness, metallic: the constant G and B of the ORM map.
    error_samples: surface samples for the normal-error metric.
    seed: AO ray and error-sample randomness.
    device: "cpu" (open3d's Embree ray tracer on the stage's declared CPUs).
    """

    size: int = 1024
    ao_rays: int = 64
    ao_distance: float = 0.1
    ao_size: int = 256
    max_distance: float = 0.05
    dilate_px: int = 8
    roughness: float = 0.6
    metallic: float = 0.0
    error_samples: int = 20_000
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        s = self.size
        check(isinstance(s, int) and 64 <= s <= 8192 and s & (s - 1) == 0,
              f"size must be a power of two in 64..8192, got {s!r}")
        check(isinstance(self.ao_rays, int) and 0 <= self.ao_rays <= 1024,
              f"ao_rays must be an integer in 0..1024, got {self.ao_rays!r}")
        check(isinstance(self.ao_size, int) and 1 <= self.ao_size <= 8192,
              f"ao_size must be an integer in 1..8192, got {self.ao_size!r}")
        check(0 < self.ao_distance <= 10, f"ao_distance must be in (0, 10], got "
              f"{self.ao_distance}")
        check(0 < self.max_distance <= 10, f"max_distance must be in (0, 10], got "
              f"{self.max_distance}")
        check(isinstance(self.dilate_px, int) and 0 <= self.dilate_px <= 256,
              f"dilate_px must be an integer in 0..256, got {self.dilate_px!r}")
        check(0 <= self.roughness <= 1, f"roughness must be in [0, 1], got {self.roughness}")
        check(0 <= self.metallic <= 1, f"metallic must be in [0, 1], got {self.metallic}")
        check(isinstance(self.error_samples, int) and 0 <= self.error_samples <= 10_000_000,
              f"error_samples must be an integer in 0..1e7, got {self.error_samples!r}")
        check(self.device in DEVICES, f"device must be one of {DEVICES}, got "
              f"{self.device!r}")


# ---------------------------------------------------------------------------- the stage


def _inputs(state: AssetState) -> tuple[MeshData, MeshData]:
    for key, fix in (("mesh", "run the uv stage before bake"),
                     ("clean_mesh", "run cleanup before bake (bake reads the dense mesh)")):
        if key not in state.artifacts:
            raise MissingArtifact(f"bake needs the '{key}' artifact, which is missing", fix)
    low, dense = load_mesh(state, "mesh"), load_mesh(state, "clean_mesh")
    if low.uv is None:
        raise ProcessingError("the mesh to bake onto has no UVs", "run the uv stage before bake")
    if low.n_faces == 0 or dense.n_faces == 0:
        raise ProcessingError(f"nothing to bake: low mesh {low.n_faces} faces, dense mesh "
                              f"{dense.n_faces} faces", "check the cleanup and simplify outputs")
    return low, dense


RESOURCES = Resources(cpus=1, memory_mb=4096)


@stage(NAME, "4", BakeOptions, RESOURCES)
def bake(state: AssetState, options: BakeOptions) -> StageResult:
    """Write ``texture/normal``, ``texture/ao`` and ``texture/orm`` for ``mesh``."""
    t0 = time.perf_counter()
    low, dense_mesh = _inputs(state)
    normals = low_normals(low)
    tangents = vertex_tangents(low, normals)
    threads = stage_cpus()  # the ray tracer's: the CPUs the stage's task was granted
    # simplify's error metric, in this process, may have built this mesh's BVH already
    dense = DenseSurface(dense_mesh, threads, shared=True)
    maps = bake_maps(low, dense, options, normals, tangents, threads)
    err, err_low = (normal_error(low, normals, tangents, maps.normal, dense,
                                 options.error_samples, options.seed)
                    if options.error_samples else (np.zeros(0), np.zeros(0)))
    artifacts = {
        "texture/normal": save_image(state, maps.normal),
        "texture/ao": save_image(state, maps.ao_uint8()),
        "texture/orm": save_image(state, orm_image(maps.ao_uint8(), options.roughness,
                                                   options.metallic)),
    }
    source_metrics = {}
    if has_appearance(state):  # a vendor mesh's own look: bake it into the same atlas
        look, source_metrics = _source_look(state, options, low, dense_mesh, normals, tangents,
                                            maps)
        artifacts.update(look)
    seconds = time.perf_counter() - t0
    stat = lambda f, a: round(float(f(a)), 3) if len(a) else None
    metrics = {
        "bake_normal_error_mean_deg": stat(np.mean, err),
        "bake_normal_error_median_deg": stat(np.median, err),
        "bake_normal_error_low_mean_deg": stat(np.mean, err_low),
        "bake_seconds": round(seconds, 3),
        "bake_size": options.size,
        "bake_ao_mean": round(maps.ao_mean, 4),
        "bake_texels": maps.texels,
        "bake_ao_points": maps.ao_points,
        "bake_dense_share": round(maps.dense_share, 4),
        **source_metrics,
    }
    log.info("%s bake: %d px, %d texels, normal error %.2f deg (low mesh alone %.2f), "
             "AO mean %.2f, %.1f s", state.sku, options.size, maps.texels,
             metrics["bake_normal_error_mean_deg"] or 0.0,
             metrics["bake_normal_error_low_mean_deg"] or 0.0, maps.ao_mean, seconds)
    return StageResult(artifacts=artifacts, metrics=metrics)


# ---------------------------------------------------------------------------- the source's look


def _source_look(state: AssetState, options: BakeOptions, low: MeshData, clean: MeshData,
                 normals: np.ndarray, tangents: np.ndarray, maps: BakedMaps
                 ) -> tuple[dict, dict]:
    """Transfer an imported mesh's materials (``algorithms/material_transfer.py``) onto the atlas:
    base colour (+ alpha), ORM, emissive, the normal map composed with the source's, and the
    ``materials`` table with the source material of every face. A plain single-material
    source gives way to photos when the SKU has some (see README, "What wins")."""
    appearance = load_appearance(state)
    photos = any(k.startswith("image/") for k in state.artifacts)
    if photos and not appearance.rich:
        return {}, {"bake_source_look": False}
    if "placement" in state.artifacts:
        placement = np.asarray(load_json(state, "placement")["matrix"], np.float64)
        appearance = dataclasses.replace(
            appearance, surface=appearance.surface.transformed(placement))
    diag = float(np.linalg.norm(np.ptp(low.vertices, axis=0))) or 1.0
    out = transfer(low, appearance, clean, options.size, normals, tangents, maps.normal,
                   maps.ao, options.max_distance * diag, options.dilate_px,
                   asset_name(state.sku))
    buf = io.BytesIO()
    np.save(buf, out.face_material, allow_pickle=False)
    artifacts = {"texture/base_color": save_image(state, out.base_color),
                 "texture/orm": save_image(state, out.orm),
                 "texture/normal": save_image(state, out.normal),
                 "materials": save_json(state, out.table),
                 "material_faces": save_bytes(state, buf.getvalue(), ".npy")}
    if out.emissive is not None:
        artifacts["texture/emissive"] = save_image(state, out.emissive)
    metrics = {"bake_source_look": True,
               "bake_source_trusted_share": round(out.stats["trusted_share"], 4),
               "bake_source_materials": out.stats["materials"],
               "bake_source_alpha": out.stats["alpha"],
               "bake_source_emissive": out.stats["emissive"]}
    log.info("%s bake: source materials transferred (%d materials, %.1f%% of texels on a "
             "trusted source point, alpha %s, emissive %s)", state.sku, out.stats["materials"],
             100 * out.stats["trusted_share"], out.stats["alpha"], out.stats["emissive"])
    return artifacts, metrics
