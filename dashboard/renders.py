"""Pictures the catalog does not hold yet: the result rendered from each input photo's camera,
and the UV layout. Made on first request with the project's renderer and cached in storage
under ``dashboard/`` so later page loads only read a PNG.

The renders use the final mesh, its base-colour texture and the cameras the pipeline recorded
for the input photos (already in the asset's frame, as the metrics stage uses them), so a
render and its photo line up pixel for pixel when the asset is right. Unlit, because the
texture was projected from those photos and already carries their light.

One OpenGL context belongs to one thread: every render runs on a single worker thread.
"""

from __future__ import annotations

import io
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..core.artifacts import encode_png
from ..core.camera import Camera
from ..core.mesh import MeshData

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-render")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def safe_name(value: str) -> bool:
    """Attempt ids and view labels become cache keys: only plain names qualify."""
    return bool(_SAFE.match(value or ""))


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def cache_key(attempt_id: str, name: str) -> str:
    return f"dashboard/renders/{attempt_id}/{name}.png"


def cached_png(store, key: str, make) -> bytes:
    """The PNG under ``key``, made once by ``make()`` (two requests never both render)."""
    with _lock_for(key):
        if store.exists(key):
            return store.get(key)
        data = make()
        store.put(key, data, "image/png")
        return data


def view_render(store, artifacts: dict[str, str], label: str, size: int = 0) -> bytes:
    """PNG of the final textured mesh from the input camera ``label``."""
    cams = [Camera.from_dict(d) for d in json.loads(store.get(artifacts["cameras"]))]
    cam = next((c for c in cams if c.label == label), None)
    if cam is None:
        raise KeyError(f"no camera for view {label!r}")
    mesh = MeshData.from_bytes(store.get(artifacts["mesh"]))
    texture = None
    if "texture/base_color" in artifacts and mesh.uv is not None:
        from ..core.artifacts import decode_png

        texture = decode_png(store.get(artifacts["texture/base_color"]))

    def work() -> bytes:
        from ..geometry.render import get_renderer

        img = get_renderer().render(mesh, cam, texture=texture,
                                    shading="unlit" if texture is not None else "lambert",
                                    ssaa=2)
        return encode_png(img)

    return _executor.submit(work).result()


def uv_layout(store, artifacts: dict[str, str], size: int = 1024) -> bytes:
    """PNG of the final mesh's UV triangles over a light grid (V up, as in glTF)."""
    from PIL import Image, ImageDraw

    mesh = MeshData.from_bytes(store.get(artifacts["mesh"]))
    if mesh.uv is None:
        raise KeyError("the final mesh has no UVs")
    img = Image.new("RGB", (size, size), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    for i in range(1, 8):
        g = i * size // 8
        draw.line([(g, 0), (g, size)], fill=(225, 225, 225))
        draw.line([(0, g), (size, g)], fill=(225, 225, 225))
    uv = np.asarray(mesh.uv, np.float64)
    pts = np.stack([uv[:, 0] * (size - 1), (1.0 - uv[:, 1]) * (size - 1)], axis=1)
    tri = pts[np.asarray(mesh.faces)]
    fill = (120, 160, 220)
    for t in tri:
        draw.polygon([tuple(p) for p in t], outline=(40, 70, 140), fill=fill)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(80, 80, 80))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
