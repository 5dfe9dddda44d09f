"""The one in-memory mesh type that travels between stages (as a compressed .npz artifact).

Conversions to other libraries happen at the edges (``to_trimesh``/``from_trimesh``). Optional
per-vertex and per-face attributes ride along; a stage that changes topology must remap every
attribute it keeps (see ``MeshData.subset_faces``).
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np


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
        return dataclasses.replace(self, **changes)

    def to_bytes(self) -> bytes:
        arrays = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
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
        return dataclasses.replace(self, vertices=v, faces=faces, vertex_normals=n)
