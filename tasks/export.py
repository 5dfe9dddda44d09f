"""export: the finished mesh and its texture as a validated GLB, plus a poster PNG.

Why here and like this: the GLB is what merchants ship, so it follows the Khronos 3D Commerce
conventions (metres, +Y up, front +Z, origin at the bottom centre: already true of ``mesh``
after cleanup, so nothing is moved), PBR metal/rough with a power-of-two sRGB base colour,
names a viewer can show, and it must pass the Khronos glTF-Validator with zero errors, or the
stage fails with the validator's first messages. Written under readable keys
(``assets/<sku>/<sku>.glb``, ``assets/<sku>/poster.png``) so people and CDNs can find them.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np

from ..core.artifacts import encode_png, load_image, load_mesh, store_of
from ..core.camera import Camera, orbit_camera
from ..core.errors import ValidationFailed
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from .cleanup import smooth_normals

log = logging.getLogger(__name__)

NAME = "export"
METALLIC = 0.0
ROUGHNESS = 0.6
NEUTRAL_GREY = (0.8, 0.8, 0.8, 1.0)
MIN_TEXTURE_PX = 256
POSTER_AZIMUTH_DEG = 35.0
POSTER_ELEVATION_DEG = 20.0
POSTER_FOV_DEG = 30.0
_GL_ARRAY_BUFFER = 34962
_GL_ELEMENT_ARRAY_BUFFER = 34963


@dataclass(frozen=True)
class ExportOptions:
    """Options of the export stage.

    texture_size: largest side of the embedded base colour texture (px); the texture is resized
        to the nearest power of two not above it (WebGL 1 and some AR viewers need one).
    poster_size: side of the square poster PNG (px).
    write_poster: render the poster (front three-quarter view on white).
    validate: run the Khronos glTF-Validator; any error fails the stage.
    max_glb_mb: size budget (10^6 bytes); the texture is halved (down to 256 px) to meet it,
        and the stage fails if it still does not fit.
    """

    texture_size: int = 1024
    poster_size: int = 512
    write_poster: bool = True
    validate: bool = True
    max_glb_mb: float = 5.0

    def __post_init__(self) -> None:
        check(isinstance(self.texture_size, int) and 1 <= self.texture_size <= 16384,
              f"texture_size must be an integer in 1..16384, got {self.texture_size!r}")
        check(isinstance(self.poster_size, int) and 16 <= self.poster_size <= 4096,
              f"poster_size must be an integer in 16..4096, got {self.poster_size!r}")
        check(self.max_glb_mb > 0, f"max_glb_mb must be > 0, got {self.max_glb_mb}")


# ---------------------------------------------------------------------------- names and sizes


def gltf_name(sku: str) -> str:
    """A name matching ``[a-z][a-z0-9_-]*`` derived from the SKU (viewers show it)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", sku.lower()).strip("-_")
    name = re.sub(r"^[^a-z]+", "", name)
    return name or "asset"


def asset_key_part(sku: str) -> str:
    """The SKU as one safe path segment of a storage key."""
    part = re.sub(r"[^A-Za-z0-9._-]+", "_", sku).strip("._")
    return part or "asset"


def pow2_at_most(n: int, cap: int) -> int:
    """The power of two nearest ``n`` (in log scale), but not above ``cap``'s floor power."""
    top = 1 << max(0, int(cap).bit_length() - 1)
    near = 1 << max(0, round(math.log2(max(1, n))))
    return max(1, min(near, top))


def resize_texture(image: np.ndarray, size_cap: int) -> np.ndarray:
    """RGB uint8 with power-of-two sides not above ``size_cap``."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    h, w = img.shape[:2]
    nh, nw = pow2_at_most(h, size_cap), pow2_at_most(w, size_cap)
    if (nh, nw) == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((nw, nh), Image.LANCZOS))


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def seamless_normals(mesh: MeshData) -> np.ndarray:
    """Smooth vertex normals computed on the mesh welded by position, so UV seams (where
    vertices are split) do not show as shading creases."""
    _, first, inverse = np.unique(mesh.vertices, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    welded = MeshData(mesh.vertices[first], inverse[mesh.faces])
    return smooth_normals(welded)[inverse]


# ---------------------------------------------------------------------------- GLB


def _tree_postprocessor(tree: dict) -> None:
    """Name the generator and give vertex/index buffer views their targets (validator hints)."""
    tree.setdefault("asset", {})["generator"] = "assetfactory"
    views = tree.get("bufferViews", [])
    accessors = tree.get("accessors", [])
    for mesh in tree.get("meshes", []):
        mesh.pop("extras", None)
        for prim in mesh.get("primitives", []):
            if "indices" in prim:
                views[accessors[prim["indices"]]["bufferView"]]["target"] = _GL_ELEMENT_ARRAY_BUFFER
            for acc in prim.get("attributes", {}).values():
                views[accessors[acc]["bufferView"]]["target"] = _GL_ARRAY_BUFFER


def build_glb(mesh: MeshData, name: str, texture: np.ndarray | None) -> bytes:
    """GLB bytes: one node, one mesh, one PBR metal/rough material, all named ``name``."""
    import trimesh
    from PIL import Image

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False,
                         vertex_normals=mesh.vertex_normals)
    material = trimesh.visual.material.PBRMaterial(
        name=f"{name}_material", metallicFactor=METALLIC, roughnessFactor=ROUGHNESS,
        baseColorFactor=(1.0, 1.0, 1.0, 1.0) if (texture is not None
                                                  or mesh.vertex_colors is not None)
        else NEUTRAL_GREY,
        baseColorTexture=None if texture is None else Image.fromarray(texture, "RGB"))
    uv = None if texture is None else np.asarray(mesh.uv, np.float64)  # trimesh flips V
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    if mesh.vertex_colors is not None and texture is None:
        rgba = np.asarray(mesh.vertex_colors, np.float64) / 255.0
        rgba[:, :3] = srgb_to_linear(rgba[:, :3])  # glTF COLOR_0 is linear
        visual.vertex_attributes["color"] = np.round(rgba * 255.0).astype(np.uint8)
    tm.visual = visual
    if mesh.vertex_normals is not None:
        tm.vertex_normals = mesh.vertex_normals
    scene = trimesh.Scene(base_frame=name)
    scene.add_geometry(tm, geom_name=name, node_name=name)
    return trimesh.exchange.gltf.export_glb(scene, include_normals=True,
                                            tree_postprocessor=_tree_postprocessor)


def fit_budget(mesh: MeshData, name: str, texture: np.ndarray | None,
               max_bytes: float) -> tuple[bytes, np.ndarray | None]:
    """Build the GLB, halving the texture (not below 256 px) while it is over budget."""
    glb = build_glb(mesh, name, texture)
    while len(glb) > max_bytes and texture is not None and max(texture.shape[:2]) > MIN_TEXTURE_PX:
        texture = resize_texture(texture, max(texture.shape[:2]) // 2)
        glb = build_glb(mesh, name, texture)
    return glb, texture


# ---------------------------------------------------------------------------- poster


def poster_camera(mesh: MeshData, size: int, margin: float = 1.1) -> Camera:
    """Front three-quarter view (azimuth 35, elevation 20) aimed at the bounding-box centre,
    as close as it can be with every vertex inside the frame (``margin`` leaves a border)."""
    lo, hi = mesh.bounds()
    centre = (lo + hi) / 2
    probe = orbit_camera("poster", POSTER_AZIMUTH_DEG, POSTER_ELEVATION_DEG, 1.0,
                         fov_y_deg=POSTER_FOV_DEG, size=size, target=centre)
    q = (mesh.vertices - centre) @ probe.world_to_camera[:3, :3].T
    tan_half = math.tan(math.radians(POSTER_FOV_DEG) / 2) / margin
    # a vertex at lateral offset a and height b (camera axes) and q_z towards the camera is
    # inside the frustum when max(|a|, |b|) <= tan_half * (distance - q_z)
    need = q[:, 2] + np.maximum(np.abs(q[:, 0]), np.abs(q[:, 1])) / tan_half
    distance = max(float(need.max()), 1e-6)
    return orbit_camera("poster", POSTER_AZIMUTH_DEG, POSTER_ELEVATION_DEG, distance,
                        fov_y_deg=POSTER_FOV_DEG, size=size, target=centre)


def render_poster(mesh: MeshData, texture: np.ndarray | None, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB on white."""
    from ..core.render import get_renderer

    rgba = get_renderer().render(mesh, poster_camera(mesh, size), texture=texture,
                                 shading="lambert", background=(1.0, 1.0, 1.0), ssaa=2)
    return np.ascontiguousarray(rgba[..., :3])


# ---------------------------------------------------------------------------- the stage


def _load_texture(state: AssetState, mesh: MeshData, cap: int) -> np.ndarray | None:
    if "texture/base_color" not in state.artifacts:
        return None
    if mesh.uv is None:
        log.warning("%s export: texture/base_color present but the mesh has no UVs; "
                    "exporting without the texture", state.sku)
        return None
    return resize_texture(load_image(state, "texture/base_color"), cap)


@stage(NAME, "0.1.0", ExportOptions, Resources(cpus=1, memory_mb=1024))
def export(state: AssetState, options: ExportOptions) -> StageResult:
    """Write ``assets/<sku>/<sku>.glb`` (validated) and ``assets/<sku>/poster.png``."""
    from ..core.validate import validate_gltf

    mesh = load_mesh(state, "mesh")
    if mesh.vertex_normals is None:
        mesh = mesh.replace(vertex_normals=seamless_normals(mesh))
    texture = _load_texture(state, mesh, options.texture_size)
    name = gltf_name(state.sku)
    max_bytes = options.max_glb_mb * 1e6
    glb, texture = fit_budget(mesh, name, texture, max_bytes)
    if len(glb) > max_bytes:
        raise ValidationFailed(
            f"the GLB is {len(glb) / 1e6:.1f} MB, over the {options.max_glb_mb:g} MB budget "
            f"({mesh.n_faces} triangles)",
            "lower simplify target_tris or export texture_size, or raise export max_glb_mb")
    metrics: dict = {"export_glb_bytes": len(glb),
                     "export_texture_px": 0 if texture is None else int(max(texture.shape[:2])),
                     "gltf_errors": None, "gltf_warnings": None, "gltf_infos": None}
    if options.validate:
        report = validate_gltf(glb)
        metrics.update(gltf_errors=report.errors, gltf_warnings=report.warnings,
                       gltf_infos=report.infos)
        if not report.ok:
            raise ValidationFailed(
                f"glTF-Validator found {report.errors} error(s) in {name}.glb: "
                + "; ".join(report.first("error", 3)),
                "report this with the mesh artifact attached; the exporter wrote an invalid file")
    store = store_of(state)
    part = asset_key_part(state.sku)
    artifacts = {"glb": store.put(f"assets/{part}/{part}.glb", glb, "model/gltf-binary")}
    if options.write_poster:
        poster = render_poster(mesh, texture, options.poster_size)
        artifacts["poster"] = store.put(f"assets/{part}/poster.png", encode_png(poster),
                                        "image/png")
    log.info("%s export: %s.glb %.2f MB, texture %s px, validator errors %s warnings %s",
             state.sku, name, len(glb) / 1e6, metrics["export_texture_px"],
             metrics["gltf_errors"], metrics["gltf_warnings"])
    return StageResult(artifacts=artifacts, metrics=metrics)
