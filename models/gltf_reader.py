"""Read a glTF 2.0 file (GLB or .gltf) completely: geometry, materials and images.

Why our own reader and not trimesh's: a vendor's file must keep its whole look (every material
with its five texture slots, texture transforms, UV sets beyond the first, vertex colours, alpha
modes), and the files merchants ship for the web are compressed: ``KHR_draco_mesh_compression``
(decoded with DracoPy), ``EXT_meshopt_compression`` (decoded with the ``meshoptimizer``
package's decoders, filters included) and ``KHR_mesh_quantization`` (integer attributes, read by
the ordinary accessor rules: normalised integers scaled to [-1, 1] / [0, 1], plain integers as
they are, the node transforms doing the rest). trimesh decodes none of these and silently reads
compressed positions as zeros.

Images are kept in their own encoding when it is PNG, JPEG or WebP (``EXT_texture_webp``); a
KTX2 image holding uncompressed 8-bit data (optionally Zstandard-supercompressed, as glTF's
sample assets ship it) is decoded here, and a Basis Universal KTX2 (``KHR_texture_basisu``,
ETC1S or UASTC) is transcoded to RGBA8 by Basis Universal's own transcoder
(``opengl_basisu``); either is kept as PNG. A GPU block-compressed KTX2 (BC/ETC/ASTC vkFormats)
or a payload that does not decode is an ``InputError`` that names the texture and the fix.

Every failure is an ``InputError`` naming the file and what to do, as in ``models/mesh.py``.
"""

from __future__ import annotations

import base64
import io
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import numpy as np

from ..core.appearance import (
    CLAMP,
    DEFAULT_MATERIAL,
    KEPT_MIMES,
    REPEAT,
    SourceImage,
    SourceMaterial,
    TextureSlot,
)
from ..core.errors import InputError

DRACO = "KHR_draco_mesh_compression"
MESHOPT = "EXT_meshopt_compression"
QUANTIZATION = "KHR_mesh_quantization"
#: Extensions whose absence of support would make the geometry or look wrong; all read here.
UNDERSTOOD = {DRACO, MESHOPT, QUANTIZATION, "KHR_texture_transform", "EXT_texture_webp",
              "KHR_materials_emissive_strength", "KHR_materials_unlit", "KHR_texture_basisu"}
EXPORT_FIX = "re-export the model from the 3D tool as a standard, uncompressed .glb"

_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
              5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"
#: KTX2 vkFormat -> (channels, sRGB) for the uncompressed 8-bit formats.
_KTX2_FORMATS = {9: (1, False), 15: (1, True), 16: (2, False), 22: (2, True), 23: (3, False),
                 29: (3, True), 37: (4, False), 43: (4, True)}


@dataclass
class Primitive:
    """One triangle primitive instance in world space (node transforms applied)."""

    node: str
    material: int                     # index into the file's materials; -1 = default
    vertices: np.ndarray              # (N, 3) float64
    faces: np.ndarray                 # (M, 3) int64
    normals: np.ndarray | None = None
    tangents: np.ndarray | None = None
    texcoords: dict[int, np.ndarray] = field(default_factory=dict)
    colors: np.ndarray | None = None  # (N, 4) float32 linear
    instance: int = 0                 # which placed mesh instance (node) it belongs to


@dataclass
class GltfScene:
    primitives: list[Primitive]
    materials: list[SourceMaterial]
    images: list[SourceImage]
    skipped: list[str]                # non-triangle primitives (points, lines)
    extensions: list[str]


Resolver = Callable[[str], bytes]


def glb_chunks(data: bytes) -> tuple[bytes, bytes | None]:
    """(JSON bytes, BIN chunk or None) of a GLB whose header was already checked."""
    clen = struct.unpack_from("<I", data, 12)[0]
    js = data[20:20 + clen]
    off = 20 + clen
    binary = None
    if off + 8 <= len(data):
        blen, btype = struct.unpack_from("<II", data, off)
        if btype == 0x004E4942:
            binary = data[off + 8:off + 8 + blen]
    return js, binary


def read_gltf(doc: dict, binary: bytes | None, name: str, resolve: Resolver,
              max_faces: int = 5_000_000) -> GltfScene:
    """Everything the document describes; ``resolve(uri)`` returns an external file's bytes."""
    return _Reader(doc, binary, name, resolve, max_faces).scene()


class _Reader:
    def __init__(self, doc: dict, binary: bytes | None, name: str, resolve: Resolver,
                 max_faces: int) -> None:
        self.doc, self.binary, self.name, self.resolve = doc, binary, name, resolve
        self.max_faces = max_faces
        self._buffers: dict[int, bytes] = {}
        self._views: dict[int, bytes] = {}
        self._draco: dict[int, object] = {}

    # ------------------------------------------------------------------ errors

    def fail(self, what: str, fix: str = EXPORT_FIX) -> InputError:
        return InputError(f"{self.name}: {what}", fix)

    def _get(self, kind: str, index, what: str) -> dict:
        items = self.doc.get(kind) or []
        if not isinstance(index, int) or not 0 <= index < len(items):
            raise self.fail(f"{what} refers to {kind}[{index}], which does not exist "
                            f"(the file has {len(items)})")
        return items[index]

    # ------------------------------------------------------------------ buffers

    def buffer(self, index: int) -> bytes:
        if index in self._buffers:
            return self._buffers[index]
        buf = self._get("buffers", index, "a bufferView")
        uri = buf.get("uri")
        if uri is None:
            if (buf.get("extensions") or {}).get(MESHOPT, {}).get("fallback"):
                data = b""  # a meshopt fallback buffer: its views are decoded, never read
            elif self.binary is None:
                raise self.fail(f"buffer {index} has no uri and the file has no BIN chunk")
            else:
                data = self.binary
        else:
            data = self.uri_bytes(str(uri), f"buffer {index}")
        need = int(buf.get("byteLength", 0))
        if len(data) < need and not (buf.get("extensions") or {}).get(MESHOPT):
            raise self.fail(f"buffer {index} declares {need} bytes but has {len(data)} "
                            "(a truncated file?)",
                            "the file is incomplete (interrupted download or export): get it "
                            "again")
        self._buffers[index] = data
        return data

    def uri_bytes(self, uri: str, what: str) -> bytes:
        if uri.startswith("data:"):
            head, _, payload = uri.partition(",")
            try:
                return (base64.b64decode(payload) if head.endswith(";base64")
                        else unquote(payload).encode("latin-1"))
            except ValueError as exc:
                raise self.fail(f"{what} has a malformed data: URI ({exc})") from None
        if "://" in uri:
            raise InputError(f"{self.name}: {what} points at {uri!r}; the factory reads no "
                             "network resources", "download it next to the model and "
                             "reference it by a relative path (or export a single .glb)")
        return self.resolve(unquote(uri))

    def view(self, index: int) -> bytes:
        if index in self._views:
            return self._views[index]
        bv = self._get("bufferViews", index, "an accessor or image")
        ext = (bv.get("extensions") or {}).get(MESHOPT)
        if ext is not None:
            data = self._meshopt_view(index, ext)
        else:
            buf = self.buffer(int(bv.get("buffer", -1)))
            off, length = int(bv.get("byteOffset", 0)), int(bv["byteLength"])
            if off + length > len(buf):
                raise self.fail(f"bufferView {index} reaches byte {off + length} of a "
                                f"{len(buf)}-byte buffer (a truncated file?)",
                                "the file is incomplete (interrupted download or export): "
                                "get it again")
            data = buf[off:off + length]
        self._views[index] = data
        return data

    def _meshopt_view(self, index: int, ext: dict) -> bytes:
        import meshoptimizer as mo

        src = self.buffer(int(ext.get("buffer", -1)))
        off, length = int(ext.get("byteOffset", 0)), int(ext["byteLength"])
        encoded = src[off:off + length]
        count, stride = int(ext["count"]), int(ext["byteStride"])
        mode, filt = ext.get("mode"), ext.get("filter", "NONE")
        try:
            if mode == "ATTRIBUTES":
                raw = mo.decode_vertex_buffer(count, stride, encoded, dtype=np.dtype(f"V{stride}"))
                raw = np.frombuffer(raw.tobytes(), np.uint8).copy()
                if filt == "OCTAHEDRAL":
                    raw = mo.decode_filter_oct(raw, count, stride)
                elif filt == "QUATERNION":
                    raw = mo.decode_filter_quat(raw, count, stride)
                elif filt == "EXPONENTIAL":
                    raw = mo.decode_filter_exp(raw, count, stride)
                elif filt != "NONE":
                    raise self.fail(f"bufferView {index} uses the unknown meshopt filter {filt!r}")
                return raw.tobytes()
            if mode in ("TRIANGLES", "INDICES"):
                fn = mo.decode_index_buffer if mode == "TRIANGLES" else mo.decode_index_sequence
                idx = fn(count, 4, encoded)
                return idx.astype({2: np.uint16, 4: np.uint32}[stride]).tobytes()
        except (RuntimeError, ValueError) as exc:
            raise self.fail(f"bufferView {index}: the EXT_meshopt_compression data does not "
                            f"decode ({exc})") from None
        raise self.fail(f"bufferView {index} uses the unknown meshopt mode {mode!r}")

    # ------------------------------------------------------------------ accessors

    def accessor(self, index: int) -> np.ndarray:
        """(count, width) float64 values (normalised integers scaled, per glTF 2.0 3.11)."""
        acc = self._get("accessors", index, "a primitive")
        try:
            dtype = np.dtype(_COMPONENT[int(acc["componentType"])]).newbyteorder("<")
            width = _WIDTH[acc["type"]]
            count = int(acc["count"])
        except (KeyError, ValueError, TypeError):
            raise self.fail(f"accessor {index} has an invalid componentType/type/count") from None
        if "bufferView" in acc:
            raw = self.view(int(acc["bufferView"]))
            bv = self._get("bufferViews", int(acc["bufferView"]), f"accessor {index}")
            off = int(acc.get("byteOffset", 0))
            elem = dtype.itemsize * width
            stride = int(bv.get("byteStride", 0)) or elem
            if (bv.get("extensions") or {}).get(MESHOPT):
                stride = int(bv["extensions"][MESHOPT]["byteStride"])
            if count and off + stride * (count - 1) + elem > len(raw):
                raise self.fail(f"accessor {index} needs {off + stride * (count - 1) + elem} "
                                f"bytes, its bufferView has {len(raw)}",
                                "the file is incomplete or corrupted: get or export it again")
            if stride == elem:
                arr = np.frombuffer(raw, dtype, count * width, off).reshape(count, width)
            else:
                rows = np.lib.stride_tricks.as_strided(
                    np.frombuffer(raw, np.uint8, len(raw) - off, off),
                    (count, elem), (stride, 1)) if count else np.zeros((0, elem), np.uint8)
                arr = np.ascontiguousarray(rows).view(dtype).reshape(count, width)
            arr = arr.astype(np.float64)
        else:
            arr = np.zeros((count, width))
        sparse = acc.get("sparse")
        if sparse:
            arr = arr.copy()
            n = int(sparse["count"])
            ii = sparse["indices"]
            it = np.dtype(_COMPONENT[int(ii["componentType"])]).newbyteorder("<")
            where = np.frombuffer(self.view(int(ii["bufferView"])), it, n,
                                  int(ii.get("byteOffset", 0))).astype(np.int64)
            vv = sparse["values"]
            vals = np.frombuffer(self.view(int(vv["bufferView"])), dtype, n * width,
                                 int(vv.get("byteOffset", 0))).reshape(n, width)
            if n and (where.min() < 0 or where.max() >= count):
                raise self.fail(f"accessor {index}: a sparse index is out of range")
            arr[where] = vals
        if acc.get("normalized") and dtype.kind in "iu":
            info = np.iinfo(dtype)
            arr = np.maximum(arr / info.max, -1.0) if dtype.kind == "i" else arr / info.max
        return arr

    # ------------------------------------------------------------------ primitives

    def _attribute(self, prim: dict, key: str, n: int | None) -> np.ndarray | None:
        attrs = prim.get("attributes") or {}
        draco = (prim.get("extensions") or {}).get(DRACO)
        if draco is not None and key in (draco.get("attributes") or {}):
            mesh = self._decode_draco(draco)
            att = mesh.get_attribute_by_unique_id(int(draco["attributes"][key]))
            if att is None:
                raise self.fail(f"the Draco data has no attribute {draco['attributes'][key]} "
                                f"for {key}")
            data = np.asarray(att["data"], np.float64).reshape(len(mesh.points), -1)
            acc = self._get("accessors", attrs[key], "a primitive") if key in attrs else {}
            if acc.get("normalized") and att.get("data_type") in (1, 2, 3, 4, 5, 6):
                ctype = _COMPONENT.get(int(acc.get("componentType", 5126)), np.float32)
                data = data / np.iinfo(ctype).max
            return data
        if key not in attrs:
            return None
        arr = self.accessor(int(attrs[key]))
        if n is not None and len(arr) != n:
            raise self.fail(f"attribute {key} has {len(arr)} values for {n} vertices")
        return arr

    def _decode_draco(self, ext: dict):
        bv = int(ext.get("bufferView", -1))
        if bv in self._draco:
            return self._draco[bv]
        try:
            import DracoPy
        except ImportError:
            raise InputError(f"{self.name} is Draco-compressed and DracoPy is not installed",
                             "pip install DracoPy (it is a dependency of the factory: "
                             "re-run make setup)") from None
        try:
            mesh = DracoPy.decode(self.view(bv))
        except Exception as exc:  # noqa: BLE001 - DracoPy raises its own types
            raise self.fail(f"the KHR_draco_mesh_compression data does not decode ({exc})"
                            ) from None
        self._draco[bv] = mesh
        return mesh

    def _indices(self, prim: dict, n: int) -> np.ndarray:
        draco = (prim.get("extensions") or {}).get(DRACO)
        if draco is not None:
            idx = np.asarray(self._decode_draco(draco).faces, np.int64).reshape(-1)
        elif "indices" in prim:
            idx = self.accessor(int(prim["indices"])).reshape(-1).astype(np.int64)
        else:
            idx = np.arange(n, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx.max()) if idx.max() >= n else int(idx.min())
            raise self.fail(f"face index {bad} is out of range (the primitive has {n} "
                            "vertices): the index buffer is corrupted")
        return idx

    def _triangles(self, idx: np.ndarray, mode: int) -> np.ndarray:
        if mode == 4:
            return idx[:len(idx) // 3 * 3].reshape(-1, 3)
        if mode == 5:  # strip: alternate winding
            k = np.arange(max(len(idx) - 2, 0))
            tri = np.stack([idx[k], idx[k + 1], idx[k + 2]], axis=1)
            odd = (k % 2) == 1
            tri[odd] = tri[odd][:, [1, 0, 2]]
            return tri
        k = np.arange(1, max(len(idx) - 1, 1))  # fan
        return np.stack([np.full(len(k), idx[0]), idx[k], idx[k + 1]], axis=1) if len(
            idx) >= 3 else np.zeros((0, 3), np.int64)

    def primitive(self, prim: dict, node: str, T: np.ndarray, where: str) -> Primitive | None:
        mode = int(prim.get("mode", 4))
        if mode not in (4, 5, 6):
            return None
        if "POSITION" not in (prim.get("attributes") or {}):
            raise self.fail(f"{where} has no POSITION attribute (no vertices)")
        pos = self._attribute(prim, "POSITION", None)
        n = len(pos)
        faces = self._triangles(self._indices(prim, n), mode)
        normals = self._attribute(prim, "NORMAL", n)
        tangents = self._attribute(prim, "TANGENT", n)
        uvs = {}
        k = 0
        while f"TEXCOORD_{k}" in (prim.get("attributes") or {}):
            uvs[k] = self._attribute(prim, f"TEXCOORD_{k}", n).astype(np.float32)[:, :2]
            k += 1
        col = self._attribute(prim, "COLOR_0", n)
        if col is not None:
            if col.shape[1] == 3:
                col = np.concatenate([col, np.ones((n, 1))], axis=1)
            col = np.clip(col, 0.0, 1.0).astype(np.float32)
        if not np.isfinite(T).all():
            raise self.fail(f"node {node!r} has a non-finite transform")
        M = T[:3, :3]
        verts = pos @ M.T + T[:3, 3]
        unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-20)
        if normals is not None:
            normals = (unit(normals @ np.linalg.inv(M)) if abs(np.linalg.det(M)) > 1e-30
                       else None)
        if tangents is not None and tangents.shape[1] == 4:
            t = tangents.copy()
            t[:, :3] = unit(tangents[:, :3] @ M.T)
            t[:, 3] = np.where(t[:, 3] < 0, -1.0, 1.0)
            tangents = t
        else:
            tangents = None
        if np.linalg.det(M) < 0:  # a mirroring node flips the winding (and the handedness)
            faces = faces[:, ::-1]
            if tangents is not None:
                tangents[:, 3] *= -1.0
        material = prim.get("material", -1)
        if material != -1:
            self._get("materials", material, where)
        return Primitive(node, int(material), verts, faces, normals, tangents, uvs, col)

    # ------------------------------------------------------------------ scene graph

    def instances(self) -> list[tuple[str, np.ndarray, int]]:
        """(node name, world matrix, mesh index) of every placed mesh; unplaced meshes (a
        file without nodes) are taken as they are."""
        doc = self.doc
        nodes = doc.get("nodes") or []
        if not nodes:
            return [(m.get("name") or f"mesh{i}", np.eye(4), i)
                    for i, m in enumerate(doc.get("meshes") or [])]
        scenes = doc.get("scenes") or []
        if scenes:
            s = doc.get("scene", 0)
            roots = list(self._get("scenes", s, "the document")["nodes"] or []) if isinstance(
                s, int) and s < len(scenes) else list(scenes[0].get("nodes") or [])
        else:
            children = {c for n in nodes for c in n.get("children") or []}
            roots = [i for i in range(len(nodes)) if i not in children]
        out: list[tuple[str, np.ndarray, int]] = []
        stack = [(r, np.eye(4), 0) for r in reversed(roots)]
        while stack:
            i, parent, depth = stack.pop()
            if depth > 256:
                raise self.fail("the node hierarchy is deeper than 256 levels (a cycle?)")
            node = self._get("nodes", i, "the scene")
            world = parent @ _node_matrix(node)
            if "mesh" in node:
                out.append((node.get("name") or f"node{i}", world, int(node["mesh"])))
            for c in reversed(node.get("children") or []):
                stack.append((int(c), world, depth + 1))
        return out

    def scene(self) -> GltfScene:
        prims: list[Primitive] = []
        skipped: list[str] = []
        total = 0
        for instance, (node, T, mesh_index) in enumerate(self.instances()):
            mesh = self._get("meshes", mesh_index, f"node {node!r}")
            for j, prim in enumerate(mesh.get("primitives") or []):
                where = f"mesh {mesh.get('name') or mesh_index} primitive {j}"
                p = self.primitive(prim, node, T, where)
                if p is None:
                    skipped.append(where)
                    continue
                if len(p.faces) == 0:
                    continue
                p.instance = instance
                total += len(p.faces)
                if total > self.max_faces:
                    raise InputError(f"{self.name} has more than {self.max_faces:,} faces",
                                     "decimate the model before import (or raise max_faces)")
                prims.append(p)
        materials = [self.material(i, m) for i, m in enumerate(self.doc.get("materials") or [])]
        images = self.images(prims, materials)
        used = sorted(set(self.doc.get("extensionsUsed") or []))
        return GltfScene(prims, materials, images, skipped, used)

    # ------------------------------------------------------------------ materials

    def slot(self, info: dict | None, what: str) -> TextureSlot | None:
        if not info or "index" not in info:
            return None
        tex = self._get("textures", int(info["index"]), what)
        exts = tex.get("extensions") or {}
        source = tex.get("source")
        for key in ("EXT_texture_webp", "KHR_texture_basisu", "MSFT_texture_dds"):
            if key in exts and "source" in exts[key]:
                source = exts[key]["source"]
                break
        if source is None:
            return None
        self._get("images", int(source), what)
        sampler = self._get("samplers", tex["sampler"], what) if "sampler" in tex else {}
        texcoord = int(info.get("texCoord", 0))
        transform = None
        tt = (info.get("extensions") or {}).get("KHR_texture_transform")
        if tt is not None:
            texcoord = int(tt.get("texCoord", texcoord))
            transform = _texture_transform(tt)
        scale = float(info.get("scale", info.get("strength", 1.0)))
        return TextureSlot(int(source), texcoord, transform, int(sampler.get("wrapS", REPEAT)),
                           int(sampler.get("wrapT", REPEAT)),
                           int(sampler.get("magFilter", 9729)) == 9728, scale)

    def material(self, i: int, m: dict) -> SourceMaterial:
        pbr = m.get("pbrMetallicRoughness") or {}
        exts = m.get("extensions") or {}
        where = f"material {m.get('name') or i}"
        strength = float((exts.get("KHR_materials_emissive_strength") or {}).get(
            "emissiveStrength", 1.0))
        mode = str(m.get("alphaMode", "OPAQUE")).upper()
        return SourceMaterial(
            name=str(m.get("name") or f"material{i}"),
            base_color_factor=tuple(float(x) for x in pbr.get("baseColorFactor", (1, 1, 1, 1))),
            base_color=self.slot(pbr.get("baseColorTexture"), where),
            metallic_factor=float(pbr.get("metallicFactor", 1.0)),
            roughness_factor=float(pbr.get("roughnessFactor", 1.0)),
            metallic_roughness=self.slot(pbr.get("metallicRoughnessTexture"), where),
            normal=self.slot(m.get("normalTexture"), where),
            occlusion=self.slot(m.get("occlusionTexture"), where),
            emissive_factor=tuple(float(x) * strength for x in m.get("emissiveFactor",
                                                                      (0, 0, 0))),
            emissive=self.slot(m.get("emissiveTexture"), where),
            alpha_mode=mode if mode in ("OPAQUE", "MASK", "BLEND") else "OPAQUE",
            alpha_cutoff=float(m.get("alphaCutoff", 0.5)),
            double_sided=bool(m.get("doubleSided", False)),
            unlit="KHR_materials_unlit" in exts)

    def images(self, prims: list[Primitive], materials: list[SourceMaterial]
               ) -> list[SourceImage]:
        """Every image a used material reads, decoded once to check it (unused ones are
        placeholders and never read: a broken unused image should not fail the asset)."""
        used_mats = {p.material for p in prims if p.material >= 0}
        wanted = {s.image for k in used_mats for s in materials[k].slots().values()}
        out = []
        for i, im in enumerate(self.doc.get("images") or []):
            label = im.get("name") or im.get("uri") or f"image {i}"
            if i not in wanted:
                out.append(SourceImage(str(label), "image/png", b""))
                continue
            if "bufferView" in im:
                data = self.view(int(im["bufferView"]))
            elif "uri" in im:
                data = self.uri_bytes(str(im["uri"]), f"texture {label!r}")
            else:
                raise self.fail(f"texture {label!r} has neither uri nor bufferView")
            out.append(checked_image(data, str(label), self.name))
        return out


def checked_image(data: bytes, label: str, file: str) -> SourceImage:
    """The image as kept: PNG/JPEG/WebP as they are, uncompressed KTX2 as PNG; InputError
    naming the texture otherwise."""
    from PIL import Image, UnidentifiedImageError

    if data[:12] == _KTX2_MAGIC:
        from ..core.artifacts import encode_png

        return SourceImage(label, "image/png", encode_png(decode_ktx2(data, label, file)))
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "").upper()
            im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{file}: texture {label!r} is not a readable image ({exc})",
                         "re-export the texture as PNG or JPEG (the file may be truncated)"
                         ) from None
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}.get(fmt)
    if mime in KEPT_MIMES:
        return SourceImage(label, mime, bytes(data))
    from ..core.appearance import decode_image
    from ..core.artifacts import encode_png

    return SourceImage(label, "image/png", encode_png(decode_image(data)))


def decode_ktx2(data: bytes, label: str, file: str) -> np.ndarray:
    """(H, W, C) uint8 of level 0 of a KTX2 image holding uncompressed 8-bit texels or a
    Basis Universal payload."""
    basis_fix = ("convert the texture to PNG or JPEG (e.g. `ktx extract --level 0 IN.ktx2 "
                 "OUT.png` from KTX-Software, or re-export from the 3D tool without "
                 "KHR_texture_basisu) and reference that image instead")
    if len(data) < 80:
        raise InputError(f"{file}: texture {label!r} is a truncated KTX2 file", basis_fix)
    vk, _ts, w, h, _d, _layers, _faces, _levels, scheme = struct.unpack_from("<9I", data, 12)
    if vk == 0:  # VK_FORMAT_UNDEFINED: a Basis Universal payload (KHR_texture_basisu)
        return _decode_basis(data, label, file, basis_fix)
    if vk not in _KTX2_FORMATS:
        raise InputError(f"{file}: texture {label!r} is a GPU-compressed (vkFormat {vk}) KTX2 "
                         "image, which no maintained decoder on the package index reads",
                         basis_fix)
    channels, _srgb = _KTX2_FORMATS[vk]
    off, length, _ulen = struct.unpack_from("<QQQ", data, 80)
    raw = data[off:off + length]
    if scheme == 2:
        import zstandard

        try:
            raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=w * h * channels
                                                          * 2 + 1024)
        except zstandard.ZstdError as exc:
            raise InputError(f"{file}: texture {label!r}: its Zstandard data does not decode "
                             f"({exc})", basis_fix) from None
    elif scheme != 0:
        raise InputError(f"{file}: texture {label!r} uses KTX2 supercompression {scheme}, "
                         "which is not supported", basis_fix)
    if len(raw) < w * h * channels:
        raise InputError(f"{file}: texture {label!r}: its KTX2 level 0 is truncated", basis_fix)
    img = np.frombuffer(raw, np.uint8, w * h * channels).reshape(h, w, channels)
    if channels == 2:
        img = np.concatenate([img, np.zeros((h, w, 1), np.uint8)], axis=2)
    return img[..., 0] if channels == 1 else img


def _decode_basis(data: bytes, label: str, file: str, fix: str) -> np.ndarray:
    """(H, W, 4) uint8 of level 0 of a Basis Universal KTX2 (ETC1S or UASTC), transcoded to
    RGBA8 by ``opengl_basisu`` (Basis Universal's transcoder; no GPU or OpenGL involved)."""
    import opengl_basisu

    try:
        img = opengl_basisu.open(bytes(data)).transcode("rgba8")
    except (opengl_basisu.BasisuError, opengl_basisu.UnsupportedError, ValueError) as exc:
        raise InputError(f"{file}: texture {label!r}: its Basis Universal KTX2 data does not "
                         f"transcode ({exc})", fix) from None
    return np.asarray(img.data, np.uint8).reshape(img.height, img.width, 4)


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T  # column-major
    T = np.eye(4)
    x, y, z, w = (float(v) for v in node.get("rotation", (0, 0, 0, 1)))
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    S = np.diag([float(v) for v in node.get("scale", (1, 1, 1))])
    T[:3, :3] = R @ S
    T[:3, 3] = [float(v) for v in node.get("translation", (0, 0, 0))]
    return T


def _texture_transform(tt: dict) -> tuple[float, ...]:
    """KHR_texture_transform as a 2x3 matrix: T(offset) * R(rotation) * S(scale)."""
    ox, oy = (float(v) for v in tt.get("offset", (0.0, 0.0)))
    r = float(tt.get("rotation", 0.0))
    sx, sy = (float(v) for v in tt.get("scale", (1.0, 1.0)))
    c, s = math.cos(r), math.sin(r)
    # the extension's matrix: translation * rotation * scale, rotation = [[c, s], [-s, c]]
    return (c * sx, s * sy, ox, -s * sx, c * sy, oy)


def material_list(scene: GltfScene) -> list[SourceMaterial]:
    """The file's materials plus glTF's default material at the end when a primitive has none."""
    mats = list(scene.materials)
    if any(p.material < 0 for p in scene.primitives):
        mats.append(DEFAULT_MATERIAL)
    return mats


__all__ = ["CLAMP", "GltfScene", "Primitive", "checked_image", "decode_ktx2", "glb_chunks",
           "material_list", "read_gltf"]
