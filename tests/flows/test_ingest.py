"""The bulk-ingest flow on real Prefect (ephemeral), real Ray and a real S3 server: each new
catalog file dropped under a prefix converts once; a restart does not redo finished files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from catalog_helpers import FAST, PROFILE, box_obj, write_catalog
from s3_server import weed_s3

from assetfactory.catalog.input import read_catalog
from assetfactory.catalog.views import query
from assetfactory.core.storage import open_storage
from assetfactory.flows.ingest import ingest_prefix, list_catalog_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with weed_s3(tmp_path_factory.mktemp("weed"), buckets=("drop", "factory")) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def ray_local(s3):
    """Ray after the S3 server: workers take the AWS_* settings from the environment then."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(out, sql):
    cols, rows = query(str(out), sql)
    return [dict(zip(cols, r)) for r in rows]


def _ingest(prefix, out):
    return ingest_prefix(prefix=str(prefix), out=str(out), profile=PROFILE, overrides=FAST)


def test_each_new_file_is_converted_once(ray_local, tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    box_obj(drop / "vendor-a" / "meshes" / "a.obj", (0.1, 0.1, 0.3))
    write_catalog(drop / "vendor-a" / "catalog.csv", [{"sku": "A-1", "mesh_uri": "meshes/a.obj"}])
    (drop / "broken.csv").write_text("title,images\nno sku column,x.png\n")
    (drop / ".uploading.csv").write_text("sku,mesh_uri\nHIDDEN,x.obj\n")
    (drop / "notes.txt").write_text("not a catalog")

    first = _ingest(drop, out)
    by_file = {Path(f["uri"]).name: f for f in first["files"]}
    assert set(by_file) == {"catalog.csv", "broken.csv"}
    assert by_file["catalog.csv"]["status"] == "converted" and by_file["catalog.csv"]["ok"] == 1
    assert by_file["broken.csv"]["status"] == "refused" and "sku" in by_file["broken.csv"]["error"]

    # the next scheduled run (a new process would read the same rows) finds nothing new
    second = _ingest(drop, out)
    assert second["files"] == [] and second["counts"]["files_new"] == 0

    # a new file, and a re-uploaded one with new content
    box_obj(drop / "vendor-b" / "b.obj", (0.2, 0.1, 0.1))
    write_catalog(drop / "vendor-b" / "catalog.csv", [{"sku": "B-1", "mesh_uri": "b.obj"}])
    write_catalog(drop / "vendor-a" / "catalog.csv", [{"sku": "A-1", "mesh_uri": "meshes/a.obj"},
                                                      {"sku": "A-2", "mesh_uri": "meshes/a.obj"}])
    third = _ingest(drop, out)
    got = {str(Path(f["uri"]).relative_to(drop)): (f["converted"], f["skipped"])
           for f in third["files"]}
    assert got == {"vendor-a/catalog.csv": (1, 1), "vendor-b/catalog.csv": (1, 0)}

    ingested = _rows(out, "SELECT uri, status FROM ingested ORDER BY ingested_at")
    assert [Path(r["uri"]).name for r in ingested].count("catalog.csv") == 3
    assert sorted(r["sku"] for r in _rows(out, "SELECT sku FROM assets WHERE status = 'ok'")) \
        == ["A-1", "A-2", "B-1"]
    runs = _rows(out, "SELECT flow, status, catalogs, converted FROM flow_runs "
                      "ORDER BY started_at")
    assert [(r["flow"], r["status"], r["catalogs"], r["converted"]) for r in runs] == [
        ("ingest", "completed", 1, 1), ("ingest", "completed", None, None),
        ("ingest", "completed", 2, 2)]


def test_s3_prefix_catalogs_and_outputs(ray_local, tmp_path):
    drop = open_storage("s3://drop/suppliers")
    local = tmp_path / "staging"
    box_obj(local / "m" / "c.obj", (0.15, 0.15, 0.15))
    write_catalog(local / "cat.csv", [{"sku": "S3 Cube", "mesh_uri": "m/c.obj"},
                                      {"sku": "Escape", "mesh_uri": "../../factory/x.obj"}])
    drop.put("v1/m/c.obj", (local / "m" / "c.obj").read_bytes())
    drop.put("v1/cat.csv", (local / "cat.csv").read_bytes())

    # relative paths in an S3 catalog are keys beside it, and may not climb out of it
    parse = read_catalog("s3://drop/suppliers/v1/cat.csv")
    assert parse.specs[0].mesh_uri == "s3://drop/suppliers/v1/m/c.obj"
    assert parse.errors[0].sku == "Escape" and parse.errors[0].code == "outside_root"
    assert [u for u, _, _ in list_catalog_files("s3://drop/suppliers")] == [
        "s3://drop/suppliers/v1/cat.csv"]

    out = "s3://factory/assets"
    result = _ingest("s3://drop/suppliers", out)
    (f,) = result["files"]
    assert (f["status"], f["ok"], f["bad_rows"]) == ("converted", 1, 1)
    (asset,) = _rows(out, "SELECT sku, glb_uri FROM assets WHERE status = 'ok'")
    assert asset["glb_uri"].startswith("s3://factory/assets/assets/S3_Cube-")
    assert _ingest("s3://drop/suppliers", out)["files"] == []
    assert _rows(out, "SELECT count(*) AS n FROM ingested")[0]["n"] == 1
