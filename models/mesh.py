"""Import a mesh the merchant already has (GLB/glTF/OBJ/STL/PLY) as the dense mesh.

Real catalogs link to files that are truncated downloads, Git LFS pointers, HTML error pages,
Draco-compressed GLBs, point clouds or empty exports; trimesh either raises an unrelated
exception for those or, worse, loads them silently as zeros. Every such case becomes an
``InputError`` that names the file, says what is wrong with it and what to do.

The imported mesh is normalised like a generated one (bounding-box centre at the origin, largest
extent 1, +Y up) so the rest of the factory treats both the same; the size in the file's units
goes into ``info["source_extent_m"]`` so cleanup can restore real size when the catalog gives no
dimensions. glTF is metres and +Y up by specification; OBJ, STL and PLY carry no units or up
axis, so they are assumed to be +Y up too and their units are reported as unknown. Each node
of the file becomes one part (``face_labels``); per-vertex colours are kept; textures and UVs
are dropped (the factory re-textures).
"""

from __future__ import annotations

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

from ..core.errors import InputError
from ..core.mesh import MeshData
from ..core.stage import check
from .base import DenseMesh, GenerateRequest

log = logging.getLogger(__name__)

#: File extension -> trimesh file type.
SUPPORTED: dict[str, str] = {".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".stl": "stl",
                             ".ply": "ply"}
_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
_OTHER_MESH_EXTS = {".fbx", ".usdz", ".usd", ".usda", ".usdc", ".blend", ".3ds", ".dae",
                    ".max", ".c4d", ".3mf", ".step", ".stp", ".iges", ".igs", ".skp", ".x3d",
                    ".zip"}
_COMPRESSION_EXTS = ("KHR_draco_mesh_compression", "EXT_meshopt_compression")
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


class MeshImporter:
    def __init__(self, config: MeshImportConfig) -> None:
        self.config = config

    def generate(self, request: GenerateRequest) -> DenseMesh:
        if not request.mesh_uri:
            raise InputError("the mesh backend needs a mesh_uri and the row has none",
                             "fill the mesh_uri column, or use a photo backend (silhouette)")
        mesh, info = import_mesh(request.mesh_uri, self.config)
        log.info("%s generate/mesh: %s -> %d faces, %d parts, extent %.4g %s", request.sku,
                 _name(request.mesh_uri), mesh.n_faces, info["parts"], info["source_extent_m"],
                 info["source_units"])
        # Photos given with a mesh were taken of the same normalised object: keep their cameras.
        return DenseMesh(mesh=mesh, cameras=[v.camera for v in request.views], info=info)


def import_mesh(uri: str, config: MeshImportConfig = MeshImportConfig()) -> tuple[MeshData, dict]:
    """Read, validate and normalise the mesh at ``uri`` (local path, file:// or s3://)."""
    return import_mesh_bytes(_read(uri, config.max_bytes), uri, config)


def import_mesh_bytes(data: bytes, uri: str,
                      config: MeshImportConfig = MeshImportConfig()) -> tuple[MeshData, dict]:
    """Validate and normalise mesh bytes; ``uri`` names them (its extension gives the format,
    else the bytes do). A generator service's answer goes through the same checks as a file."""
    name = _name(uri)
    kind = _kind(uri, data)
    doc = _inspect_gltf(data, kind, name) if kind in ("glb", "gltf") else None
    scene = _load(uri, data, kind, name, doc)
    parts = _parts(scene, name, config.max_faces)
    mesh = _concatenate(parts)
    _validate(mesh, name, doc)
    mesh, info = _normalise(_weld(mesh))
    info.update(method="import", source_format=kind, parts=len(parts),
                source_units="m" if kind in ("glb", "gltf") else "unknown",
                source_faces=mesh.n_faces, source_vertices=mesh.n_vertices)
    return mesh, info


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
    required = set(doc.get("extensionsRequired") or [])
    if "EXT_meshopt_compression" in required or (
            "KHR_draco_mesh_compression" in required and not _has_draco()):
        raise InputError(f"{name} is compressed with Draco/meshopt; export it uncompressed "
                         "(this factory cannot decode compressed geometry)", _EXPORT_FIX)
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


def _has_draco() -> bool:
    try:
        import DracoPy  # noqa: F401
    except ImportError:
        return False
    return True


def _compressed(doc: dict | None) -> bool:
    used = set((doc or {}).get("extensionsUsed") or []) | set(
        (doc or {}).get("extensionsRequired") or [])
    return any(e in used for e in _COMPRESSION_EXTS)


def _external_uris(doc: dict) -> list[str]:
    return [unquote(b["uri"]) for b in doc.get("buffers") or []
            if b.get("uri") and not str(b["uri"]).startswith("data:")]


def _resolver(uri: str, doc: dict, name: str):
    """Where a .gltf's external buffers come from; all must exist, next to the .gltf."""
    missing_fix = ("keep the .gltf with its .bin files in one folder (or export a single .glb) "
                   "and point mesh_uri at the .gltf in that folder")
    files = _external_uris(doc)
    if uri.startswith("s3://"):
        from ..core.storage import read_ref

        base = uri.rsplit("/", 1)[0]
        found: dict[str, bytes] = {}
        for f in files:
            try:
                found[f] = read_ref(f"{base}/{f}")
            except Exception:  # noqa: BLE001 - any failure means the file is not there
                raise InputError(f"{name} references {f!r}, which is missing next to it in "
                                 f"{base}", missing_fix) from None
        return found
    import trimesh

    folder = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri).resolve().parent
    for f in files:
        if not (folder / f).is_file():
            raise InputError(f"{name} references {f!r}, which is missing next to it in "
                             f"{folder}", missing_fix)
    return trimesh.resolvers.FilePathResolver(str(folder))


# --- loading through trimesh ----------------------------------------------------------------

def _load(uri: str, data: bytes, kind: str, name: str, doc: dict | None):
    import trimesh

    kwargs: dict[str, Any] = {"process": False}
    if kind in ("glb", "gltf"):
        kwargs["skip_materials"] = True  # textures are dropped; don't decode them
    if kind == "gltf":
        kwargs["resolver"] = _resolver(uri, doc or {}, name)
    if doc is not None:
        _check_gltf_meshes(doc, name)
    try:
        return trimesh.load(io.BytesIO(data), file_type=kind, force="scene", **kwargs)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure on merchant bytes
        raise InputError(f"{name} could not be read as {kind.upper()}: it is corrupted or "
                         f"truncated ({type(exc).__name__}: {str(exc)[:200]})",
                         _EXPORT_FIX if kind in ("glb", "gltf") else
                         f"re-export the model as .glb or as a valid .{kind}") from None


@dataclass(frozen=True)
class _Part:
    name: str
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None


def _parts(scene, name: str, max_faces: int) -> list[_Part]:
    """Every mesh instance with its node transform baked in."""
    import trimesh

    parts: list[_Part] = []
    others: list[str] = []
    total = 0
    for node, transform, geom in _instances(scene):
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
        parts.append(_Part(str(node), verts, faces, _vertex_colors(geom)))
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


def _concatenate(parts: list[_Part]) -> MeshData:
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
    verts = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + off for p, off in zip(parts, offsets)])
    labels = np.concatenate([np.full(len(p.faces), i, np.int32) for i, p in enumerate(parts)])
    colors = None
    if any(p.colors is not None for p in parts):
        white = lambda p: np.full((len(p.vertices), 4), 255, np.uint8)
        colors = np.concatenate([p.colors if p.colors is not None else white(p) for p in parts])
    # Index checks happen on the raw faces before anything indexes with them.
    return MeshData(verts, faces, face_labels=labels, vertex_colors=colors)


def _validate(mesh: MeshData, name: str, doc: dict | None) -> None:
    f = mesh.faces
    n = mesh.n_vertices
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
        if _compressed(doc):
            raise InputError(f"{name} is compressed with Draco/meshopt; export it uncompressed "
                             "(its geometry decoded as all zeros)", _EXPORT_FIX)
        raise InputError(f"{name}: all vertices are at one point (zero-size geometry)",
                         "repair or re-export the model")
    v = mesh.vertices[f]
    area = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    if not (area > 1e-12 * extent.max() ** 2).any():
        raise InputError(f"{name}: all {len(f)} faces are degenerate (zero area)",
                         "repair or re-export the model")


def _weld(mesh: MeshData) -> MeshData:
    """Merge vertices with identical position (and colour): STL and OBJ come as soups."""
    key = mesh.vertices
    if mesh.vertex_colors is not None:
        key = np.concatenate([key, mesh.vertex_colors.astype(np.float64)], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    if len(first) == mesh.n_vertices:
        return mesh
    colors = None if mesh.vertex_colors is None else mesh.vertex_colors[first]
    return MeshData(mesh.vertices[first], inverse.reshape(-1)[mesh.faces],
                    face_labels=mesh.face_labels, vertex_colors=colors)


def _normalise(mesh: MeshData) -> tuple[MeshData, dict]:
    """Bounding-box centre at the origin, largest extent 1; the original size goes in info."""
    lo, hi = mesh.bounds()
    size = hi - lo
    extent = float(size.max())
    centre = (lo + hi) / 2.0
    out = mesh.replace(vertices=(mesh.vertices - centre) / extent)
    info = {"source_extent_m": extent, "source_size_x": float(size[0]),
            "source_size_y": float(size[1]), "source_size_z": float(size[2])}
    return out, info
