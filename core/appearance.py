"""The look a vendor's mesh carries: its materials, their images and the surface they map onto.

Why a type of its own: a merchant's textured GLB, glTF or OBJ + MTL has no photos to re-texture
from, so its appearance has to travel from the import (``models/mesh.py``) past cleanup,
simplification and the new UV layout to the stage that bakes it into the new atlas
(``algorithms/material_transfer.py``). It travels as content-addressed artifacts, never as a pickled
object: the surface as an ``.npz`` (``SourceSurface``), the material table as JSON, and every image
as its own file in its original encoding (PNG, JPEG or WebP; other encodings are converted to PNG
at import).

Conventions (those of glTF 2.0, whatever the file format was):
- texture coordinates as in the file, ``(s, t)`` with ``t`` pointing down the image (OBJ's V-up
  coordinates are flipped on import), so ``KHR_texture_transform`` applies unchanged;
- factors and vertex colours in linear light; base-colour and emissive images are sRGB;
- ``SourceSurface`` is in the frame of the dense mesh the backend returns (normalised: bounding
  box centre at the origin, largest extent 1), one vertex per glTF vertex (UV seams split).
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field

import numpy as np

ALPHA_MODES = ("OPAQUE", "MASK", "BLEND")
#: glTF sampler wrap modes.
REPEAT, CLAMP, MIRROR = 10497, 33071, 33648
#: Image encodings kept as they are; anything else is converted to PNG on import.
KEPT_MIMES = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True)
class TextureSlot:
    """One texture reference of a material: which image, through which UV set and how.

    transform: the KHR_texture_transform as a 2x3 row-major affine (UV' = M @ [u, v, 1]), or None.
    scale: normalTexture.scale or occlusionTexture.strength (1 for the others).
    """

    image: int
    texcoord: int = 0
    transform: tuple[float, ...] | None = None
    wrap_s: int = REPEAT
    wrap_t: int = REPEAT
    nearest: bool = False
    scale: float = 1.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict | None) -> TextureSlot | None:
        if d is None:
            return None
        d = dict(d)
        if d.get("transform") is not None:
            d["transform"] = tuple(float(x) for x in d["transform"])
        return cls(**d)


@dataclass(frozen=True)
class SourceMaterial:
    """One glTF metal/rough material (an MTL material is mapped onto the same fields)."""

    name: str
    base_color_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    base_color: TextureSlot | None = None
    metallic_factor: float = 1.0
    roughness_factor: float = 1.0
    metallic_roughness: TextureSlot | None = None
    normal: TextureSlot | None = None
    occlusion: TextureSlot | None = None
    emissive_factor: tuple[float, float, float] = (0.0, 0.0, 0.0)
    emissive: TextureSlot | None = None
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5
    double_sided: bool = False
    unlit: bool = False

    SLOTS = ("base_color", "metallic_roughness", "normal", "occlusion", "emissive")

    def slots(self) -> dict[str, TextureSlot]:
        return {k: getattr(self, k) for k in self.SLOTS if getattr(self, k) is not None}

    def to_json(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.SLOTS}
        out.update({k: (None if s is None else s.to_json())
                    for k, s in ((k, getattr(self, k)) for k in self.SLOTS)})
        return out

    @classmethod
    def from_json(cls, d: dict) -> SourceMaterial:
        d = dict(d)
        for k in cls.SLOTS:
            d[k] = TextureSlot.from_json(d.get(k))
        d["base_color_factor"] = tuple(float(x) for x in d["base_color_factor"])
        d["emissive_factor"] = tuple(float(x) for x in d["emissive_factor"])
        return cls(**d)


#: The material of faces whose primitive names none (glTF's default material).
DEFAULT_MATERIAL = SourceMaterial("default")


@dataclass(frozen=True)
class SourceImage:
    """An image as the file had it (bytes in one of ``KEPT_MIMES``)."""

    name: str
    mime: str
    data: bytes


@dataclass(frozen=True)
class SourceSurface:
    """The source's triangles with every attribute its materials read.

    texcoords: one (N, 2) float32 array per UV set (TEXCOORD_n), glTF orientation.
    colors: (N, 4) float32 linear RGBA (COLOR_0), or None.
    tangents: (N, 4) float32 (TANGENT) where the file gave them, else None (derived on use).
    face_material: (M,) int32 index into the material list.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_material: np.ndarray
    normals: np.ndarray | None = None
    tangents: np.ndarray | None = None
    texcoords: tuple[np.ndarray, ...] = ()
    colors: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "vertices", np.ascontiguousarray(self.vertices, np.float64))
        object.__setattr__(self, "faces", np.ascontiguousarray(self.faces, np.int64).reshape(-1, 3))
        object.__setattr__(self, "face_material",
                           np.ascontiguousarray(self.face_material, np.int32).reshape(-1))
        object.__setattr__(self, "texcoords",
                           tuple(np.ascontiguousarray(t, np.float32) for t in self.texcoords))

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    @property
    def coloured(self) -> bool:
        """Vertex colours that change the look (not all white)."""
        return self.colors is not None and bool((np.asarray(self.colors) < 254.5 / 255).any())

    def transformed(self, T: np.ndarray) -> SourceSurface:
        """The surface under a 4x4 similarity/affine transform (normals by the inverse
        transpose, winding flipped for a mirror)."""
        T = np.asarray(T, np.float64)
        v = self.vertices @ T[:3, :3].T + T[:3, 3]
        inv_t = np.linalg.inv(T[:3, :3]).T
        unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-20)
        n = None if self.normals is None else unit(self.normals @ inv_t.T).astype(np.float32)
        t = None
        if self.tangents is not None:
            t = self.tangents.copy()
            t[:, :3] = unit(self.tangents[:, :3] @ T[:3, :3].T)
        flip = np.linalg.det(T[:3, :3]) < 0
        faces = self.faces[:, ::-1] if flip else self.faces
        if t is not None and flip:
            t[:, 3] *= -1.0
        return dataclasses.replace(self, vertices=v, faces=faces, normals=n, tangents=t)

    def to_bytes(self) -> bytes:
        arrays = {"vertices": self.vertices, "faces": self.faces,
                  "face_material": self.face_material}
        for k in ("normals", "tangents", "colors"):
            if getattr(self, k) is not None:
                arrays[k] = getattr(self, k)
        for i, t in enumerate(self.texcoords):
            arrays[f"texcoord_{i}"] = t
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SourceSurface:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n_uv = sum(1 for k in z.files if k.startswith("texcoord_"))
            get = lambda k: z[k] if k in z.files else None
            return cls(z["vertices"], z["faces"], z["face_material"], get("normals"),
                       get("tangents"), tuple(z[f"texcoord_{i}"] for i in range(n_uv)),
                       get("colors"))


@dataclass(frozen=True)
class SourceAppearance:
    """Everything a source mesh shows: surface, materials, images."""

    surface: SourceSurface
    materials: tuple[SourceMaterial, ...]
    images: tuple[SourceImage, ...] = ()
    info: dict = field(default_factory=dict)

    @property
    def textured(self) -> bool:
        return any(m.slots() for m in self.materials)

    @property
    def rich(self) -> bool:
        """A look of its own, beyond one plain colour: textures, vertex colours or several
        materials (it then wins over photos; README, "What wins")."""
        return self.textured or self.surface.coloured or len(self.materials) > 1

    @property
    def worth_transferring(self) -> bool:
        """True when the look is more than one plain default material: textures, vertex
        colours, several materials, a non-white colour, emission or cut-outs."""
        if self.rich:
            return True
        m = self.materials[0] if self.materials else DEFAULT_MATERIAL
        return (m != DEFAULT_MATERIAL and (tuple(m.base_color_factor) != (1.0, 1.0, 1.0, 1.0)
                or any(m.emissive_factor) or m.alpha_mode != "OPAQUE"))

    def table(self) -> dict:
        """The JSON that travels beside the surface (images named by index)."""
        return {"materials": [m.to_json() for m in self.materials],
                "images": [{"name": im.name, "mime": im.mime} for im in self.images],
                "info": self.info}


def decode_image(data: bytes) -> np.ndarray:
    """(H, W, 4) uint8 RGBA of PNG/JPEG/WebP bytes (grey and palette images expanded)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGBA")).copy()


def table_json(appearance: SourceAppearance) -> bytes:
    return json.dumps(appearance.table(), sort_keys=True, indent=1).encode()


# ---------------------------------------------------------------------------- artifacts

SURFACE_KEY = "source/surface"
MATERIALS_KEY = "source/materials"
IMAGE_PREFIX = "source/image/"
_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def save_appearance(state, appearance: SourceAppearance) -> dict:
    """Artifact refs for the appearance: the surface (.npz), one artifact per image (its own
    bytes), and the material table (JSON) naming the image artifacts by key."""
    from .artifacts import save_bytes, save_json

    refs = {SURFACE_KEY: save_bytes(state, appearance.surface.to_bytes(), ".npz")}
    table = appearance.table()
    for i, im in enumerate(appearance.images):
        key = None
        if im.data:
            key = f"{IMAGE_PREFIX}{i}"
            refs[key] = save_bytes(state, im.data, _EXT.get(im.mime, ".bin"))
        table["images"][i]["key"] = key
    refs[MATERIALS_KEY] = save_json(state, table)
    return refs


def has_appearance(state) -> bool:
    return SURFACE_KEY in state.artifacts and MATERIALS_KEY in state.artifacts


def load_appearance(state) -> SourceAppearance | None:
    """The appearance a mesh import left in ``state``, or None."""
    from .artifacts import load_json, read_bytes

    if not has_appearance(state):
        return None
    table = load_json(state, MATERIALS_KEY)
    images = tuple(SourceImage(d["name"], d["mime"],
                               read_bytes(state, d["key"]) if d.get("key") else b"")
                   for d in table["images"])
    return SourceAppearance(SourceSurface.from_bytes(read_bytes(state, SURFACE_KEY)),
                            tuple(SourceMaterial.from_json(m) for m in table["materials"]),
                            images, dict(table.get("info") or {}))
