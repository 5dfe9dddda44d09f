"""ingest: decoding odd files, masks, crops, flags, errors, and mutually consistent cameras."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assetfactory.algorithms.photos import decode_image
from assetfactory.core.artifacts import load_cameras, load_image
from assetfactory.core.errors import InputError, OptionsError
from assetfactory.core.types import AssetState, ImageSpec, SkuSpec
from assetfactory.core.views import load_views, pose_known
from assetfactory.tasks.ingest import IngestOptions, ingest, view_poses

SMALL = IngestOptions(size=64)


def disc(w: int = 120, h: int = 100, r: int = 25, cx: float | None = None,
         cy: float | None = None, colour=(200, 30, 30), bg=(255, 255, 255)) -> np.ndarray:
    """An RGB photo of a coloured disc on a plain background."""
    yy, xx = np.mgrid[:h, :w]
    cx = (w - 1) / 2 if cx is None else cx
    cy = (h - 1) / 2 if cy is None else cy
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    img[inside] = colour
    return img


def save(tmp_path: Path, name: str, image: Image.Image | np.ndarray, **kwargs) -> str:
    (tmp_path / "photos").mkdir(exist_ok=True)
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    im.save(tmp_path / "photos" / name, **kwargs)
    return f"photos/{name}"


def state_for(tmp_path: Path, *images: ImageSpec) -> AssetState:
    spec = SkuSpec(sku="t", images=tuple(images), catalog_root=str(tmp_path))
    return AssetState(sku="t", spec=spec, store_uri=str(tmp_path / "store"))


def run(tmp_path: Path, *images: ImageSpec, options: IngestOptions = SMALL):
    state = state_for(tmp_path, *images)
    return state, ingest(state, options)


def test_contract_outputs_record_and_untouched_input(tmp_path: Path) -> None:
    uri = save(tmp_path, "a.png", disc())
    state = state_for(tmp_path, ImageSpec(uri, view="front"))
    before = dataclasses.replace(state)
    result = ingest(state, SMALL)
    assert state == before and state.artifacts == {}
    assert result.record is not None and result.record.stage == "ingest"
    assert set(result.artifacts) == {"image/front", "mask/front", "cameras", "camera_hints"}
    m = result.metrics
    assert m["ingest_views"] == 1 and m["ingest_flags"] == ""
    assert m["ingest_input_bytes"] == (tmp_path / uri).stat().st_size
    assert 0.1 < m["ingest_mask_frac_min"] < 0.2  # pi 25^2 / 12000
    views = load_views(state.apply(result))
    (v,) = views
    assert v.rgb.shape == (64, 64, 3) and v.rgb.dtype == np.uint8 and v.mask.dtype == bool
    assert v.label == "front" and v.camera.width == 64 and v.pose_known


def test_camera_hints_say_what_the_catalog_gave(tmp_path: Path) -> None:
    from assetfactory.core.artifacts import load_json

    a, b = save(tmp_path, "a.png", disc()), save(tmp_path, "b.png", disc())
    spec = SkuSpec(sku="t", images=(ImageSpec(a, view="front"),
                                    ImageSpec(b, view="right", azimuth_deg=90.0,
                                              elevation_deg=20.0)),
                   metadata={"fov_deg": "40", "camera_distance": "bad"},
                   catalog_root=str(tmp_path))
    state = AssetState(sku="t", spec=spec, store_uri=str(tmp_path / "store"))
    hints = load_json(state.apply(ingest(state, SMALL)), "camera_hints")
    assert hints["fov_deg"] == 40.0 and hints["fov_known"] is True
    assert hints["distance"] == SMALL.distance and hints["distance_known"] is False
    assert hints["elevation_known"] == [False, True]
    assert hints["default_elevation_deg"] == SMALL.default_elevation_deg


def test_mesh_only_sku_gives_an_empty_result(tmp_path: Path) -> None:
    result = ingest(state_for(tmp_path), SMALL)
    assert result.artifacts == {} and result.record is not None
    assert load_views(state_for(tmp_path)) == []


def test_alpha_cutout_uses_alpha_and_composites_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((80, 80, 4), np.uint8)  # transparent pixels hold black garbage
    rgba[20:60, 30:50] = (10, 120, 240, 255)
    _, result = run(tmp_path, ImageSpec(save(tmp_path, "cut.png", rgba)))
    rgb = load_image(state_for(tmp_path).apply(result), "image/front")
    mask = load_image(state_for(tmp_path).apply(result), "mask/front") > 127
    assert set(np.unique(load_image(state_for(tmp_path).apply(result), "mask/front"))) <= {0, 255}
    from scipy import ndimage

    far = ~ndimage.binary_dilation(mask, iterations=2)
    assert (rgb[far] > 240).all(), "background must be white, not the black under the alpha"
    ys, xs = np.nonzero(mask)
    assert (ys.max() - ys.min()) > 1.8 * (xs.max() - xs.min())  # the 40x20 bar survives
    assert np.abs(rgb[mask].astype(int).mean(axis=0) - (10, 120, 240)).max() < 25


def test_white_background_jpeg_photo(tmp_path: Path) -> None:
    img = disc(160, 120, r=30)
    img[100:, :] = (235, 235, 235)  # a light floor gradient must not become object
    _, result = run(tmp_path, ImageSpec(save(tmp_path, "a.jpg", img, quality=90)))
    mask = load_image(state_for(tmp_path).apply(result), "mask/front") > 127
    frac = mask.mean()
    expected = np.pi * 30 ** 2 / (60 / (1 - 2 * SMALL.margin)) ** 2
    assert abs(frac - expected) < 0.08, (frac, expected)


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    grey = np.full((60, 60), 65535, np.uint16)
    grey[20:40, 20:40] = 16384  # a quarter of full scale -> about 64 in 8 bits
    im = Image.fromarray(grey)
    assert im.mode.startswith("I;16")
    _, result = run(tmp_path, ImageSpec(save(tmp_path, "g16.png", im)))
    rgb = load_image(state_for(tmp_path).apply(result), "image/front")
    assert abs(int(rgb[32, 32, 0]) - 64) <= 3


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    rgb = Image.fromarray(disc(90, 90, r=25, colour=(20, 60, 220)))
    _, result = run(tmp_path, ImageSpec(save(tmp_path, "cmyk.jpg", rgb.convert("CMYK"),
                                             quality=95)))
    out = load_image(state_for(tmp_path).apply(result), "image/front")
    assert out.shape == (64, 64, 3)
    assert np.abs(out[32, 32].astype(int) - (20, 60, 220)).max() < 40


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    stored = np.full((60, 120, 3), 255, np.uint8)
    stored[25:35, 20:100] = (0, 150, 0)  # a wide bar as stored; upright it is tall
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _, result = run(tmp_path, ImageSpec(save(tmp_path, "rot.jpg", stored, exif=exif)))
    mask = load_image(state_for(tmp_path).apply(result), "mask/front") > 127
    ys, xs = np.nonzero(mask)
    assert (ys.max() - ys.min()) > 3 * (xs.max() - xs.min())


def test_palette_and_la_images_decode(tmp_path: Path) -> None:
    p = Image.fromarray(disc(50, 50, r=15)).convert("P", palette=Image.Palette.ADAPTIVE)
    la = Image.fromarray(np.where(disc(50, 50, r=15)[..., 0] > 250, 0, 255).astype(np.uint8))
    la = Image.merge("LA", (la, la))
    for name, im in (("p.png", p), ("la.png", la)):
        rgb, alpha = decode_image(_png_bytes(im), name, 10**6)
        assert rgb.dtype == np.uint8 and rgb.shape == (50, 50, 3)
    assert alpha is not None and alpha.shape == (50, 50)


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("content, code", [
    (b"definitely not an image", "corrupt"),
    (None, "corrupt"),  # a truncated PNG
    (b"GIF89a", "corrupt"),
])
def test_corrupt_files_raise_input_error_naming_the_file(tmp_path: Path, content, code) -> None:
    if content is None:
        content = _png_bytes(Image.fromarray(disc(200, 200)))[:300]
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "bad.png").write_bytes(content)
    with pytest.raises(InputError) as info:
        run(tmp_path, ImageSpec("photos/bad.png"))
    err = info.value
    assert err.code == code and "photos/bad.png" in err.message and err.fix
    assert err.stage == "ingest" and err.sku == "t"


def test_unsupported_format_is_named(tmp_path: Path) -> None:
    uri = save(tmp_path, "a.gif", Image.fromarray(disc()).convert("P"))
    with pytest.raises(InputError) as info:
        run(tmp_path, ImageSpec(uri))
    assert info.value.code == "unsupported_format" and "GIF" in info.value.message


def test_missing_file_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="photos/none.png"):
        run(tmp_path, ImageSpec("photos/none.png"))


def test_limits_on_pixels_and_bytes(tmp_path: Path) -> None:
    uri = save(tmp_path, "a.png", disc(120, 100))
    with pytest.raises(InputError) as info:
        run(tmp_path, ImageSpec(uri), options=IngestOptions(size=64, max_pixels=10_000))
    assert info.value.code == "too_large" and "Mpx" in info.value.message
    with pytest.raises(InputError) as info:
        run(tmp_path, ImageSpec(uri), options=IngestOptions(size=64, max_bytes=100))
    assert info.value.code == "too_large" and "MB" in info.value.message


def test_empty_mask_is_an_input_error(tmp_path: Path) -> None:
    uri = save(tmp_path, "blank.png", np.full((80, 80, 3), 250, np.uint8))
    with pytest.raises(InputError) as info:
        run(tmp_path, ImageSpec(uri))
    err = info.value
    assert err.code == "empty_mask" and "no object found" in err.message and uri in err.message
    assert "plain background" in err.fix and "RGBA" in err.fix


def test_fully_transparent_cutout_is_an_empty_mask(tmp_path: Path) -> None:
    uri = save(tmp_path, "clear.png", np.zeros((40, 40, 4), np.uint8))
    with pytest.raises(InputError, match="no object found"):
        run(tmp_path, ImageSpec(uri))


def test_object_cut_off_by_the_frame_is_flagged(tmp_path: Path) -> None:
    uri = save(tmp_path, "cut.png", disc(100, 100, r=30, cx=90))
    _, result = run(tmp_path, ImageSpec(uri, view="right"))
    assert "right:touches_border" in result.metrics["ingest_flags"].split(",")
    uri2 = save(tmp_path, "ok.png", disc(100, 100, r=30))
    _, result = run(tmp_path, ImageSpec(uri2, view="right"))
    assert "touches_border" not in result.metrics["ingest_flags"]


def test_low_contrast_object_is_flagged(tmp_path: Path) -> None:
    uri = save(tmp_path, "faint.png", disc(100, 100, r=30, colour=(215, 215, 215)))
    _, result = run(tmp_path, ImageSpec(uri))
    assert "front:low_contrast" in result.metrics["ingest_flags"]


def test_labels_from_view_azimuth_or_position() -> None:
    images = [ImageSpec("a.png"), ImageSpec("b.png", view="back"), ImageSpec("c.png"),
              ImageSpec("d.png", azimuth_deg=90.0), ImageSpec("e.png", azimuth_deg=30.0),
              ImageSpec("f.png", view="back"), ImageSpec("g.png", elevation_deg=90.0)]
    poses = view_poses(images, default_elevation_deg=10.0)
    assert [p.label for p in poses] == ["front", "back", "view3", "right", "az030", "back_2",
                                        "top"]
    assert [p.azimuth_deg for p in poses] == [0.0, 180.0, 0.0, 90.0, 30.0, 180.0, 0.0]
    assert [p.elevation_deg for p in poses] == [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 90.0]
    assert [pose_known(p.label) for p in poses] == [True, True, False, True, True, True, True]
    assert [p.label for p in view_poses([ImageSpec("a.png", view=" Front-Left/x ")])] == [
        "front_left_x"]
    explicit_front = view_poses([ImageSpec("x.png"), ImageSpec("y.png", view="front")])
    assert [p.label for p in explicit_front] == ["view1", "front"]


def test_cameras_are_mutually_consistent(tmp_path: Path) -> None:
    """Centred products: the origin projects to each crop's centre, cameras sit on the orbit."""
    sizes = {"front": (160, 120, 30), "right": (90, 140, 20), "back": (200, 200, 60),
             "left": (120, 120, 50)}
    images = [ImageSpec(save(tmp_path, f"{k}.png", disc(w, h, r=r)), view=k)
              for k, (w, h, r) in sizes.items()]
    images.append(ImageSpec(save(tmp_path, "top.png", disc(100, 100, r=30)), view="top"))
    options = IngestOptions(size=64, distance=3.0)
    state, result = run(tmp_path, *images, options=options)
    cams = load_cameras(state.apply(result))
    assert [c.label for c in cams] == ["front", "right", "back", "left", "top"]
    centre = (options.size - 1) / 2
    for cam in cams:
        uv, depth = cam.project(np.zeros((1, 3)))
        assert np.allclose(uv[0], centre, atol=1.0), (cam.label, uv)
        assert depth[0] == pytest.approx(3.0)
        assert np.linalg.norm(cam.position) == pytest.approx(3.0)
    front, right, back, left, top = cams
    assert front.position[2] > 2.9 and right.position[0] > 2.9 and back.position[2] < -2.9
    assert left.position[0] < -2.9 and top.position[1] > 2.9
    # a disc 2r px wide in a photo h px tall spans 2r/h of the vertical field of view
    f = 0.5 * 120 / np.tan(np.radians(options.fov_deg) / 2)
    edge = np.array([[30 * 3.0 / f, 0.0, 0.0]])  # the disc's rim, back-projected at depth 3
    uv, _ = front.project(edge)
    mask = load_image(state.apply(result), "mask/front") > 127
    xs = np.nonzero(mask[int(centre)])[0]
    assert abs(uv[0, 0] - (xs.max() + 0.5)) < 1.5


def test_options_are_validated() -> None:
    with pytest.raises(OptionsError):
        IngestOptions(size=0)
    with pytest.raises(OptionsError):
        IngestOptions(margin=0.5)
    with pytest.raises(OptionsError):
        IngestOptions(distance=0.1)


def test_path_escaping_the_catalog_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        run(tmp_path, ImageSpec("../elsewhere.png"))
    assert info.value.code == "outside_root"


# --------------------------------------------------------------------------- real data


def test_every_shared_image_gives_views_or_a_clear_input_error(tmp_path: Path,
                                                               shared_data: Path) -> None:
    files = sorted((shared_data / "images").iterdir())
    assert files, "expected photos in shared/data/images"
    failures = []
    for path in files:
        spec = SkuSpec(sku=path.stem, images=(ImageSpec(str(path)),))
        state = AssetState(sku=path.stem, spec=spec, store_uri=str(tmp_path / "store"))
        try:
            result = ingest(state, SMALL)
        except InputError as exc:
            assert exc.fix and path.name in exc.message
            failures.append(path.name)
            continue
        (view,) = load_views(state.apply(result))
        assert view.mask.any() and view.rgb.shape == (64, 64, 3)
    assert len(failures) <= len(files) // 4, failures


def test_truncated_shared_png_is_a_clear_input_error(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / "broken" / "truncated_trellis_typical_misc_gate.png"
    if not path.exists():
        pytest.skip(f"{path} not present")
    spec = SkuSpec(sku="gate", images=(ImageSpec(str(path)),))
    with pytest.raises(InputError) as info:
        ingest(AssetState(sku="gate", spec=spec, store_uri=str(tmp_path)), SMALL)
    assert info.value.code == "corrupt" and "truncated" in info.value.message


def test_masks_of_rendered_product_shots_match_the_exact_silhouettes(shared_data: Path) -> None:
    from assetfactory.algorithms.masking import object_mask
    from assetfactory.algorithms.photos import to_rgb8

    folders = [shared_data / "renders" / m / "4views"
               for m in ("basemesh_coffee_cup", "3dc_Mixer", "basemesh_desk_lamp")]
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        pytest.skip("no renders in shared/data/renders")
    for folder in folders:
        for label in ("front", "right"):
            rgb, alpha = to_rgb8(Image.open(folder / f"view_{label}.png"))
            truth = np.asarray(Image.open(folder / f"mask_{label}.png"))
            truth = (truth if truth.ndim == 2 else truth[..., 0]) > 127
            mask, _, source = object_mask(rgb, alpha)
            iou = (mask & truth).sum() / (mask | truth).sum()
            assert source == "background" and iou > 0.95, (folder.parent.name, label, iou)


def test_render_catalog_views_get_the_true_camera_directions(tmp_path: Path,
                                                             shared_data: Path) -> None:
    import json

    folder = shared_data / "renders" / "basemesh_coffee_cup" / "4views"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    truth = {v["label"]: v for v in json.loads((folder / "cameras.json").read_text())["views"]}
    images = tuple(ImageSpec(str(folder / f"view_{k}.png"), view=k, elevation_deg=15.0)
                   for k in ("front", "right", "back", "left"))
    state = AssetState(sku="cup", spec=SkuSpec(sku="cup", images=images),
                       store_uri=str(tmp_path))
    result = ingest(state, SMALL)
    for cam in load_cameras(state.apply(result)):
        true_pos = np.asarray(truth[cam.label]["camera_position"])
        cos = cam.position @ true_pos / np.linalg.norm(cam.position) / np.linalg.norm(true_pos)
        assert cos > 0.9999, cam.label


def test_camera_hints_from_catalog_metadata():
    import dataclasses as dc

    from assetfactory.core.types import SkuSpec as Spec
    from assetfactory.tasks.ingest import IngestOptions as Opts
    from assetfactory.tasks.ingest import camera_hints

    base = Opts()
    spec = Spec(sku="s", metadata={"fov_deg": "40", "camera_distance": "3.1"})
    got = camera_hints(spec, base)
    assert (got.fov_deg, got.distance) == (40.0, 3.1)
    bad = Spec(sku="s", metadata={"fov_deg": "wide", "camera_distance": "-2"})
    assert camera_hints(bad, base) == base
    assert camera_hints(dc.replace(spec, metadata={}), base) == base
