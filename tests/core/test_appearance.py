"""A vendor mesh's appearance as artifacts: it round-trips exactly, moves with the asset's
transforms, and says when it is worth transferring (and when it wins over photos)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from assetfactory.core.appearance import (
    CLAMP,
    SourceAppearance,
    SourceImage,
    SourceMaterial,
    SourceSurface,
    TextureSlot,
    decode_image,
    has_appearance,
    load_appearance,
    save_appearance,
)
from assetfactory.core.types import StageResult
from tests.builders import state as make_state


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()


def _surface(**kw) -> SourceSurface:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float64)
    f = np.array([[0, 1, 2], [1, 3, 2]])
    n = np.tile([0.0, 0.0, 1.0], (4, 1)).astype(np.float32)
    t = np.tile([1.0, 0.0, 0.0, 1.0], (4, 1)).astype(np.float32)
    return SourceSurface(v, f, np.array([0, 1]), n, t, (v[:, :2].astype(np.float32),
                                                       v[:, 1::-1].astype(np.float32)), **kw)


def test_round_trip_through_artifacts_keeps_every_field(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.arange(16).reshape(4, 4) * 16
    slot = TextureSlot(0, texcoord=1, transform=(2.0, 0.0, 0.5, 0.0, 1.0, 0.0), wrap_s=CLAMP,
                       nearest=True, scale=0.5)
    mats = (SourceMaterial("wicker", base_color=slot, alpha_mode="MASK", alpha_cutoff=0.3,
                           double_sided=True),
            SourceMaterial("glow", emissive_factor=(1.0, 0.5, 0.0), unlit=True))
    colors = np.tile([1.0, 0.5, 0.25, 1.0], (4, 1)).astype(np.float32)
    app = SourceAppearance(_surface(colors=colors), mats,
                           (SourceImage("w", "image/png", _png(rgba)),
                            SourceImage("gone", "image/png", b"")), {"format": "glb"})
    state = make_state(tmp_path)
    assert not has_appearance(state) and load_appearance(state) is None
    state = state.apply(StageResult(artifacts=save_appearance(state, app)))
    back = load_appearance(state)
    assert back.materials == mats and back.info == {"format": "glb"}
    assert [(im.name, im.mime, im.data) for im in back.images] == [
        (im.name, im.mime, im.data) for im in app.images]
    assert np.array_equal(decode_image(back.images[0].data), rgba)
    for k in ("vertices", "faces", "face_material", "normals", "tangents", "colors"):
        assert np.array_equal(getattr(back.surface, k), getattr(app.surface, k)), k
    assert len(back.surface.texcoords) == 2
    assert all(np.array_equal(a, b) for a, b in zip(back.surface.texcoords,
                                                    app.surface.texcoords))


def test_a_mirror_transform_flips_winding_normals_and_handedness():
    s = _surface()
    mirror = np.diag([-2.0, 2.0, 2.0, 1.0])
    mirror[:3, 3] = (1.0, 0.0, 0.0)
    m = s.transformed(mirror)
    assert np.allclose(m.vertices, s.vertices * [-2, 2, 2] + [1, 0, 0])
    assert np.array_equal(m.faces, s.faces[:, ::-1])
    e = m.vertices[m.faces]
    geometric = np.cross(e[:, 1] - e[:, 0], e[:, 2] - e[:, 0])
    assert (geometric[:, 2] > 0).all() and np.allclose(m.normals, [0, 0, 1])  # still facing +z
    assert np.allclose(m.tangents[:, :3], [-1, 0, 0]) and (m.tangents[:, 3] == -1).all()


def test_what_is_worth_transferring_and_what_wins_over_photos():
    plain = SourceAppearance(_surface(), (SourceMaterial("default"),))
    red = SourceAppearance(_surface(), (SourceMaterial("paint", (0.8, 0.1, 0.1, 1.0)),))
    white_colours = SourceAppearance(_surface(colors=np.ones((4, 4), np.float32)),
                                     (SourceMaterial("default"),))
    textured = SourceAppearance(_surface(), (SourceMaterial("t", base_color=TextureSlot(0)),))
    two = SourceAppearance(_surface(), (SourceMaterial("a"), SourceMaterial("b")))
    assert not plain.worth_transferring and not white_colours.worth_transferring
    assert red.worth_transferring and not red.rich        # photos, when given, win over it
    assert textured.rich and two.rich                     # these win over photos
