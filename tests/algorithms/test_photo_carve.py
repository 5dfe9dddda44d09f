"""photo_carve: a cup's inside, which every silhouette hides, carved where the photos disagree."""

from __future__ import annotations

import colorsys
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from assetfactory.core.camera import orbit_camera
from assetfactory.core.mesh import MeshData
from assetfactory.geometry.render import get_renderer
from assetfactory.models.base import GenerateRequest
from assetfactory.models.silhouette import SilhouetteConfig

R_OUT, R_IN, HALF, FLOOR = 0.4, 0.32, 0.3, -0.2


def _cup(inside_colours: bool) -> MeshData:
    """An open cup (walls and floor), its inside painted by azimuth (or plain white)."""
    outer = trimesh.creation.cylinder(radius=R_OUT, height=2 * HALF, sections=64)
    cavity = trimesh.creation.cylinder(radius=R_IN, height=HALF - FLOOR + 0.1, sections=64)
    cavity.apply_translation([0, 0, (HALF + FLOOR) / 2 + 0.05])
    cup = outer.difference(cavity)
    cup.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    v = np.asarray(cup.vertices)
    radius = np.hypot(v[:, 0], v[:, 2])
    hue = (np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi)) % 1.0
    inner = (radius < (R_OUT + R_IN) / 2) & (v[:, 1] < HALF - 1e-6) | (v[:, 1] < FLOOR + 0.01) \
        & (radius < R_IN + 0.01)
    col = np.full((len(v), 4), 230, np.uint8)
    if inside_colours:
        rgb = np.array([colorsys.hsv_to_rgb(h, 0.8, 0.9) for h in hue[inner]])
        col[inner, :3] = np.round(rgb * 255)
    return MeshData(v, np.asarray(cup.faces), vertex_colors=col)


def _views(mesh: MeshData):
    r = get_renderer()
    out = []
    for az in np.arange(8) * 45.0:
        cam = orbit_camera(f"az{az:03.0f}", az, 35.0, 2.3, 30.0, 160)
        rgba = r.render(mesh, cam, shading="unlit")
        out.append(SimpleNamespace(label=cam.label, camera=cam, mask=rgba[..., 3] > 127,
                                   rgb=rgba[..., :3].copy()))
    return out


def _iou_with_cup(mesh: MeshData) -> float:
    import open3d as o3d

    g = np.linspace(-0.45, 0.45, 60)
    X, Y, Z = np.meshgrid(g, g, g, indexing="ij")
    rr = np.hypot(X, Z)
    truth = (rr <= R_OUT) & (np.abs(Y) <= HALF) & ~((rr < R_IN) & (Y > FLOOR))
    tm = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices),
                                   o3d.utility.Vector3iVector(mesh.faces.astype(np.int32)))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(tm))
    pts = np.stack([X, Y, Z], -1).reshape(-1, 3).astype(np.float32)
    occ = scene.compute_occupancy(o3d.core.Tensor(pts)).numpy().reshape(X.shape) > 0.5
    return float((occ & truth).sum() / (occ | truth).sum())


@pytest.fixture(scope="module")
def painted():
    return _views(_cup(inside_colours=True))


def test_a_painted_cavity_is_carved_and_the_silhouettes_stay(painted):
    def run(carve: bool):
        return SilhouetteConfig(resolution=64, photo_carve=carve, ground_cut=False).build() \
            .generate(GenerateRequest(sku="cup", views=painted))

    hull, carved = run(False), run(True)
    assert carved.info["carved_fraction"] > 0.1
    assert _iou_with_cup(carved.mesh) > _iou_with_cup(hull.mesh) + 0.06
    r = get_renderer()
    for v in painted:
        got = r.mask(carved.mesh, v.camera)
        assert (got & v.mask).sum() / (got | v.mask).sum() > 0.95, v.label


def test_a_plain_cavity_shows_no_disagreement_and_stays_filled():
    views = _views(_cup(inside_colours=False))
    out = SilhouetteConfig(resolution=48, photo_carve=True, ground_cut=False).build() \
        .generate(GenerateRequest(sku="cup", views=views))
    assert out.info["carved_fraction"] == 0.0
