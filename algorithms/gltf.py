"""A small GLB writer: one set of vertex buffers shared by per-material primitives and by
LODs, embedded PNG/JPEG base colour (RGBA PNG for cut-outs), normal, ORM and emissive maps,
per-material alpha mode, double-sidedness and ``KHR_materials_unlit`` (transferred vendor
materials), ``MSFT_lod`` and collision nodes, and optional ``EXT_meshopt_compression``.

Why our own: trimesh cannot share one set of vertex buffers between per-material primitives,
embed JPEG, normal and ORM maps side by side, or express LODs (``MSFT_lod``) and collision
nodes.
"""

from __future__ import annotations

import io
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..core.artifacts import encode_png
from ..core.mesh import MeshData
from ..geometry.colour import srgb_to_linear
from ..geometry.tangents import vertex_tangents

_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125


class GlbSettings(Protocol):
    """What ``fit_budget`` reads of ``tasks.export.ExportOptions`` (see there)."""

    texture_size: int
    allow_jpeg: bool
    jpeg_quality: int
    meshopt: bool



METALLIC = 0.0


ROUGHNESS = 0.6


NEUTRAL_GREY = (0.8, 0.8, 0.8, 1.0)


MIN_TEXTURE_PX = 256


LOD_COVERAGE = (0.5, 0.2, 0.05, 0.01)   # MSFT_screencoverage per level, LOD0 first


_GL_ARRAY_BUFFER = 34962


_GL_ELEMENT_ARRAY_BUFFER = 34963


MESHOPT = "EXT_meshopt_compression"


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


def encode_image(image: np.ndarray, fmt: str, quality: int = 90) -> tuple[bytes, str]:
    """(bytes, mime type) of an RGB image as PNG or JPEG (an RGBA image is always PNG). PNG
    through ``core.artifacts.encode_png`` (run-length deflate: a few per cent over zlib level
    6's size at a quarter of its CPU)."""
    from PIL import Image

    if (image.ndim == 3 and image.shape[2] == 4) or fmt != "jpeg":
        return encode_png(image), "image/png"
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality,
                                       subsampling=0 if quality >= 90 else 2)
    return buf.getvalue(), "image/jpeg"


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
                    cache: dict | None = None,
                    stored: dict[str, bytes] | None = None) -> Encoded:
    """Resize every texture to power-of-two sides <= ``cap`` (the maps other than the base
    colour to <= ``data_cap``, default ``cap``); base colour and emissive as JPEG if asked.
    ``cache`` keeps encodings between the budget's tries. ``stored``: PNG bytes that decode to
    exactly a role's array; a map that goes in as PNG at its own size uses them as they are."""
    out = Encoded()
    cache = {} if cache is None else cache
    stored = stored or {}
    for role, img in textures.items():
        limit = cap if role == "base_color" or data_cap is None else data_cap
        fmt = "jpeg" if (jpeg and role in ("base_color", "emissive")) else "png"
        key = (role, limit, fmt)
        if key not in cache:
            small = resize_texture(img, limit)
            same = fmt == "png" and role in stored and small.shape == img.shape
            cache[key] = (small, (stored[role], "image/png") if same
                          else encode_image(small, fmt, quality))
        small, out.images[role] = cache[key]
        side = int(max(small.shape[:2]))
        out.px = max(out.px, side)
        if role == "base_color":
            out.base = small
        else:
            out.data_px = max(out.data_px, side)
    return out


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
    LODs). ``tangents``: write TANGENT (``geometry.tangents.vertex_tangents``, the frame the normal map was
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
        rgba[:, :3] = srgb_to_linear(rgba[:, :3], np.float64)  # glTF COLOR_0 is linear
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

    hulls: collision hulls, one node each.
    lod_faces: LODs as triangle lists over the main mesh's own vertices (see
        ``algorithms.lods.textured_lods``): each costs the file only its index buffer.
    """

    hulls: tuple[MeshData, ...] = ()
    lod_faces: tuple[np.ndarray, ...] = ()

    @property
    def n_lods(self) -> int:
        return len(self.lod_faces)


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
    if extras.lod_faces:
        _add_shared_lods(w, main, name, mesh, extras.lod_faces, attrs, groups, mids)
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


def fit_budget(mesh: MeshData, name: str, textures: dict[str, np.ndarray], max_bytes: float,
               options: GlbSettings, groups: list[MaterialGroup], extras: Extras = Extras(),
               stored: dict[str, bytes] | None = None) -> tuple[bytes, Encoded]:
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
                                      data_cap, cache, stored)
                glb = build_glb(mesh, name, None, groups, enc, extras, options.meshopt)
                if len(glb) <= max_bytes or not textures:
                    return glb, enc
        if not textures or cap <= MIN_TEXTURE_PX or enc.px <= MIN_TEXTURE_PX:
            return glb, enc
        cap = max(MIN_TEXTURE_PX, min(cap, enc.px) // 2)
