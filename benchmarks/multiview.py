"""Benchmark: photos as merchants shoot them -> shapes, textures and cameras against the truth.

The rendered real products of ``../shared/data/renders`` (1, 4 and 8 labelled views, 512 px,
elevation 15, fov 30) go through the factory (``ar`` recipe without bake and export; 512 px
atlas and texture, to keep a full run within hours on two shared cores) twice: as a merchant's catalog would give them (view labels only: no elevation,
distance or field of view) and with the exact cameras (``@azimuth,elevation``,
``camera_distance``, ``fov_deg``). Each asset is scored against the original model
(``../shared/data/models``, normalised as ``cameras.json`` says):

* volumetric IoU (solid voxels at 128^3: surface voxels plus the inside; for the originals,
  which have gaps, openings and overlapping parts, also each part's voxel centres inside it by
  a vote of seven rays)
  and Chamfer distance (mean of both directions, 20k surface samples each, in % of the largest
  extent), after normalising the asset the same way as the truth (bounding-box centre at the
  origin, largest extent 1; orientation as the factory made it);
* silhouette IoU and masked PSNR / SSIM (inside both silhouettes; the asset rendered unlit with
  its texture, as the metrics stage does, and lit like the photos, its texture as albedo) at the
  input views (the photos, exact cameras) and at four held-out views
  (azimuths 22.5 + 90k at elevations 30 / 5, fov 30) rendered from the original model with the
  photos' conventions (textures through the model's UVs, vertex colours, a light from
  (-0.25, 0.35, 1) in camera space, ambient 0.3, diffuse 0.7, linear light, 2x supersampled);
* where the image error lies (``error_breakdown``, registered asset): PSNR and share of the
  squared error of the pixels within 3 px of either outline, and of the others whose surface
  point an input photo sees or no photo sees (the fill);
* the cameras the factory used (elevation, field of view, distance) against the true ones;
* the factory's own input-view silhouette IoU (``metrics_iou_mean``) and the generate time.

Own shoots (``--rigs``): the same models re-rendered with the project's renderer on other rigs
(elevation 0-35 degrees, fov 20-50, framings, a hand-held shoot with per-view jitter and
off-centre photos, a shoot whose photos differ in exposure and white balance), through the same
scoring.

    .venv/bin/python benchmarks/multiview.py --tag new                 # all models, 1/4/8
    .venv/bin/python benchmarks/multiview.py --tag new --rigs          # own shoots
    .venv/bin/python benchmarks/multiview.py --quick --tag try         # 4 models, 4/8 views
    .venv/bin/python benchmarks/multiview.py --table base new          # tables side by side

Writes ``benchmarks/out/multiview_<tag>.json`` (one row per asset) and prints the tables. The
original's solid voxels and held-out renders are kept under ``benchmarks/out/multiview_truth_v2``
(made once per model), so a run split into parts (``--models`` subsets, one view count each,
each part well under ten minutes) renders them once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
OUT = REPO / "benchmarks" / "out"
HELD_OUT = ((22.5, 30.0), (112.5, 5.0), (202.5, 30.0), (292.5, 5.0))
QUICK = ("basemesh_coffee_cup", "basemesh_dining_chair_01", "kenney_blaster", "odedstein_boot")
LIGHT = (-0.25, 0.35, 1.0)
AMBIENT, DIFFUSE = 0.3, 0.7
VOXELS = 128
TEXTURE_PX = 512
#: Texture options on top of the profile's (``--texture '{"delight": true}'``).
TEXTURE_OPTIONS: dict = {}
#: Named texture variants made on one shape (``--texture-variants``): {name: options}.
TEXTURE_VARIANTS: dict = {}
#: Stop after this stage (``--shape-only [STAGE]``, generate unless named): shape and
#: silhouette scores, no texture.
SHAPE_ONLY: list = []
#: ``--hull-bound`` with ``--bound-extra``: more views (azimuth, elevation), rendered from the
#: original model, added to the photos for the ``ideal_plus`` hull (what another photo would give).
BOUND_EXTRA: list = []
#: ``--hull-bound`` with ``--bound-held-only``: the ideal hull's scores only (no other hulls).
BOUND_HELD_ONLY: list = []
#: Silhouette backend options on top of the profile's (``--generate '{"photo_carve": true}'``).
GENERATE_OPTIONS: dict = {}


@dataclass(frozen=True)
class Rig:
    """An own test shoot: elevation, lens, framing and hand-held jitter."""

    name: str
    elevation: float
    fov: float
    framing: float = 1.08          # the bounding sphere fills 1/framing of the frame height
    jitter_el: float = 0.0         # per-view elevation jitter (uniform +-, degrees)
    jitter_az: float = 0.0         # per-view azimuth jitter
    shift_px: float = 0.0          # per-view off-centre framing (principal point shift, px)
    exposure: float = 0.0          # per-view exposure (+-, stops) and white balance (+-/2 per
    #                                channel): automatic camera settings, a light that moved


RIGS = (
    Rig("el0-fov50", 0.0, 50.0),
    Rig("el30-fov20", 30.0, 20.0),
    Rig("el35-fov40-tight", 35.0, 40.0, framing=1.0),
    Rig("handheld-el20-fov35", 20.0, 35.0, jitter_el=4.0, jitter_az=6.0, shift_px=25.0),
    Rig("exposure-el20-fov35", 20.0, 35.0, exposure=0.5),
)
VIEW_SETS = {1: ("front",), 4: ("front", "right", "back", "left"),
             8: ("front", "front_right", "right", "back_right", "back", "back_left", "left",
                 "front_left")}
AZ = {"front": 0.0, "front_right": 45.0, "right": 90.0, "back_right": 135.0, "back": 180.0,
      "back_left": 225.0, "left": 270.0, "front_left": 315.0}


# ------------------------------------------------------------------------ the original model

@dataclass
class Prim:
    mesh: object            # MeshData: normalised vertices, normals, sRGB vertex colours, uv
    texture: np.ndarray | None


def model_file(path: Path) -> Path:
    if path.is_dir():
        return next(p for p in sorted(path.iterdir())
                    if p.suffix.lower() in (".glb", ".gltf", ".obj"))
    return path


def _lin(x):
    x = np.asarray(x, np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _srgb(x):
    x = np.clip(np.asarray(x, np.float64), 0, 1)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def load_truth(path: Path, norm: dict) -> list[Prim]:
    """The model's primitives in the normalised frame, with their base colours (glTF: vertex
    colours and factors linear, textures sRGB)."""
    import trimesh

    from assetfactory.core.mesh import MeshData

    scene = trimesh.load(model_file(path), force="scene")
    R = np.asarray(norm.get("rotation", np.eye(3)), float)
    c, k = np.asarray(norm["centre"], float), float(norm["scale"])
    prims = []
    for node in scene.graph.nodes_geometry:
        T, name = scene.graph[node]
        g = scene.geometry[name]
        if not isinstance(g, trimesh.Trimesh) or len(g.faces) == 0:
            continue
        v = (((np.asarray(g.vertices) @ T[:3, :3].T + T[:3, 3]) - c) * k) @ R.T
        f = np.asarray(g.faces)
        if np.linalg.det(T[:3, :3]) < 0:
            f = f[:, ::-1]
        n = np.asarray(g.vertex_normals) @ np.linalg.inv(T[:3, :3]) @ R.T
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        vis, tex, uv = g.visual, None, None
        if isinstance(vis, trimesh.visual.ColorVisuals):
            # no colour at all: the renders' default base colour, 0.8 linear
            col = (np.asarray(vis.vertex_colors, float) if vis.kind is not None
                   else np.full((len(v), 4), [231.0, 231.0, 231.0, 255.0]))
        else:
            m = vis.material
            fac = getattr(m, "baseColorFactor", None)
            fac = np.asarray(fac if fac is not None else [255] * 4, float)
            fac = fac * 255 if fac.max() <= 1.0 else fac
            col = np.full((len(v), 4), 255.0)
            vc = getattr(vis, "vertex_attributes", {}).get("color")
            if vc is not None and len(vc) == len(v):
                vc = np.asarray(vc, float)
                col = vc * 255 if vc.max() <= 1.0 else vc
            col = _srgb(col / 255.0 * fac / 255.0) * 255.0
            img = getattr(m, "baseColorTexture", None)
            img = img if img is not None else getattr(m, "image", None)
            if img is not None and vis.uv is not None:
                tex = np.asarray(img.convert("RGB"))
                uv = np.asarray(vis.uv, np.float32)
        prims.append(Prim(MeshData(v, f, uv=uv, vertex_colors=np.clip(col + 0.5, 0, 255)
                                   .astype(np.uint8), vertex_normals=n.astype(np.float32)), tex))
    return prims


def truth_mesh(prims: list[Prim]):
    from assetfactory.core.mesh import MeshData

    return MeshData.concatenate([p.mesh for p in prims])


def _big(cam, ssaa: int):
    K = cam.K.copy()
    K[:2, :2] *= ssaa
    K[:2, 2] = (K[:2, 2] + 0.5) * ssaa - 0.5
    return dataclasses.replace(cam, K=K, width=cam.width * ssaa, height=cam.height * ssaa)


def render_truth(prims: list[Prim], cam, ssaa: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, mask) of the model as the photos were shot: base colour x (ambient + diffuse
    x max(0, n.l)) in linear light, primitives composited by depth, supersampled."""
    from assetfactory.geometry.render import get_renderer

    r = get_renderer()
    big = _big(cam, ssaa)
    best = np.full((big.height, big.width), np.inf, np.float32)
    rgb = np.ones((big.height, big.width, 3))
    light = np.asarray(LIGHT) / np.linalg.norm(LIGHT)
    rot = cam.world_to_camera[:3, :3]
    for p in prims:
        m = p.mesh
        depth = r.depth(m, big)
        base = _lin(r.render(m.replace(uv=None), big, shading="unlit")[..., :3] / 255.0)
        if p.texture is not None:
            base = base * _lin(r.render(m, big, texture=p.texture, shading="unlit")[..., :3]
                               / 255.0)
        enc = np.clip(((m.vertex_normals @ rot.T) * 0.5 + 0.5) * 255 + 0.5, 0, 255)
        enc = np.concatenate([enc, np.full((len(enc), 1), 255)], 1).astype(np.uint8)
        nimg = r.render(m.replace(uv=None, vertex_colors=enc), big, shading="unlit")
        nimg = nimg[..., :3] / 255.0 * 2 - 1
        nimg /= np.maximum(np.linalg.norm(nimg, axis=2, keepdims=True), 1e-9)
        shade = AMBIENT + DIFFUSE * np.maximum(nimg @ light, 0.0)
        out = _srgb(base * shade[..., None])
        sel = depth < best
        rgb[sel], best[sel] = out[sel], depth[sel]
    h, w = cam.height, cam.width
    cov = np.isfinite(best).reshape(h, ssaa, w, ssaa).mean((1, 3))
    rgb = (rgb * 255).reshape(h, ssaa, w, ssaa, 3).mean((1, 3))
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), cov >= 0.5


# ------------------------------------------------------------------------ shape scores

def solid_voxels(mesh, vote: bool = False, lo: float = -0.55, n: int = VOXELS) -> np.ndarray:
    """(n, n, n) bool: voxels the surface passes through, plus the inside: what the outside
    cannot reach (right for closed meshes, the factory's assets, and for overlapping closed
    parts). With ``vote`` (the originals, which have gaps and openings: a guitar's sound hole
    would let the outside in), also each connected part's voxel centres that most of seven
    rays find inside it (an odd number of crossings of that part: the generalised winding
    number's majority; per part, so that overlapping parts do not cancel)."""
    import open3d as o3d
    from scipy import ndimage

    h = -2 * lo / n
    surf = np.zeros((n, n, n), bool)
    tm = _o3d_mesh(mesh.vertices, mesh.faces)
    grid = o3d.geometry.VoxelGrid.create_from_triangle_mesh_within_bounds(
        tm, h, np.full(3, lo), np.full(3, -lo))
    idx = np.array([v.grid_index for v in grid.get_voxels()], int).reshape(-1, 3)
    idx = idx[(idx >= 0).all(1) & (idx < n).all(1)]
    surf[tuple(idx.T)] = True
    labels, _ = ndimage.label(~surf)
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0],
             labels[:, :, -1]]
    border = np.unique(np.concatenate([f.ravel() for f in faces]))
    solid = ~np.isin(labels, border[border > 0])
    if not vote:
        return solid
    import trimesh

    centres = lo + h * (np.arange(n) + 0.5)
    whole = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    for part in whole.split(only_watertight=False):
        if len(part.faces) < 8:
            continue
        plo, phi = part.bounds
        sel = [np.flatnonzero((centres >= plo[i]) & (centres <= phi[i])) for i in range(3)]
        if any(len(x) == 0 for x in sel):
            continue
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(
            _o3d_mesh(np.asarray(part.vertices), np.asarray(part.faces))))
        pts = np.stack(np.meshgrid(*(centres[x] for x in sel), indexing="ij"), -1)
        occ = scene.compute_occupancy(o3d.core.Tensor(pts.reshape(-1, 3).astype(np.float32)),
                                      nsamples=7).numpy().reshape(pts.shape[:3]) > 0.5
        solid[np.ix_(*sel)] |= occ
    return solid


def _o3d_mesh(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(vertices, float)),
                                     o3d.utility.Vector3iVector(np.asarray(faces, np.int32)))


def surface_samples(mesh, count: int = 20000, seed: int = 0) -> np.ndarray:
    v, f = mesh.vertices, mesh.faces
    t = v[f]
    area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(f), count, p=area / area.sum())
    a, b = rng.random((2, count, 1))
    flip = (a + b) > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    tri = t[pick]
    return tri[:, 0] + a * (tri[:, 1] - tri[:, 0]) + b * (tri[:, 2] - tri[:, 0])


def shape_scores(pred, truth_solid: np.ndarray, truth_pts: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    solid = solid_voxels(pred)
    iou = float((solid & truth_solid).sum() / max((solid | truth_solid).sum(), 1))
    p = surface_samples(pred)
    d1 = cKDTree(truth_pts).query(p)[0]
    d2 = cKDTree(p).query(truth_pts)[0]
    return {"vol_iou": iou, "chamfer_pct": float(50.0 * (d1.mean() + d2.mean()))}


def normalised(mesh):
    """Bounding-box centre at the origin, largest extent 1 (the truth's normalisation)."""
    lo, hi = mesh.bounds()
    return mesh.replace(vertices=(mesh.vertices - (lo + hi) / 2) / float((hi - lo).max()))


# ------------------------------------------------------------------------ image scores

def image_scores(mesh, texture, views) -> dict:
    """Mean silhouette IoU, and PSNR/SSIM inside both silhouettes, over (camera, rgb, mask):
    the asset rendered unlit (its texture as the photos' colours, what the metrics stage does)
    and lit like the photos (its texture as albedo)."""
    from assetfactory.geometry.render import get_renderer
    from assetfactory.tasks.metrics import masked_psnr, masked_ssim, silhouette_iou

    r = get_renderer()
    lit_asset = [Prim(with_normals(mesh), texture)] if texture is not None else None
    out: dict[str, list] = {k: [] for k in ("sil_iou", "psnr", "ssim", "psnr_lit", "ssim_lit")}
    for cam, rgb, mask in views:
        render = r.render(mesh, cam, texture=texture, shading="unlit", ssaa=2)
        both = mask & (render[..., 3] >= 128)
        out["sil_iou"].append(silhouette_iou(render[..., 3] >= 128, mask))
        if texture is not None and both.any():
            out["psnr"].append(masked_psnr(render, rgb, both))
            out["ssim"].append(masked_ssim(render, rgb, both))
            lit, _ = render_truth(lit_asset, cam)
            out["psnr_lit"].append(masked_psnr(lit, rgb, both))
            out["ssim_lit"].append(masked_ssim(lit, rgb, both))
    return {k: (float(np.mean(v)) if v else None) for k, v in out.items()}


EDGE_PX = 3          # the silhouette band of ``error_breakdown``
SEEN_TOLERANCE = 0.01


def unproject(cam, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) world points of the finite ``depth`` pixels (view-axis depth), and their flat
    pixel indices."""
    idx = np.flatnonzero(np.isfinite(depth.reshape(-1)))
    v, u = np.divmod(idx, depth.shape[1])
    z = depth.reshape(-1)[idx].astype(np.float64)
    K = cam.K
    yc = -(v - K[1, 2]) * z / K[1, 1]
    xc = (u - K[0, 2] - K[0, 1] * (-yc) / z) * z / K[0, 0]
    pc = np.stack([xc, yc, -z, np.ones_like(z)], 1)
    return (pc @ np.linalg.inv(cam.world_to_camera).T)[:, :3], idx


def error_breakdown(mesh, texture, views, inputs) -> dict:
    """Where the squared error at ``views`` lies, on the asset rendered unlit: pixels within
    ``EDGE_PX`` of either silhouette's outline (**edge**: placement and shape), and inside
    both silhouettes away from them, split into surface points some input photo sees
    (**seen**: the blend, the photos' lighting, the shape between the photos) and points no
    photo sees (**unseen**: the fill). Seen = the asset's surface point at the pixel projects
    inside an input photo's mask (eroded 2 px) and is not hidden there by the asset itself
    (depth within 1 %), with the ``inputs``' cameras (the true ones: the asset must be
    registered). Returns the pixel fraction of each class among the pixels inside both
    silhouettes, its PSNR, and its share of the summed squared error."""
    import cv2

    from assetfactory.geometry.render import get_renderer
    from assetfactory.geometry.texture_sampling import sample_nearest

    r = get_renderer()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_PX + 1, 2 * EDGE_PX + 1))
    k5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    in_depth = [(cam, r.depth(mesh, cam),
                 cv2.erode(mask.astype(np.uint8), k5, borderValue=0).astype(bool))
                for cam, _, mask in inputs]
    se = {c: 0.0 for c in ("edge", "seen", "unseen")}
    px = {c: 0 for c in se}
    for cam, rgb, mask in views:
        render = r.render(mesh, cam, texture=texture, shading="unlit", ssaa=2)
        amask = render[..., 3] >= 128
        both = mask & amask
        if not both.any():
            continue
        band = np.zeros(mask.shape, bool)
        for m in (mask, amask):
            m8 = m.astype(np.uint8)
            band |= cv2.dilate(m8, k).astype(bool) & ~cv2.erode(m8, k, borderValue=0).astype(bool)
        depth = r.depth(mesh, cam)
        pts, idx = unproject(cam, depth)
        seen = np.zeros(mask.size, bool)
        for icam, idepth, imask in in_depth:
            pix, z = icam.project(pts)
            h, w = idepth.shape
            ok = (z > 0) & (pix[:, 0] > -0.5) & (pix[:, 0] < w - 0.5) & \
                (pix[:, 1] > -0.5) & (pix[:, 1] < h - 0.5)
            d = np.full(len(pts), np.inf)
            inm = np.zeros(len(pts), bool)
            d[ok] = sample_nearest(idepth, pix[ok])
            inm[ok] = sample_nearest(imask, pix[ok]).astype(bool)
            vis = inm & np.isfinite(d) & (np.abs(z - d) <= SEEN_TOLERANCE * np.abs(d))
            seen[idx[vis]] = True
        seen = seen.reshape(mask.shape)
        err = ((render[..., :3].astype(np.float64) - rgb[..., :3].astype(np.float64)) ** 2
               ).sum(2)
        classes = {"edge": both & band, "seen": both & ~band & seen,
                   "unseen": both & ~band & ~seen}
        for c, sel in classes.items():
            se[c] += float(err[sel].sum())
            px[c] += int(sel.sum())
    total_px, total_se = sum(px.values()), sum(se.values())
    out: dict = {}
    for c, err_sum in se.items():
        out[f"{c}_frac"] = px[c] / total_px if total_px else None
        out[f"{c}_share"] = err_sum / total_se if total_se else None
        mse = err_sum / (3 * px[c]) if px[c] else None
        out[f"psnr_{c}"] = (None if mse is None else
                            99.0 if mse <= 1e-10 else float(10 * np.log10(255.0 ** 2 / mse)))
    return out


def with_normals(mesh):
    """The mesh with smooth vertex normals (area-weighted), for lit renders, and white vertex
    colours (the texture carries the colour)."""
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    white = np.full((mesh.n_vertices, 4), 255, np.uint8)
    return mesh.replace(vertex_normals=np.asarray(tm.vertex_normals, np.float32),
                        vertex_colors=white)


# ------------------------------------------------------------------------ shoots

def load_png(path: Path, mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


def camera_of(entry: dict, size: int):
    from assetfactory.core.camera import Camera

    return Camera(entry["label"], np.asarray(entry["K"], float),
                  np.asarray(entry["world_to_camera"], float), size, size,
                  float(entry["azimuth_deg"]), float(entry["elevation_deg"]))


def shoot_rig(prims: list[Prim], rig: Rig, n_views: int, folder: Path, norm: dict,
              radius: float, seed: int) -> Path:
    """Render an own shoot in the render-set format (view_*.png, mask_*.png, cameras.json)."""
    from PIL import Image

    from assetfactory.core.camera import orbit_camera

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    distance = rig.framing * radius / math.sin(math.radians(rig.fov) / 2)
    views = []
    for label in VIEW_SETS[n_views]:
        az = AZ[label] + rng.uniform(-rig.jitter_az, rig.jitter_az)
        el = rig.elevation + rng.uniform(-rig.jitter_el, rig.jitter_el)
        cam = orbit_camera(label, az, el, distance, rig.fov, 512)
        if rig.shift_px:
            K = cam.K.copy()
            K[:2, 2] += rng.uniform(-rig.shift_px, rig.shift_px, 2)
            cam = dataclasses.replace(cam, K=K)
        rgb, mask = render_truth(prims, cam)
        if rig.exposure:
            gain = 2.0 ** (rng.uniform(-rig.exposure, rig.exposure)
                           + rng.uniform(-rig.exposure / 2, rig.exposure / 2, 3))
            lit = _srgb(_lin(rgb / 255.0) * gain) * 255.0
            rgb = np.where(mask[..., None], np.clip(lit + 0.5, 0, 255), rgb).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"view_{label}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"mask_{label}.png")
        views.append({"label": label, "azimuth_deg": float(az), "elevation_deg": float(el),
                      "distance": float(distance), "K": cam.K.tolist(),
                      "world_to_camera": cam.world_to_camera.tolist(),
                      "image": f"view_{label}.png", "mask": f"mask_{label}.png"})
    (folder / "cameras.json").write_text(json.dumps(
        {"fov_y_deg": rig.fov, "normalisation": norm, "views": views,
         "elevation_deg": rig.elevation, "rig": dataclasses.asdict(rig)}))
    return folder


def held_out_views(prims: list[Prim], distance: float, model: str | None = None):
    """(camera, rgb, mask) of the original model at the ``HELD_OUT`` views; with ``model``,
    rendered once and kept under ``benchmarks/out/multiview_truth_v2`` (the renders depend on
    the model, the distance and the views only, so every view count, catalog and part of a
    split run reuses them)."""
    from assetfactory.core.camera import orbit_camera

    cams = [orbit_camera(f"held{az:g}", az, el, distance, 30.0, 512) for az, el in HELD_OUT]
    key = zlib.crc32(json.dumps([HELD_OUT, round(distance, 6), LIGHT, AMBIENT, DIFFUSE])
                     .encode())
    cache = OUT / "multiview_truth_v2" / f"{model}-held-{key:08x}.npz" if model else None
    if cache is not None and cache.exists():
        z = np.load(cache)
        return [(cam, z["rgb"][i], z["mask"][i]) for i, cam in enumerate(cams)]
    out = [(cam, *render_truth(prims, cam)) for cam in cams]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, rgb=np.stack([o[1] for o in out]),
                            mask=np.stack([o[2] for o in out]))
    return out


# ------------------------------------------------------------------------ the factory

def run_factory(views_dir: Path, work: Path, sku: str, labels_only: bool,
                mesh: Path | None = None) -> list[tuple[str, object, float]]:
    """The catalog row through ingest .. texture + metrics (no bake, no export); with ``mesh``,
    the original model textured from the photos (the texture's bound with the true shape).
    With ``TEXTURE_VARIANTS``, the shape is made once and textured with each variant's options
    (a before/after of the texture on the same geometry). Returns (variant, state, seconds)."""
    from assetfactory.catalog.input import read_catalog
    from assetfactory.catalog.renders import catalog_from_renders
    from assetfactory.core.types import AssetState
    from assetfactory.flows.recipe import build_recipe
    from assetfactory.flows.runner import run_asset

    path = catalog_from_renders(views_dir, work / "catalog", sku, mesh=mesh,
                                labels_only=labels_only)
    spec = read_catalog(path).specs[0]
    backend = "mesh" if mesh is not None else "silhouette"
    state = AssetState(sku=spec.sku, spec=spec, store_uri=str(work / "store"), profile="ar",
                       backend=backend)
    variants = TEXTURE_VARIANTS or {"": {}}
    out = []
    t0 = time.perf_counter()
    shape = None
    for name, extra in variants.items():
        recipe = build_recipe("ar", backend, {"texture": {"size": TEXTURE_PX, **TEXTURE_OPTIONS,
                                                          **extra},
                                              "uv": {"resolution": TEXTURE_PX},
                                              **({"generate": {"backend_options": dict(GENERATE_OPTIONS)}}
                                                 if GENERATE_OPTIONS else {})})
        calls = [c for c in recipe.calls if c.name not in ("bake", "export")]
        if SHAPE_ONLY:
            calls = calls[:[c.name for c in calls].index(SHAPE_ONLY[0]) + 1]
            state = run_asset(state, dataclasses.replace(recipe, calls=tuple(calls)))
            return [(name, state, time.perf_counter() - t0)]
        first = next(i for i, c in enumerate(calls) if c.name == "texture")
        if shape is None:
            shape = run_asset(state, dataclasses.replace(recipe, calls=tuple(calls[:first])))
            t_shape = time.perf_counter() - t0
        t1 = time.perf_counter()
        done = (run_asset(shape, dataclasses.replace(recipe, calls=tuple(calls[first:])))
                if shape.ok else shape)
        out.append((name, done, t_shape + time.perf_counter() - t1))
    return out


def model_source(model: str) -> Path:
    """The original model's file (or folder, for a glTF with its buffers)."""
    cams = json.loads((DATA / "renders" / model / "4views" / "cameras.json").read_text())
    path = DATA / cams["model"]
    return path


def camera_estimates(state) -> dict:
    """What the factory ended up using: elevation, vertical fov, distance / largest extent."""
    from assetfactory.core.artifacts import load_cameras, load_mesh

    m = state.metrics
    out = {k: m.get(f"generate_camera_{k}") for k in ("elevation_deg", "fov_deg", "distance",
                                                      "consistency", "seconds")}
    if out["elevation_deg"] is None and "cameras" in state.artifacts:
        cams = load_cameras(state)
        mesh = load_mesh(state, "mesh")
        ext = float((mesh.bounds()[1] - mesh.bounds()[0]).max())
        c0 = cams[0]
        out["elevation_deg"] = float(np.mean([c.elevation_deg for c in cams]))
        fy = c0.K[1, 1]
        # ingest crops; the vertical fov of the original photo is not recoverable here
        out["fov_deg"] = None
        lo, hi = mesh.bounds()
        out["distance"] = float(np.linalg.norm(c0.position - (lo + hi) / 2) / ext)
        del fy
    return out


def registered(mesh, factory_cameras, true_cameras):
    """``mesh`` moved from the factory's frame into the truth's by the similarity that maps the
    factory's camera centres onto the true ones (matched by label; least squares, Umeyama).

    Why: the factory's frame is its own (ingest's assumed distance, the fitted lens), so the
    asset has to be brought into the truth's frame to be scored. Normalising its bounding box
    the way the truth was normalised (``normalised``) misplaces it wherever the shape's box
    differs from the truth's (a visual hull is larger than the product), and a few pixels'
    misplacement at the photos' high-contrast edges costs several dB of PSNR at every view;
    the cameras are what ties the asset to the photos. None with fewer than 3 matches."""
    true = {c.label: c.position for c in true_cameras}
    pairs = [(c.position, true[c.label]) for c in factory_cameras if c.label in true]
    if len(pairs) < 3:
        return None
    A = np.array([a for a, _ in pairs], float)
    B = np.array([b for _, b in pairs], float)
    ma, mb = A.mean(0), B.mean(0)
    a, b = A - ma, B - mb
    U, S, Vt = np.linalg.svd(b.T @ a)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    k = float((S * np.diag(D)).sum() / max((a ** 2).sum(), 1e-12))
    return mesh.replace(vertices=k * (mesh.vertices - ma) @ R.T + mb)


def refine_registration(mesh, inputs, px: int = 96, evals: int = 60):
    """``mesh`` moved (translation and uniform scale about its centre) so that its silhouettes
    at the input views match the photos' masks best (Nelder-Mead on the mean IoU at ``px``).

    Why: neither the cameras (estimated lens and centre shifts) nor the bounding box pin the
    asset exactly where the photos see it, and at the photos' high-contrast edges a pixel or
    two of misplacement costs several dB. The photos' masks decide, not the truth's shape."""
    import cv2
    from scipy.optimize import minimize

    from assetfactory.geometry.render import get_renderer

    r = get_renderer()
    small = [(cam.cropped(0, 0, cam.width, px),
              cv2.resize(mask.astype(np.float32), (px, px), interpolation=cv2.INTER_AREA) >= 0.5)
             for cam, _, mask in inputs]
    lo, hi = mesh.bounds()
    c = (lo + hi) / 2
    ext = float((hi - lo).max())

    def moved(x):
        return mesh.replace(vertices=c + np.exp(x[3]) * (mesh.vertices - c) + x[:3] * ext)

    def cost(x):
        m = moved(x)
        ious = []
        for cam, mask in small:
            pred = r.mask(m, cam)
            union = (pred | mask).sum()
            ious.append((pred & mask).sum() / union if union else 0.0)
        return 1.0 - float(np.mean(ious))

    x0 = np.zeros(4)
    simplex = np.vstack([x0] + [x0 + 0.01 * np.eye(4)[i] for i in range(4)])
    res = minimize(cost, x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "maxfev": evals, "xatol": 1e-4,
                            "fatol": 1e-5})
    return moved(res.x) if res.fun < cost(x0) else mesh


def keep_asset(folder: Path, mesh, texture, reg=None) -> None:
    """The scored asset (normalised mesh, base colour; the camera-registered vertices) for
    ``--rescore``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "mesh.npz", vertices=mesh.vertices, faces=mesh.faces,
                        uv=mesh.uv if mesh.uv is not None else np.zeros((0, 2)),
                        reg_vertices=reg.vertices if reg is not None else np.zeros((0, 3)))
    if texture is not None:
        Image.fromarray(texture[..., :3]).save(folder / "base_color.png")


def load_asset(folder: Path):
    from assetfactory.core.mesh import MeshData

    z = np.load(folder / "mesh.npz")
    uv = z["uv"] if len(z["uv"]) else None
    tex = load_png(folder / "base_color.png") if (folder / "base_color.png").exists() else None
    mesh = MeshData(z["vertices"], z["faces"], uv=uv)
    reg = z["reg_vertices"] if "reg_vertices" in z and len(z["reg_vertices"]) else None
    return mesh, tex, (mesh.replace(vertices=reg) if reg is not None else None)


def asset_scores(mesh, tex, truth: dict, inputs, held, reg=None) -> dict:
    """Shape scores on the normalised asset; image scores on it (``in_*``, ``held_*``) and on
    the camera-registered one (``in_reg_*``, ``held_reg_*``; see ``registered`` and
    ``best_registered``)."""
    row = {"tris": mesh.n_faces, **shape_scores(mesh, truth["solid"], truth["points"])}
    row.update({f"in_{k}": v for k, v in image_scores(mesh, tex, inputs).items()})
    row.update({f"held_{k}": v for k, v in image_scores(mesh, tex, held).items()})
    row.update(registered_scores(mesh, tex, inputs, held, reg))
    return row


def registered_scores(mesh, tex, inputs, held, reg=None) -> dict:
    """Image scores of the asset registered to the photos (``in_reg_*``, ``held_reg_*``): from
    the camera registration (``registered``) or the normalised asset, whichever reproduces the
    input silhouettes better, refined by ``refine_registration``."""
    start, how = mesh, "box"
    if reg is not None:
        a, b = image_scores(reg, None, inputs)["sil_iou"], image_scores(mesh, None, inputs)[
            "sil_iou"]
        if (a or 0) > (b or 0):
            start, how = reg, "cameras"
    best = refine_registration(start, inputs)
    row: dict = {"registration": how + ("+refined" if best is not start else "")}
    row.update({f"in_reg_{k}": v for k, v in image_scores(best, tex, inputs).items()})
    row.update({f"held_reg_{k}": v for k, v in image_scores(best, tex, held).items()})
    if tex is not None:
        row.update({f"held_reg_{k}": v
                    for k, v in error_breakdown(best, tex, held, inputs).items()})
        row.update({f"in_reg_{k}": v
                    for k, v in error_breakdown(best, tex, inputs, inputs).items()})
    return row


def best_registered(row: dict) -> dict:
    """The row's image scores at the better placement (``best_*``): registered by the cameras
    (``*_reg_*``) where that reproduces the photos' silhouettes at the input views better than
    the bounding-box normalisation, else the normalised asset's (estimated cameras' centres do
    not pin the image placement exactly: a fitted lens, per-view centre shifts). The photos
    decide, not the truth's shape."""
    cams = row.get("in_reg_sil_iou")
    use = cams is not None and cams > (row.get("in_sil_iou") or 0.0)
    out = {"registration": (row.get("registration") or "cameras") if use else "box"}
    for part in ("in", "held"):
        for k in ("sil_iou", "psnr", "ssim", "psnr_lit", "ssim_lit"):
            out[f"{part}_best_{k}"] = row.get(f"{part}_reg_{k}" if use else f"{part}_{k}")
    return out


def score_asset(state, truth: dict, inputs, held, keep: Path | None = None) -> dict:
    from assetfactory.core.artifacts import load_cameras, load_image, load_mesh

    if not state.ok:
        f = state.failure
        return {"status": "failed", "stage": f.stage, "error": f.message[:300]}
    raw = load_mesh(state, "mesh" if "mesh" in state.artifacts else "dense_mesh")
    mesh = normalised(raw)
    reg = (registered(raw, load_cameras(state), [c for c, _, _ in inputs])
           if "cameras" in state.artifacts else None)
    tex = load_image(state, "texture/base_color") if "texture/base_color" in state.artifacts \
        else None
    if keep is not None:
        keep_asset(keep, mesh, tex, reg)
    row = {"status": "ok", "watertight": state.metrics.get("metrics_watertight"),
           **asset_scores(mesh, tex, truth, inputs, held, reg)}
    row["factory_iou"] = state.metrics.get("metrics_iou_mean")
    row["factory_psnr"] = state.metrics.get("metrics_psnr_mean")
    row.update({f"cam_{k}": v for k, v in camera_estimates(state).items()})
    row["generate_s"] = next((r.duration_s for r in state.records if r.stage == "generate"),
                             None)
    row["stage_s"] = {r.stage: round(r.duration_s, 2) for r in state.records}
    row.update({k: v for k, v in state.metrics.items()
                if k.startswith(("texture_light", "texture_delit", "generate_camera_",
                                 "generate_ground", "generate_carve", "generate_vote",
                                 "generate_components"))})
    row["cam_views"] = view_cameras(state, [c for c, _, _ in inputs])
    return row


def view_cameras(state, true_cameras) -> dict:
    """Per view: the camera the factory used (azimuth, elevation, in the truth's frame up to the
    turn the fit leaves free) against the true one, and the fit's silhouette agreement."""
    from assetfactory.core.artifacts import load_cameras, load_json

    if "cameras" not in state.artifacts:
        return {}
    report = (load_json(state, "generate_report") or {}).get("camera_fit", {}) \
        if "generate_report" in state.artifacts else {}
    ious = report.get("view_iou") or {}
    true = {c.label: c for c in true_cameras}
    out = {}
    for c in load_cameras(state):
        t = true.get(c.label)
        out[c.label] = {"az": round(c.azimuth_deg, 2), "el": round(c.elevation_deg, 2),
                        "true_az": None if t is None else round(t.azimuth_deg, 2),
                        "true_el": None if t is None else round(t.elevation_deg, 2),
                        "fit_iou": None if c.label not in ious else round(ious[c.label], 3)}
    return out


def truth_of(model: str, cams: dict) -> tuple[list[Prim], dict]:
    prims = load_truth(DATA / cams["model"], cams["normalisation"])
    mesh = truth_mesh(prims)
    cache = OUT / "multiview_truth_v2" / f"{model}.npz"
    if cache.exists():
        solid = np.load(cache)["solid"]
    else:
        solid = solid_voxels(mesh, vote=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, solid=solid)
    return prims, {"solid": solid, "points": surface_samples(mesh, seed=1),
                   "radius": float(np.linalg.norm(mesh.vertices, axis=1).max())}


def input_views(views_dir: Path):
    cams = json.loads((views_dir / "cameras.json").read_text())
    entries = cams.get("views") or cams["cameras"]
    inputs = []
    for e in entries:
        cam = camera_of(e, 512)
        inputs.append((cam, load_png(views_dir / e.get("image", f"view_{e['label']}.png")),
                       load_png(views_dir / e.get("mask", f"mask_{e['label']}.png"), "L") > 127))
    return cams, entries, inputs


def case_dir(tag: str, model: str, rig: str, n_views: int, mode: str) -> Path:
    return OUT / f"multiview_{tag}_assets" / f"{model}-{rig}-{n_views}-{mode}"


def run_case(model: str, views_dir: Path, prims, truth, held, n_views: int, rig: str,
             modes: tuple[str, ...], tmp: Path, tag: str) -> list[dict]:
    cams, entries, inputs = input_views(views_dir)
    if rig != "shared":  # keep the own shoot's inputs for --rescore
        shutil.copytree(views_dir, case_dir(tag, model, rig, n_views, "inputs"),
                        dirs_exist_ok=True)
    true_el = float(np.mean([e["elevation_deg"] for e in entries]))
    rows = []
    for mode in modes:
        work = tmp / f"{model}-{rig}-{n_views}-{mode}"
        sku = f"{model.lower().replace('_', '-')}-{n_views}"
        made = run_factory(views_dir, work, sku, labels_only=(mode == "labels"),
                           mesh=model_source(model) if mode == "mesh" else None)
        for variant, state, wall in made:
            name = f"{mode}-{variant}" if variant else mode
            row = {"model": model, "rig": rig, "views": n_views, "mode": mode,
                   "texture_variant": variant, "wall_s": wall,
                   "true_elevation_deg": true_el, "true_fov_deg": cams["fov_y_deg"],
                   "true_distance": float(entries[0]["distance"]),
                   **score_asset(state, truth, inputs, held,
                                 keep=case_dir(tag, model, rig, n_views, name))}
            rows.append(row)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                              for k, v in row.items()}), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------ the hull's bound

def hull_bound(model: str, n_views: int, truth: dict, prims, resolution: int = 256) -> dict:
    """Where a visual hull loses volume with the exact cameras (``--hull-bound``), scored as the
    assets are (normalised, solid voxels at 128^3):

    * ``ideal``: the true silhouettes (the renders' masks) carved at ``resolution`` by the
      factory's own carving (``models.silhouette.visual_hull``, ground cut on): the bound of
      any silhouette-only shape; ``ideal_128`` the same at the factory's 128 voxels, and
      ``ideal_nocut`` at 128 without the ground cut (the pure hull);
    * ``photo_masks``: the masks the factory derives from the photos (``object_mask``, as
      ingest runs it on photos without alpha) at 128 voxels: the factory's hull before
      cleanup and simplification;
    * in the truth's own frame (no renormalisation, ``raw``): the truth's voxels the ideal hull
      misses, its phantom voxels, and the phantoms some camera sees (its ray to the voxel's
      centre meets no surface of the original first): a perfect photo-consistency carving
      could remove those, the others only a prior; ``photo_bound_raw`` is the IoU with every
      seen phantom carved (the bound of any method that uses these photos and no prior), and
      ``photo_bound2_raw`` with those seen by two photos or more carved (what comparing the
      photos can check: a point one photo sees has nothing to disagree with)."""
    import open3d as o3d

    from assetfactory.algorithms.masking import object_mask
    from assetfactory.models.silhouette import SilhouetteConfig, visual_hull

    _, entries, inputs = input_views(DATA / "renders" / model / f"{n_views}views")
    cameras = [c for c, _, _ in inputs]
    true_masks = [m for _, _, m in inputs]
    T = truth["solid"]
    row: dict = {"model": model, "views": n_views, "resolution": resolution}
    if BOUND_EXTRA:
        from assetfactory.core.camera import orbit_camera

        extra = [orbit_camera(f"extra{az:g},{el:g}", az, el, float(entries[0]["distance"]),
                              30.0, 512) for az, el in BOUND_EXTRA]
        masks = true_masks + [render_truth(prims, cam)[1] for cam in extra]
        plus, _ = visual_hull(cameras + extra, masks, SilhouetteConfig(resolution=128))
        row["extra"] = [list(x) for x in BOUND_EXTRA]
        row["ideal_plus_128"] = float((solid_voxels(normalised(plus)) & T).sum()
                                      / max((solid_voxels(normalised(plus)) | T).sum(), 1))
        row["ideal_plus_raw_128"] = float((solid_voxels(plus) & T).sum()
                                          / max((solid_voxels(plus) | T).sum(), 1))

    def carve(masks, res, cut=True):
        t0 = time.perf_counter()
        mesh, _ = visual_hull(cameras, masks, SilhouetteConfig(resolution=res, ground_cut=cut))
        return mesh, time.perf_counter() - t0

    def iou(a, b):
        return float((a & b).sum() / max((a | b).sum(), 1))

    ideal, row["ideal_s"] = carve(true_masks, resolution)
    row["ideal"] = iou(solid_voxels(normalised(ideal)), T)
    # in the truth's frame, as the exact cameras place it: silhouettes at the held-out views
    held = held_out_views(prims, float(entries[0]["distance"]), model)
    row["ideal_held_sil"] = image_scores(ideal, None, held)["sil_iou"]
    if BOUND_HELD_ONLY:
        return row
    row["ideal_128"] = iou(solid_voxels(normalised(carve(true_masks, 128)[0])), T)
    row["ideal_nocut"] = iou(solid_voxels(normalised(carve(true_masks, 128, False)[0])), T)
    photo = [object_mask(rgb, None)[0] for _, rgb, _ in inputs]
    row["photo_masks"] = iou(solid_voxels(normalised(carve(photo, 128)[0])), T)
    H = solid_voxels(ideal)
    lo, n = -0.55, VOXELS
    h = -2 * lo / n
    phantom = np.argwhere(H & ~T)
    pts = lo + h * (phantom + 0.5)
    tm = truth_mesh(prims)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(_o3d_mesh(tm.vertices,
                                                                          tm.faces)))
    seen = np.zeros(len(pts), np.int32)
    for cam in cameras:
        d = pts - cam.position
        dist = np.linalg.norm(d, axis=1)
        rays = np.concatenate([np.broadcast_to(cam.position, d.shape), d / dist[:, None]], 1)
        t = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
        seen += t > dist - 0.5 * h
    union, both = int((H | T).sum()), float((H & T).sum())
    row.update({"truth_voxels": int(T.sum()), "missing": int((T & ~H).sum()),
                "phantom": len(phantom), "phantom_seen": int((seen >= 1).sum()),
                "phantom_seen2": int((seen >= 2).sum()), "ideal_raw": iou(H, T),
                "photo_bound_raw": both / max(union - int((seen >= 1).sum()), 1),
                "photo_bound2_raw": both / max(union - int((seen >= 2).sum()), 1)})
    return row


def print_bound(rows: list[dict]) -> None:
    cols = ("ideal", "ideal_128", "ideal_nocut", "photo_masks", "ideal_raw", "photo_bound_raw",
            "photo_bound2_raw")
    if all("ideal_held_sil" in r and "ideal_128" not in r for r in rows):
        head = ["model", "views", "ideal", "ideal: held-out silhouette IoU (truth frame)"]
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for r in rows:
            print(f"| {r['model']} | {r['views']} | {r['ideal']:.3f} | {r['ideal_held_sil']:.3f} |")
        for nv in sorted({r["views"] for r in rows}):
            sel = [r for r in rows if r["views"] == nv]
            print(f"| **mean** | {nv} | **{np.mean([r['ideal'] for r in sel]):.3f}** | "
                  f"**{np.mean([r['ideal_held_sil'] for r in sel]):.3f}** |")
        return
    if all("ideal_plus_128" in r for r in rows):
        cols = ("ideal_128", "ideal_plus_128", "ideal_raw", "ideal_plus_raw_128")
    head = ["model", "views", *cols, "missing / truth", "phantom / truth", "phantom seen",
            "seen by 2+"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for nv in sorted({r["views"] for r in rows}):
        sel = [r for r in rows if r["views"] == nv]
        for r in sel:
            tv = max(r["truth_voxels"], 1)
            print("| " + " | ".join([r["model"], str(nv), *(f"{r[c]:.3f}" for c in cols),
                                     f"{r['missing'] / tv:.3f}", f"{r['phantom'] / tv:.3f}",
                                     f"{r['phantom_seen'] / max(r['phantom'], 1):.2f}",
                                     f"{r['phantom_seen2'] / max(r['phantom'], 1):.2f}"]) + " |")
        print("| **mean** | " + str(nv) + " | " + " | ".join(
            f"**{np.mean([r[c] for r in sel]):.3f}**" for c in cols) + " | | | | |")


# ------------------------------------------------------------------------ tables

COLS = (("vol_iou", "vol IoU", 3), ("chamfer_pct", "Chamfer %", 2), ("in_sil_iou", "sil in", 3),
        ("held_sil_iou", "sil held", 3), ("in_psnr", "PSNR in", 1), ("held_psnr", "PSNR held", 1),
        ("held_psnr_lit", "PSNR held lit", 1), ("in_ssim", "SSIM in", 3),
        ("held_ssim", "SSIM held", 3), ("in_best_sil_iou", "reg: sil in", 3),
        ("held_best_sil_iou", "reg: sil held", 3), ("in_best_psnr", "reg: PSNR in", 1),
        ("held_best_psnr", "reg: PSNR held", 1), ("held_best_psnr_lit", "reg: PSNR held lit", 1))


def _mode(row: dict) -> str:
    """The catalog mode, with the texture variant where the run made several."""
    v = row.get("texture_variant")
    return f"{row['mode']}-{v}" if v else row["mode"]


def _fmt(v, nd):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _mean(rows, key):
    vals = [r.get(key) for r in rows if r.get("status") == "ok" and r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def print_tables(tagged: dict[str, list[dict]]) -> None:
    """Mean per (tag, rig, mode, views), then per model for the first rig."""
    tagged = {t: [{**r, **best_registered(r)} for r in rows] for t, rows in tagged.items()}
    print("\n### Means\n")
    head = ["version", "shoot", "catalog", "views", "ok"] + [c[1] for c in COLS] + \
        ["el est (true)", "fov est", "dist est (true)", "gen s"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for tag, rows in tagged.items():
        keys = sorted({(r["rig"], _mode(r), r["views"]) for r in rows},
                      key=lambda k: (k[0] != "shared", k[0], k[2], not k[1].startswith("labels"),
                                     k[1]))
        for rig, mode, nv in keys:
            sel = [r for r in rows if (r["rig"], _mode(r), r["views"]) == (rig, mode, nv)]
            ok = sum(r.get("status") == "ok" for r in sel)
            cells = [tag, rig, mode, str(nv), f"{ok}/{len(sel)}"]
            cells += [_fmt(_mean(sel, k), nd) for k, _, nd in COLS]
            cells.append(f"{_fmt(_mean(sel, 'cam_elevation_deg'), 1)} "
                         f"({_fmt(_mean(sel, 'true_elevation_deg'), 1)})")
            cells.append(_fmt(_mean(sel, "cam_fov_deg"), 1))
            cells.append(f"{_fmt(_mean(sel, 'cam_distance'), 2)} "
                         f"({_fmt(_mean(sel, 'true_distance'), 2)})")
            cells.append(_fmt(_mean(sel, "generate_s"), 2))
            print("| " + " | ".join(cells) + " |")
    print("\n### Per model (shared renders)\n")
    modes = {t: sorted({_mode(r) for r in rows}, key=lambda m: (not m.startswith("labels"), m))
             for t, rows in tagged.items()}
    head = ["model", "views"] + [f"{t} {m}" for t in tagged for m in modes[t]]
    print("vol IoU / held-out silhouette IoU (bounding box) / held-out PSNR (at the better "
          "registration, `best_registered`)\n")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    models = sorted({r["model"] for rows in tagged.values() for r in rows if r["rig"] == "shared"})
    for model in models:
        for nv in (1, 4, 8):
            cells = [model, str(nv)]
            any_row = False
            for t, rows in tagged.items():
                for mode in modes[t]:
                    sel = [r for r in rows if r["model"] == model and r["views"] == nv
                           and _mode(r) == mode and r["rig"] == "shared"]
                    if not sel:
                        cells.append("")
                        continue
                    any_row = True
                    r = sel[0]
                    if r.get("status") != "ok":
                        cells.append(f"failed ({r.get('stage')})")
                    else:
                        psnr = r["held_best_psnr"]
                        cells.append(f"{_fmt(r['vol_iou'], 2)} / {_fmt(r['held_sil_iou'], 2)} / "
                                     f"{_fmt(psnr, 1)}")
            if any_row:
                print("| " + " | ".join(cells) + " |")
    print_long(tagged)
    print_views(tagged)
    print_breakdown(tagged)


BREAKDOWN = (("vol_iou", "vol IoU", 3), ("held_reg_sil_iou", "sil held", 3),
             ("factory_psnr", "factory PSNR in", 1), ("in_reg_psnr", "PSNR in", 1),
             ("in_reg_psnr_seen", "in: inside", 1), ("in_reg_psnr_edge", "in: edge", 1),
             ("held_reg_psnr", "PSNR held", 1), ("held_reg_psnr_lit", "held lit", 1),
             ("held_reg_ssim", "SSIM held", 3), ("held_reg_psnr_seen", "held: seen", 1),
             ("held_reg_psnr_unseen", "held: unseen", 1), ("held_reg_psnr_edge", "held: edge", 1),
             ("held_reg_seen_share", "held err share seen", 2),
             ("held_reg_unseen_share", "held err share unseen", 2),
             ("held_reg_edge_share", "held err share edge", 2),
             ("held_reg_unseen_frac", "held px unseen", 3))


def print_breakdown(tagged: dict[str, list[dict]]) -> None:
    """Where the image error lies (``error_breakdown``, registered asset, unlit): per asset and
    the mean per (views, catalog); only rows scored with the breakdown."""
    rows = [r for t in tagged.values() for r in t if r.get("status") == "ok"
            and r.get("held_reg_seen_share") is not None]
    if not rows:
        return
    print("\n### Where the image error lies (registered, unlit)\n")
    print("PSNR inside both silhouettes per pixel class: `edge` = within "
          f"{EDGE_PX} px of either outline, `seen` / `unseen` = the rest, whose surface point "
          "an input photo sees / no photo sees; shares of the summed squared error\n")
    head = ["model", "shoot", "views", "catalog"] + [c[1] for c in BREAKDOWN]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    keyf = (lambda r: (r["rig"] != "shared", r["rig"], r["views"],
                       not _mode(r).startswith("labels"), _mode(r), r["model"]))
    for r in sorted(rows, key=keyf):
        cells = [r["model"], r["rig"], str(r["views"]), _mode(r)]
        cells += [_fmt(r.get(k), nd) for k, _, nd in BREAKDOWN]
        print("| " + " | ".join(cells) + " |")
    groups = sorted({(r["rig"], r["views"], _mode(r)) for r in rows},
                    key=lambda g: (g[0] != "shared", g[0], g[1], not g[2].startswith("labels")))
    for rig, nv, mode in groups:
        sel = [r for r in rows if (r["rig"], r["views"], _mode(r)) == (rig, nv, mode)]
        cells = [f"**mean of {len(sel)}**", rig, str(nv), mode]
        cells += [_fmt(_mean(sel, k), nd) for k, _, nd in BREAKDOWN]
        print("| " + " | ".join(cells) + " |")


def print_views(tagged: dict[str, list[dict]]) -> None:
    """Shared renders, per model and catalog: vol IoU, registered held-out silhouette IoU and
    held-out PSNR at 1, 4 and 8 views side by side (rows of every tag pooled; the first tag
    that has a case wins), and the mean over the models that have all three."""
    rows = [r for t in tagged.values() for r in t if r["rig"] == "shared"]
    cats = sorted({_mode(r) for r in rows}, key=lambda m: (not m.startswith("labels"), m))
    print("\n### Per model at 1 / 4 / 8 views (shared renders)\n")
    print("vol IoU | held-out silhouette IoU (registered) | held-out PSNR (registered), "
          "'-' = not run\n")
    head = ["model", "catalog"] + [f"{nv} views" for nv in (1, 4, 8)]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for cat in cats:
        for model in sorted({r["model"] for r in rows}):
            cells = [model, cat]
            for nv in (1, 4, 8):
                sel = [r for r in rows if r["model"] == model and r["views"] == nv
                       and _mode(r) == cat]
                if not sel:
                    cells.append("-")
                elif sel[0].get("status") != "ok":
                    cells.append(f"failed ({sel[0].get('stage')})")
                else:
                    r = sel[0]
                    cells.append(f"{_fmt(r.get('vol_iou'), 2)} / "
                                 f"{_fmt(r.get('held_best_sil_iou'), 3)} / "
                                 f"{_fmt(r.get('held_best_psnr'), 1)}")
            if any(c != "-" for c in cells[2:]):
                print("| " + " | ".join(cells) + " |")


LONG = (("vol_iou", "vol IoU", 3), ("chamfer_pct", "Chamfer %", 2),
        ("in_best_sil_iou", "sil in", 3), ("held_best_sil_iou", "sil held", 3),
        ("held_sil_iou", "sil held (box)", 3), ("in_best_psnr", "PSNR in", 1),
        ("held_best_psnr", "PSNR held", 1), ("held_best_psnr_lit", "PSNR held lit", 1),
        ("in_best_ssim", "SSIM in", 3), ("held_best_ssim", "SSIM held", 3),
        ("cam_elevation_deg", "el est", 1), ("cam_fov_deg", "fov est", 1),
        ("cam_distance", "dist est", 2))


def print_long(tagged: dict[str, list[dict]]) -> None:
    """Every score per asset (shared renders and own shoots): one row per model, views and
    catalog; image scores at the better registration (``best_registered``)."""
    print("\n### Per model, every score\n")
    head = ["version", "shoot", "model", "views", "catalog"] + [c[1] for c in LONG] + \
        ["el / fov / dist true"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for tag, rows in tagged.items():
        for r in sorted(rows, key=lambda r: (r["rig"] != "shared", r["rig"], r["views"],
                                             r["model"], not _mode(r).startswith("labels"),
                                             _mode(r))):
            cells = [tag, r["rig"], r["model"], str(r["views"]), _mode(r)]
            if r.get("status") != "ok":
                cells += [f"failed ({r.get('stage')})"] + [""] * len(LONG)
            else:
                cells += [_fmt(r.get(k), nd) for k, _, nd in LONG]
                cells.append(f"{_fmt(r.get('true_elevation_deg'), 1)} / "
                             f"{_fmt(r.get('true_fov_deg'), 1)} / "
                             f"{_fmt(r.get('true_distance'), 2)}")
            print("| " + " | ".join(cells) + " |")


def rescore(tag: str, args_images_only: bool = False) -> None:
    path = OUT / f"multiview_{tag}.json"
    rows = json.loads(path.read_text())
    cache: dict = {}
    for row in rows:
        model = row["model"]
        folder = case_dir(tag, model, row["rig"], row["views"], _mode(row))
        if row.get("status") != "ok" or not (folder / "mesh.npz").exists():
            continue
        if args_images_only and row.get("texture_variant") not in ("", None, "old"):
            continue    # the texture variants differ by less than the registration's noise
        if model not in cache:
            cams = json.loads((DATA / "renders" / model / "4views" / "cameras.json").read_text())
            prims, truth = truth_of(model, cams)
            dist = float((cams.get("views") or cams["cameras"])[0]["distance"])
            cache = {model: (truth, held_out_views(prims, dist, model))}
        truth, held = cache[model]
        views_dir = (DATA / "renders" / model / f"{row['views']}views" if row["rig"] == "shared"
                     else case_dir(tag, model, row["rig"], row["views"], "inputs"))
        _, _, inputs = input_views(views_dir)
        mesh, tex, reg = load_asset(folder)
        if args_images_only:
            row.update(registered_scores(mesh, tex, inputs, held, reg))
        else:
            row.update(asset_scores(mesh, tex, truth, inputs, held, reg))
        print(model, row["rig"], row["views"], row["mode"], round(row["vol_iou"], 3), flush=True)
        path.write_text(json.dumps(rows, indent=1))
    print_tables({tag: rows})


# ------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", default="run", help="name of this run (output file suffix)")
    ap.add_argument("--quick", action="store_true", help="4 models, 4 and 8 views")
    ap.add_argument("--models", default="", help="comma-separated model folders")
    ap.add_argument("--views", default="4,8,1")
    ap.add_argument("--modes", default="",
                    help="labels,exact (own shoots: labels); mesh: the original model textured "
                    "from the photos (the texture's bound)")
    ap.add_argument("--rigs", action="store_true", help="own shoots instead of the shared renders")
    ap.add_argument("--rig-names", default="", help="with --rigs: only these rigs (comma-separated)")
    ap.add_argument("--table", nargs="*", help="print tables for these tags and exit")
    ap.add_argument("--texture", default="{}", help="texture options as JSON, e.g. "
                    "'{\"delight\": false}'")
    ap.add_argument("--texture-variants", default="",
                    help="texture option sets as JSON {name: options}, each made on the same "
                    "shape: a before/after of the texture stage")
    ap.add_argument("--shape-only", nargs="?", const="generate", default="", metavar="STAGE",
                    help="stop after generate (or after STAGE: cleanup, simplify): shape, "
                    "silhouette and camera scores, no texture (quick loops on the shape)")
    ap.add_argument("--generate", default="{}", help="silhouette backend options as JSON, e.g. "
                    "'{\"photo_carve\": true}'")
    ap.add_argument("--registration-only", action="store_true",
                    help="with --rescore: only the registered image scores (reg: columns)")
    ap.add_argument("--hull-bound", type=int, default=0, metavar="RES",
                    help="no factory run: the ideal visual hull (true masks, exact cameras) at "
                    "RES voxels, the hull from the photos' masks and the photo-consistency "
                    "bound, per model and view count (``hull_bound``)")
    ap.add_argument("--bound-extra", default="", metavar="AZ:EL,...",
                    help="with --hull-bound: views added to the photos (rendered from the "
                    "original) for the ideal_plus hull, e.g. 0:80 (a photo from above)")
    ap.add_argument("--bound-held-only", action="store_true",
                    help="with --hull-bound: only the ideal hull, its vol IoU and its silhouette "
                    "IoU at the held-out views")
    ap.add_argument("--rescore", action="store_true",
                    help="score the kept assets of --tag again (after a change of the scores)")
    args = ap.parse_args()
    TEXTURE_OPTIONS.update(json.loads(args.texture))
    TEXTURE_VARIANTS.update(json.loads(args.texture_variants or "{}"))
    GENERATE_OPTIONS.update(json.loads(args.generate))
    if args.shape_only:
        SHAPE_ONLY.append(args.shape_only)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        rescore(args.tag, args.registration_only)
        return
    if args.table and (OUT / f"multiview_{args.table[0]}_bound.json").exists():
        print_bound([r for t in args.table
                     for r in json.loads((OUT / f"multiview_{t}_bound.json").read_text())])
        return
    if args.table:
        tagged = {}
        for t in args.table:
            tagged[t] = json.loads((OUT / f"multiview_{t}.json").read_text())
        print_tables(tagged)
        return
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    renders = DATA / "renders"
    models = [m for m in sorted(os.listdir(renders)) if (renders / m).is_dir()]
    if args.models:
        models = args.models.split(",")
    elif args.quick or args.rigs:
        models = list(QUICK)
    views = [int(v) for v in args.views.split(",")]
    if args.quick:
        views = [v for v in views if v != 1]
    modes = tuple((args.modes or ("labels" if args.rigs else "labels,exact")).split(","))
    if args.bound_held_only:
        BOUND_HELD_ONLY.append(True)
    if args.bound_extra:
        BOUND_EXTRA.extend(tuple(float(x) for x in v.split(":"))
                           for v in args.bound_extra.split(","))
    if args.hull_bound:
        path = OUT / f"multiview_{args.tag}_bound.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        for nv in views:
            for model in models:
                if nv < 2 or any((r["model"], r["views"]) == (model, nv) for r in rows):
                    continue
                cams = json.loads((renders / model / "4views" / "cameras.json").read_text())
                prims, truth = truth_of(model, cams)
                rows.append(hull_bound(model, nv, truth, prims, args.hull_bound))
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                  for k, v in rows[-1].items()}), flush=True)
                path.write_text(json.dumps(rows, indent=1))
        print_bound(rows)
        return
    out_path = OUT / f"multiview_{args.tag}.json"
    rows: list[dict] = json.loads(out_path.read_text()) if out_path.exists() else []
    done = {(r["model"], r["rig"], r["views"], r["mode"]) for r in rows}
    tmp = Path(tempfile.mkdtemp(prefix="bench-multiview-"))
    try:
        cache: dict[str, tuple] = {}
        # every model at 4 and 8 views before any at 1: the first figures are the main ones
        for nv in views:
            for model in models:
                if not (renders / model).is_dir():
                    continue
                rigs = [r for r in RIGS if not args.rig_names
                        or r.name in args.rig_names.split(",")]
                for rig in (rigs if args.rigs else (None,)):
                    rig_name = rig.name if rig else "shared"
                    todo = tuple(m for m in modes if (model, rig_name, nv, m) not in done)
                    if not todo:
                        continue
                    if model not in cache:
                        cams = json.loads((renders / model / "4views" / "cameras.json")
                                          .read_text())
                        prims, truth = truth_of(model, cams)
                        dist = float((cams.get("views") or cams["cameras"])[0]["distance"])
                        cache = {model: (cams, prims, truth,
                                          held_out_views(prims, dist, model))}
                    cams, prims, truth, held = cache[model]
                    if rig is None:
                        folder = renders / model / f"{nv}views"
                    else:
                        folder = shoot_rig(prims, rig, nv, tmp / "shoots" / model / rig.name /
                                           f"{nv}views", cams["normalisation"],
                                           truth["radius"], seed=zlib.crc32(model.encode()) + nv)
                    rows += run_case(model, folder, prims, truth, held, nv, rig_name, todo, tmp,
                                     args.tag)
                    out_path.write_text(json.dumps(rows, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_tables({args.tag: rows})


if __name__ == "__main__":
    main()
