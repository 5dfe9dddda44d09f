"""The scheduled flows on real Prefect (ephemeral), real Ray and a real S3 server: ``sync``
converts only new and changed rows, ``ingest`` converts each new catalog file dropped under a
prefix once, no SKU's output overwrites another's, and every run is recorded in the catalog.

Both flows share one Ray session and one local output folder (so ingest also shows that a SKU
sync already converted is skipped by identity, whichever flow meets it): a few 12-triangle boxes
through the ``mesh`` backend at 128 px maps.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from catalog_helpers import FAST, PROFILE, box_obj, write_catalog

from assetfactory.catalog.input import read_catalog
from assetfactory.catalog.views import query
from assetfactory.core.storage import open_storage
from assetfactory.flows.ingest import ingest_prefix, list_catalog_files
from assetfactory.flows.sync import sync_catalog

pytestmark = pytest.mark.slow
BACKEND = "mesh"


@pytest.fixture(scope="module")
def ray_local(s3_endpoint):
    """Ray after the S3 server: workers take the AWS_* settings from the environment then."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The folders both flows use: catalog sources, the drop folder and one output folder."""
    root = tmp_path_factory.mktemp("scheduled")
    return root / "catalog", root / "drop", root / "out"


def _rows(out, sql):
    cols, rows = query(str(out), sql)
    return [dict(zip(cols, r)) for r in rows]


def _sync(catalog, out):
    return sync_catalog(catalog=str(catalog), out=str(out), profile=PROFILE, backend=BACKEND,
                        overrides=FAST)


def _ingest(prefix, out):
    return ingest_prefix(prefix=str(prefix), out=str(out), profile=PROFILE, backend=BACKEND,
                         overrides=FAST)


def test_sync_converts_new_and_changed_rows_only(ray_local, shared):
    src, _, out = shared
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

    box_obj(src / "b.obj", (0.3, 0.1, 0.25))  # a changed mesh; Mug 01 is unchanged
    write_catalog(src / "catalog.csv", [{"sku": "Mug 01", "mesh_uri": "a.obj"},
                                        {"sku": "Mug_01", "mesh_uri": "b.obj"},
                                        {"sku": "", "mesh_uri": "b.obj"}])
    second = _sync(catalog, out)
    assert second["sync_counts"] == {"converted": 1, "ok": 1, "failed": 0, "skipped": 1,
                                     "bad_rows": 1, "catalogs": 1}
    converted = {r["sku"] for r in _rows(out, f"SELECT sku FROM attempts WHERE run_id = "
                                              f"'{second['run_id']}' AND status = 'ok'")}
    assert converted == {"Mug_01"}
    (b2,) = _rows(out, "SELECT glb_uri, glb_sha256 FROM assets WHERE sku = 'Mug_01'")
    assert b2["glb_sha256"] != b["glb_sha256"]
    assert hashlib.sha256(Path(b2["glb_uri"]).read_bytes()).hexdigest() == b2["glb_sha256"]
    assert hashlib.sha256(Path(a["glb_uri"]).read_bytes()).hexdigest() == a["glb_sha256"]

    runs = _rows(out, "SELECT * FROM flow_runs ORDER BY started_at")
    assert [(r["flow"], r["status"], r["converted"], r["skipped"]) for r in runs] == [
        ("sync", "completed", 2, 0), ("sync", "completed", 1, 1)]
    params = json.loads(runs[0]["parameters"])
    assert params["catalog"] == str(catalog) and params["profile"] == PROFILE
    assert all(r["finished_at"] >= r["started_at"] for r in runs)
    assert json.loads(runs[1]["run_ids"]) == [second["run_id"]]


def test_a_sync_that_cannot_read_its_catalog_is_recorded_as_failed(ray_local, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Exception, match="not found"):
        _sync(tmp_path / "missing.csv", out)
    (run,) = _rows(out, "SELECT flow, status, error FROM flow_runs")
    assert run["flow"] == "sync" and run["status"] == "failed" and "not found" in run["error"]


def test_each_new_file_is_ingested_once(ray_local, shared):
    src, drop, out = shared
    if not (src / "a.obj").exists():
        pytest.skip("needs the sync test's output folder (run the module)")
    # the same product sync converted as "Mug 01": same SKU, same bytes, so the same identity
    (drop / "vendor-a" / "meshes").mkdir(parents=True)
    (drop / "vendor-a" / "meshes" / "a.obj").write_bytes((src / "a.obj").read_bytes())
    write_catalog(drop / "vendor-a" / "catalog.csv",
                  [{"sku": "Mug 01", "mesh_uri": "meshes/a.obj"}])
    (drop / "broken.csv").write_text("title,images\nno sku column,x.png\n")
    (drop / ".uploading.csv").write_text("sku,mesh_uri\nHIDDEN,x.obj\n")
    (drop / "notes.txt").write_text("not a catalog")

    first = _ingest(drop, out)
    by_file = {Path(f["uri"]).name: f for f in first["files"]}
    assert set(by_file) == {"catalog.csv", "broken.csv"}
    assert by_file["catalog.csv"]["status"] == "converted"
    assert (by_file["catalog.csv"]["converted"], by_file["catalog.csv"]["skipped"]) == (0, 1)
    assert by_file["broken.csv"]["status"] == "refused" and "sku" in by_file["broken.csv"]["error"]

    # the next scheduled run (a new process would read the same rows) finds nothing new
    second = _ingest(drop, out)
    assert second["files"] == [] and second["counts"]["files_new"] == 0

    # a re-uploaded file with new content: its new row converts, the unchanged one is skipped
    write_catalog(drop / "vendor-a" / "catalog.csv",
                  [{"sku": "Mug 01", "mesh_uri": "meshes/a.obj"},
                   {"sku": "A-2", "mesh_uri": "meshes/a.obj"}])
    third = _ingest(drop, out)
    got = {str(Path(f["uri"]).relative_to(drop)): (f["converted"], f["skipped"])
           for f in third["files"]}
    assert got == {"vendor-a/catalog.csv": (1, 1)}

    ingested = _rows(out, "SELECT uri, status FROM ingested ORDER BY ingested_at")
    assert [Path(r["uri"]).name for r in ingested].count("catalog.csv") == 2
    assert sorted(r["sku"] for r in _rows(out, "SELECT sku FROM assets WHERE status = 'ok'")) \
        == ["A-2", "Mug 01", "Mug_01"]
    runs = _rows(out, "SELECT flow, status, catalogs, converted FROM flow_runs "
                      "WHERE flow = 'ingest' ORDER BY started_at")
    assert [(r["flow"], r["status"], r["catalogs"], r["converted"]) for r in runs] == [
        ("ingest", "completed", 1, 0), ("ingest", "completed", None, None),
        ("ingest", "completed", 1, 1)]


def test_ingest_from_an_s3_prefix_into_s3(ray_local, tmp_path):
    drop = open_storage("s3://factory/drop/suppliers")
    local = tmp_path / "staging"
    box_obj(local / "m" / "c.obj", (0.15, 0.15, 0.15))
    write_catalog(local / "cat.csv", [{"sku": "S3 Cube", "mesh_uri": "m/c.obj"},
                                      {"sku": "Escape", "mesh_uri": "../../factory/x.obj"}])
    drop.put("v1/m/c.obj", (local / "m" / "c.obj").read_bytes())
    drop.put("v1/cat.csv", (local / "cat.csv").read_bytes())

    # relative paths in an S3 catalog are keys beside it, and may not climb out of it (one
    # bucket: the session's S3 server has volumes for few buckets)
    parse = read_catalog("s3://factory/drop/suppliers/v1/cat.csv")
    assert parse.specs[0].mesh_uri == "s3://factory/drop/suppliers/v1/m/c.obj"
    assert parse.errors[0].sku == "Escape" and parse.errors[0].code == "outside_root"
    assert [u for u, _, _ in list_catalog_files("s3://factory/drop/suppliers")] == [
        "s3://factory/drop/suppliers/v1/cat.csv"]

    out = "s3://factory/scheduled-assets"
    result = _ingest("s3://factory/drop/suppliers", out)
    (f,) = result["files"]
    assert (f["status"], f["ok"], f["bad_rows"]) == ("converted", 1, 1)
    (asset,) = _rows(out, "SELECT sku, glb_uri FROM assets WHERE status = 'ok'")
    assert asset["glb_uri"].startswith("s3://factory/scheduled-assets/assets/S3_Cube-")
    assert _ingest("s3://factory/drop/suppliers", out)["files"] == []
    assert _rows(out, "SELECT count(*) AS n FROM ingested")[0]["n"] == 1
