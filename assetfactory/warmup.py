"""Compile every numba kernel of the project into numba's on-disk cache, once.

``make setup`` and the Docker image run ``assetfactory warmup``, so the first asset in each
worker does not pay ~10-20 s of compiling. The kernels are compiled by running the code paths
that use them on small meshes (the argument types are those of a real run, so the cache entries
are the ones a run looks up), and ``kernel_modules`` names every module that holds kernels, so
a test can check that none was left out.
"""

from __future__ import annotations

import importlib
import time

import numpy as np

#: Every module holding numba kernels (``cache=True``, module level).
KERNEL_MODULES = (
    "assetfactory.geometry._topology_numba",
    "assetfactory.geometry._raster_numba",
    "assetfactory.algorithms._qem_numba",
    "assetfactory.algorithms._packing_numba",
)


def kernels() -> dict[str, object]:
    """``module.name`` -> numba dispatcher, for every kernel of ``KERNEL_MODULES``."""
    from numba.core.registry import CPUDispatcher

    out = {}
    for name in KERNEL_MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if isinstance(value, CPUDispatcher):
                out[f"{name}.{attr}"] = value
    return out


def uncompiled() -> list[str]:
    """Kernels with neither a compiled version in this process nor an entry in numba's on-disk
    cache (kernels inlined into their callers never get one of their own)."""
    import os

    out = []
    for name, k in kernels().items():
        if k.targetoptions.get("inline") == "always" or k.signatures:
            continue
        if not os.path.exists(k._cache._cache_file._index_path):
            out.append(name)
    return out


def warm_up() -> float:
    """Run the numba-backed code paths on small meshes; returns the seconds it took."""
    import trimesh

    from .algorithms.chart_packing import pack_charts
    from .algorithms.decimate import decimate
    from .algorithms.unwrap import unwrap_chunk
    from .algorithms.uv_quality import uv_metrics
    from .core.mesh import MeshData
    from .geometry.normals import smooth_normals
    from .tasks.cleanup import CleanupOptions, clean_mesh
    from .tasks.uv import UVOptions

    t = time.perf_counter()
    s = trimesh.creation.icosphere(3)
    mesh = MeshData(s.vertices, s.faces)
    # cleanup: weld, fans, winding, slivers, components, holes, parts (topology kernels)
    clean, _ = clean_mesh(mesh.replace(vertex_normals=smooth_normals(mesh)),
                          CleanupOptions(remove_interior=False))
    decimate(clean, 200)
    y = clean.vertices[clean.faces].mean(axis=1)[:, 1]  # two parts: the per-part kernels
    decimate(clean.replace(face_labels=(y > 0).astype(np.int32)), 200)
    # uv: packing and the coverage raster (uv_metrics)
    vmap, faces, uv = unwrap_chunk(clean.vertices, clean.faces, None, 0.0)
    packed = pack_charts(uv, faces, UVOptions(resolution=256, padding=2))
    uv_metrics(MeshData(clean.vertices[vmap], packed.faces, uv=packed.uv), 256)
    return time.perf_counter() - t


def main() -> None:
    seconds = warm_up()
    missing = uncompiled()
    print(f"numba kernels compiled and cached in {seconds:.1f} s"
          + (f"; not compiled: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
