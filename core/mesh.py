"""The one in-memory mesh type that travels between stages (as a compressed .npz artifact).

Conversions to other libraries happen at the edges (``to_trimesh``/``from_trimesh``). Optional
per-vertex and per-face attributes ride along; a stage that changes topology must remap every
attribute it keeps (see ``MeshData.subset_faces``).
"""

from __future__ import annotations

import dataclasses
import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
GEOMETRY = ("vertices", "faces")


@dataclass(frozen=True)
class MeshData:
    vertices: np.ndarray                     # (N, 3) float64
    faces: np.ndarray                        # (M, 3) int64, counter-clockwise = outward
    face_labels: np.ndarray | None = None    # (M,) int32 part id per face
    uv: np.ndarray | None = None             # (N, 2) float32 per vertex, 0-1, V up (glTF flips)
    vertex_colors: np.ndarray | None = None  # (N, 4) uint8 RGBA
    vertex_normals: np.ndarray | None = None  # (N, 3) float32

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertices", np.ascontiguousarray(self.vertices, np.float64))
        object.__setattr__(self, "faces", np.ascontiguousarray(self.faces, np.int64).reshape(-1, 3))
        if self.face_labels is None:
            object.__setattr__(self, "face_labels", np.zeros(len(self.faces), np.int32))

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    def replace(self, **changes) -> MeshData:
        """A copy with some fields changed. The derived-data cache goes along: every entry is
        checked against the content of the fields it depends on, so an entry of the faces
        alone (edge table, vertex fans) is served again when only vertices or labels change,
        and the others are recomputed."""
        return self._keep_cache(dataclasses.replace(self, **changes))

    def _keep_cache(self, other: MeshData) -> MeshData:
        cache = self.__dict__.get("_derived")
        if cache:
            other.__dict__["_derived"] = dict(cache)
        return other

    # -------------------------------------------------------------- derived data, cached

    def content_key(self, fields: tuple[str, ...] = GEOMETRY) -> tuple:
        """A key that changes whenever the named arrays' contents do (dtype, shape, CRC-32 of
        the bytes: ~15 ms for a million faces, far less than most derived data costs)."""
        key = []
        for name in fields:
            a = getattr(self, name)
            if a is None:
                key.append(None)
                continue
            a = np.ascontiguousarray(a)
            crc = zlib.crc32(memoryview(a).cast("B")) if a.size else 0
            key.append((a.dtype.str, a.shape, crc))
        return tuple(key)

    def derived(self, name: str, compute: Callable[[], T],
                fields: tuple[str, ...] = GEOMETRY) -> T:
        """``compute()``, computed once per content of ``fields`` and kept on this mesh.

        Derived data (edge table, adjacency, face normals and areas, components) is asked for
        by several steps of a stage and by metrics; like trimesh, the cache is checked
        against a hash of the content, so an array changed in place is never served stale.
        The cache is not part of the mesh's fields: it is not saved, compared or pickled.
        """
        cache: dict[str, tuple[tuple, Any]] = self.__dict__.setdefault("_derived", {})
        key = self.content_key(fields)
        hit = cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = compute()
        cache[name] = (key, value)
        return value

    def cached(self, name: str, fields: tuple[str, ...] = GEOMETRY) -> Any:
        """The derived value ``name`` if it is cached and still matches the content of
        ``fields``, else None (nothing is computed)."""
        hit = self.__dict__.get("_derived", {}).get(name)
        if hit is None or hit[0] != self.content_key(fields):
            return None
        return hit[1]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_derived"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def to_bytes(self) -> bytes:
        """An .npz (``np.load`` reads it). Faces go as int32 when they fit (``__post_init__``
        widens them again); integer arrays are deflated at level 1 and float arrays stored
        as they are: a 1M-face mesh saves in ~0.25 s of CPU instead of ~1.6 s with
        ``np.savez_compressed`` (level 6), ~17 % larger than with every array deflated."""
        import zipfile

        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        arrays = {k: v for k, v in arrays.items() if v is not None}  # (asdict would deep-copy)
        if len(self.faces) and int(self.faces.max()) < 2 ** 31 and int(self.faces.min()) >= 0:
            arrays["faces"] = self.faces.astype(np.int32)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for name, a in arrays.items():
                a = np.asanyarray(a)
                info = zipfile.ZipInfo(f"{name}.npy", (1980, 1, 1, 0, 0, 0))
                # float arrays (positions, normals, uvs) are stored: deflate takes ~0.36 s of
                # CPU per million vertices to save ~17 %; integer arrays shrink 3-200x
                info.compress_type = (zipfile.ZIP_STORED if a.dtype.kind == "f"
                                      else zipfile.ZIP_DEFLATED)
                info._compresslevel = 1  # (Python 3.13 names it compress_level)
                with z.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, a, allow_pickle=False)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MeshData:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(**{k: z[k] for k in z.files})

    def to_trimesh(self, process: bool = False):
        import trimesh

        visual = None
        if self.vertex_colors is not None:
            visual = trimesh.visual.ColorVisuals(vertex_colors=self.vertex_colors)
        m = trimesh.Trimesh(self.vertices, self.faces, process=process, visual=visual)
        return m

    @classmethod
    def from_trimesh(cls, mesh, face_labels: np.ndarray | None = None) -> MeshData:
        return cls(np.asarray(mesh.vertices), np.asarray(mesh.faces), face_labels)

    def subset_faces(self, keep: np.ndarray) -> MeshData:
        """Keep the faces where ``keep`` is true, drop unused vertices, remap every attribute."""
        keep = np.asarray(keep)
        if keep.dtype == bool and len(keep) == self.n_faces and keep.all():
            # nothing to drop: this mesh (and its derived-data cache); cleanup's steps
            # mostly remove nothing from an already clean input
            used = self.faces.ravel()
            if len(used) == 0 or np.bincount(used, minlength=self.n_vertices).all():
                return self
        faces = self.faces[keep]
        mask = np.zeros(self.n_vertices, bool)
        mask[faces.ravel()] = True  # O(n), where np.unique would sort
        used = np.flatnonzero(mask)
        remap = np.full(self.n_vertices, -1, np.int64)
        remap[used] = np.arange(len(used))
        pick = lambda a: None if a is None else a[used]
        return MeshData(self.vertices[used], remap[faces], self.face_labels[keep],
                        pick(self.uv), pick(self.vertex_colors), pick(self.vertex_normals))

    @classmethod
    def concatenate(cls, meshes) -> MeshData:
        """One mesh holding every input's vertices and faces (indices offset, labels kept)."""
        meshes = list(meshes)
        if not meshes:
            return cls(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
        offsets = np.cumsum([0] + [m.n_vertices for m in meshes[:-1]])
        return cls(np.vstack([m.vertices for m in meshes]),
                   np.vstack([m.faces + o for m, o in zip(meshes, offsets)]),
                   np.concatenate([m.face_labels for m in meshes]))

    def bounds(self) -> np.ndarray:
        if self.n_vertices == 0:
            return np.zeros((2, 3))
        return np.stack([self.vertices.min(0), self.vertices.max(0)])

    def transformed(self, T: np.ndarray) -> MeshData:
        v = self.vertices @ T[:3, :3].T + T[:3, 3]
        n = self.vertex_normals
        if n is not None:
            n = n @ np.linalg.inv(T[:3, :3])
            n = (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        faces = self.faces if np.linalg.det(T[:3, :3]) > 0 else self.faces[:, ::-1]
        return self._keep_cache(dataclasses.replace(self, vertices=v, faces=faces,
                                                    vertex_normals=n))
