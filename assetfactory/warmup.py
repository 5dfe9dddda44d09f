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
    "assetfactory.algorithms._edge_ops_numba",
    "assetfactory.algorithms._features_numba",
    "assetfactory.algorithms._flat_numba",
    "assetfactory.geometry._closest_numba",
    "assetfactory.algorithms._packing_numba",
    "assetfactory.geometry._texel_numba",
    "assetfactory.algorithms._ao_numba",
    "assetfactory.algorithms._projection_numba",
    "assetfactory.algorithms._inpaint_numba",
    "assetfactory.algorithms._materials_numba",
    "assetfactory.geometry._colour_numba",
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
    from .algorithms.edge_ops import flip_slivers
    from .algorithms.surface_error import surface_error
    from .algorithms.unwrap import unwrap_chunk
    from .algorithms.uv_quality import uv_metrics
    from .core.mesh import MeshData
    from .geometry.normals import smooth_normals
    from .geometry.raster import overlapping_faces
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
    surface_error(clean, decimate(clean, 200), 1000)  # the exact distances
    box = trimesh.creation.box()  # faceted, 8 corners: the flat pre-collapse
    decimate(MeshData(*trimesh.remesh.subdivide(*trimesh.remesh.subdivide(box.vertices,
                                                                           box.faces))), 64)
    sliver = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1e-5, 0], [0.5, -1, 0]], np.float64)
    flip_slivers(sliver, np.array([[0, 1, 2], [1, 0, 3]], np.int64), np.zeros(2, np.int32))
    # uv: packing and the coverage raster (uv_metrics)
    vmap, faces, uv = unwrap_chunk(clean.vertices, clean.faces, None, 0.0)
    packed = pack_charts(uv, faces, UVOptions(resolution=256, padding=2))
    low = MeshData(clean.vertices[vmap], packed.faces, uv=packed.uv)
    uv_metrics(low, 256)
    twice = np.array([[0, 1, 2], [0, 1, 2]], np.int64)  # a texel covered twice: its faces
    overlapping_faces(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), twice, 16)
    _warm_texels(low)
    from .geometry.colour import linear_to_srgb, srgb_bytes, to_uint8
    linear_to_srgb(np.linspace(0.0, 1.0, 16))  # the sRGB power (C library pow)
    srgb_bytes(np.linspace(0.0, 1.0, 16, dtype=np.float32))
    to_uint8(np.linspace(0.0, 1.0, 16, dtype=np.float32))
    return time.perf_counter() - t


def _warm_texels(low) -> None:
    """The bake's and the texture's per-texel kernels, with the argument types of a run: the
    texel frames, closest points, tangent-space encoding, AO lattice, dilation, the maps'
    bytes and one view's projection
    (with and without the pyramid and edge band). No renderer: the texels are taken from
    face centres."""
    from .algorithms.ambient_occlusion import texel_ambient_occlusion
    from .algorithms.inpaint import fill_nearest_3d
    from .algorithms.materials import part_colour_stats
    from .algorithms.projection import TexelGrid, ViewInput, blend_views_stats
    from .core.camera import orbit_camera
    from .geometry.closest import ClosestSurface
    from .geometry.dilation import texels_to_image
    from .geometry.normals import vertex_normals
    from .geometry.tangents import (
        encode_tangent_space,
        normal_ao_bytes,
        surface_frames,
        vertex_tangents,
    )
    from .geometry.texture_sampling import (
        build_pyramid,
        texel_barycentric,
        texel_surface,
        texel_uv,
        uv_barycentric,
    )
    from .tasks.texture import TextureOptions

    size = 64
    normals = vertex_normals(low.vertices, low.faces)
    tangents = vertex_tangents(low, normals)
    fids = np.arange(len(low.faces), dtype=np.int64)
    centre = low.uv[low.faces].mean(axis=1)
    index = (np.clip(((1 - centre[:, 1]) * size).astype(np.int64), 0, size - 1) * size
             + np.clip((centre[:, 0] * size).astype(np.int64), 0, size - 1))
    bary = uv_barycentric(low, fids, texel_uv(index, size))
    texel_barycentric(low, fids, index, size)
    frames = surface_frames(low, normals, tangents, fids, bary)
    surface = ClosestSurface(low, threads=1)
    surface.closest(frames.position)
    surface.closest_coherent(frames.position)
    m = encode_tangent_space(frames, frames.normal)
    index, first = np.unique(index, return_index=True)
    ao, _ = texel_ambient_occlusion(low, index, fids[first], frames.position[first],
                                    frames.normal[first], size, 4, 4, 0.1, 0, threads=1)
    normal_ao_bytes(texels_to_image(size, index, np.concatenate([m[first], ao[:, None]], axis=1),
                                    2, (0.0, 0.0, 1.0, 1.0)))
    grid = TexelGrid(size, index, frames.position[first], frames.normal[first], fids[first])
    face_raster = np.full((size, size), -1, np.int32)
    face_raster.reshape(-1)[index] = fids[first]
    texel_surface(low, face_raster)
    _warm_raster_texels(size)
    cam = orbit_camera("front", 0.0, 0.0, 3.0, size=32)
    rgb = np.full((32, 32, 3), 0.5, np.float32)
    mask = np.ones((32, 32), bool)
    depth = np.full((32, 32), 3.0, np.float32)
    plain = ViewInput("front", cam, rgb, mask, depth)
    mip = ViewInput("front", cam, rgb, mask, depth, edge=np.zeros((32, 32), bool),
                    face_footprint=np.ones(len(low.faces)), pyramid=build_pyramid(rgb, mask, 3))
    colour, _, _ = blend_views_stats(grid, [plain, mip], TextureOptions())
    seen = np.arange(len(index)) % 2 == 0
    fill_nearest_3d(grid.positions, grid.normals, colour, seen, threads=1)
    part_colour_stats(colour, np.zeros(len(low.faces), np.int64), grid.faces, seen)


def _warm_raster_texels(size: int) -> None:
    """The UV raster's texel gather, on read-only buffers as GL's read-back gives them."""
    from .geometry._texel_numba import raster_texels

    face = np.zeros((size, size), np.int32)
    face[1, 2] = 1
    raw = (np.zeros((size, size, 4), np.float32), np.ones((size, size, 4), np.float32), face)
    for a in raw:
        a.flags.writeable = False
    raster_texels(*raw)


def main() -> None:
    seconds = warm_up()
    missing = uncompiled()
    print(f"numba kernels compiled and cached in {seconds:.1f} s"
          + (f"; not compiled: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
