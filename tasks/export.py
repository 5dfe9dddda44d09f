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

The GLB is written by a small writer here rather than through trimesh, which cannot share one
set of vertex buffers between per-material primitives, embed JPEG, normal and ORM maps side by
side, or express LODs (``MSFT_lod``) and collision nodes.

``game``: the ``lod1``/``lod2`` meshes of simplify become sibling nodes ``<name>_lod1``... tied
to the main node by ``MSFT_lod`` (with ``MSFT_screencoverage`` hints), and the ``collision``
hulls become nodes ``<name>_collision_<i>`` without material, marked ``extras.collision``.
``ar``: ``write_usdz`` adds ``assets/<sku>/<sku>.usdz`` (see ``tasks/usdz.py``), validated by the
validators ``usdchecker --arkit`` runs. Files are written under readable keys
(``assets/<sku>/<sku>.glb``, ``.usdz``, ``poster.png``) so people and CDNs can find them.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.artifacts import encode_png, load_image, load_json, load_mesh, read_bytes, store_of
from ..core.camera import Camera, orbit_camera
from ..core.errors import ValidationFailed
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from . import materials as mats
from .bake import vertex_tangents
from .cleanup import smooth_normals
from .simplify import meshopt_collapse, pillow_faces, weld_ids

log = logging.getLogger(__name__)

NAME = "export"
METALLIC = 0.0
ROUGHNESS = 0.6
NEUTRAL_GREY = (0.8, 0.8, 0.8, 1.0)
MIN_TEXTURE_PX = 256
POSTER_AZIMUTH_DEG = 35.0
POSTER_ELEVATION_DEG = 20.0
POSTER_FOV_DEG = 30.0
LOD_COVERAGE = (0.5, 0.2, 0.05, 0.01)   # MSFT_screencoverage per level, LOD0 first
_GL_ARRAY_BUFFER = 34962
_GL_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
MESHOPT = "EXT_meshopt_compression"


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
    lods: embed ``lod1``/``lod2`` meshes when present (``MSFT_lod``).
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
    lods: bool = True
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


# ---------------------------------------------------------------------------- names and sizes


def gltf_name(sku: str) -> str:
    """A name matching ``[a-z][a-z0-9_-]*`` derived from the SKU (viewers show it)."""
    return mats.asset_name(sku)


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
    """RGB (or RGBA, kept) uint8 with power-of-two sides not above ``size_cap``."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :4 if img.shape[2] == 4 else 3]).astype(np.uint8)
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


def encode_image(image: np.ndarray, fmt: str, quality: int = 90) -> tuple[bytes, str]:
    """(bytes, mime type) of an RGB image as PNG or JPEG (an RGBA image is always PNG)."""
    from PIL import Image

    buf = io.BytesIO()
    if image.ndim == 3 and image.shape[2] == 4:
        Image.fromarray(image, "RGBA").save(buf, format="PNG", compress_level=6)
        return buf.getvalue(), "image/png"
    if fmt == "jpeg":
        Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality,
                                           subsampling=0 if quality >= 90 else 2)
        return buf.getvalue(), "image/jpeg"
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue(), "image/png"


# ---------------------------------------------------------------------------- materials


@dataclass(frozen=True)
class MaterialGroup:
    """Faces of the main mesh that share one glTF material."""

    name: str
    faces: np.ndarray
    metallic: float = METALLIC
    roughness: float = ROUGHNESS
    alpha_mode: str = "OPAQUE"      # a transferred source material's (base colour alpha)
    alpha_cutoff: float = 0.5
    double_sided: bool = False
    unlit: bool = False


def material_groups(mesh: MeshData, table: dict | None, name: str,
                    face_material: np.ndarray | None = None) -> list[MaterialGroup]:
    """One group per distinct material of the ``materials`` table (parts not in it take the
    first part's material); without a table one default material named ``<name>_material``.
    A table of transferred source materials (``"source": "mesh"``) groups the faces by the
    source material each came from (``face_material``), keeping its alpha handling."""
    if (table or {}).get("source") == "mesh" and face_material is not None:
        return source_material_groups(table, face_material)
    rows = (table or {}).get("parts") or {}
    if not rows:
        return [MaterialGroup(f"{name}_material", np.arange(mesh.n_faces))]
    fallback = rows[min(rows, key=int)]
    labels = np.asarray(mesh.face_labels, np.int64)
    per_face = np.array([rows.get(str(int(p)), fallback)["material"] for p in labels])
    by_material = {r["material"]: r for r in rows.values()}
    groups = []
    for material in sorted(set(per_face.tolist())):
        row = by_material[material]
        groups.append(MaterialGroup(f"{name}-{material}", np.flatnonzero(per_face == material),
                                    float(row["metallic"]), float(row["roughness"])))
    return groups


def source_material_groups(table: dict, face_material: np.ndarray) -> list[MaterialGroup]:
    """The transferred materials: one group per source material the faces use."""
    fm = np.asarray(face_material, np.int64)
    groups = []
    for row in table["materials"]:
        faces = np.flatnonzero(fm == int(row["source"]))
        if len(faces):
            groups.append(MaterialGroup(row["name"], faces, 1.0, 1.0, row["alpha_mode"],
                                        float(row["alpha_cutoff"]), bool(row["double_sided"]),
                                        bool(row.get("unlit", False))))
    return groups


@dataclass
class Encoded:
    """The textures as they go into the files: role -> (bytes, mime), and the base colour
    array (the poster renders it)."""

    images: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    base: np.ndarray | None = None
    px: int = 0
    data_px: int = 0       # the largest side of the data maps (normal, ORM, emissive)


def encode_textures(textures: dict[str, np.ndarray], cap: int, jpeg: bool,
                    quality: int, data_cap: int | None = None,
                    cache: dict | None = None) -> Encoded:
    """Resize every texture to power-of-two sides <= ``cap`` (the maps other than the base
    colour to <= ``data_cap``, default ``cap``); base colour and emissive as JPEG if asked.
    ``cache`` keeps encodings between the budget's tries."""
    out = Encoded()
    cache = {} if cache is None else cache
    for role, img in textures.items():
        limit = cap if role == "base_color" or data_cap is None else data_cap
        fmt = "jpeg" if (jpeg and role in ("base_color", "emissive")) else "png"
        key = (role, limit, fmt)
        if key not in cache:
            small = resize_texture(img, limit)
            cache[key] = (small, encode_image(small, fmt, quality))
        small, out.images[role] = cache[key]
        side = int(max(small.shape[:2]))
        out.px = max(out.px, side)
        if role == "base_color":
            out.base = small
        else:
            out.data_px = max(out.data_px, side)
    return out


# ---------------------------------------------------------------------------- GLB writer


def meshopt_encode(a: np.ndarray, target: int) -> tuple[bytes, str, int]:
    """(encoded bytes, extension mode, byte stride) of one accessor's data.

    Indices use meshoptimizer's triangle codec (``TRIANGLES``, the format the extension
    specifies: header 0xe1); vertex attributes the attribute codec at version 0 (header 0xa0),
    the only one ``EXT_meshopt_compression`` allows (newer libraries can default to version 1,
    which only ``KHR_meshopt_compression`` accepts). Both are lossless.
    """
    import meshoptimizer as mo

    a = np.ascontiguousarray(a)
    if target == _GL_ELEMENT_ARRAY_BUFFER:
        idx = a.reshape(-1).astype(np.uint32)
        return (mo.encode_index_buffer(idx, len(idx), int(idx.max()) + 1), "TRIANGLES",
                a.dtype.itemsize)
    stride = a.dtype.itemsize * (1 if a.ndim == 1 else a.shape[1])
    mo.encode_vertex_version(0)
    return mo.encode_vertex_buffer(a.reshape(len(a), -1), len(a), stride), "ATTRIBUTES", stride


def geometry_bytes(glb: bytes) -> int:
    """Bytes the vertex and index data take in a GLB's BIN chunk (compressed when meshopt)."""
    json_len = struct.unpack_from("<I", glb, 12)[0]
    doc = json.loads(glb[20:20 + json_len])
    total = 0
    for view in doc.get("bufferViews", []):
        ext = view.get("extensions", {}).get(MESHOPT)
        if ext is not None:
            total += int(ext["byteLength"])
        elif "target" in view:
            total += int(view["byteLength"])
    return total


class GltfWriter:
    """Accumulates a glTF 2.0 document and its binary buffer; ``glb()`` packs both."""

    def __init__(self, meshopt: bool = False) -> None:
        self.doc: dict = {"asset": {"version": "2.0", "generator": "assetfactory"},
                          "scene": 0, "scenes": [{"nodes": []}]}
        self.bin = bytearray()
        self.meshopt = meshopt
        self.fallback_bytes = 0     # length of the data-less fallback buffer (meshopt only)

    def _add(self, kind: str, item: dict) -> int:
        self.doc.setdefault(kind, []).append(item)
        return len(self.doc[kind]) - 1

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        item = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target is not None:
            item["target"] = target
        self.bin += data
        return self._add("bufferViews", item)

    def accessor(self, arr: np.ndarray, *, target: int | None, minmax: bool = False,
                 normalized: bool = False) -> int:
        a = np.ascontiguousarray(arr)
        width = 1 if a.ndim == 1 else a.shape[1]
        ctype = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UBYTE,
                 np.dtype(np.uint16): _USHORT, np.dtype(np.uint32): _UINT}[a.dtype]
        if self.meshopt and target is not None and len(a):
            view = self.compressed_view(a, target)
        else:
            view = self.view(a.tobytes(), target)
        item = {"bufferView": view, "componentType": ctype,
                "count": len(a),
                "type": {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}[width]}
        if normalized:
            item["normalized"] = True
        if minmax and len(a):
            item["min"] = np.asarray(a.min(0)).reshape(-1).tolist()
            item["max"] = np.asarray(a.max(0)).reshape(-1).tolist()
        return self._add("accessors", item)

    def compressed_view(self, a: np.ndarray, target: int) -> int:
        """A bufferView whose bytes live meshopt-encoded in the BIN chunk (the extension's
        ``buffer`` 0); the view itself points into the fallback buffer 1, which declares the
        uncompressed length but holds no data, as ``EXT_meshopt_compression`` describes."""
        data, mode, stride = meshopt_encode(a, target)
        while len(self.bin) % 4:
            self.bin.append(0)
        ext = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data),
               "byteStride": stride, "count": len(a), "mode": mode}
        self.bin += data
        self.fallback_bytes += -self.fallback_bytes % 4
        item = {"buffer": 1, "byteOffset": self.fallback_bytes, "byteLength": a.nbytes,
                "target": target, "extensions": {MESHOPT: ext}}
        if target == _GL_ARRAY_BUFFER:
            item["byteStride"] = stride
        self.fallback_bytes += a.nbytes
        self.use_extension(MESHOPT)
        return self._add("bufferViews", item)

    def texture(self, data: bytes, mime: str, name: str) -> int:
        if "samplers" not in self.doc:
            self._add("samplers", {"magFilter": 9729, "minFilter": 9987})
        image = self._add("images", {"bufferView": self.view(data), "mimeType": mime,
                                     "name": name})
        return self._add("textures", {"sampler": 0, "source": image, "name": name})

    def add(self, kind: str, item: dict) -> int:
        return self._add(kind, item)

    def use_extension(self, name: str) -> None:
        used = self.doc.setdefault("extensionsUsed", [])
        if name not in used:
            used.append(name)

    def glb(self) -> bytes:
        doc = dict(self.doc)
        while len(self.bin) % 4:
            self.bin.append(0)
        doc["buffers"] = [{"byteLength": len(self.bin)}]
        if self.fallback_bytes:
            doc["buffers"].append({"byteLength": self.fallback_bytes,
                                   "extensions": {MESHOPT: {"fallback": True}}})
        js = json.dumps(doc, separators=(",", ":")).encode()
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + 8 + len(self.bin)
        return (struct.pack("<III", 0x46546C67, 2, total) + struct.pack("<II", len(js), 0x4E4F534A)
                + js + struct.pack("<II", len(self.bin), 0x004E4942) + bytes(self.bin))


def _material(w: GltfWriter, group: MaterialGroup, tex: dict[str, int],
              base_factor: tuple) -> int:
    pbr: dict = {"baseColorFactor": list(base_factor), "metallicFactor": group.metallic,
                 "roughnessFactor": group.roughness}
    item: dict = {"name": group.name, "pbrMetallicRoughness": pbr}
    if "base_color" in tex:
        pbr["baseColorTexture"] = {"index": tex["base_color"]}
    if "orm" in tex:  # the texture holds the per-part values: factors must not scale them
        pbr["metallicRoughnessTexture"] = {"index": tex["orm"]}
        pbr["metallicFactor"] = pbr["roughnessFactor"] = 1.0
        item["occlusionTexture"] = {"index": tex["orm"]}
    if "normal" in tex:
        item["normalTexture"] = {"index": tex["normal"]}
    if "emissive" in tex:
        item["emissiveTexture"] = {"index": tex["emissive"]}
        item["emissiveFactor"] = [1.0, 1.0, 1.0]
    if group.alpha_mode != "OPAQUE":
        item["alphaMode"] = group.alpha_mode
        if group.alpha_mode == "MASK":
            item["alphaCutoff"] = group.alpha_cutoff
    if group.double_sided:
        item["doubleSided"] = True
    if group.unlit:
        item["extensions"] = {"KHR_materials_unlit": {}}
        w.use_extension("KHR_materials_unlit")
    return w.add("materials", item)


def _attributes(w: GltfWriter, mesh: MeshData, textured: bool, tangents: bool) -> dict:
    """The vertex accessors of one mesh (shared by all its primitives and by its textured
    LODs). ``tangents``: write TANGENT (``bake.vertex_tangents``, the frame the normal map was
    baked in), so viewers need not derive MikkTSpace themselves."""
    attrs = {"POSITION": w.accessor(mesh.vertices.astype(np.float32), target=_GL_ARRAY_BUFFER,
                                    minmax=True)}
    n = None
    if mesh.vertex_normals is not None:
        n = np.asarray(mesh.vertex_normals, np.float64)
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        attrs["NORMAL"] = w.accessor(n.astype(np.float32), target=_GL_ARRAY_BUFFER)
    if textured and mesh.uv is not None:
        if tangents and n is not None:
            attrs["TANGENT"] = w.accessor(vertex_tangents(mesh, n).astype(np.float32),
                                          target=_GL_ARRAY_BUFFER)
        uv = np.asarray(mesh.uv, np.float32).copy()
        uv[:, 1] = 1.0 - uv[:, 1]                      # glTF's V points down
        attrs["TEXCOORD_0"] = w.accessor(uv, target=_GL_ARRAY_BUFFER)
    elif mesh.vertex_colors is not None:
        rgba = np.asarray(mesh.vertex_colors, np.float64) / 255.0
        rgba[:, :3] = srgb_to_linear(rgba[:, :3])      # glTF COLOR_0 is linear
        attrs["COLOR_0"] = w.accessor(np.round(rgba * 255.0).astype(np.uint8),
                                      target=_GL_ARRAY_BUFFER, normalized=True)
    return attrs


def _primitives(w: GltfWriter, name: str, attrs: dict, n_vertices: int,
                groups: list[tuple[np.ndarray, int | None]]) -> int:
    """One glTF mesh over ``attrs``: one primitive (index accessor) per (faces, material)."""
    itype = np.uint16 if n_vertices < 65535 else np.uint32
    prims = []
    for faces, material in groups:
        if len(faces) == 0:
            continue
        idx = w.accessor(np.asarray(faces).reshape(-1).astype(itype),
                         target=_GL_ELEMENT_ARRAY_BUFFER)
        prim: dict = {"attributes": dict(attrs), "indices": idx, "mode": 4}
        if material is not None:
            prim["material"] = material
        prims.append(prim)
    return w.add("meshes", {"name": name, "primitives": prims})


def _mesh(w: GltfWriter, mesh: MeshData, name: str, groups: list[tuple[np.ndarray, int | None]],
          textured: bool, tangents: bool = False) -> int:
    """One glTF mesh: shared vertex accessors, one primitive per (face indices, material)."""
    attrs = _attributes(w, mesh, textured, tangents)
    return _primitives(w, name, attrs, mesh.n_vertices,
                       [(mesh.faces[faces], m) for faces, m in groups])


@dataclass(frozen=True)
class Extras:
    """What rides along in the GLB besides the main mesh.

    lods: LOD meshes of their own (untextured: made by simplify before the UV stage).
    lod_faces: textured LODs, as triangle lists over the main mesh's own vertices (see
        ``textured_lods``); when given they replace ``lods`` in the GLB.
    """

    lods: tuple[MeshData, ...] = ()
    hulls: tuple[MeshData, ...] = ()
    lod_faces: tuple[np.ndarray, ...] = ()

    @property
    def n_lods(self) -> int:
        return len(self.lod_faces) or len(self.lods)


def textured_lods(mesh: MeshData, counts: list[int]) -> tuple[np.ndarray, ...]:
    """LOD triangle lists over the final (UV-mapped, textured) mesh's own vertices.

    meshoptimizer's collapse keeps vertices where they are and only re-points corners, and it
    collapses a UV seam (vertices split at equal positions) only along itself, on both sides
    at once; so each LOD reuses the main mesh's positions, normals, UVs and tangents, and its
    atlas and materials, and costs the file only its index buffer. Each level chains from the
    previous one."""
    wid = weld_ids(mesh.vertices)
    out, prev = [], mesh.faces
    for n in counts:
        faces = prev if len(prev) <= n else meshopt_collapse(mesh.vertices, prev, int(n), False)
        faces = faces[~pillow_faces(wid[faces])]
        out.append(faces)
        prev = faces
    return tuple(out)


def build_glb(mesh: MeshData, name: str, texture: np.ndarray | None,
              groups: list[MaterialGroup] | None = None, encoded: Encoded | None = None,
              extras: Extras = Extras(), meshopt: bool = False) -> bytes:
    """GLB bytes: the asset node ``name`` with one mesh (one primitive per material group),
    its LOD siblings and collision hulls; textures from ``encoded`` (or ``texture`` as PNG);
    ``meshopt`` compresses the geometry (``EXT_meshopt_compression``)."""
    if encoded is None:
        encoded = Encoded()
        if texture is not None:
            encoded.images["base_color"] = encode_image(texture, "png")
            encoded.base = texture
    groups = groups or [MaterialGroup(f"{name}_material", np.arange(mesh.n_faces))]
    w = GltfWriter(meshopt)
    w.doc["scenes"][0]["name"] = name
    tex = {role: w.texture(data, mime, f"{name}-{role.replace('_', '-')}")
           for role, (data, mime) in encoded.images.items()}
    textured = "base_color" in tex and mesh.uv is not None
    if not textured:
        tex.pop("base_color", None)
    if mesh.uv is None:
        tex = {}
    plain = textured or mesh.vertex_colors is not None
    factor = (1.0, 1.0, 1.0, 1.0) if plain else NEUTRAL_GREY
    mids = [_material(w, g, tex, factor) for g in groups]
    attrs = _attributes(w, mesh, textured, tangents="normal" in tex)
    main_mesh = _primitives(w, name, attrs, mesh.n_vertices,
                            [(mesh.faces[g.faces], m) for g, m in zip(groups, mids)])
    main = w.add("nodes", {"name": name, "mesh": main_mesh})
    w.doc["scenes"][0]["nodes"].append(main)
    if extras.lod_faces and mesh.uv is not None:
        _add_shared_lods(w, main, name, mesh, extras.lod_faces, attrs, groups, mids)
    elif extras.lods:
        _add_lods(w, main, name, extras.lods, mids, tex, textured, encoded)
    for i, hull in enumerate(extras.hulls):
        mid = _mesh(w, hull, f"{name}_collision_{i}", [(np.arange(hull.n_faces), None)], False)
        node = w.add("nodes", {"name": f"{name}_collision_{i}", "mesh": mid,
                               "extras": {"collision": True}})
        w.doc["scenes"][0]["nodes"].append(node)
    return w.glb()


def _link_lods(w: GltfWriter, main: int, ids: list[int]) -> None:
    node = w.doc["nodes"][main]
    node["extensions"] = {"MSFT_lod": {"ids": ids}}
    node["extras"] = {"MSFT_screencoverage": list(LOD_COVERAGE[:len(ids) + 1])}
    w.use_extension("MSFT_lod")


def _add_shared_lods(w: GltfWriter, main: int, name: str, mesh: MeshData,
                     lod_faces: tuple[np.ndarray, ...], attrs: dict,
                     groups: list[MaterialGroup], mids: list[int]) -> None:
    """Textured LODs: nodes ``<name>_lod<i>`` whose primitives index the main mesh's vertex
    accessors, with the main materials (a LOD face takes its first corner's material group)."""
    vgroup = np.zeros(mesh.n_vertices, np.int64)
    for gi, g in enumerate(groups):
        vgroup[mesh.faces[g.faces].ravel()] = gi
    ids = []
    for i, faces in enumerate(lod_faces, start=1):
        per = vgroup[faces[:, 0]]
        mid = _primitives(w, f"{name}_lod{i}", attrs, mesh.n_vertices,
                          [(faces[per == gi], m) for gi, m in enumerate(mids)])
        ids.append(w.add("nodes", {"name": f"{name}_lod{i}", "mesh": mid}))
    _link_lods(w, main, ids)


def _add_lods(w: GltfWriter, main: int, name: str, lods: tuple[MeshData, ...], mids: list[int],
              tex: dict[str, int], textured: bool, encoded: Encoded) -> None:
    """LOD meshes as nodes ``<name>_lod<i>`` referenced by the main node's ``MSFT_lod``.

    A LOD with UVs shares the main materials (first one); one without takes an untextured
    material of the texture's mean colour, so it still reads as the product from afar.
    """
    lod_mat = None
    ids = []
    for i, lod in enumerate(lods, start=1):
        if textured and lod.uv is not None:
            mat = mids[0]
        else:
            if lod_mat is None:
                mean = (srgb_to_linear(encoded.base[..., :3].reshape(-1, 3).mean(0) / 255.0)
                        if encoded.base is not None else np.asarray(NEUTRAL_GREY[:3]))
                lod_mat = w.add("materials", {"name": f"{name}-lod", "pbrMetallicRoughness": {
                    "baseColorFactor": [*map(float, mean), 1.0], "metallicFactor": METALLIC,
                    "roughnessFactor": ROUGHNESS}})
            mat = lod_mat
        mid = _mesh(w, lod, f"{name}_lod{i}", [(np.arange(lod.n_faces), mat)],
                    textured and lod.uv is not None)
        ids.append(w.add("nodes", {"name": f"{name}_lod{i}", "mesh": mid}))
    _link_lods(w, main, ids)


def fit_budget(mesh: MeshData, name: str, textures: dict[str, np.ndarray], max_bytes: float,
               options: ExportOptions, groups: list[MaterialGroup], extras: Extras = Extras()
               ) -> tuple[bytes, Encoded]:
    """Build the GLB at the largest texture size that fits the budget: at each size PNG first,
    then (if allowed) a JPEG base colour, then the other maps (normal, ORM, emissive) at half
    that size (the base colour carries most of what a viewer sees), then everything at half
    the size (not below 256 px). An RGBA base colour (cut-outs) stays PNG."""
    cap = options.texture_size
    cache: dict = {}
    opaque = "base_color" in textures and textures["base_color"].shape[2] == 3
    tries = ["png"] + (["jpeg"] if options.allow_jpeg and opaque else [])
    while True:
        data_caps = [cap] + ([cap // 2] if len(textures) > 1 and "base_color" in textures
                             and cap // 2 >= MIN_TEXTURE_PX else [])
        for data_cap in data_caps:
            for fmt in tries:
                enc = encode_textures(textures, cap, fmt == "jpeg", options.jpeg_quality,
                                      data_cap, cache)
                glb = build_glb(mesh, name, None, groups, enc, extras, options.meshopt)
                if len(glb) <= max_bytes or not textures:
                    return glb, enc
        if not textures or cap <= MIN_TEXTURE_PX or enc.px <= MIN_TEXTURE_PX:
            return glb, enc
        cap = max(MIN_TEXTURE_PX, min(cap, enc.px) // 2)


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


TEXTURE_KEYS = {"base_color": "texture/base_color", "normal": "texture/normal",
                "orm": "texture/orm", "emissive": "texture/emissive"}


def load_textures(state: AssetState, mesh: MeshData, options: ExportOptions,
                  alpha: bool = False) -> dict[str, np.ndarray]:
    """The texture maps to embed, by role (RGB uint8, full size; resizing is fit_budget's);
    with ``alpha`` the base colour keeps its alpha channel (cut-outs, blending)."""
    wanted = {"base_color": True, "normal": options.normal_map, "orm": options.orm_map,
              "emissive": True}
    present = [r for r, key in TEXTURE_KEYS.items() if wanted[r] and key in state.artifacts]
    if present and mesh.uv is None:
        log.warning("%s export: %s present but the mesh has no UVs; exporting without them",
                    state.sku, ", ".join(TEXTURE_KEYS[r] for r in present))
        return {}
    out = {}
    for role in present:
        img = load_image(state, TEXTURE_KEYS[role])
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        keep = 4 if (alpha and role == "base_color" and img.shape[2] == 4) else 3
        out[role] = np.ascontiguousarray(img[..., :keep]).astype(np.uint8)
    return out


def _with_normals(mesh: MeshData) -> MeshData:
    return mesh if mesh.vertex_normals is not None else mesh.replace(
        vertex_normals=seamless_normals(mesh))


def load_extras(state: AssetState, options: ExportOptions) -> Extras:
    """LOD meshes (``lod1``, ``lod2``...) and collision hulls, when present and wanted."""
    lods = []
    if options.lods:
        i = 1
        while f"lod{i}" in state.artifacts:
            lods.append(_with_normals(load_mesh(state, f"lod{i}")))
            i += 1
    hulls: list[MeshData] = []
    if options.collision and "collision" in state.artifacts:
        hulls = read_hulls(state)
    return Extras(tuple(lods), tuple(hulls))


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
    from .usdz import UsdMaterial, UsdTextures, build_usdz

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


@stage(NAME, "0.3.0", ExportOptions, Resources(cpus=1, memory_mb=1024))
def export(state: AssetState, options: ExportOptions) -> StageResult:
    """Write ``assets/<sku>/<sku>.glb`` (validated), optionally ``.usdz``, and ``poster.png``."""
    mesh = _with_normals(load_mesh(state, "mesh"))
    name = gltf_name(state.sku)
    table = load_json(state, "materials") if "materials" in state.artifacts else None
    faces = (np.load(io.BytesIO(read_bytes(state, "material_faces")), allow_pickle=False)
             if "material_faces" in state.artifacts else None)
    groups = material_groups(mesh, table, name, faces)
    alpha = any(g.alpha_mode != "OPAQUE" for g in groups)
    textures = load_textures(state, mesh, options, alpha)
    extras = load_extras(state, options)
    if extras.lods and mesh.uv is not None and "base_color" in textures:
        extras = Extras(extras.lods, extras.hulls,
                        textured_lods(mesh, [lod.n_faces for lod in extras.lods]))
    max_bytes = options.max_glb_mb * 1e6
    glb, enc = fit_budget(mesh, name, textures, max_bytes, options, groups, extras)
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
                     "export_lod_tris": ",".join(str(len(f)) for f in extras.lod_faces) or
                     ",".join(str(lod.n_faces) for lod in extras.lods),
                     "export_collision_hulls": len(extras.hulls),
                     "export_maps": ",".join(sorted(enc.images)),
                     "export_meshopt": options.meshopt,
                     "export_geometry_bytes": geometry_bytes(glb),
                     "gltf_errors": None, "gltf_warnings": None, "gltf_infos": None}
    if options.validate:
        metrics.update(_validate_glb(glb, name))
    store = store_of(state)
    part = asset_key_part(state.sku)
    artifacts = {"glb": store.put(f"assets/{part}/{part}.glb", glb, "model/gltf-binary")}
    if options.write_usdz:
        usdz, usd_metrics = make_usdz(mesh, name, groups, enc, options.validate)
        if len(usdz) > max_bytes:
            raise ValidationFailed(
                f"the USDZ is {len(usdz) / 1e6:.3g} MB, over the {options.max_glb_mb:g} MB "
                "budget", "lower export texture_size or simplify target_tris")
        metrics.update(usd_metrics)
        artifacts["usdz"] = store.put(f"assets/{part}/{part}.usdz", usdz, "model/vnd.usdz+zip")
    if options.write_poster:
        poster = render_poster(mesh, enc.base, options.poster_size)
        artifacts["poster"] = store.put(f"assets/{part}/poster.png", encode_png(poster),
                                        "image/png")
    log.info("%s export: %s.glb %.2f MB, maps %s at %s px (%s), %d materials, %d LODs, "
             "%d hulls, validator errors %s warnings %s%s", state.sku, name, len(glb) / 1e6,
             metrics["export_maps"] or "-", enc.px, metrics["export_base_color_format"] or "-",
             len(groups), extras.n_lods, len(extras.hulls), metrics["gltf_errors"],
             metrics["gltf_warnings"],
             f", usdz {metrics['export_usdz_bytes'] / 1e6:.2f} MB" if options.write_usdz else "")
    return StageResult(artifacts=artifacts, metrics=metrics)
