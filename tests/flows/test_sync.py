"""The sync flow on real Prefect (ephemeral) and real Ray: only new and changed rows convert,
no SKU's output overwrites another's, and every run is recorded in the catalog."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from catalog_helpers import FAST, PROFILE, box_obj, write_catalog

from assetfactory.catalog.views import query
from assetfactory.flows.sync import sync_catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(out, sql):
    cols, rows = query(str(out), sql)
    return [dict(zip(cols, r)) for r in rows]


def _sync(catalog, out):
    return sync_catalog(catalog=str(catalog), out=str(out), profile=PROFILE, backend="silhouette",
                        overrides=FAST)


def test_sync_converts_new_and_changed_rows_only(ray_local, tmp_path):
    src, out = tmp_path / "catalog", tmp_path / "out"
    box_obj(src / "a.obj", (0.1, 0.2, 0.1))
    box_obj(src / "b.obj", (0.3, 0.1, 0.2))
    # the two SKUs of the reported collision, with different products
    catalog = write_catalog(src / "catalog.csv", [{"sku": "Mug 01", "mesh_uri": "a.obj"},
                                                  {"sku": "Mug_01", "mesh_uri": "b.obj"}])
    first = _sync(catalog, out)
    assert first["sync_counts"] == {"converted": 2, "ok": 2, "failed": 0, "skipped": 0,
                                    "bad_rows": 0, "catalogs": 1}
    assets = {r["sku"]: r for r in _rows(out, "SELECT sku, glb_uri, glb_sha256, status "
                                              "FROM assets")}
    assert {r["status"] for r in assets.values()} == {"ok"}
    a, b = assets["Mug 01"], assets["Mug_01"]
    assert Path(a["glb_uri"]).parent != Path(b["glb_uri"]).parent
    for r in (a, b):  # each row's file still holds that SKU's own asset
        data = Path(r["glb_uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["glb_sha256"]
        assert (Path(r["glb_uri"]).parent / "sku.txt").read_text() == r["sku"]
    assert a["glb_sha256"] != b["glb_sha256"]

    again = _sync(catalog, out)
    assert again["sync_counts"]["converted"] == 0 and again["sync_counts"]["skipped"] == 2

    box_obj(src / "b.obj", (0.3, 0.1, 0.25))  # a changed mesh
    box_obj(src / "c.obj", (0.2, 0.2, 0.2))   # a new row
    write_catalog(src / "catalog.csv", [{"sku": "Mug 01", "mesh_uri": "a.obj"},
                                        {"sku": "Mug_01", "mesh_uri": "b.obj"},
                                        {"sku": "Cube", "mesh_uri": "c.obj"},
                                        {"sku": "", "mesh_uri": "c.obj"}])
    third = _sync(catalog, out)
    assert third["sync_counts"] == {"converted": 2, "ok": 2, "failed": 0, "skipped": 1,
                                    "bad_rows": 1, "catalogs": 1}
    converted = {r["sku"] for r in _rows(out, f"SELECT sku FROM attempts WHERE run_id = "
                                              f"'{third['run_id']}' AND status = 'ok'")}
    assert converted == {"Mug_01", "Cube"}

    runs = _rows(out, "SELECT * FROM flow_runs ORDER BY started_at")
    assert [(r["flow"], r["status"], r["converted"], r["skipped"]) for r in runs] == [
        ("sync", "completed", 2, 0), ("sync", "completed", 0, 2), ("sync", "completed", 2, 1)]
    params = json.loads(runs[0]["parameters"])
    assert params["catalog"] == str(catalog) and params["profile"] == PROFILE
    assert all(r["finished_at"] >= r["started_at"] for r in runs)
    assert json.loads(runs[2]["run_ids"]) == [third["run_id"]]


def test_a_sync_that_cannot_read_its_catalog_is_recorded_as_failed(ray_local, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Exception, match="not found"):
        _sync(tmp_path / "missing.csv", out)
    (run,) = _rows(out, "SELECT flow, status, error FROM flow_runs")
    assert run["flow"] == "sync" and run["status"] == "failed" and "not found" in run["error"]
