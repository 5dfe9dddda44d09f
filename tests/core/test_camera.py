"""Cameras: projection, the OpenGL matrix, crops and world moves agree with each other."""

from __future__ import annotations

import numpy as np

from assetfactory.core.camera import Camera, look_at, orbit_camera


def test_orbit_camera_looks_at_the_target():
    cam = orbit_camera("front", 0.0, 0.0, 2.5, 30.0, 256)
    np.testing.assert_allclose(cam.position, [0, 0, 2.5], atol=1e-12)
    np.testing.assert_allclose(cam.forward, [0, 0, -1], atol=1e-12)
    pix, depth = cam.project(np.zeros((1, 3)))
    np.testing.assert_allclose(pix[0], [127.5, 127.5])
    assert abs(depth[0] - 2.5) < 1e-12
    right = orbit_camera("right", 90.0, 0.0, 2.5)
    np.testing.assert_allclose(right.position, [2.5, 0, 0], atol=1e-12)


def test_project_matches_gl_projection():
    cam = orbit_camera("x", 30.0, 20.0, 3.0, 40.0, 200)
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3))
    pix, _ = cam.project(pts)
    clip = (cam.gl_projection(0.1, 10.0) @ np.c_[cam.to_camera(pts), np.ones(50)].T).T
    ndc = clip[:, :2] / clip[:, 3:]
    gl_pix = np.stack([(ndc[:, 0] + 1) / 2 * cam.width - 0.5,
                       (1 - ndc[:, 1]) / 2 * cam.height - 0.5], axis=1)
    np.testing.assert_allclose(gl_pix, pix, atol=1e-9)


def test_crop_and_world_moves_keep_the_image():
    cam = orbit_camera("x", 10.0, 5.0, 2.0, 30.0, 512)
    pts = np.random.default_rng(1).uniform(-0.3, 0.3, (20, 3))
    pix, _ = cam.project(pts)
    crop = cam.cropped(100, 50, 300, 150)
    cpix, _ = crop.project(pts)
    np.testing.assert_allclose(cpix, (pix - [100, 50] + 0.5) * 150 / 300 - 0.5, atol=1e-9)
    T = np.eye(4)
    T[:3, :3] *= 2.0
    T[:3, 3] = [1, 2, 3]
    moved = cam.transformed(T)
    mpix, _ = moved.project(pts * 2.0 + [1, 2, 3])
    np.testing.assert_allclose(mpix, pix, atol=1e-9)


def test_dict_round_trip_and_look_at_straight_down():
    cam = orbit_camera("top", 0.0, 90.0, 2.0)
    back = Camera.from_dict(cam.to_dict())
    np.testing.assert_array_equal(back.K, cam.K)
    np.testing.assert_array_equal(back.world_to_camera, cam.world_to_camera)
    assert (back.label, back.elevation_deg) == ("top", 90.0)
    V = look_at([0, 3, 0], [0, 0, 0])
    assert np.isfinite(V).all() and abs(np.linalg.det(V[:3, :3]) - 1) < 1e-12
