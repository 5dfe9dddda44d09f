"""Import a mesh the merchant already has (GLB/glTF/OBJ/STL/PLY) as the dense mesh.

Real catalogs link to files that are truncated downloads, Git LFS pointers, HTML error pages,
point clouds or empty exports; trimesh either raises an unrelated exception for those or, worse,
loads them silently as zeros (as it does Draco- and meshopt-compressed GLBs, which are decoded
here instead). Every such case becomes an ``InputError`` that names the file, says what is wrong
with it and what to do.

The imported mesh is normalised like a generated one (bounding-box centre at the origin, largest
extent 1, +Y up) so the rest of the factory treats both the same; the size in the file's units
goes into ``info["source_extent_m"]`` so cleanup can restore real size when the catalog gives no
dimensions. glTF is metres and +Y up by specification; OBJ, STL and PLY carry no units or up
axis, so they are assumed to be +Y up too and their units are reported as unknown. Each node
of the file becomes one part (``face_labels``), or, when the file uses two or more materials,
each material does (so per-part PBR follows the vendor's own materials); per-vertex colours are
kept.

The look travels too: glTF (read by ``models/gltf_reader.py``: every material and texture slot,
UV sets, vertex colours, texture transforms, alpha modes; Draco, meshopt and quantised geometry
decoded) and OBJ + MTL (``models/obj_reader.py``) come with a ``SourceAppearance``
(``core/appearance.py``) that ``DenseMesh.appearance`` hands to the generate stage, which
stores it as artifacts for the material transfer after simplification and UV layout.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import numpy as np

from ..core.appearance import SourceAppearance, SourceMaterial, SourceSurface
from ..core.errors import InputError
from ..core.mesh import MeshData
from ..core.stage import check
from ..core.types import Resources
from ..geometry.weld import weld_ids
from .base import DenseMesh, GenerateRequest

log = logging.getLogger(__name__)

#: File extension -> trimesh file type.
SUPPORTED: dict[str, str] = {".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".stl": "stl",
                             ".ply": "ply"}
_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
_OTHER_MESH_EXTS = {".fbx", ".usdz", ".usd", ".usda", ".usdc", ".blend", ".3ds", ".dae",
                    ".max", ".c4d", ".3mf", ".step", ".stp", ".iges", ".igs", ".skp", ".x3d",
                    ".zip"}
_MISSING_FIX = ("keep the model with the files it references (buffers, textures, MTL) in one "
                "folder, at the relative paths it names (or export a single .glb), and point "
                "mesh_uri at the model in that folder")
_EXPORT_FIX = "re-export the model from the 3D tool as a standard, uncompressed .glb"


@dataclass(frozen=True)
class MeshImportConfig:
    """Options of the mesh-import backend.

    max_faces: refuse larger files (they would stall every later stage); decimate them first.
    max_bytes: refuse larger files before reading them.
    """

    name: ClassVar[str] = "mesh"
    device: str = "cpu"
    max_faces: int = 5_000_000
    max_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        check(self.device == "cpu", f"mesh: device {self.device!r} must be 'cpu'")
        check(self.max_faces >= 1, "mesh: max_faces must be >= 1")
        check(self.max_bytes >= 1, "mesh: max_bytes must be >= 1")

    def build(self) -> MeshImporter:
        return MeshImporter(self)

    def weights_sha256(self) -> str | None:
        return None

    def resources(self) -> Resources:
        return Resources(cpus=1)  # trimesh parsing on one core


class MeshImporter:
    def __init__(self, config: MeshImportConfig) -> None:
        self.config = config

    def generate(self, request: GenerateRequest) -> DenseMesh:
        if not request.mesh_uri:
            raise InputError("the mesh backend needs a mesh_uri and the row has none",
                             "fill the mesh_uri column, or use a photo backend (silhouette)")
        mesh, info, appearance = import_with_appearance(request.mesh_uri, self.config)
        log.info("%s generate/mesh: %s -> %d faces, %d parts, extent %.4g %s", request.sku,
                 _name(request.mesh_uri), mesh.n_faces, info["parts"], info["source_extent_m"],
                 info["source_units"])
        # Photos given with a mesh were taken of the same normalised object: keep their cameras.
        return DenseMesh(mesh=mesh, cameras=[v.camera for v in request.views], info=info,
                         appearance=appearance)


def import_mesh(uri: str, config: MeshImportConfig = MeshImportConfig()) -> tuple[MeshData, dict]:
    """Read, validate and normalise the mesh at ``uri`` (local path, file:// or s3://)."""
    mesh, info, _ = import_with_appearance(uri, config)
    return mesh, info


def import_with_appearance(uri: str, config: MeshImportConfig = MeshImportConfig(),
                           normalise: bool = True
                           ) -> tuple[MeshData, dict, SourceAppearance | None]:
    """``import_mesh`` plus the source's look (None for formats without materials, or a
    look that is one plain white default material). ``normalise=False`` keeps the file's own
    frame (metrics and benchmarks compare files in it)."""
    return _import(_read(uri, config.max_bytes), uri, config, normalise, local=True)


def import_mesh_bytes(data: bytes, uri: str, config: MeshImportConfig = MeshImportConfig()
                      ) -> tuple[MeshData, dict, SourceAppearance | None]:
    """Validate and normalise mesh bytes, with their look as ``import_with_appearance`` gives
    it; ``uri`` names them (its extension gives the format, else the bytes do). A generator
    service's answer goes through the same checks as a file. The bytes stand alone: a file they
    reference (external buffer, image, MTL library) is never looked for on this machine."""
    return _import(data, uri, config, True, local=False)


def _import(data: bytes, uri: str, config: MeshImportConfig, normalise: bool, local: bool
            ) -> tuple[MeshData, dict, SourceAppearance | None]:
    """The import proper; ``local``: the files the model references are read next to ``uri``
    (else refused)."""
    name = _name(uri)
    resolve = resources(uri, name) if local else _self_contained(name)
    kind = _kind(uri, data)
    doc = _inspect_gltf(data, kind, name) if kind in ("glb", "gltf") else None
    materials: list[SourceMaterial] = []
    images: list = []
    extensions: list[str] = []
    if doc is not None:
        parts, materials, images, extensions = _load_gltf(data, kind, name, doc, config,
                                                           resolve)
    else:
        scene = _load(uri, data, kind, name, local)
        parts = _parts(scene, name, config.max_faces)
        if kind == "obj":
            parts, materials, images = _obj_appearance(data, name, scene, parts, resolve)
    mesh = _concatenate(parts, by_material=len({p.material for p in parts}) >= 2)
    check_mesh(mesh, name)
    mesh, info, T = _normalise(_weld(mesh))
    if not normalise:
        mesh, T = mesh.transformed(np.linalg.inv(T)), np.eye(4)
    info.update(method="import", source_format=kind, parts=len(parts),
                source_units="m" if kind in ("glb", "gltf") else "unknown",
                source_faces=mesh.n_faces, source_vertices=mesh.n_vertices)
    appearance = None
    if materials:
        appearance = SourceAppearance(_surface(parts), tuple(materials), tuple(images),
                                      {"format": kind, "extensions": extensions})
        # whether it is worth keeping does not depend on where the surface is: moved only
        # when kept (a million-face surface takes ~0.5 s of CPU to move)
        if appearance.worth_transferring:
            appearance = dataclasses.replace(appearance,
                                             surface=appearance.surface.transformed(T))
        else:
            appearance = None
    info.update(source_materials=len(materials),
                source_textures=sum(1 for im in images if im.data),
                source_appearance=appearance is not None,
                source_extensions=",".join(extensions))
    return mesh, info, appearance


# --- reading and recognising the file -------------------------------------------------------

def _name(uri: str) -> str:
    return os.path.basename(urlparse(uri).path if "://" in uri else uri) or uri


def _read(uri: str, max_bytes: int) -> bytes:
    name = _name(uri)
    if uri.startswith("s3://"):
        from ..core.storage import read_ref

        try:
            data = read_ref(uri)
        except Exception as exc:  # noqa: BLE001 - boto raises its own types; one message
            raise InputError(f"cannot read mesh {uri}: {exc}",
                             "check the mesh_uri, the bucket's permissions and the S3 endpoint")
    else:
        path = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri)
        if path.is_dir():
            raise InputError(f"mesh_uri {uri} is a folder, not a file",
                             "point mesh_uri at the .glb/.gltf/.obj/.stl/.ply file inside it")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise InputError(f"mesh file {uri} does not exist",
                             "check the mesh_uri column; relative paths resolve against the "
                             "catalog file's folder") from None
        except OSError as exc:
            raise InputError(f"cannot read mesh file {uri}: {exc}",
                             "check the path and its permissions") from None
        if size > max_bytes:
            raise InputError(f"mesh file {name} is {size / 1e6:.0f} MB, over the "
                             f"{max_bytes / 1e6:.0f} MB limit",
                             "decimate the model before import, or raise max_bytes")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read mesh file {uri}: {exc}",
                             "check the path and its permissions") from None
    if len(data) > max_bytes:
        raise InputError(f"mesh file {name} is {len(data) / 1e6:.0f} MB, over the limit",
                         "decimate the model before import, or raise max_bytes")
    return data


def _kind(uri: str, data: bytes) -> str:
    """The trimesh file type, from the extension (or the bytes when there is none)."""
    name = _name(uri)
    head = data[:512].lstrip()
    if not data:
        raise InputError(f"mesh file {name} is empty (0 bytes)",
                         "the download or export failed: upload the file again")
    if head.startswith(b"version https://git-lfs.github.com/spec"):
        raise InputError(f"{name} is a Git LFS pointer, not the model: run git lfs pull "
                         "(or download the real file) and point mesh_uri at it",
                         "run `git lfs pull` in the repository that holds the model")
    if head[:15].lower().startswith((b"<!doctype html", b"<html", b"<?xml")):
        raise InputError(f"{name} is an HTML/XML page (an error or login page?), not a model",
                         "download the model itself and point mesh_uri at it")
    ext = os.path.splitext(name)[1].lower()
    if ext in SUPPORTED:
        return SUPPORTED[ext]
    if ext in _IMAGE_EXTS:
        raise InputError(f"{name} is an image, not a mesh",
                         "put photos in the images column; mesh_uri takes .glb/.gltf/.obj/.stl/"
                         ".ply")
    sniffed = _sniff(data)
    if ext == "" and sniffed:
        return sniffed
    raise InputError(f"{name}: unsupported mesh format {ext or '(no extension)'!r}; supported: "
                     f"{', '.join(SUPPORTED)}",
                     "convert the model to .glb (e.g. with Blender) and point mesh_uri at it"
                     if ext in _OTHER_MESH_EXTS or not ext else
                     "point mesh_uri at a .glb/.gltf/.obj/.stl/.ply file")


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"glTF":
        return "glb"
    if data[:3] == b"ply":
        return "ply"
    head = data[:2048].lstrip()
    if head.startswith(b"{") and b'"asset"' in head:
        return "gltf"
    if head.startswith(b"solid") or (len(data) >= 84 and len(data) == 84 + 50 * struct.unpack(
            "<I", data[80:84])[0]):
        return "stl"
    if any(line.startswith((b"v ", b"f ")) for line in head.splitlines()):
        return "obj"
    return None


# --- glTF container checks (before trimesh, whose errors are cryptic or silent) -------------

def _inspect_gltf(data: bytes, kind: str, name: str) -> dict:
    """The glTF JSON, after checking the GLB container; InputError naming what is broken."""
    truncated_fix = "the file is incomplete (interrupted download or export): get it again"
    if kind == "glb":
        if data[:4] != b"glTF":
            if data.lstrip()[:1] == b"{":
                raise InputError(f"{name} is a text .gltf saved with a .glb extension",
                                 "rename it to .gltf (keeping its .bin and textures beside it)")
            raise InputError(f"{name} is not a GLB file (it does not start with 'glTF')",
                             _EXPORT_FIX)
        if len(data) < 12:
            raise InputError(f"{name} is truncated: {len(data)} bytes, shorter than the GLB "
                             "header", truncated_fix)
        version, length = struct.unpack("<II", data[4:12])
        if version != 2:
            raise InputError(f"{name} is GLB version {version}; only glTF 2.0 is supported",
                             "re-export the model as glTF 2.0 (.glb)")
        if length != len(data):
            what = "truncated" if length > len(data) else "corrupted"
            raise InputError(f"{name} is {what}: its header declares {length} bytes but the file "
                             f"has {len(data)}", truncated_fix)
        if len(data) < 20:
            raise InputError(f"{name} has no JSON chunk", _EXPORT_FIX)
        clen, ctype = struct.unpack("<II", data[12:20])
        if ctype != 0x4E4F534A:
            raise InputError(f"{name}: the first GLB chunk is not JSON", _EXPORT_FIX)
        if 20 + clen > len(data):
            raise InputError(f"{name} is truncated: its JSON chunk declares {clen} bytes, only "
                             f"{len(data) - 20} follow", truncated_fix)
        text = data[20:20 + clen]
    else:
        text = data
    if text.startswith(b"\xef\xbb\xbf"):
        raise InputError(f"{name}: the glTF JSON starts with a UTF-8 byte-order mark, which glTF "
                         "forbids", "save the JSON without a BOM or re-export the model")
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{name}: the glTF JSON is not valid JSON ({exc})", _EXPORT_FIX) from None
    if not isinstance(doc, dict):
        raise InputError(f"{name}: the glTF JSON is not an object", _EXPORT_FIX)
    version = str(doc.get("asset", {}).get("version", ""))
    if not version.startswith("2"):
        raise InputError(f"{name} is glTF version {version or 'unknown'}; only 2.0 is supported",
                         "re-export the model as glTF 2.0")
    return doc


def _check_gltf_meshes(doc: dict, name: str) -> None:
    meshes = doc.get("meshes") or []
    if not meshes:
        raise InputError(f"{name} contains no meshes (an empty scene)",
                         "export the model's geometry, not an empty scene")
    for i, m in enumerate(meshes):
        for j, prim in enumerate(m.get("primitives") or []):
            if "POSITION" not in (prim.get("attributes") or {}):
                raise InputError(f"{name}: mesh {m.get('name') or i} primitive {j} has no "
                                 "POSITION attribute (no vertices)", _EXPORT_FIX)


def resources(uri: str, name: str):
    """``resolve(relative path) -> bytes`` for the files a model references (buffers, images,
    MTL libraries), next to the model. Paths may contain spaces, sub-folders and Windows
    separators; they may not leave the model's folder (a hostile file could otherwise read any
    file on the worker)."""
    if uri.startswith("s3://"):
        from ..core.storage import read_ref

        base = uri.rsplit("/", 1)[0]

        def resolve_s3(rel: str) -> bytes:
            rel = rel.replace("\\", "/")
            if rel.startswith("/") or ".." in rel.split("/"):
                raise InputError(f"{name} references {rel!r}, outside the model's folder",
                                 _MISSING_FIX)
            try:
                return read_ref(f"{base}/{rel}")
            except Exception:  # noqa: BLE001 - any failure means the file is not there
                raise InputError(f"{name} references {rel!r}, which is missing next to it in "
                                 f"{base}", _MISSING_FIX) from None

        return resolve_s3
    folder = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri
                  ).resolve().parent

    def resolve_local(rel: str) -> bytes:
        rel = rel.replace("\\", "/")
        path = (folder / rel).resolve()
        if not path.is_relative_to(folder):
            raise InputError(f"{name} references {rel!r}, outside the model's folder {folder}",
                             _MISSING_FIX)
        if not path.is_file():  # exported on Windows: the case may differ
            low = rel.lower()
            match = [p for p in folder.rglob("*") if p.is_file()
                     and p.relative_to(folder).as_posix().lower() == low]
            if not match:
                raise InputError(f"{name} references {rel!r}, which is missing next to it in "
                                 f"{folder}", _MISSING_FIX)
            path = match[0]
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InputError(f"{name} references {rel!r}, which cannot be read ({exc})",
                             _MISSING_FIX) from None

    return resolve_local


def _self_contained(name: str):
    """The resolver of a model given as bytes alone: every reference is refused."""

    def refuse(rel: str) -> bytes:
        raise InputError(f"{name} references the external file {rel!r}, and a model given as "
                         "bytes has no folder to read it from",
                         "embed the buffers and images (a .glb) or give the model as a file")

    return refuse


# --- loading ----------------------------------------------------------------------------------

def _load(uri: str, data: bytes, kind: str, name: str, local: bool):
    """OBJ, STL and PLY through trimesh (glTF has its own reader); ``local``: an OBJ's MTL is
    read next to ``uri``."""
    import trimesh

    kwargs: dict[str, Any] = {"process": False}
    if kind == "obj" and local:
        kwargs["resolver"] = trimesh.resolvers.FilePathResolver(
            str(Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri
                     ).resolve().parent)) if not uri.startswith("s3://") else None
    try:
        return trimesh.load(io.BytesIO(data), file_type=kind, force="scene", **kwargs)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure on merchant bytes
        raise InputError(f"{name} could not be read as {kind.upper()}: it is corrupted or "
                         f"truncated ({type(exc).__name__}: {str(exc)[:200]})",
                         f"re-export the model as .glb or as a valid .{kind}") from None


def _load_gltf(data: bytes, kind: str, name: str, doc: dict, config: MeshImportConfig,
               resolve) -> tuple[list, list, list, list[str]]:
    """(parts, materials, images, extensions used) of a GLB/glTF, through ``gltf_reader``."""
    from .gltf_reader import glb_chunks, material_list, read_gltf

    _check_gltf_meshes(doc, name)
    binary = glb_chunks(data)[1] if kind == "glb" else None
    try:
        scene = read_gltf(doc, binary, name, resolve, config.max_faces)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure on merchant bytes
        raise InputError(f"{name} could not be read as {kind.upper()}: it is corrupted or "
                         f"truncated ({type(exc).__name__}: {str(exc)[:200]})",
                         _EXPORT_FIX) from None
    if not scene.primitives:
        if scene.skipped:
            raise InputError(f"{name} contains only points or lines (a point cloud?), no "
                             "triangle faces",
                             "provide a surface mesh with faces, not a point cloud")
        raise InputError(f"{name} contains no triangle faces (an empty model)",
                         "export the model's geometry, not an empty scene")
    materials = material_list(scene)
    default = len(materials) - 1
    parts = []
    for p in scene.primitives:
        colors = None if p.colors is None else np.round(
            np.clip(p.colors, 0, 1) * 255).astype(np.uint8)
        parts.append(_Part(p.node, p.vertices, p.faces, colors,
                           material=p.material if p.material >= 0 else default,
                           instance=p.instance, normals=p.normals, tangents=p.tangents,
                           texcoords=p.texcoords, colors_linear=p.colors))
    return parts, materials, scene.images, scene.extensions


def _obj_appearance(data: bytes, name: str, scene, parts: list, resolve) -> tuple:
    """OBJ parts with their UVs (flipped to glTF's t-down) and MTL materials."""
    from .obj_reader import obj_materials

    # the same instances, in the same order, as ``_parts`` kept
    geoms = [geom for _, _, geom in _instances(scene)
             if hasattr(geom, "faces") and len(geom.faces)]
    names = []
    for geom in geoms:
        mat = getattr(getattr(geom, "visual", None), "material", None)
        names.append(str(getattr(mat, "name", None) or "default"))
    text = data.decode("utf-8", errors="replace")
    mats, images = obj_materials(text, resolve, name, sorted(set(names)))
    order = sorted(mats)
    out = []
    for part, geom, mname in zip(parts, geoms, names, strict=True):
        uv = getattr(getattr(geom, "visual", None), "uv", None)
        tc = {}
        if uv is not None and len(uv) == len(part.vertices):
            uvf = np.asarray(uv, np.float32).copy()
            uvf[:, 1] = 1.0 - uvf[:, 1]
            tc[0] = uvf
        out.append(dataclasses.replace(part, material=order.index(mname), texcoords=tc))
    return out, [mats[k] for k in order], images


@dataclass(frozen=True)
class _Part:
    name: str
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None
    material: int = 0
    instance: int = 0
    normals: np.ndarray | None = None
    tangents: np.ndarray | None = None
    texcoords: dict = dataclasses.field(default_factory=dict)
    colors_linear: np.ndarray | None = None


def _parts(scene, name: str, max_faces: int) -> list[_Part]:
    """Every mesh instance with its node transform baked in."""
    import trimesh

    parts: list[_Part] = []
    others: list[str] = []
    total = 0
    for i, (node, transform, geom) in enumerate(_instances(scene)):
        if not isinstance(geom, trimesh.Trimesh):
            others.append(type(geom).__name__)
            continue
        faces = np.asarray(geom.faces, np.int64).reshape(-1, 3)
        if len(faces) == 0:
            continue
        total += len(faces)
        if total > max_faces:
            raise InputError(f"{name} has more than {max_faces:,} faces",
                             "decimate the model before import (or raise max_faces)")
        verts = np.asarray(geom.vertices, np.float64)
        T = np.asarray(transform, np.float64)
        if not np.isfinite(T).all():
            raise InputError(f"{name}: node {node!r} has a non-finite transform", _EXPORT_FIX)
        verts = verts @ T[:3, :3].T + T[:3, 3]
        if np.linalg.det(T[:3, :3]) < 0:  # a mirroring node flips the winding
            faces = faces[:, ::-1]
        parts.append(_Part(str(node), verts, faces, _vertex_colors(geom), instance=i))
    if not parts:
        if others:
            raise InputError(f"{name} contains only {'/'.join(sorted(set(others)))} geometry "
                             "(points or lines, a point cloud?), no triangle faces",
                             "provide a surface mesh with faces, not a point cloud")
        raise InputError(f"{name} contains no triangle faces (an empty model)",
                         "export the model's geometry, not an empty scene")
    return parts


def _instances(scene):
    """(node name, 4x4 transform, geometry) per placed mesh.

    A glTF without scenes/nodes (valid: its meshes are simply not placed) has geometry that no
    node references; such geometry is taken as is.
    """
    nodes = list(scene.graph.nodes_geometry)
    if not nodes:
        return [(name, np.eye(4), geom) for name, geom in scene.geometry.items()]
    out = []
    for node in nodes:
        transform, geom_name = scene.graph[node]
        out.append((node, transform, scene.geometry.get(geom_name)))
    return out


def _vertex_colors(geom) -> np.ndarray | None:
    visual = getattr(geom, "visual", None)
    if visual is None or getattr(visual, "kind", None) != "vertex":
        return None
    colors = np.asarray(visual.vertex_colors)
    if colors.shape != (len(geom.vertices), 4):
        return None
    return colors.astype(np.uint8)


def _concatenate(parts: list[_Part], by_material: bool = False) -> MeshData:
    """One mesh; each node instance one part, or each material when ``by_material``."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
    verts = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + off for p, off in zip(parts, offsets)])
    key = [p.material if by_material else p.instance for p in parts]
    _, rank = np.unique(key, return_inverse=True)
    labels = np.concatenate([np.full(len(p.faces), int(r), np.int32)
                             for p, r in zip(parts, rank)])
    colors = None
    if any(p.colors is not None for p in parts):
        white = lambda p: np.full((len(p.vertices), 4), 255, np.uint8)
        colors = np.concatenate([p.colors if p.colors is not None else white(p) for p in parts])
    # Index checks happen on the raw faces before anything indexes with them.
    return MeshData(verts, faces, face_labels=labels, vertex_colors=colors)


def _surface(parts: list[_Part]) -> SourceSurface:
    """The parts as one unwelded surface with every attribute (missing ones filled: normals
    from the faces, tangents marked w = 0 to be derived, UVs 0, colours white)."""
    from ..geometry.normals import vertex_normals

    offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
    n_sets = max([max(p.texcoords, default=-1) + 1 for p in parts], default=0)
    normals, tangents, colors = [], [], []
    for p in parts:
        n = p.normals if p.normals is not None else vertex_normals(p.vertices, p.faces)
        normals.append(np.asarray(n, np.float32))
        tangents.append(np.asarray(p.tangents, np.float32) if p.tangents is not None
                        else np.zeros((len(p.vertices), 4), np.float32))
        colors.append(p.colors_linear if p.colors_linear is not None else
                      np.ones((len(p.vertices), 4), np.float32))
    texcoords = tuple(np.concatenate([p.texcoords.get(k, np.zeros((len(p.vertices), 2),
                                                                  np.float32)) for p in parts])
                      for k in range(n_sets))
    has_col = any(p.colors_linear is not None for p in parts)
    has_tan = any(p.tangents is not None for p in parts)
    return SourceSurface(
        np.concatenate([p.vertices for p in parts]),
        np.concatenate([p.faces + off for p, off in zip(parts, offsets)]),
        np.concatenate([np.full(len(p.faces), p.material, np.int32) for p in parts]),
        np.concatenate(normals), np.concatenate(tangents) if has_tan else None, texcoords,
        np.concatenate(colors) if has_col else None)


def check_mesh(mesh: MeshData, name: str) -> None:
    """Refuse a mesh no later stage can use, with an ``InputError`` naming ``name``: face
    indices out of range, non-finite coordinates, all vertices at one point, every face
    degenerate. Shared by every backend that hands over a mesh (imported or generated)."""
    f = mesh.faces
    n = mesh.n_vertices
    if len(f) == 0:
        raise InputError(f"{name} contains no triangle faces (an empty model)",
                         "export the model's geometry, not an empty scene")
    if f.min() < 0 or f.max() >= n:
        bad = int(f.max()) if f.max() >= n else int(f.min())
        raise InputError(f"{name}: face index {bad} is out of range (the model has {n} "
                         "vertices): the index buffer is corrupted", _EXPORT_FIX)
    if not np.isfinite(mesh.vertices).all():
        count = int((~np.isfinite(mesh.vertices).all(1)).sum())
        raise InputError(f"{name}: {count} vertices have non-finite (NaN/inf) coordinates",
                         "repair or re-export the model")
    extent = np.ptp(mesh.vertices, axis=0) if n else np.zeros(3)
    if extent.max() <= 0:
        raise InputError(f"{name}: all vertices are at one point (zero-size geometry)",
                         "repair or re-export the model")
    def any_proper(faces: np.ndarray) -> bool:
        v = mesh.vertices[faces]
        area = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
        return bool((area > 1e-12 * extent.max() ** 2).any())

    # the first few thousand faces almost always hold one with an area (a dense mesh's
    # million cross products are then not needed to say so)
    if not any_proper(f[:4096]) and not any_proper(f[4096:]):
        raise InputError(f"{name}: all {len(f)} faces are degenerate (zero area)",
                         "repair or re-export the model")


def _weld(mesh: MeshData) -> MeshData:
    """Merge vertices with identical position (and colour): STL and OBJ come as soups."""
    # one int64 key per vertex (the exact position's id, then the colour's 32 bits): a 1-d
    # sort, several times faster than np.unique(axis=0) of the rows on a dense mesh
    key = weld_ids(mesh.vertices)
    if mesh.vertex_colors is None and (len(key) == 0 or int(key.max()) + 1 == len(key)):
        return mesh  # every position once: nothing to merge (a GLB's indexed mesh)
    if mesh.vertex_colors is not None:
        rgba = np.ascontiguousarray(mesh.vertex_colors, np.uint8).view(np.uint32).ravel()
        key = (key << 32) | rgba.astype(np.int64)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    if len(first) == mesh.n_vertices:
        return mesh
    colors = None if mesh.vertex_colors is None else mesh.vertex_colors[first]
    return MeshData(mesh.vertices[first], inverse.reshape(-1)[mesh.faces],
                    face_labels=mesh.face_labels, vertex_colors=colors)


def _normalise(mesh: MeshData) -> tuple[MeshData, dict, np.ndarray]:
    """Bounding-box centre at the origin, largest extent 1; the original size goes in info.
    Also returns the 4x4 transform applied (the source surface follows it)."""
    lo, hi = mesh.bounds()
    size = hi - lo
    extent = float(size.max())
    centre = (lo + hi) / 2.0
    out = mesh.replace(vertices=(mesh.vertices - centre) / extent)
    info = {"source_extent_m": extent, "source_size_x": float(size[0]),
            "source_size_y": float(size[1]), "source_size_z": float(size[2])}
    T = np.eye(4)
    T[:3, :3] /= extent
    T[:3, 3] = -centre / extent
    return out, info, T
