"""Publishing: exactly the approved current assets, a manifest, idempotent, recorded; on a
local folder and on S3."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
from catalog_rows import write
from typer.testing import CliRunner

from assetfactory.catalog.publish import PublishError, publish
from assetfactory.catalog.reviews import record_decision
from assetfactory.catalog.views import query
from assetfactory.cli import app
from assetfactory.core.hashing import sha256_bytes
from assetfactory.core.storage import open_storage


def _roots(where: str, tmp_path, request) -> tuple[str, str]:
    if where == "local":
        return str(tmp_path / "factory"), str(tmp_path / "delivery")
    base = request.getfixturevalue("s3_root")
    return base + "/factory", base + "/delivery"


def _files(dest: str) -> set[str]:
    return set(open_storage(dest).list(""))


def _manifest(dest: str) -> tuple[list[dict], dict]:
    store = open_storage(dest)
    rows = list(csv.DictReader(io.StringIO(store.get("manifest.csv").decode())))
    return rows, json.loads(store.get("manifest.json"))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_publish_delivers_exactly_the_approved_current_assets(where, tmp_path, request):
    root, dest = _roots(where, tmp_path, request)
    rows = {sku: write(root, sku, title=f"The {sku}") for sku in
            ("app-1", "app-2", "rejected", "unreviewed", "rework", "superseded")}
    write(root, "failed", failed="texture")
    record_decision(root, "app-1", "approve", reviewer="ann")
    record_decision(root, "app-2", "approve", reviewer="bob", note="lovely")
    record_decision(root, "rejected", "reject", reviewer="ann")
    record_decision(root, "rework", "rework", reviewer="ann")
    record_decision(root, "failed", "reject", reviewer="ann")
    record_decision(root, "superseded", "approve", reviewer="ann")
    write(root, "superseded", "r2")          # a newer attempt nobody has looked at yet

    res = publish(root, dest, publisher="test")
    assert (res.published, res.withdrawn, res.refused) == (["app-1", "app-2"], [], [])
    assert _files(dest) == {"manifest.csv", "manifest.json"} | {
        f"{s}/{n}" for s in ("app-1", "app-2") for n in (f"{s}.glb", f"{s}.usdz", "poster.png")}
    store, src = open_storage(dest), open_storage(root)
    for sku in ("app-1", "app-2"):
        assert store.get(f"{sku}/{sku}.glb") == src.get(rows[sku]["glb_uri"])
    mrows, mjson = _manifest(dest)
    assert [r["sku"] for r in mrows] == ["app-1", "app-2"] and mjson["count"] == 2
    first = mrows[0]
    glb = store.get("app-1/app-1.glb")
    assert first["glb"] == "app-1/app-1.glb" and first["glb_url"].endswith("/app-1/app-1.glb")
    assert first["glb_sha256"] == sha256_bytes(glb) == rows["app-1"]["glb_sha256"]
    assert int(first["glb_bytes"]) == len(glb)
    assert first["usdz_sha256"] == sha256_bytes(store.get("app-1/app-1.usdz"))
    assert (first["title"], first["triangles"], first["width_mm"], first["height_mm"],
            first["depth_mm"]) == ("The app-1", "1000", "100.0", "200.0", "300.0")
    assert (first["reviewed"], first["approved_by"]) == ("True", "ann")
    assert mjson["items"][1]["approved_by"] == "bob"
    _, recorded = query(root, "SELECT sku, action, publisher FROM published ORDER BY sku")
    assert recorded == [("app-1", "published", "test"), ("app-2", "published", "test")]

    # idempotent: nothing copied, no manifest rewritten, no row recorded
    before = {k: store.get(k) for k in _files(dest)}
    again = publish(root, dest)
    assert (again.published, again.unchanged, again.manifest_written) == \
        ([], ["app-1", "app-2"], False)
    assert {k: store.get(k) for k in _files(dest)} == before
    assert query(root, "SELECT count(*) FROM published")[1] == [(2,)]

    # only when asked: the current attempts nobody reviewed; never rejected or rework ones
    wide = publish(root, dest, include_unreviewed=True)
    assert wide.published == ["superseded", "unreviewed"]
    assert [r["reviewed"] for r in _manifest(dest)[0]] == ["True", "True", "False", "False"]
    # and without the flag they are withdrawn again, their files removed
    back = publish(root, dest)
    assert back.withdrawn == ["superseded", "unreviewed"] and back.published == []
    assert not any(k.startswith(("unreviewed/", "superseded/")) for k in _files(dest))
    # a later rejection withdraws a delivered asset
    record_decision(root, "app-2", "reject", reviewer="ann")
    assert publish(root, dest).withdrawn == ["app-2"]
    assert [r["sku"] for r in _manifest(dest)[0]] == ["app-1"]
    _, hist = query(root, "SELECT event FROM sku_history('app-2')")
    assert [e for (e,) in hist][-2:] == ["decision", "withdrawn"]


def test_publish_refuses_files_that_no_longer_match_the_approval(tmp_path):
    root, dest = str(tmp_path / "factory"), str(tmp_path / "delivery")
    row = write(root, "mug")
    write(root, "lamp")
    record_decision(root, "mug", "approve", reviewer="ann")
    record_decision(root, "lamp", "approve", reviewer="ann")
    key = os.path.relpath(row["glb_uri"], root)  # storage keys are relative to the root
    open_storage(root).put(key, b"bytes of some later attempt")
    res = publish(root, dest)
    assert res.published == ["lamp"]
    assert [r["sku"] for r in res.refused] == ["mug"]
    assert "no longer matches" in res.refused[0]["reason"] and res.refused[0]["fix"]
    assert not any(k.startswith("mug/") for k in _files(dest))
    with pytest.raises(PublishError, match="inside the factory's own outputs"):
        publish(root, root + "/assets")
    runner = CliRunner()
    out = runner.invoke(app, ["publish", dest, "--out", root])
    assert out.exit_code == 1 and "mug" in out.output and "unchanged 1" in out.output
