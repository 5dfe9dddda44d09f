"""End to end through the real Prefect flow and a real local Ray: the demo catalog, the real
photos of ../shared/data/images and the malformed files of ../shared/data/broken."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from assetfactory.catalog.views import query
from assetfactory.cli import app
from assetfactory.core.validate import validate_gltf
from assetfactory.demo import make_demo_catalog
from assetfactory.flows.convert import convert_catalog

pytestmark = pytest.mark.slow
# The demo's own profile (ar: GLB and USDZ) with every map at 512 px instead of 2048: the
# stages run the same code, at a sixteenth of the texels (`make demo` runs the full size).
DEMO_RECIPE = {"profile": {"texture_px": 512}}
# Many real inputs in one run: every map at 256 px and 5k triangles (what is checked is that
# each input gives an asset or a reason, not the texture's detail).
SMALL_RECIPE = {"profile": {"texture_px": 256, "target_tris": 5000}}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("factory")
    catalog = make_demo_catalog(out / "demo-catalog")
    summary = convert_catalog(catalog=str(catalog), out=str(out), overrides=DEMO_RECIPE)
    return out, catalog, summary


def _rows(out, sql):
    cols, rows = query(str(out), sql)
    return [dict(zip(cols, r)) for r in rows]


def _merged_volume(path: Path) -> float:
    mesh = trimesh.load(path, force="mesh", process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    return abs(float(mesh.volume))


def test_every_demo_sku_has_a_row(demo):
    out, catalog, summary = demo
    with open(catalog, newline="") as fh:
        skus = {r["sku"] for r in csv.DictReader(fh)}
    rows = {r["sku"]: r for r in _rows(out, "SELECT * FROM assets")}
    assert set(rows) == skus
    failed = {s: r for s, r in rows.items() if r["status"] != "ok"}
    # exactly the deliberately corrupt SKU fails, at ingest, with a reason and a fix
    assert len(failed) == 1, {s: (r["failed_stage"], r["error"]) for s, r in failed.items()}
    (bad,) = failed.values()
    assert bad["failed_stage"] == "ingest" and bad["error"] and bad["fix"]
    assert summary["counts"] == {"failed": 1, "ok": len(skus) - 1}
    # the run leaves its latest-attempt table, fresh and triaged, for diffs against it
    from assetfactory.catalog.files import snapshot
    from assetfactory.catalog.latest import latest_tables

    (table,) = latest_tables(str(out))
    assert snapshot(str(out)).fresh_latest(summary["run_id"]).key == table
    (verdicts,) = _rows(out, f"SELECT count(verdict) AS n FROM read_parquet('{out}/{table}')")
    assert verdicts["n"] == len(skus)


def test_demo_glbs_load_and_validate(demo):
    out, _, _ = demo
    for r in _rows(out, "SELECT sku, glb_uri, poster_uri, gltf_errors FROM assets "
                        "WHERE status = 'ok'"):
        path = Path(r["glb_uri"])
        mesh = trimesh.load(path, force="mesh")
        assert len(mesh.faces) > 100, r["sku"]
        report = validate_gltf(path.read_bytes())
        assert report.errors == 0 == r["gltf_errors"], (r["sku"], report.messages[:3])
        assert Path(r["poster_uri"]).stat().st_size > 1000
        # asset conventions: origin at the bottom centre
        lo, hi = mesh.bounds
        assert abs(lo[1]) < 1e-3 and np.allclose((lo + hi)[[0, 2]] / 2, 0, atol=1e-3)


def test_multiview_reconstruction_matches_ground_truth(demo):
    out, catalog, _ = demo
    truth = json.loads((catalog.parent / "ground_truth.json").read_text())
    rows = {r["sku"]: r for r in _rows(out, "SELECT * FROM assets WHERE status = 'ok'")}
    checked = 0
    for sku, gt in truth.items():
        if len(gt["views"]) < 2 or sku not in rows:
            continue
        r = rows[sku]
        assert r["metrics_iou_mean"] >= 0.9, (sku, r["metrics_iou_mean"])
        vol = _merged_volume(Path(r["glb_uri"]))
        assert abs(vol - gt["volume_m3"]) / gt["volume_m3"] <= 0.25, (sku, vol, gt["volume_m3"])
        checked += 1
    assert checked >= 5


def test_rerun_skips_unchanged_assets(demo):
    out, catalog, _ = demo
    before = _rows(out, "SELECT count(*) AS n FROM attempts")[0]["n"]
    summary = convert_catalog(catalog=str(catalog), out=str(out), overrides=DEMO_RECIPE)
    after = _rows(out, "SELECT count(*) AS n FROM attempts")[0]["n"]
    ok = _rows(out, "SELECT count(*) AS n FROM assets WHERE status = 'ok'")[0]["n"]
    assert summary["skipped"] == ok
    # only the broken SKU is attempted again; nothing else written twice
    assert after == before + 1


def test_cli_reads_the_catalog(demo):
    out, _, _ = demo
    runner = CliRunner()
    res = runner.invoke(app, ["status", "--out", str(out)])
    assert res.exit_code == 0 and "ok" in res.output
    sku = _rows(out, "SELECT sku FROM assets WHERE status = 'ok' LIMIT 1")[0]["sku"]
    res = runner.invoke(app, ["show", sku, "--out", str(out)])
    assert res.exit_code == 0 and "texture" in res.output
    res = runner.invoke(app, ["query", ("SELECT stage, sum(duration_s) AS s FROM stages "
                                       "GROUP BY stage"), "--out", str(out), "--json"])
    assert res.exit_code == 0
    stages = {json.loads(line)["stage"] for line in res.output.strip().splitlines()}
    assert {"ingest", "generate", "export", "metrics"} <= stages
    # a wrong column is the user's mistake: a one-line reason and a hint, no traceback
    res = runner.invoke(app, ["query", "SELECT no_such_column FROM assets", "--out", str(out)])
    assert res.exit_code == 2 and "query failed" in res.output and "DESCRIBE" in res.output
    assert "Traceback" not in res.output


def test_real_photos_each_give_an_asset_or_a_reason(shared_data, tmp_path, ray_local):
    images = sorted((shared_data / "images").iterdir())
    cat = tmp_path / "photos"
    cat.mkdir()
    rows = []
    for i, img in enumerate(images):
        shutil.copy(img, cat / img.name)  # a symlink would point outside the catalog's root
        rows.append({"sku": f"photo-{i:02d}", "title": img.stem, "images": f"front={img.name}"})
    catalog = cat / "catalog.csv"
    with open(catalog, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["sku", "title", "images"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "out"
    convert_catalog(catalog=str(catalog), out=str(out), profile="web", overrides=SMALL_RECIPE)
    got = {r["sku"]: r for r in _rows(out, "SELECT * FROM assets")}
    assert set(got) == {r["sku"] for r in rows}
    for sku, r in got.items():
        if r["status"] == "ok":
            assert Path(r["glb_uri"]).exists() and r["gltf_errors"] == 0
        else:
            assert r["error"] and r["fix"] and r["error_kind"] != "internal", (sku, r["error"])
    assert sum(r["status"] == "ok" for r in got.values()) >= len(rows) * 0.8


def test_broken_files_give_error_rows_and_the_rest_completes(shared_data, tmp_path, ray_local):
    broken = sorted(p for p in (shared_data / "broken").iterdir())
    cat = tmp_path / "cat"
    cat.mkdir()
    rows = []
    for i, p in enumerate(broken):
        target = cat / p.name
        (shutil.copytree if p.is_dir() else shutil.copy)(p, target)
        col = "images" if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") else "mesh_uri"
        if p.is_dir():
            inner = sorted(x for x in target.rglob("*") if x.suffix in (".gltf", ".glb"))
            rel = str(inner[0].relative_to(cat)) if inner else p.name
        else:
            rel = p.name
        rows.append({"sku": f"broken-{i:02d}", "title": p.name, col: rel})
    # two good SKUs in the same catalog: they must complete beside the broken ones
    good = make_demo_catalog(cat / "demo", n=3)
    with open(good, newline="") as fh:
        good_rows = [g for g in csv.DictReader(fh) if not g["sku"].startswith("broken")][:2]
    for g in good_rows:
        g["images"] = ";".join(e.replace("=photos/", "=demo/photos/")
                               for e in g["images"].split(";"))
    catalog = cat / "catalog.csv"
    with open(catalog, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["sku", "title", "images", "mesh_uri"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows + good_rows)
    out = tmp_path / "out"
    convert_catalog(catalog=str(catalog), out=str(out), profile="web", overrides=SMALL_RECIPE)
    got = {r["sku"]: r for r in _rows(out, "SELECT * FROM assets")}
    for r in rows:
        a = got[r["sku"]]
        if a["status"] != "ok":
            assert a["error"] and a["fix"] and a["failed_stage"], (r["title"], a)
            assert a["error_kind"] != "internal", (r["title"], a["error"])
    assert all(got[g["sku"]]["status"] == "ok" for g in good_rows)


def test_shards_are_prefect_tasks_and_a_rerun_skips_every_sku(tmp_path, ray_local,
                                                             monkeypatch):
    """Three shards through real Prefect; the second fails once after one of its SKUs was
    recorded (the driver's hook raises), Prefect runs it again, and the retry converts only
    the SKUs that the failed try left unrecorded: every SKU ends with one attempt."""
    from assetfactory.flows import convert as conv

    failed: list[str] = []
    retries: list[tuple[list[str], list[str]]] = []

    def hook(summary: dict) -> None:
        if summary["sku"] in ("box-2", "box-3") and not failed:
            failed.append(summary["sku"])  # its record is written: the retry must leave it
            raise RuntimeError("the shard's driver side failed once")

    def spy(blocks):
        left = real_unrecorded(blocks)
        retries.append(([j.state.sku for b in blocks for j in b],
                        [j.state.sku for b in left for j in b]))
        return left

    real_unrecorded = conv.unrecorded
    monkeypatch.setattr(conv, "PROGRESS_HOOK", hook)
    monkeypatch.setattr(conv, "unrecorded", spy)
    monkeypatch.setattr(conv, "convert_shard",
                        conv.convert_shard.with_options(retry_delay_seconds=0))
    cat = tmp_path / "cat"
    cat.mkdir()
    rows = []
    for i in range(5):
        trimesh.creation.box(extents=(0.1 + 0.02 * i, 0.2, 0.1)).export(cat / f"b{i}.glb")
        rows.append({"sku": f"box-{i}", "mesh_uri": f"b{i}.glb"})
    with open(cat / "catalog.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["sku", "mesh_uri"])
        w.writeheader()
        w.writerows(rows)
    small = {"texture": {"size": 64}, "export": {"texture_size": 64, "poster_size": 64},
             "bake": {"size": 64}, "uv": {"resolution": 64}}
    out = tmp_path / "out"
    first = convert_catalog(catalog=str(cat / "catalog.csv"), out=str(out), profile="web",
                            backend="mesh", overrides=small, shard_size=2)
    assert first["shards"] == 3 and first["counts"] == {"ok": 5}
    # only the failed shard ran again, planned with both its SKUs, and left out the recorded one
    assert len(retries) == 1 and sorted(retries[0][0]) == ["box-2", "box-3"]
    assert failed and failed[0] not in retries[0][1]
    assert _rows(out, "SELECT count(*) AS n, count(DISTINCT sku) AS k FROM attempts")[0] == \
        {"n": 5, "k": 5}
    monkeypatch.setattr(conv, "PROGRESS_HOOK", None)
    again = convert_catalog(catalog=str(cat / "catalog.csv"), out=str(out), profile="web",
                            backend="mesh", overrides=small, shard_size=2)
    assert again["skipped"] == 5 and again["shards"] == 3 and not again["counts"]
    assert _rows(out, "SELECT count(*) AS n FROM attempts")[0]["n"] == 5


def test_a_slow_shard_does_not_hold_back_the_next(tmp_path):
    """``bounded_submit`` (how ``run_shards`` keeps two shards in flight) submits the next
    shard when *any* running one ends: behind a slow first shard the others go on."""
    import threading
    import time

    from prefect import flow, task

    from assetfactory.flows.convert import bounded_submit

    times: dict[int, tuple[float, float]] = {}
    lock = threading.Lock()

    @task
    def shard(i: int, seconds: float) -> int:
        start = time.monotonic()
        time.sleep(seconds)
        with lock:
            times[i] = (start, time.monotonic())
        return i

    @flow
    def run() -> list[int]:
        return bounded_submit(shard.submit, [(0, 3.0), (1, 0.1), (2, 0.1), (3, 0.1)], 2)

    done = run()
    assert sorted(done) == [0, 1, 2, 3] and done[-1] == 0  # the slow one ended last
    slow_end = times[0][1]
    assert times[2][0] < slow_end and times[3][0] < slow_end, times
