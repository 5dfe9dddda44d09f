"""Material transfer: the source's look, evaluated at the right source point, into the atlas."""

from __future__ import annotations

import io

import numpy as np
import pytest

from assetfactory.algorithms.material_transfer import sample_texture, transfer
from assetfactory.algorithms.normal_bake import low_normals
from assetfactory.core.appearance import (
    SourceAppearance,
    SourceImage,
    SourceMaterial,
    SourceSurface,
    TextureSlot,
)
from assetfactory.core.mesh import MeshData
from assetfactory.geometry.colour import linear_to_srgb
from assetfactory.geometry.sampling import sample_surface
from assetfactory.geometry.tangents import decode_tangent_space, surface_frames, vertex_tangents
from assetfactory.geometry.texture_sampling import sample_bilinear_uv

SIZE = 128


def _png(rgba: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()


def _plane(z: float, up: bool, x0: float = 0.0, x1: float = 1.0, n: int = 8):
    """A grid over [x0, x1] x [0, 1] at height z, facing +z (up) or -z; UV = (x, 1 - y)."""
    xs, ys = np.meshgrid(np.linspace(x0, x1, n + 1), np.linspace(0, 1, n + 1))
    v = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=1)
    i = np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]
    a, b, c, d = i.ravel(), i.ravel() + 1, i.ravel() + n + 2, i.ravel() + n + 1
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    if not up:
        f = f[:, ::-1]
    uv = np.stack([(v[:, 0] - x0) / (x1 - x0), 1.0 - v[:, 1]], axis=1).astype(np.float32)
    nrm = np.tile([0, 0, 1.0 if up else -1.0], (len(v), 1)).astype(np.float32)
    return v, f, uv, nrm


def _surface(planes: list, materials: list[int]) -> SourceSurface:
    vs, fs, uvs, ns, fm = [], [], [], [], []
    off = 0
    for (v, f, uv, n), m in zip(planes, materials):
        vs.append(v)
        fs.append(f + off)
        uvs.append(uv)
        ns.append(n)
        fm.append(np.full(len(f), m))
        off += len(v)
    return SourceSurface(np.concatenate(vs), np.concatenate(fs), np.concatenate(fm),
                         np.concatenate(ns), None, (np.concatenate(uvs),))


def _low(vertices: np.ndarray, faces: np.ndarray) -> tuple[MeshData, np.ndarray, np.ndarray]:
    import xatlas

    vmap, idx, uv = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    low = MeshData(vertices[vmap], idx.astype(np.int64), uv=uv.astype(np.float32))
    normals = low_normals(low)
    return low, normals, vertex_tangents(low, normals)


def _run(low, normals, tangents, app, clean=None):
    neutral = np.zeros((SIZE, SIZE, 3), np.uint8)
    neutral[...] = (128, 128, 255)
    return transfer(low, app, clean, SIZE, normals, tangents, neutral, None, 0.05, 2, "t")


def _flat_plane(material: SourceMaterial, image: np.ndarray):
    """(low, normals, tangents, maps): ``material`` with ``image`` as its one texture on the
    unit square facing +z, transferred onto a 3x3 grid of the same square."""
    app = SourceAppearance(_surface([_plane(0.0, True)], [0]), (material,),
                           (SourceImage("texture", "image/png", _png(image)),))
    v, f, _, _ = _plane(0.0, True, n=3)
    low, normals, tangents = _low(v, f)
    return low, normals, tangents, _run(low, normals, tangents, app)


def _samples(low: MeshData, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform surface points away from face borders (a bilinear lookup at a chart border
    reads the dilated margin, as any viewer does at 128 px)."""
    faces, bary = sample_surface(low.vertices, low.faces, count * 3,
                                 np.random.default_rng(seed))
    keep = bary.min(axis=1) > 0.12
    return faces[keep][:count], bary[keep][:count]


def _lookup(low: MeshData, maps_img: np.ndarray, faces: np.ndarray, bary: np.ndarray):
    uv = np.einsum("ik,ikc->ic", bary, np.asarray(low.uv, np.float64)[low.faces[faces]])
    return sample_bilinear_uv(maps_img, uv)


# ---------------------------------------------------------------- sampling


def test_texture_transform():
    img = np.zeros((2, 2, 1), np.float32)
    img[0, 1] = 1.0                                  # top-right texel
    slot = TextureSlot(0, nearest=True)
    assert sample_texture(img, np.array([[0.75, 0.25]]), slot)[0, 0] == 1.0
    # KHR_texture_transform offset (0.5, 0): u 0.25 reads u 0.75
    moved = TextureSlot(0, transform=(1, 0, 0.5, 0, 1, 0), nearest=True)
    assert sample_texture(img, np.array([[0.25, 0.25]]), moved)[0, 0] == 1.0


# ---------------------------------------------------------------- transfer


def _two_sided_slab():
    """Top sheet red-checkered (material 0, facing +z), bottom sheet plain blue (material 1,
    facing -z), 0.01 apart: a thin part, like a chair seat."""
    checker = np.zeros((8, 8, 4), np.uint8)
    checker[..., 3] = 255
    on = (np.arange(8)[:, None] + np.arange(8)[None]) % 2 == 0
    checker[on, :3] = (220, 20, 20)
    checker[~on, :3] = (240, 200, 40)
    top = SourceMaterial("top", base_color=TextureSlot(0, nearest=True), metallic_factor=0.0,
                         roughness_factor=0.3)
    bottom = SourceMaterial("bottom", base_color_factor=(0.0, 0.0, 1.0, 1.0),
                            metallic_factor=1.0, roughness_factor=0.8)
    surf = _surface([_plane(0.005, True), _plane(-0.005, False)], [0, 1])
    app = SourceAppearance(surf, (top, bottom), (SourceImage("checker", "image/png",
                                                              _png(checker)),))
    return app, checker


def test_thin_part_takes_the_side_it_faces():
    app, checker = _two_sided_slab()
    clean = MeshData(app.surface.vertices, app.surface.faces)
    # the new top sits below the middle: the source's bottom sheet is closer to it
    v, f, _, _ = _plane(-0.002, True, n=4)
    vb, fb, _, _ = _plane(-0.008, False, n=4)
    low, normals, tangents = _low(np.concatenate([v, vb]), np.concatenate([f, fb + len(v)]))
    out = _run(low, normals, tangents, app, clean)
    top_faces = np.flatnonzero(low.vertices[low.faces].mean(1)[:, 2] > -0.005)
    assert (out.face_material[top_faces] == 0).all()
    assert (out.face_material[np.setdiff1d(np.arange(low.n_faces), top_faces)] == 1).all()
    # colours: the checker on top (never blue), blue below; ORM from the factors
    faces, bary = _samples(low, 4000, 1)
    rgba = _lookup(low, out.base_color, faces, bary)
    pos = np.einsum("ik,ikc->ic", bary, low.vertices[low.faces[faces]])
    is_top = pos[:, 2] > -0.005
    cell = np.floor(pos[:, :2] * 8).clip(0, 7).astype(int)
    expect = checker[7 - cell[:, 1], cell[:, 0], :3].astype(float)   # row 0 = top (t = 0)
    inside = is_top & (np.abs(pos[:, :2] * 8 - np.round(pos[:, :2] * 8)) > 0.2).all(1)
    assert np.abs(rgba[inside, :3] - expect[inside]).mean() < 6.0
    assert (rgba[~is_top, 2] > 240).all() and (rgba[~is_top, 0] < 15).all()
    orm = _lookup(low, out.orm, faces, bary)
    assert np.allclose(orm[is_top, 1], 0.3 * 255, atol=3) and np.allclose(orm[is_top, 2], 0)
    assert np.allclose(orm[~is_top, 1], 0.8 * 255, atol=3)
    assert np.allclose(orm[~is_top, 2], 255, atol=1)
    assert out.stats["trusted_share"] > 0.99
    names = [r["source_name"] for r in out.table["materials"]]
    assert names == ["top", "bottom"]


def test_cut_outs_keep_their_alpha_and_mode():
    holes = np.zeros((8, 8, 4), np.uint8)
    holes[..., :3] = 180
    holes[::2, :, 3] = 255                           # every other row of the texture is a hole
    mat = SourceMaterial("wicker", base_color=TextureSlot(0, nearest=True), alpha_mode="MASK",
                         alpha_cutoff=0.4, double_sided=True)
    low, _, _, out = _flat_plane(mat, holes)
    faces, bary = _samples(low, 3000, 2)
    pos = np.einsum("ik,ikc->ic", bary, low.vertices[low.faces[faces]])
    a = _lookup(low, out.base_color, faces, bary)[:, 3]
    row = 7 - np.floor(pos[:, 1] * 8).clip(0, 7).astype(int)
    centre = np.abs(pos[:, 1] * 8 - np.floor(pos[:, 1] * 8) - 0.5) < 0.3
    assert (a[centre & (row % 2 == 0)] > 250).all()
    assert (a[centre & (row % 2 == 1)] < 5).all()
    row_out = out.table["materials"][0]
    assert (row_out["alpha_mode"], row_out["alpha_cutoff"], row_out["double_sided"]) == (
        "MASK", 0.4, True)


def test_source_normal_map_is_composed_into_the_new_tangent_frame():
    tilt = np.array([0.6, 0.0, 0.8])                 # tangent space: towards +u
    nmap = np.zeros((4, 4, 4), np.uint8)
    nmap[..., :3] = np.round((tilt * 0.5 + 0.5) * 255)
    nmap[..., 3] = 255
    low, normals, tangents, out = _flat_plane(SourceMaterial("bumpy", normal=TextureSlot(0)),
                                              nmap)
    faces, bary = _samples(low, 2000, 3)
    frames = surface_frames(low, normals, tangents, faces, bary)
    m = _lookup(low, out.normal, faces, bary) / 255.0 * 2.0 - 1.0
    world = decode_tangent_space(frames, m / np.linalg.norm(m, axis=1, keepdims=True))
    # the source's u runs along +x on this plane, so the shaded normal tilts towards +x
    angle = np.degrees(np.arccos(np.clip(world @ tilt, -1, 1)))
    assert np.median(angle) < 2.0 and np.percentile(angle, 95) < 5.0


def test_vertex_colours_and_emission_multiply_in():
    surf = _surface([_plane(0.0, True)], [0])
    surf = SourceSurface(surf.vertices, surf.faces, surf.face_material, surf.normals, None,
                         surf.texcoords, np.tile([0.5, 1.0, 1.0, 1.0], (len(surf.vertices), 1)))
    mat = SourceMaterial("glow", base_color_factor=(1.0, 0.5, 1.0, 1.0),
                         emissive_factor=(0.0, 1.0, 0.0))
    app = SourceAppearance(surf, (mat,))
    v, f, _, _ = _plane(0.0, True, n=2)
    low, normals, tangents = _low(v, f)
    out = _run(low, normals, tangents, app)
    faces, bary = _samples(low, 500, 4)
    rgb = _lookup(low, out.base_color, faces, bary)[:, :3]
    want = linear_to_srgb(np.array([0.5, 0.5, 1.0])) * 255
    assert np.allclose(rgb, want, atol=2)
    assert out.emissive is not None
    assert np.allclose(_lookup(low, out.emissive, faces, bary), [0, 255, 0], atol=1)


@pytest.mark.parametrize("flip", [False, True])
def test_inconsistent_source_winding_is_oriented_by_the_clean_mesh(flip):
    app, _ = _two_sided_slab()
    s = app.surface
    faces = s.faces.copy()
    if flip:  # the vendor's top sheet is wound inside out
        top = s.face_material == 0
        faces[top] = faces[top][:, ::-1]
    bad = SourceAppearance(SourceSurface(s.vertices, faces, s.face_material, s.normals, None,
                                         s.texcoords), app.materials, app.images)
    clean = MeshData(s.vertices, s.faces)             # cleanup's consistent winding
    v, f, _, _ = _plane(-0.002, True, n=4)
    low, normals, tangents = _low(v, f)
    out = _run(low, normals, tangents, bad, clean)
    assert (out.face_material == 0).all()
    # the authored normals (+z) still point outside: the composed map stays flat
    faces_s, bary = _samples(low, 300, 6)
    m = _lookup(low, out.normal, faces_s, bary)
    assert np.abs(m - [128, 128, 255]).max() <= 2


# ---------------------------------------------------------------- through the recipe


def _wicker_chair(path) -> None:
    """A seat (opaque wood texture) and a thin backrest whose wicker texture has cut-outs
    (MASK), as two materials of one GLB, written by trimesh."""
    import trimesh
    from PIL import Image

    def textured_box(extents, centre, image, **material):
        box = trimesh.creation.box(extents=extents)
        box = box.subdivide().subdivide()
        v = box.vertices[box.faces].reshape(-1, 3)
        f = np.arange(len(v)).reshape(-1, 3)
        n = np.repeat(box.face_normals, 3, axis=0)
        axis = np.abs(n).argmax(1)                   # planar UVs per box side
        uv = np.where(axis[:, None] == 0, v[:, [2, 1]], np.where(axis[:, None] == 1,
                                                                  v[:, [0, 2]], v[:, [0, 1]]))
        uv = (uv - uv.min(0)) / np.ptp(uv, axis=0).max()
        mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(image),
                                                  **material)
        return trimesh.Trimesh(v + centre, f, visual=trimesh.visual.TextureVisuals(
            uv=uv, material=mat), process=False)

    wood = np.zeros((32, 32, 4), np.uint8)
    wood[..., :3] = (150, 90, 40)
    wood[::4, :, :3] = (110, 60, 20)
    wood[..., 3] = 255
    wicker = np.zeros((64, 64, 4), np.uint8)
    wicker[..., :3] = (210, 180, 120)
    wicker[..., 3] = 255
    wicker[4::8, :, 3] = 0                           # horizontal slots
    wicker[:, 4::8, 3] = 0                           # vertical slots: a woven grid of holes
    wicker[5::8, :, 3] = 0
    wicker[:, 5::8, 3] = 0
    seat = textured_box((0.5, 0.05, 0.5), (0, 0.45, 0), wood, name="oak")
    back = textured_box((0.5, 0.5, 0.02), (0, 0.75, -0.24), wicker, name="wicker",
                        alphaMode="MASK", alphaCutoff=0.5, doubleSided=True)
    trimesh.Scene([seat, back]).export(str(path))


@pytest.mark.slow
def test_wicker_cut_outs_stay_cut_out_in_glb_and_usdz(tmp_path):
    from tests.tools import skip_without_gltf_validator

    skip_without_gltf_validator()
    from PIL import Image

    from assetfactory.core.storage import read_ref
    from assetfactory.core.types import AssetState, SkuSpec
    from assetfactory.flows.recipe import build_recipe
    from assetfactory.flows.runner import run_asset

    model = tmp_path / "chair.glb"
    _wicker_chair(model)
    recipe = build_recipe("ar", "mesh", overrides={
        "simplify": {"target_tris": 3000}, "uv": {"resolution": 512},
        "bake": {"size": 512, "ao_rays": 4, "error_samples": 2000},
        "texture": {"size": 512}, "export": {"texture_size": 512}})
    state = AssetState(sku="chair-1", spec=SkuSpec(sku="chair-1", mesh_uri=str(model)),
                       store_uri=str(tmp_path / "out"), profile="ar", backend="mesh")
    state = run_asset(state, recipe)
    assert state.ok, state.failure
    m = state.metrics
    assert m["bake_source_look"] and m["texture_source"] == "mesh materials"
    assert m["gltf_errors"] == 0 and m["usd_errors"] == 0
    assert m["export_materials"] == 2 and m["cleanup_parts"] >= 2   # a part per material
    glb = read_ref(state.ref("glb"))
    js_len = int.from_bytes(glb[12:16], "little")
    doc = __import__("json").loads(glb[20:20 + js_len])
    by_name = {mat["name"]: mat for mat in doc["materials"]}
    wicker = next(v for k, v in by_name.items() if k.endswith("wicker"))
    oak = next(v for k, v in by_name.items() if k.endswith("oak"))
    assert wicker["alphaMode"] == "MASK" and wicker["alphaCutoff"] == 0.5
    assert wicker["doubleSided"] is True and "alphaMode" not in oak
    # the base colour keeps the holes: a PNG with an alpha channel, some of it cut out
    img_bytes = read_ref(state.ref("texture/base_color"))
    rgba = np.asarray(Image.open(io.BytesIO(img_bytes)))
    assert rgba.shape[2] == 4 and (rgba[..., 3] < 128).mean() > 0.02
    image = doc["images"][doc["textures"][wicker["pbrMetallicRoughness"]["baseColorTexture"][
        "index"]]["source"]]
    assert image["mimeType"] == "image/png"
    # USDZ: opacity from the texture's alpha, thresholded at the cut-off
    from pxr import Usd, UsdShade

    usdz = tmp_path / "chair.usdz"
    usdz.write_bytes(read_ref(state.ref("usdz")))
    stage = Usd.Stage.Open(str(usdz))
    thresholds = {}
    for prim in stage.Traverse():
        sh = UsdShade.Shader(prim)
        if sh and sh.GetIdAttr().Get() == "UsdPreviewSurface":
            inp = sh.GetInput("opacityThreshold")
            thresholds[prim.GetParent().GetName()] = inp.Get() if inp else None
            if inp:
                assert sh.GetInput("opacity").HasConnectedSource()
    assert sorted(v for v in thresholds.values() if v is not None) == [0.5]


def test_faces_cleanup_removed_as_hidden_lend_no_colour():
    """A hose end inside its nozzle: the inner surface (removed by cleanup as hidden) lies
    closer to the simplified outer surface than the outer source surface does."""
    outer = SourceMaterial("nozzle", base_color_factor=(0.0, 1.0, 0.0, 1.0))
    inner = SourceMaterial("hose", base_color_factor=(1.0, 0.0, 0.0, 1.0))
    surf = _surface([_plane(0.01, True), _plane(0.0, True)], [0, 1])
    app = SourceAppearance(surf, (outer, inner))
    v, f, _, _ = _plane(0.01, True)
    clean = MeshData(v, f)                             # cleanup kept the outer surface only
    lv, lf, _, _ = _plane(0.002, True, n=3)
    low, normals, tangents = _low(lv, lf)
    out = _run(low, normals, tangents, app, clean)
    assert (out.face_material == 0).all()
    faces, bary = _samples(low, 300, 5)
    assert np.allclose(_lookup(low, out.base_color, faces, bary)[:, :3], [0, 255, 0], atol=1)
    without = _run(low, normals, tangents, app)        # no cleaned mesh: the inner one wins
    assert (without.face_material == 1).all()
