"""texture: project the product photos onto the UV atlas as a base-colour texture.

Why this shape: every texel of the atlas is a point on the surface (rasterised in UV space), so
texturing is "which photos see this point, and how well". A photo sees a texel when the texel
lands inside the (eroded) object mask and its depth matches the view's depth map; it sees it
well when the surface faces the camera. Colours are averaged in linear light (photos are
sRGB), texels no photo saw are inpainted from the nearest observed texels in 3D (UV-space
neighbours may lie on another part of the product), and the colour is dilated past the chart
borders so mipmapping does not pull in the background.

Where a photo is least trustworthy it counts least: pixels near depth discontinuities of the
mesh (occlusion borders, where a one-pixel misalignment swaps foreground and background) and
near the photo's mask border get ``edge_weight``; and each texel reads the photo at the pyramid
level matching its projected footprint (the per-face Jacobian texel -> pixel), so a small
texture seeing a detailed photo, or a grazing view, averages instead of aliasing.

PBR per part: each part (``face_labels``) gets a material from ``algorithms/materials.py`` (catalog
hint + colour statistics); the stage writes ``texture/orm`` (R = AO from ``texture/ao`` when a
bake stage made one, else 1; G = roughness; B = metallic; linear) and a ``materials`` JSON.
An optional pass (``flatten_shading``) divides out the low-frequency luminance per part, so
studio lighting baked into the photos does not become shading painted on the albedo.

The numerical steps live below the stage, each tested on its own: ``algorithms.projection``
(visibility, weights, blending), ``algorithms.inpaint``, ``algorithms.shading``,
``algorithms.materials``, and colour space, image sampling and dilation in ``geometry``. Only
``texture`` reads artifacts and only ``_render_inputs`` touches the renderer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..algorithms import materials as mats
from ..algorithms.delight import estimate_light
from ..algorithms.projection import (
    NEUTRAL_GREY,
    BlendStats,
    TexelGrid,
    ViewInput,
    compose_texture,
    compose_values,
    edge_band,
    edge_feather,
    erode_mask,
    face_footprints,
    margin_texels,
    orm_texels,
    texture_colours_stats,
    uv_texel_inverse,
    vertex_colour_texels,
)
from ..algorithms.shading import flatten_shading
from ..core.artifacts import load_cameras, load_image, load_mesh, save_image, save_json
from ..core.camera import Camera
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from ..geometry.colour import image_to_linear, srgb_to_linear, to_uint8
from ..geometry.texture_sampling import build_pyramid, texel_surface

log = logging.getLogger(__name__)

NAME = "texture"
FILLS = ("nearest3d", "mean")
BLENDS = ("mean", "consistent")


@dataclass(frozen=True)
class TextureOptions:
    """How the photos become a base-colour texture.

    size: texture edge in pixels (power of two, 16-8192).
    incidence_power: weight = cos(angle between normal and view ray) ** power; higher trusts
        head-on views more and blends less.
    depth_tolerance: a texel is visible when its depth is within this fraction of the view's
        depth map (relative, so it works at any scale).
    mask_erode_px: shrink each object mask by this many pixels before use, so background at
        the silhouette never lands on the surface.
    front_back_prior: extra weight for views looking along the front/back axis (product photos
        are usually best there); 1 means no preference.
    fill: how texels no photo saw get a colour: "nearest3d" (inverse-distance weighted from the
        nearest observed texels in 3D, normals agreeing) or "mean" (mean observed colour).
    edge_px: width (px) of the band around the mesh's depth discontinuities and the photo's
        mask border where a view is distrusted (0 disables it).
    depth_edge: relative depth jump between neighbouring pixels that counts as a discontinuity.
    edge_weight: weight factor of a view inside that band (0 excludes it; small but non-zero
        keeps a colour for texels that only an edge sees).
    mip_filter: sample each view at the pyramid level of the texel's projected footprint.
    mip_bias: levels added to log2(footprint). The textbook level (0) blurs twice, since the
        viewer's own mipmapping filters the texture again: on the real-model benchmark it cost
        2.5 dB at the input views against -1 (filter only where a texel spans > 2 px), which
        still removes the aliasing of fine photo detail on a small texture.
    flatten_shading: divide out the low-frequency luminance of each part (baked-in studio
        lighting); off by default because it also removes real albedo gradients.
    flatten_cells: resolution of the 3D grid (cells along the longest side) the low-frequency
        luminance is estimated on; fewer cells flatten broader light falloff only.
    delight: estimate the studio light fixed to the camera (``algorithms/delight.py``) from the
        points several photos see, and divide it out of every photo before blending, so the
        texture is albedo (what a viewer should light); skipped when no such light explains
        the photos.
    delight_hulls: also delight when the mesh is a visual hull carved from the same photos
        (``generate_method`` "visual_hull"). Off: the light is fitted on the points two
        photos see, which on a hull lie between the photos, where the hull is furthest from
        the product; there each photo shows another point of the product, and the fitted
        light is usually wrong (on the real-model benchmark 10 of 11 lights fitted on hulls
        were, and dividing them out cost up to 10 dB at held-out views; the one right light,
        on an 8-view boot, was worth 4.6 dB there when the texture is lit like the photos).
    pbr: write ``texture/orm`` and the ``materials`` artifact (material per part).
    edge_feather_px: past the edge band, a photo's weight rises from ``edge_weight`` to full
        over this many pixels (``projection.edge_feather``); 0 keeps the plain band.
    blend: "mean" (weighted mean of every photo that sees a texel) or "consistent" (only the
        photos whose colour agrees with the best-weighted one's, ``projection.consistent_blend``:
        no ghosts where the shape is off between the photos).
    consistency_sigma: with "consistent", the colour distance (square root of linear light,
        0-1) at which a photo's weight falls to 1/e of its own.
    harmonise: even out the photos' exposure and white balance (one RGB gain per photo from
        the texels several photos see) before blending (``projection.harmonise_gains``).
    """

    size: int = 1024
    incidence_power: float = 2.0
    depth_tolerance: float = 0.01
    mask_erode_px: int = 2
    front_back_prior: float = 1.5
    fill: str = "nearest3d"
    edge_px: int = 2
    depth_edge: float = 0.05
    edge_weight: float = 0.02
    mip_filter: bool = True
    mip_bias: float = -1.0
    flatten_shading: bool = False
    flatten_cells: int = 12
    delight: bool = True
    delight_hulls: bool = False
    pbr: bool = True
    edge_feather_px: float = 0.0
    blend: str = "mean"
    consistency_sigma: float = 0.08
    harmonise: bool = False

    def __post_init__(self) -> None:
        s = self.size
        check(16 <= s <= 8192 and s & (s - 1) == 0, f"size must be a power of two "
              f"in 16..8192, got {s}")
        check(self.incidence_power >= 0, "incidence_power must be >= 0")
        check(0 < self.depth_tolerance < 1, "depth_tolerance must be in (0, 1)")
        check(self.mask_erode_px >= 0, "mask_erode_px must be >= 0")
        check(self.front_back_prior > 0, "front_back_prior must be > 0")
        check(self.fill in FILLS, f"fill must be one of {FILLS}, got {self.fill!r}")
        check(0 <= self.edge_px <= 64, "edge_px must be in 0..64")
        check(self.depth_edge > 0, "depth_edge must be > 0")
        check(0 <= self.edge_weight <= 1, "edge_weight must be in [0, 1]")
        check(2 <= self.flatten_cells <= 256, "flatten_cells must be in 2..256")
        check(-4 <= self.mip_bias <= 4, "mip_bias must be in -4..4")
        check(0 <= self.edge_feather_px <= 256, "edge_feather_px must be in 0..256")
        check(self.blend in BLENDS, f"blend must be one of {BLENDS}, got {self.blend!r}")
        check(0 <= self.consistency_sigma <= 2, "consistency_sigma must be in 0..2")


# ---------------------------------------------------------------- shading and materials


def read_ao(state: AssetState, grid: TexelGrid) -> np.ndarray | None:
    """Per-texel AO (0-1) from a bake stage's ``texture/ao``, resized to the atlas, or None."""
    if "texture/ao" not in state.artifacts:
        return None
    import cv2

    ao = load_image(state, "texture/ao")
    if ao.ndim == 3:
        ao = ao[..., 0]
    ao = ao.astype(np.float32) / (255.0 if ao.dtype == np.uint8 else 65535.0
                                  if ao.dtype == np.uint16 else 1.0)
    if ao.shape != (grid.size, grid.size):
        ao = cv2.resize(ao, (grid.size, grid.size), interpolation=cv2.INTER_AREA)
    return ao.reshape(-1)[grid.index]


# ---------------------------------------------------------------- reading inputs

def read_views(state: AssetState) -> list[tuple[Camera, np.ndarray, np.ndarray]]:
    """(camera, rgb, mask) for every camera that has its image and mask; [] for mesh-only SKUs."""
    if "cameras" not in state.artifacts:
        return []
    views = []
    for cam in load_cameras(state):
        ik, mk = f"image/{cam.label}", f"mask/{cam.label}"
        if ik not in state.artifacts or mk not in state.artifacts:
            log.info("%s %s: camera %r has no %s/%s, skipped", state.sku, NAME, cam.label, ik, mk)
            continue
        rgb, mask = load_image(state, ik), load_image(state, mk)
        if rgb.shape[:2] != (cam.height, cam.width) or mask.shape[:2] != rgb.shape[:2]:
            raise ProcessingError(
                f"view {cam.label!r}: image {rgb.shape[:2]} / mask {mask.shape[:2]} do not match "
                f"its camera ({cam.height}, {cam.width})",
                "re-run ingest and generate so cameras, images and masks come from one crop")
        views.append((cam, rgb, mask))
    return views


def _renderer():
    from ..geometry.render import get_renderer

    return get_renderer()


def _render_inputs(mesh: MeshData, views, options: TextureOptions
                   ) -> tuple[TexelGrid, list[ViewInput]]:
    r = _renderer()
    faces = r.rasterize_uv_faces(mesh, options.size)
    grid = TexelGrid(options.size, *texel_surface(mesh, faces))
    inputs = []
    uv_inverse = uv_texel_inverse(mesh, options.size) if options.mip_filter and views else None
    for cam, rgb, mask in views:
        lin = image_to_linear(rgb)
        m = erode_mask(mask, options.mask_erode_px)
        depth = np.asarray(r.depth(mesh, cam), np.float32)
        inputs.append(ViewInput(
            cam.label, cam, lin, m, depth,
            edge=edge_band(depth, m, options.edge_px, options.depth_edge),
            feather=edge_feather(depth, m, options.edge_px, options.depth_edge,
                                 options.edge_feather_px, options.edge_weight),
            face_footprint=face_footprints(mesh, cam, options.size, uv_inverse)
            if options.mip_filter else None,
            pyramid=build_pyramid(lin, m) if options.mip_filter else None))
    return grid, inputs


# ---------------------------------------------------------------- the stage


RESOURCES = Resources(cpus=1, memory_mb=2048)
#: Threads of the KD-tree fill: the CPUs the stage declares (the numba passes are serial).
THREADS = max(1, int(RESOURCES.cpus))


@stage(NAME, "8", TextureOptions, RESOURCES, reads=("material",))
def texture(state: AssetState, options: TextureOptions) -> StageResult:
    """Bake the photos into ``texture/base_color`` over the mesh's UV atlas; with ``pbr``, also
    ``texture/orm`` and the ``materials`` table (one material per part)."""
    if state.metrics.get("bake_source_look"):
        # the imported mesh's own materials were baked into the atlas: they win over photos
        return StageResult(metrics={"texture_source": "mesh materials",
                                    "texture_size": int(options.size)})
    mesh = load_mesh(state, "mesh")
    if mesh.uv is None:
        raise ProcessingError("the mesh artifact 'mesh' has no UVs to texture",
                              "run the uv stage before texture")
    views = read_views(state)
    grid, inputs = _render_inputs(mesh, views, options)
    if len(grid.index) == 0:
        raise ProcessingError("the UV atlas covers no texel (all UVs outside 0-1 or degenerate)",
                              "re-run the uv stage; check the mesh has non-degenerate faces")
    stats = BlendStats([])
    hull = state.metrics.get("generate_method") == "visual_hull"
    light = (estimate_light(grid, inputs, options.depth_tolerance)
             if options.delight and len(inputs) > 1 and (options.delight_hulls or not hull)
             else None)
    if inputs:
        colour, observed, filled, stats = texture_colours_stats(grid, inputs, options, THREADS,
                                                                light)
    else:
        observed = np.zeros(len(grid.index), bool)
        filled = np.ones(len(grid.index), bool)
        if mesh.vertex_colors is not None:
            colour = vertex_colour_texels(mesh, grid)
        else:
            colour = np.tile(srgb_to_linear(np.asarray(NEUTRAL_GREY)), (len(grid.index), 1))
    parts = np.asarray(mesh.face_labels, np.int64)[grid.faces]
    if options.flatten_shading and observed.any():
        colour = flatten_shading(grid.positions, colour, parts, options.flatten_cells,
                                 threads=THREADS)
    margin = margin_texels(options.size)
    artifacts = {"texture/base_color": save_image(state, compose_texture(grid, colour, margin))}
    n = len(grid.index)
    metrics: dict = {
        "texture_observed_frac": float(observed.sum() / n),
        "texture_filled_frac": float(filled.sum() / n),
        "texture_edge_only_frac": float(stats.edge_only / n),
        "texture_mip_level_mean": float(stats.mean_level),
        "texture_size": int(options.size),
        "texture_views_used": len(stats.used),
        "texture_flattened": bool(options.flatten_shading),
        "texture_delit": light is not None,
        "texture_delight_skipped_hull": bool(options.delight and hull
                                             and not options.delight_hulls),
    }
    if light is not None:
        artifacts["lighting"] = save_json(state, light.to_dict())
        metrics.update(texture_light_ambient=round(light.ambient, 3),
                       texture_light_direction=",".join(f"{x:.3f}" for x in light.direction),
                       texture_light_explained=round(light.explained, 3))
    if options.pbr:
        by_part = mats.part_colour_stats(colour, mesh.face_labels, grid.faces, observed)
        table = mats.assign_stats(by_part, state.spec.material, mats.asset_name(state.sku))
        ao = read_ao(state, grid)
        orm = compose_values(grid, orm_texels(parts, table, ao), margin)
        artifacts["texture/orm"] = save_image(state, to_uint8(orm))
        artifacts["materials"] = save_json(state, table)
        names = sorted({row["material"] for row in table["parts"].values()})
        metrics.update(texture_parts=len(table["parts"]), texture_materials=",".join(names),
                       texture_has_ao=ao is not None)
    log.info("%s %s: %d views -> %d used, %dx%d texels, observed %.1f%%, filled %.1f%%, "
             "mip level %.2f, materials %s", state.sku, NAME, len(inputs), len(stats.used),
             options.size, options.size, 100.0 * observed.sum() / n, 100.0 * filled.sum() / n,
             stats.mean_level, metrics.get("texture_materials", "-"))
    return StageResult(artifacts=artifacts, metrics=metrics)
