"""Catalog input: every format, every row-error kind, and files that cannot be read at all."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from assetfactory.catalog.input import read_catalog
from assetfactory.core.errors import InputError

HEADER = ["sku", "title", "category", "images", "width_mm", "height_mm", "depth_mm", "mesh_uri",
          "material", "colour"]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    (tmp_path / "photos").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "photos" / name).write_bytes(b"not decoded at parse time")
    (tmp_path / "chair.obj").write_text("v 0 0 0\n")
    return tmp_path


def write_csv(path: Path, rows: list[dict], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def one_error(root: Path, row: dict) -> tuple:
    """Parse a catalog of one good row and ``row``; return (parse, the error)."""
    good = {"sku": "GOOD", "images": "photos/a.png"}
    parse = read_catalog(write_csv(root / "cat.csv", [good, row]))
    assert [s.sku for s in parse.specs] == ["GOOD"], "an error row must not affect other rows"
    assert len(parse.errors) == 1
    return parse, parse.errors[0]


def test_csv_row_becomes_spec_with_views_angles_and_metadata(root: Path) -> None:
    parse = read_catalog(write_csv(root / "cat.csv", [{
        "sku": "CH-1", "title": "Chair", "category": "chair",
        "images": "front=photos/a.png@0,15; photos/b.png | Back-Left=photos/c.png",
        "width_mm": "450", "height_mm": "900.5", "depth_mm": "", "mesh_uri": "chair.obj",
        "material": "wood", "colour": "red"}]))
    assert parse.format == "csv" and parse.errors == []
    spec = parse.specs[0]
    assert spec.sku == "CH-1" and spec.row == 1 and spec.catalog_root == str(root.resolve())
    assert (spec.width_mm, spec.height_mm, spec.depth_mm) == (450.0, 900.5, None)
    assert spec.mesh_uri == "chair.obj" and spec.material == "wood"
    assert dict(spec.metadata) == {"colour": "red"}
    a, b, c = spec.images
    assert (a.uri, a.view, a.azimuth_deg, a.elevation_deg) == ("photos/a.png", "front", 0.0, 15.0)
    assert (b.view, b.azimuth_deg, b.elevation_deg) == ("", None, None)
    assert (c.view, c.azimuth_deg) == ("back_left", 225.0)


def test_top_view_gets_its_elevation_and_file_uri_inside_root_is_accepted(root: Path) -> None:
    uri = (root / "photos" / "a.png").as_uri()
    parse = read_catalog(write_csv(root / "cat.csv", [
        {"sku": "A", "images": f"top={uri}; s3://bucket/key/b.png@90"}]))
    top, s3 = parse.specs[0].images
    assert top.view == "top" and top.elevation_deg == 90.0 and top.uri == str(root / "photos/a.png")
    assert s3.uri == "s3://bucket/key/b.png" and s3.azimuth_deg == 90.0


@pytest.mark.parametrize("row, code, words", [
    ({"sku": "", "images": "photos/a.png"}, "missing_sku", "blank"),
    ({"sku": "a\x07b", "images": "photos/a.png"}, "bad_sku", "cannot name"),
    ({"sku": "x" * 129, "images": "photos/a.png"}, "bad_sku", "at most 128"),
    ({"sku": "X", "images": "photos/a.png", "width_mm": "abc"}, "bad_number", "width_mm"),
    ({"sku": "X", "images": "photos/a.png", "depth_mm": "-3"}, "bad_number", "positive"),
    ({"sku": "X", "images": "photos/a.png@east"}, "missing_file", "not found"),
    ({"sku": "X", "images": "front=photos/a.png@0,120"}, "bad_number", "elevation"),
    ({"sku": "X"}, "no_inputs", "neither images nor mesh_uri"),
    ({"sku": "X", "images": "side=photos/a.png"}, "unknown_view", "'side'"),
    ({"sku": "X", "images": "front="}, "bad_images", "front="),
    ({"sku": "X", "images": "[not json"}, "bad_images", "JSON"),
    ({"sku": "X", "images": "https://cdn.example.com/a.png"}, "unsupported_scheme", "https"),
    ({"sku": "X", "images": "ftp://host/a.png"}, "unsupported_scheme", "ftp"),
    ({"sku": "X", "images": "../outside.png"}, "outside_root", "outside the catalog"),
    ({"sku": "X", "images": "/etc/hostname"}, "outside_root", "outside the catalog"),
    ({"sku": "X", "images": "photos/missing.png"}, "missing_file", "missing.png"),
    ({"sku": "X", "images": "photos"}, "not_a_file", "directory"),
    ({"sku": "X", "mesh_uri": "http://x/m.glb"}, "unsupported_scheme", "mesh_uri"),
])
def test_each_row_error_kind(root: Path, row: dict, code: str, words: str) -> None:
    _, err = one_error(root, row)
    assert err.code == code, err
    assert words in err.message
    assert err.fix and err.stage == "catalog" and err.row == 2
    assert err.sku == (row["sku"] or "row-2")


def test_network_fix_says_the_factory_does_not_fetch(root: Path) -> None:
    _, err = one_error(root, {"sku": "X", "images": "https://cdn.example.com/a.png"})
    assert "does not fetch over the network" in err.fix


def test_duplicate_sku_first_row_wins(root: Path) -> None:
    parse = read_catalog(write_csv(root / "cat.csv", [
        {"sku": "A", "images": "photos/a.png", "title": "first"},
        {"sku": "A", "images": "photos/b.png", "title": "second"}]))
    assert [s.title for s in parse.specs] == ["first"]
    (err,) = parse.errors
    assert err.code == "duplicate_sku" and err.row == 2 and "row 1" in err.message


def test_several_problems_in_one_row_are_all_reported(root: Path) -> None:
    _, err = one_error(root, {"sku": "X", "images": "side=photos/a.png; ../x.png",
                              "width_mm": "wide"})
    assert err.code == "bad_number"
    for words in ("width_mm", "'side'", "outside"):
        assert words in err.message


def test_symlink_escaping_the_root_is_refused(root: Path, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    outside.write_bytes(b"x")
    (root / "photos" / "link.png").symlink_to(outside)
    _, err = one_error(root, {"sku": "X", "images": "photos/link.png"})
    assert err.code == "outside_root" and "symlink" in err.message


def test_unreadable_file_is_an_error_row(root: Path, monkeypatch) -> None:
    import assetfactory.catalog.input as module

    def refuse(path, mode="r", *args, **kwargs):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied")
        return open(path, mode, *args, **kwargs)

    (root / "photos" / "locked.png").write_bytes(b"x")
    monkeypatch.setattr(module, "open", refuse, raising=False)  # root ignores chmod 000
    _, err = one_error(root, {"sku": "X", "images": "photos/locked.png"})
    assert err.code == "unreadable" and "Permission denied" in err.message


def test_a_fifo_is_not_a_file(root: Path) -> None:
    os.mkfifo(root / "photos" / "pipe.png")
    _, err = one_error(root, {"sku": "X", "images": "photos/pipe.png"})
    assert err.code == "not_a_file"


def test_unquoted_comma_gives_a_row_error_with_a_quoting_fix(root: Path) -> None:
    path = root / "cat.csv"
    path.write_text("sku,images\nA,photos/a.png\nB,front=photos/a.png@0,15\n")
    parse = read_catalog(path)
    (err,) = parse.errors
    assert err.sku == "B" and err.code == "bad_row" and "quote" in err.fix


def test_jsonl_with_lists_objects_bad_lines_and_metadata(root: Path) -> None:
    lines = [
        {"sku": "A", "images": [{"uri": "photos/a.png", "view": "front", "elevation_deg": 10},
                                "right=photos/b.png"],
         "height_mm": 300, "tags": ["x", "y"], "price": 9.5, "active": True},
        {"sku": "B", "images": "photos/c.png", "mesh_uri": None},
        {"sku": "C", "images": [{"url": "photos/a.png"}]},
        {"sku": "D", "images": "photos/a.png", "width_mm": True},
    ]
    text = "\n".join(json.dumps(x) for x in lines[:2]) + "\n\n{oops\n" + "\n".join(
        json.dumps(x) for x in lines[2:]) + "\n[1, 2]\n"
    (root / "cat.jsonl").write_text(text)
    parse = read_catalog(root / "cat.jsonl")
    assert parse.format == "jsonl"
    a, b = parse.specs
    assert [i.view for i in a.images] == ["front", "right"]
    assert a.images[0].elevation_deg == 10.0 and a.images[1].azimuth_deg == 90.0
    assert a.height_mm == 300.0
    assert a.metadata == {"tags": '["x", "y"]', "price": 9.5, "active": True}
    assert b.sku == "B" and b.row == 2
    errors = {e.row: e for e in parse.errors}
    assert errors[3].code == "bad_row" and errors[3].sku == "row-3"
    assert errors[4].code == "bad_images" and errors[4].sku == "C"
    assert errors[5].code == "bad_number"
    assert errors[6].code == "bad_row"


def test_json_array(root: Path) -> None:
    (root / "cat.json").write_text(json.dumps([{"sku": 1234, "images": ["photos/a.png"]}]))
    parse = read_catalog(root / "cat.json")
    assert parse.format == "json" and parse.specs[0].sku == "1234"


def test_parquet_with_list_columns(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "SKU": ["P1", "P2", None],
        "images": [[{"uri": "photos/a.png", "view": "front", "azimuth_deg": None,
                     "elevation_deg": 5.0}],
                   [{"uri": "photos/b.png", "view": "bogus", "azimuth_deg": None,
                     "elevation_deg": None}],
                   [{"uri": "photos/c.png", "view": None, "azimuth_deg": 30.0,
                     "elevation_deg": None}]],
        "width_mm": [100.0, None, 3.0],
        "brand": ["acme", "acme", None],
    })
    pq.write_table(table, root / "cat.parquet")
    parse = read_catalog(root / "cat.parquet")
    assert parse.format == "parquet"
    (p1,) = parse.specs
    assert p1.sku == "P1" and p1.width_mm == 100.0 and p1.metadata == {"brand": "acme"}
    assert (p1.images[0].view, p1.images[0].azimuth_deg, p1.images[0].elevation_deg) == (
        "front", 0.0, 5.0)
    codes = {e.sku: e.code for e in parse.errors}
    assert codes == {"P2": "unknown_view", "row-3": "missing_sku"}


def test_parquet_with_string_list_images(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"sku": ["A"], "images": [["back=photos/a.png@180,20"]]}),
                   root / "cat.parquet")
    (img,) = read_catalog(root / "cat.parquet").specs[0].images
    assert (img.view, img.azimuth_deg, img.elevation_deg) == ("back", 180.0, 20.0)


SHOPIFY = ["Handle", "Title", "Body (HTML)", "Vendor", "Type", "Variant SKU", "Image Src",
           "Image Position", "Image Alt Text"]


def test_shopify_export_one_sku_per_handle_images_by_position(root: Path) -> None:
    (root / "images").mkdir()
    (root / "images" / "mug-side.png").write_bytes(b"x")
    (root / "mug-front.png").write_bytes(b"x")
    cdn = "https://cdn.shopify.com/s/files/1/products"
    rows = [
        {"Handle": "mug", "Title": "Mug", "Vendor": "Acme", "Type": "Kitchen",
         "Variant SKU": "MUG-RED", "Image Src": f"{cdn}/mug-side.png?v=1", "Image Position": "2"},
        {"Handle": "mug", "Variant SKU": "MUG-BLUE", "Image Src": f"{cdn}/mug-front.png",
         "Image Position": "1"},
        {"Handle": "lamp", "Title": "Lamp", "Variant SKU": "",
         "Image Src": f"{cdn}/lamp.png", "Image Position": "1"},
        {"Handle": "cup", "Title": "Cup", "Variant SKU": "MUG-RED"},
    ]
    parse = read_catalog(write_csv(root / "products_export.csv", rows, SHOPIFY))
    assert parse.format == "shopify"
    (mug,) = parse.specs
    assert mug.sku == "MUG-RED" and mug.title == "Mug" and mug.category == "Kitchen"
    assert [(i.uri, i.view) for i in mug.images] == [("mug-front.png", "front"),
                                                      ("images/mug-side.png", "")]
    assert mug.metadata["handle"] == "mug" and mug.metadata["Vendor"] == "Acme"
    assert mug.metadata["variant_skus"] == "MUG-RED;MUG-BLUE"
    errors = {e.sku: e for e in parse.errors}
    assert errors["lamp"].code == "unsupported_scheme" and "images/" in errors["lamp"].fix
    assert errors["MUG-RED"].code == "duplicate_sku" and errors["MUG-RED"].row == 4


@pytest.mark.parametrize("name, content, words", [
    ("missing.csv", None, "not found"),
    ("empty.csv", b"", "empty"),
    ("blank.jsonl", b"\n\n", "empty"),
    ("header_only.csv", b"sku,images\n", "no data rows"),
    ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a text file"),
    ("notjson.jsonl", b"sku,images\nA,b.png\n", "not JSON Lines"),
    ("bad.json", b"{", "not valid JSON"),
    ("no_sku.csv", b"name,images\nA,b.png\n", "no 'sku' column"),
    ("catalog.xlsx", b"PK\x03\x04", "unsupported file type"),
    ("bad.parquet", b"not parquet at all", "not a readable Parquet"),
])
def test_unreadable_catalog_files_raise_input_error(tmp_path: Path, name: str,
                                                    content: bytes | None, words: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_catalog(path)
    assert words in info.value.message and info.value.fix


def test_a_folder_is_not_a_catalog(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a file"):
        read_catalog(tmp_path)


# --------------------------------------------------------------------------- input roots


@pytest.fixture()
def share(tmp_path_factory) -> Path:
    """A photo share outside the catalog's folder."""
    share = tmp_path_factory.mktemp("photo-share")
    (share / "p").mkdir()
    (share / "p" / "front.png").write_bytes(b"photo on a share")
    return share


def _parse(root: Path, images: str, roots=()):
    return read_catalog(write_csv(root / "cat.csv", [{"sku": "X", "images": images}]), roots)


def test_files_outside_the_catalog_folder_are_refused_by_default(root: Path, share: Path):
    rel = os.path.relpath(share / "p" / "front.png", root)
    for ref in (str(share / "p" / "front.png"), rel, (share / "p" / "front.png").as_uri()):
        (err,) = _parse(root, ref).errors
        assert err.code == "outside_root" and "--input-root" in err.fix, ref


def test_an_input_root_allows_files_below_it(root: Path, share: Path):
    target = str((share / "p" / "front.png").resolve())
    rel = os.path.relpath(share / "p" / "front.png", root)
    for ref in (str(share / "p" / "front.png"), rel, (share / "p" / "front.png").as_uri()):
        parse = _parse(root, ref, [str(share)])
        assert not parse.errors, parse.errors
        # stored resolved and absolute, so ingest needs no root to read it
        assert parse.specs[0].images[0].uri == target
    # a root for a sibling folder does not open the share
    other = share.parent / "other-share"
    other.mkdir(exist_ok=True)
    (err,) = _parse(root, str(share / "p" / "front.png"), [str(other)]).errors
    assert err.code == "outside_root" and str(other.resolve()) in err.message


def test_symlinks_escaping_every_root_are_refused(root: Path, share: Path, tmp_path_factory):
    secret = tmp_path_factory.mktemp("secret") / "key.png"
    secret.write_bytes(b"secret")
    # a link in the catalog folder into the share: refused by default, allowed with the share
    (root / "photos" / "to-share.png").symlink_to(share / "p" / "front.png")
    (err,) = _parse(root, "photos/to-share.png").errors
    assert err.code == "outside_root" and "symlink" in err.message
    ok = _parse(root, "photos/to-share.png", [str(share)])
    assert ok.specs[0].images[0].uri == str((share / "p" / "front.png").resolve())
    # a link inside an allowed root that leads outside all roots stays refused
    (share / "p" / "escape.png").symlink_to(secret)
    (err,) = _parse(root, str(share / "p" / "escape.png"), [str(share)]).errors
    assert err.code == "outside_root" and "symlink" in err.message
    # so does a linked folder
    (share / "linked-dir").symlink_to(secret.parent, target_is_directory=True)
    (err,) = _parse(root, str(share / "linked-dir" / "key.png"), [str(share)]).errors
    assert err.code == "outside_root"
    # and ../ out of an allowed root
    (err,) = _parse(root, str(share / "p" / ".." / ".." / secret.parent.name / "key.png"),
                    [str(share)]).errors
    assert err.code == "outside_root"


def test_a_root_given_through_a_symlink_is_the_folder_it_names(root: Path, share: Path,
                                                               tmp_path_factory):
    link = tmp_path_factory.mktemp("mounts") / "photos"
    link.symlink_to(share, target_is_directory=True)
    parse = _parse(root, str(link / "p" / "front.png"), [str(link)])
    assert not parse.errors and parse.specs[0].images[0].uri == str(
        (share / "p" / "front.png").resolve())


def test_bad_input_roots_stop_with_a_clear_error(root: Path, tmp_path: Path):
    write_csv(root / "cat.csv", [{"sku": "X", "images": "photos/a.png"}])
    for bad, words in ((tmp_path / "missing", "not a folder"), ("http://x/y", "only local"),
                       ("s3://", "no bucket")):
        with pytest.raises(InputError, match=words):
            read_catalog(root / "cat.csv", [str(bad)])


def test_skus_with_path_characters_are_accepted_and_kept_apart(root: Path) -> None:
    from assetfactory.core.paths import asset_dir

    skus = ["a/b", "a_b", "..", "../etc", "\\share\\x", "Mug 01", "Mug_01"]
    parse = read_catalog(write_csv(root / "cat.csv", [{"sku": s, "images": "photos/a.png"}
                                                      for s in skus]))
    assert [s.sku for s in parse.specs] == skus and not parse.errors
    assert len({asset_dir(s) for s in skus}) == len(skus)
