"""export: the finished asset as a validated GLB (and, for ``ar``, USDZ), plus a poster PNG.

Why here and like this: the GLB is what merchants ship, so it follows the Khronos 3D Commerce
conventions (metres, +Y up, front +Z, origin at the bottom centre: already true of ``mesh``
after cleanup, so nothing is moved), PBR metal/rough with a power-of-two sRGB base colour plus
the linear normal and ORM maps when earlier stages made them (ORM packed R = occlusion,
G = roughness, B = metal: one image serves ``occlusionTexture`` and
``metallicRoughnessTexture``), one material per distinct material of the ``materials`` table
(named ``<asset>-<material>``), names matching ``[a-z][a-z0-9_-]*``, and it must pass the
Khronos glTF-Validator with zero errors, or the stage fails with the validator's first
messages (warnings are counted as metrics). The profile's size budget is met by halving the
textures and, at each size, trying a JPEG base colour (core glTF), then the normal, ORM and
emissive maps at half the base colour's size, before halving again; a
profile that allows it can also turn on ``meshopt`` (``EXT_meshopt_compression``, lossless,
geometry about 0.66-0.74x its raw size on three shared-data models; no profile does by default,
because viewers and tools without a meshopt decoder, trimesh among them, cannot read the mesh).

The GLB is written by a small writer (``algorithms.gltf``) rather than through trimesh, which
cannot share one set of vertex buffers between per-material primitives, embed JPEG, normal and
ORM maps side by side, or express LODs (``MSFT_lod``) and collision nodes.

LODs are made here, and only here (``lods``: the `game` profile asks for 8000 and 2500
triangles): each level is meshoptimizer's collapse of the previous one over the final mesh's
own vertices (``algorithms.lods``), so it shares the main mesh's positions, normals, UVs,
tangents, atlas and materials and costs the file only its index buffer. They become sibling
nodes ``<name>_lod1``... tied to the main node by ``MSFT_lod`` (with ``MSFT_screencoverage``
hints). The ``collision`` hulls of simplify become nodes ``<name>_collision_<i>`` without
material, marked ``extras.collision``.
Transferred vendor materials (a ``materials`` table with ``"source": "mesh"`` and the
``material_faces`` the bake wrote) become one material per source material, keeping its alpha
mode and cut-off (the base colour stays RGBA), double-sidedness and unlit flag, with the
``texture/emissive`` map where the source glows.
``ar``: ``write_usdz`` adds ``<dir>/<stem>.usdz`` (see ``algorithms/usdz.py``), validated by
the validators ``usdchecker --arkit`` runs. Files are written under the SKU's own folder
(``core.paths.asset_dir``: ``assets/<slug>-<digest>/<slug>.glb``, ``.usdz``, ``poster.png``),
readable for people and CDNs, and never shared with another SKU: the folder is claimed first
(``sku.txt``) and a folder claimed by a different SKU fails the stage instead of being
overwritten.
"""

from __future__ import annotations

import io
import itertools
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..algorithms import materials as mats
from ..algorithms.gltf import (
    NEUTRAL_GREY,
    Encoded,
    Extras,
    MaterialGroup,
    fit_budget,
    geometry_bytes,
    material_groups,
)
from ..algorithms.lods import textured_lods
from ..algorithms.poster import render_poster
from ..core.artifacts import (
    PNG_SIGNATURE,
    decode_png,
    encode_png,
    load_json,
    load_mesh,
    read_bytes,
    store_of,
)
from ..core.errors import ProcessingError, ValidationFailed
from ..core.mesh import MeshData
from ..core.paths import AssetDirTaken, asset_file_stem, asset_key, claim_asset_dir
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from ..geometry.normals import seamless_normals

log = logging.getLogger(__name__)

NAME = "export"


@dataclass(frozen=True)
class ExportOptions:
    """Options of the export stage.

    texture_size: largest side of the embedded textures (px); each is resized to the nearest
        power of two not above it (WebGL 1 and some AR viewers need one).
    poster_size: side of the square poster PNG (px).
    write_poster: render the poster (front three-quarter view on white).
    validate: run the validators (Khronos glTF-Validator; USD's for USDZ); any error fails.
    max_glb_mb: size budget (10^6 bytes) of each file; textures are halved (down to 256 px),
        trying a JPEG base colour and then the other maps at half the base colour's size at
        each size, and the stage fails if it still does not fit.
    normal_map: embed ``texture/normal`` when a bake stage made one.
    orm_map: embed ``texture/orm`` (occlusion + roughness + metal) when present.
    allow_jpeg: let the base colour become JPEG to meet the budget (normal/ORM stay PNG:
        JPEG blocks show as shading artefacts in data maps).
    jpeg_quality: JPEG quality (1-95) of that base colour.
    lods: triangle budgets of LOD1, LOD2, ... (strictly decreasing; the `game` profile uses
        (8000, 2500)), made here over the final mesh's vertices and tied by ``MSFT_lod``.
    collision: embed ``collision`` hulls when present.
    write_usdz: also write a USDZ (AR Quick Look); the recipe sets it for the ``ar`` profile.
    meshopt: compress the vertex and index buffers with ``EXT_meshopt_compression`` (lossless:
        no quantisation filters), keeping an uncompressed fallback declared but without data, so
        the extension is only "used", not "required". Off by default: viewers without a
        meshopt decoder (three.js needs ``setMeshoptDecoder``) show nothing.
    """

    texture_size: int = 1024
    poster_size: int = 512
    write_poster: bool = True
    validate: bool = True
    max_glb_mb: float = 5.0
    normal_map: bool = True
    orm_map: bool = True
    allow_jpeg: bool = True
    jpeg_quality: int = 90
    lods: tuple[int, ...] = ()
    collision: bool = True
    write_usdz: bool = False
    meshopt: bool = False

    def __post_init__(self) -> None:
        check(isinstance(self.texture_size, int) and 1 <= self.texture_size <= 16384,
              f"texture_size must be an integer in 1..16384, got {self.texture_size!r}")
        check(isinstance(self.poster_size, int) and 16 <= self.poster_size <= 4096,
              f"poster_size must be an integer in 16..4096, got {self.poster_size!r}")
        check(self.max_glb_mb > 0, f"max_glb_mb must be > 0, got {self.max_glb_mb}")
        check(isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 95,
              f"jpeg_quality must be an integer in 1..95, got {self.jpeg_quality!r}")
        check(isinstance(self.lods, (tuple, list)), f"lods must be a tuple of triangle counts, "
              f"got {self.lods!r}")
        lods = tuple(self.lods)
        object.__setattr__(self, "lods", lods)
        check(all(isinstance(n, int) and n >= 4 for n in lods),
              f"lods must be integers >= 4, got {lods!r}")
        check(all(a > b for a, b in itertools.pairwise(lods)),
              f"lods must decrease strictly, got {lods!r}")


# ---------------------------------------------------------------------------- names and sizes


def gltf_name(sku: str) -> str:
    """A name matching ``[a-z][a-z0-9_-]*`` derived from the SKU (viewers show it)."""
    return mats.asset_name(sku)


# ---------------------------------------------------------------------------- the stage


TEXTURE_KEYS = {"base_color": "texture/base_color", "normal": "texture/normal",
                "orm": "texture/orm", "emissive": "texture/emissive"}


def load_textures(state: AssetState, mesh: MeshData, options: ExportOptions,
                  alpha: bool = False) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """The texture maps to embed, by role (RGB uint8, full size; resizing is fit_budget's);
    with ``alpha`` the base colour keeps its alpha channel (cut-outs, blending). Also the
    stored PNG bytes of each map whose pixels are exactly the embedded array, so that a map
    that goes into the file unchanged is not encoded a second time."""
    wanted = {"base_color": True, "normal": options.normal_map, "orm": options.orm_map,
              "emissive": True}
    present = [r for r, key in TEXTURE_KEYS.items() if wanted[r] and key in state.artifacts]
    if present and mesh.uv is None:
        log.warning("%s export: %s present but the mesh has no UVs; exporting without them",
                    state.sku, ", ".join(TEXTURE_KEYS[r] for r in present))
        return {}, {}
    out: dict[str, np.ndarray] = {}
    stored: dict[str, bytes] = {}
    for role in present:
        data = read_bytes(state, TEXTURE_KEYS[role])
        img = decode_png(data)
        as_stored = img.dtype == np.uint8 and img.ndim == 3
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        keep = 4 if (alpha and role == "base_color" and img.shape[2] == 4) else 3
        as_stored = as_stored and img.shape[2] == keep and data[:8] == PNG_SIGNATURE
        out[role] = np.ascontiguousarray(img[..., :keep]).astype(np.uint8)
        if as_stored:
            stored[role] = data
    return out, stored


def _with_normals(mesh: MeshData) -> MeshData:
    return mesh if mesh.vertex_normals is not None else mesh.replace(
        vertex_normals=seamless_normals(mesh))


def load_extras(state: AssetState, options: ExportOptions) -> Extras:
    """Collision hulls, when present and wanted (LODs are made by the stage itself)."""
    hulls: list[MeshData] = []
    if options.collision and "collision" in state.artifacts:
        hulls = read_hulls(state)
    return Extras(hulls=tuple(hulls))


def read_hulls(state: AssetState) -> list[MeshData]:
    """Collision hulls from ``collision``: a mesh (.npz) whose ``face_labels`` number the hulls,
    or JSON ``{"hulls": [{"vertices": [[x, y, z]...], "faces": [[a, b, c]...]}...]}``."""
    ref = state.ref("collision")
    if ref.uri.endswith(".json"):
        doc = load_json(state, "collision")
        rows = doc.get("hulls", []) if isinstance(doc, dict) else doc
        return [MeshData(np.asarray(h["vertices"], float).reshape(-1, 3),
                         np.asarray(h["faces"], np.int64).reshape(-1, 3)) for h in rows]
    mesh = MeshData.from_bytes(read_bytes(state, "collision"))
    return [mesh.subset_faces(mesh.face_labels == k).replace(uv=None, vertex_colors=None,
                                                                vertex_normals=None)
            for k in np.unique(mesh.face_labels)]


def _validate_glb(glb: bytes, name: str) -> dict:
    from ..core.validate import validate_gltf

    report = validate_gltf(glb)
    if not report.ok:
        raise ValidationFailed(
            f"glTF-Validator found {report.errors} error(s) in {name}.glb: "
            + "; ".join(report.first("error", 3)),
            "report this with the mesh artifact attached; the exporter wrote an invalid file")
    return {"gltf_errors": report.errors, "gltf_warnings": report.warnings,
            "gltf_infos": report.infos}


def make_usdz(mesh: MeshData, name: str, groups: list[MaterialGroup], enc: Encoded,
              validate: bool) -> tuple[bytes, dict]:
    """USDZ bytes (same textures as the GLB) and their validation metrics."""
    from ..algorithms.usdz import UsdMaterial, UsdTextures, build_usdz

    base = (1.0, 1.0, 1.0) if enc.base is not None else NEUTRAL_GREY[:3]
    usd_mats = [UsdMaterial(g.name, g.faces, g.metallic, g.roughness, base, g.alpha_mode,
                            g.alpha_cutoff) for g in groups]
    ext = {"image/png": "png", "image/jpeg": "jpg"}
    images = {r: (data, ext[mime]) for r, (data, mime) in enc.images.items()}
    if mesh.uv is None:
        images = {}
    data = build_usdz(mesh, name, usd_mats, UsdTextures(images))
    metrics = {"export_usdz_bytes": len(data), "usd_errors": None, "usd_warnings": None}
    if validate:
        from ..core.validate import validate_usdz

        with tempfile.TemporaryDirectory(prefix="assetfactory-usdz-check-") as tmp:
            path = Path(tmp) / f"{name}.usdz"
            path.write_bytes(data)
            report = validate_usdz(path)
        metrics.update(usd_errors=report.errors, usd_warnings=report.warnings)
        if not report.ok:
            raise ValidationFailed(
                f"USD validation (usdchecker --arkit rules) found {report.errors} error(s) in "
                f"{name}.usdz: " + "; ".join(report.first(3)),
                "report this with the mesh artifact attached; the exporter wrote an invalid file")
    return data, metrics


@stage(NAME, "0.5.0", ExportOptions, Resources(cpus=1, memory_mb=1024))
def export(state: AssetState, options: ExportOptions) -> StageResult:
    """Write ``<asset_dir>/<stem>.glb`` (validated), optionally ``.usdz``, and ``poster.png``."""
    mesh = _with_normals(load_mesh(state, "mesh"))
    name = gltf_name(state.sku)
    table = load_json(state, "materials") if "materials" in state.artifacts else None
    faces = (np.load(io.BytesIO(read_bytes(state, "material_faces")), allow_pickle=False)
             if "material_faces" in state.artifacts else None)
    groups = material_groups(mesh, table, name, faces)
    alpha = any(g.alpha_mode != "OPAQUE" for g in groups)
    textures, stored = load_textures(state, mesh, options, alpha)
    extras = load_extras(state, options)
    if options.lods:
        extras = Extras(extras.hulls, textured_lods(mesh, list(options.lods)))
    max_bytes = options.max_glb_mb * 1e6
    glb, enc = fit_budget(mesh, name, textures, max_bytes, options, groups, extras,
                          stored)
    if len(glb) > max_bytes:
        raise ValidationFailed(
            f"the GLB is {len(glb) / 1e6:.3g} MB with {enc.px} px textures, over the "
            f"{options.max_glb_mb:g} MB budget ({mesh.n_faces} triangles, "
            f"{geometry_bytes(glb) / 1e6:.3g} MB of geometry)",
            "lower simplify target_tris or export texture_size, or raise export max_glb_mb")
    metrics: dict = {"export_glb_bytes": len(glb), "export_texture_px": enc.px,
                     "export_data_texture_px": enc.data_px,
                     "export_base_color_format": enc.images.get("base_color", ("", ""))[1]
                     .replace("image/", ""),
                     "export_materials": len(groups), "export_lods": extras.n_lods,
                     "export_lod_tris": ",".join(str(len(f)) for f in extras.lod_faces),
                     "export_collision_hulls": len(extras.hulls),
                     "export_maps": ",".join(sorted(enc.images)),
                     "export_meshopt": options.meshopt,
                     "export_geometry_bytes": geometry_bytes(glb),
                     "gltf_errors": None, "gltf_warnings": None, "gltf_infos": None}
    if options.validate:
        metrics.update(_validate_glb(glb, name))
    store = store_of(state)
    try:
        claim_asset_dir(store, state.sku)
    except AssetDirTaken as exc:
        raise ProcessingError(f"{exc}; nothing was written",
                              "rename one of the two SKUs (their folder names collide)",
                              code="path_collision") from exc
    stem = asset_file_stem(state.sku)
    artifacts = {"glb": store.put(asset_key(state.sku, f"{stem}.glb"), glb,
                                  "model/gltf-binary")}
    if options.write_usdz:
        usdz, usd_metrics = make_usdz(mesh, name, groups, enc, options.validate)
        if len(usdz) > max_bytes:
            raise ValidationFailed(
                f"the USDZ is {len(usdz) / 1e6:.3g} MB, over the {options.max_glb_mb:g} MB "
                "budget", "lower export texture_size or simplify target_tris")
        metrics.update(usd_metrics)
        artifacts["usdz"] = store.put(asset_key(state.sku, f"{stem}.usdz"), usdz,
                                      "model/vnd.usdz+zip")
    if options.write_poster:
        poster = render_poster(mesh, enc.base, options.poster_size)
        artifacts["poster"] = store.put(asset_key(state.sku, "poster.png"),
                                        encode_png(poster),
                                        "image/png")
    log.info("%s export: %s.glb %.2f MB, maps %s at %s px (%s), %d materials, %d LODs, "
             "%d hulls, validator errors %s warnings %s%s", state.sku, name, len(glb) / 1e6,
             metrics["export_maps"] or "-", enc.px, metrics["export_base_color_format"] or "-",
             len(groups), extras.n_lods, len(extras.hulls), metrics["gltf_errors"],
             metrics["gltf_warnings"],
             f", usdz {metrics['export_usdz_bytes'] / 1e6:.2f} MB" if options.write_usdz else "")
    return StageResult(artifacts=artifacts, metrics=metrics)
