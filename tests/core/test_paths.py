"""Per-SKU output folders: readable, safe for any SKU text, and never shared by two SKUs."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from assetfactory.core import paths
from assetfactory.core.paths import (
    AssetDirTaken,
    asset_dir,
    asset_file_stem,
    asset_key,
    claim_asset_dir,
    sku_slug,
)
from assetfactory.core.storage import LocalStorage, check_key

HOSTILE = ["Mug 01", "Mug_01", "mug_01", "MUG_01", "Mug/01", "Mug\\01", "../../etc/passwd",
           "/etc/passwd", "..", ".", "...", " ", "_", "-", "\t", "a\x00b", "CON", "nul.txt",
           "Tasse – groß ☕", "杯子", "☕☕☕", "é", "e\u0301", "x" * 128, "y" * 5000,
           "a" * 47 + "é", ".hidden", "trailing.", "semi;colon", "q?uery#frag", "%2e%2e",
           "C:\\Windows", "s3://bucket/key", "line\nbreak", "\u202eevil"]
SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def test_the_reported_collision_is_gone():
    # both SKUs used to write assets/Mug_01/Mug_01.glb
    assert sku_slug("Mug 01") == sku_slug("Mug_01") == "Mug_01"
    assert asset_dir("Mug 01") != asset_dir("Mug_01")
    digest = hashlib.sha256(b"Mug 01").hexdigest()[:16]
    assert asset_dir("Mug 01") == f"assets/Mug_01-{digest}"
    assert asset_key("Mug 01", "Mug_01.glb") == f"assets/Mug_01-{digest}/Mug_01.glb"


@pytest.mark.parametrize("sku", HOSTILE)
def test_hostile_skus_map_to_one_safe_folder(sku, tmp_path):
    folder = asset_dir(sku)
    prefix, name = folder.split("/")
    assert prefix == "assets" and SAFE_SEGMENT.fullmatch(name), folder
    assert len(name) <= paths.SLUG_MAX + 1 + paths.DIGEST_HEX
    stem = asset_file_stem(sku)
    assert SAFE_SEGMENT.fullmatch(stem) and stem.upper() not in {"CON", "NUL", "PRN", "AUX"}
    key = asset_key(sku, f"{stem}.glb")
    assert check_key(key) == key
    store = LocalStorage(tmp_path)
    ref = store.put(key, b"glb")
    written = (tmp_path / key).resolve()
    assert written.is_relative_to(tmp_path.resolve()) and ref.uri == str(written)
    assert asset_dir(sku) == folder  # a function of the SKU alone


def test_every_hostile_and_random_sku_gets_its_own_folder_even_case_folded():
    rng = random.Random(7)
    alphabet = "aA0 _-./\\é☕"
    skus = set(HOSTILE) | {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
                           for _ in range(20000)}
    folders = {asset_dir(s) for s in skus}
    assert len(folders) == len(skus)
    # case-insensitive file systems (macOS, Windows) must not fold two SKUs together either
    assert len({f.lower() for f in folders}) == len(skus)


def test_file_names_must_be_plain():
    for bad in ("", ".", "..", "a/b", "a\\b"):
        with pytest.raises(ValueError):
            asset_key("sku", bad)


def test_a_folder_claimed_by_another_sku_is_never_written(tmp_path, monkeypatch):
    store = LocalStorage(tmp_path)
    assert claim_asset_dir(store, "Mug 01") == asset_dir("Mug 01")
    assert (tmp_path / asset_dir("Mug 01") / "sku.txt").read_text() == "Mug 01"
    assert claim_asset_dir(store, "Mug 01") == asset_dir("Mug 01")  # the owner again: fine
    # force a digest collision: the second SKU must be refused, the owner file untouched
    monkeypatch.setattr(paths, "sku_digest", lambda sku: "0" * 16)
    claim_asset_dir(store, "Mug 01")
    with pytest.raises(AssetDirTaken, match="Mug 01"):
        claim_asset_dir(store, "Mug_01")
    assert (tmp_path / "assets" / f"Mug_01-{'0' * 16}" / "sku.txt").read_text() == "Mug 01"
