"""Small helpers stages use to read and write artifacts through the storage interface."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from .camera import Camera
from .mesh import MeshData
from .storage import ArtifactRef, open_storage, put_object, read_ref
from .types import AssetState


def store_of(state: AssetState):
    return open_storage(state.store_uri)


def read_bytes(state: AssetState, key: str) -> bytes:
    return read_ref(state.ref(key))


def save_bytes(state: AssetState, data: bytes, ext: str) -> ArtifactRef:
    return put_object(store_of(state), data, ext)


def load_mesh(state: AssetState, key: str = "mesh") -> MeshData:
    return MeshData.from_bytes(read_bytes(state, key))


def save_mesh(state: AssetState, mesh: MeshData) -> ArtifactRef:
    return save_bytes(state, mesh.to_bytes(), ".npz")


#: zlib level of PNG artifacts between stages. Why 1, not PIL's 6: these images are decoded
#: again by a later stage (export re-encodes every texture it embeds at its own level), so
#: their size matters little, while level 6 costs about twice the CPU of level 1 on a
#: 2048 px map (files ~10-25 % larger). Final files (the poster) pass ``level=6``.
ARTIFACT_PNG_LEVEL = 1


def encode_png(image: np.ndarray, level: int = ARTIFACT_PNG_LEVEL) -> bytes:
    """PNG bytes of an image (float in 0-1 or integer), zlib ``level`` 0-9."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8) if arr.dtype.kind == "f" else arr.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im).copy()


def load_image(state: AssetState, key: str) -> np.ndarray:
    return decode_png(read_bytes(state, key))


def save_image(state: AssetState, image: np.ndarray) -> ArtifactRef:
    return save_bytes(state, encode_png(image), ".png")


def load_json(state: AssetState, key: str) -> Any:
    return json.loads(read_bytes(state, key))


def save_json(state: AssetState, obj: Any) -> ArtifactRef:
    return save_bytes(state, json.dumps(obj, sort_keys=True, indent=1).encode(), ".json")


def load_cameras(state: AssetState, key: str = "cameras") -> list[Camera]:
    return [Camera.from_dict(d) for d in load_json(state, key)]


def save_cameras(state: AssetState, cameras: list[Camera]) -> ArtifactRef:
    return save_json(state, [c.to_dict() for c in cameras])
