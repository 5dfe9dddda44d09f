"""The renderer agrees with ``Camera.project`` and gives plausible images."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from assetfactory.core.camera import orbit_camera
from assetfactory.core.mesh import MeshData

render = pytest.importorskip("assetfactory.geometry.render")


def _box() -> MeshData:
    m = trimesh.creation.box((0.5, 0.3, 0.2))
    return MeshData(m.vertices, m.faces)


def _quad(size: float = 1.0) -> MeshData:
    """A square in the z=0 plane facing +Z, UV (0,0) bottom-left, V up."""
    h = size / 2
    v = np.array([[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]], float)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    return MeshData(v, np.array([[0, 1, 2], [0, 2, 3]]), uv=uv)


def test_get_renderer_is_cached(renderer):
    assert render.get_renderer() is renderer


@pytest.mark.parametrize("az,el", [(0, 0), (30, 20), (135, -25), (270, 60)])
def test_face_ids_agree_with_camera_project(renderer, az, el):
    mesh = _box()
    cam = orbit_camera("v", az, el, 2.0, size=96)
    faces = renderer.face_ids(mesh, cam)
    depth = renderer.depth(mesh, cam)
    normals = render.face_normals(mesh)
    checked = 0
    for fi in range(mesh.n_faces):
        tri = mesh.vertices[mesh.faces[fi]]
        facing = np.dot(normals[fi], cam.position - tri.mean(0)) > 0
        # a point well inside the triangle, away from its edges
        p = tri.mean(0)
        (u, v), z = cam.project(p[None])[0][0], cam.project(p[None])[1][0]
        ui, vi = round(u), round(v)
        if not facing:
            assert faces[vi, ui] != fi
            continue
        # the pixel centre near the projected centroid lies on the same box side
        hit = faces[vi, ui]
        assert hit >= 0
        assert np.allclose(normals[hit], normals[fi], atol=1e-6)
        assert abs(depth[vi, ui] - z) < 0.02
        checked += 1
    assert checked >= 2


def test_vertex_projection_lands_on_mask(renderer):
    mesh = _box()
    cam = orbit_camera("v", 20, 15, 2.0, size=128)
    mask = renderer.mask(mesh, cam)
    uv, _ = cam.project(mesh.vertices)
    # every corner of a convex box is on its silhouette or inside: within one pixel of coverage
    for u, v in uv:
        ui, vi = round(u), round(v)
        assert mask[max(vi - 1, 0):vi + 2, max(ui - 1, 0):ui + 2].any()
    # and the mask bbox matches the projected bbox to within a pixel
    rows, cols = np.nonzero(mask)
    assert abs(cols.min() - uv[:, 0].min()) <= 1.0 and abs(cols.max() - uv[:, 0].max()) <= 1.0
    assert abs(rows.min() - uv[:, 1].min()) <= 1.0 and abs(rows.max() - uv[:, 1].max()) <= 1.0


def test_depth_of_facing_plane_is_exact(renderer):
    cam = orbit_camera("front", 0, 0, 3.0, size=64)
    depth = renderer.depth(_quad(0.5), cam)
    covered = np.isfinite(depth)
    assert covered.sum() > 100
    assert np.allclose(depth[covered], 3.0, atol=1e-3)
    assert np.isinf(depth[0, 0])
    assert depth.dtype == np.float32


def test_render_plausible_image(renderer):
    cam = orbit_camera("front_right", 45, 15, 2.0, size=128)
    img = renderer.render(_box(), cam)
    assert img.shape == (128, 128, 4) and img.dtype == np.uint8
    alpha = img[..., 3]
    assert (img[0, 0] == [255, 255, 255, 0]).all()   # background white, transparent
    obj = img[alpha == 255][:, :3]
    assert len(obj) > 500
    assert (obj < 250).all()                          # grey, shaded object
    assert len(np.unique(obj[:, 0])) >= 2             # lambert: box sides differ in shade
    assert (renderer.mask(_box(), cam) == (alpha > 127)).mean() > 0.99


def test_texture_orientation_and_vertex_colours(renderer):
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32] = (255, 0, 0)      # top rows red -> v near 1 -> top of the quad
    tex[32:] = (0, 0, 255)
    tex[:, :8] = (0, 255, 0)    # left columns green -> u near 0 -> left of the quad
    cam = orbit_camera("front", 0, 0, 3.0, size=64)
    img = renderer.render(_quad(1.0), cam, texture=tex, shading="unlit")
    assert tuple(img[24, 40, :3]) == (255, 0, 0)
    assert tuple(img[40, 40, :3]) == (0, 0, 255)
    c = img[32, 14, :3]     # the quad spans columns ~12..52
    assert c[1] > 200 and c[0] < 50 and c[2] < 50
    colours = np.tile(np.array([[10, 200, 30, 255]], np.uint8), (4, 1))
    img = renderer.render(_quad(1.0).replace(vertex_colors=colours), cam, shading="unlit",
                          background=(0, 0, 0))
    assert tuple(img[32, 32, :3]) == (10, 200, 30)
    assert tuple(img[0, 0]) == (0, 0, 0, 0)


def test_ssaa_gives_fractional_coverage(renderer):
    cam = orbit_camera("v", 30, 20, 2.0, size=64)
    img = renderer.render(_box(), cam, ssaa=4)
    assert img.shape == (64, 64, 4)
    alpha = img[..., 3]
    assert ((alpha > 0) & (alpha < 255)).any()


def test_rasterize_uv(renderer):
    mesh = _quad(2.0)                       # x in [-1, 1] maps to u, y to v
    pos, nrm, face = renderer.rasterize_uv(mesh, 32)
    assert pos.shape == (32, 32, 3) and nrm.shape == (32, 32, 3) and face.shape == (32, 32)
    assert (face >= 0).all()
    # texel (row 0, col 0) is the top-left: u small, v near 1 -> x near -1, y near +1
    assert pos[0, 0, 0] < -0.9 and pos[0, 0, 1] > 0.9
    assert pos[31, 31, 0] > 0.9 and pos[31, 31, 1] < -0.9
    assert np.allclose(nrm, [0, 0, 1], atol=1e-5)
    half = MeshData(mesh.vertices, mesh.faces[:1], uv=mesh.uv)   # lower-right triangle only
    _, _, face = renderer.rasterize_uv(half, 32)
    assert face[31, 31] == 0 and face[0, 0] == -1


@pytest.mark.parametrize("az,el,ssaa", [(30, 20, 1), (135, -25, 2), (270, 60, 3)])
def test_coverage_is_the_rendered_alpha(renderer, az, el, ssaa):
    cam = orbit_camera("v", az, el, 2.5, size=48)
    cover = renderer.coverage(_box(), cam, ssaa=ssaa)
    assert cover.dtype == np.uint8 and cover.shape == (48, 48)
    assert np.array_equal(cover, renderer.render(_box(), cam, shading="unlit", ssaa=ssaa)[..., 3])
    assert 0 < (cover > 0).mean() < 1
    if ssaa == 1:
        assert np.array_equal(renderer.mask(_box(), cam), renderer.face_ids(_box(), cam) >= 0)


def test_rasterize_uv_faces_and_texels_are_rasterize_uvs(renderer):
    sphere = trimesh.creation.icosphere(2)
    uv = np.random.default_rng(0).random((len(sphere.vertices), 2))   # overlapping UVs
    mesh = MeshData(sphere.vertices, sphere.faces, uv=uv)
    face = renderer.rasterize_uv_faces(mesh, 64)
    assert face.dtype == np.int32 and (face >= 0).any() and (face == -1).any()
    pos, nrm, full = renderer.rasterize_uv(mesh.replace(vertex_normals=sphere.vertex_normals), 64)
    assert np.array_equal(face, full)                      # the same last writer
    index, p, n, f = renderer.rasterize_uv_texels(
        mesh.replace(vertex_normals=sphere.vertex_normals), 64)
    assert np.array_equal(index, np.flatnonzero(full.reshape(-1) >= 0))
    assert np.array_equal(f, full.reshape(-1)[index])
    assert np.array_equal(p, pos.reshape(-1, 3)[index].astype(np.float64))
    n_ref = nrm.reshape(-1, 3)[index].astype(np.float64)
    n_ref /= np.maximum(np.linalg.norm(n_ref, axis=1, keepdims=True), 1e-12)
    assert np.array_equal(n, n_ref)


def test_texel_surface_is_the_gpus_texel_raster_in_float64(renderer):
    from assetfactory.geometry.texture_sampling import texel_surface

    sphere = trimesh.creation.icosphere(2)
    rng = np.random.default_rng(1)
    # non-overlapping UVs: each face its own small triangle in a grid of cells
    n = len(sphere.faces)
    cells = int(np.ceil(np.sqrt(n)))
    corner = np.stack([np.arange(n) % cells, np.arange(n) // cells], 1) / cells
    uv = (corner[:, None, :] + np.array([[0.05, 0.05], [0.9, 0.05], [0.05, 0.9]]) / cells)
    mesh = MeshData(sphere.vertices[sphere.faces].reshape(-1, 3), np.arange(3 * n).reshape(-1, 3),
                    uv=uv.reshape(-1, 2))
    smooth = mesh.replace(vertex_normals=rng.normal(size=(3 * n, 3)))
    for m in (mesh, smooth):                # face normals; interpolated vertex normals
        index, p, nrm, f = renderer.rasterize_uv_texels(m, 256)
        got = texel_surface(m, renderer.rasterize_uv_faces(m, 256))
        assert np.array_equal(got[0], index) and np.array_equal(got[3], f)
        assert np.abs(got[1] - p).max() < 1e-5            # float64 against GL's float32
        assert np.abs(got[2] - nrm).max() < 1e-4
        assert np.allclose(np.linalg.norm(got[2], axis=1), 1.0)


def test_rasterize_uv_needs_uv(renderer):
    with pytest.raises(ValueError, match="uv"):
        renderer.rasterize_uv(_box(), 16)
    with pytest.raises(ValueError, match="uv"):
        renderer.rasterize_uv_faces(_box(), 16)
    with pytest.raises(ValueError, match="uv"):
        renderer.rasterize_uv_texels(_box(), 16)


def test_large_mesh(renderer):
    sphere = trimesh.creation.icosphere(subdivisions=8)   # 1.3M faces
    mesh = MeshData(sphere.vertices, sphere.faces)
    cam = orbit_camera("v", 10, 10, 3.0, size=256)
    faces = renderer.face_ids(mesh, cam)
    assert faces.max() < mesh.n_faces and faces.max() > 1_000_000 // 2
    assert (faces >= 0).mean() > 0.2


def test_empty_mesh(renderer):
    cam = orbit_camera("v", 0, 0, 2.0, size=16)
    empty = MeshData(np.zeros((0, 3)), np.zeros((0, 3), int))
    assert not renderer.mask(empty, cam).any()
    assert renderer.render(empty, cam)[..., 3].max() == 0
    assert renderer.coverage(empty, cam, ssaa=2).max() == 0
