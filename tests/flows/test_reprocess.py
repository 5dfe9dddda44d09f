"""Reprocess through the real Prefect flow and a real local Ray: it picks exactly the selected
SKUs, converts them with their own overrides and links the new attempts to the old ones."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from assetfactory.catalog.fragments import asset_row, new_attempt_id, write_attempt
from assetfactory.catalog.reviews import open_reworks, record_decision
from assetfactory.catalog.views import query
from assetfactory.core.storage import open_storage
from assetfactory.core.types import AssetState, SkuSpec, StageFailure
from assetfactory.flows.recipe import build_recipe
from assetfactory.flows.reprocess import plan_reprocess, reprocess

pytestmark = pytest.mark.slow

TINY = {"cleanup": {"visibility_views": 8, "visibility_resolution": 64},
        "simplify": {"target_tris": 600}, "uv": {"resolution": 128}, "bake": {"size": 128},
        "texture": {"size": 128}, "export": {"texture_size": 128}}


@pytest.fixture(scope="module")
def ray_local(request):
    ray = pytest.importorskip("ray")
    try:   # workers take their environment (the S3 endpoint) from the driver at start
        request.getfixturevalue("s3_endpoint")
    except pytest.skip.Exception:
        pass
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory) -> Path:
    """A catalog file of three tiny vendor meshes (GLB, a few hundred triangles each): the
    conversion goes through every stage without the cost of generating from photos."""
    import csv

    import trimesh

    folder = tmp_path_factory.mktemp("meshes")
    shapes = {"mug-01": trimesh.creation.cylinder(radius=0.04, height=0.1, sections=24),
              "bottle-01": trimesh.creation.capsule(radius=0.03, height=0.2, count=(12, 12)),
              "shoebox-01": trimesh.creation.box(extents=(0.3, 0.1, 0.2))}
    for sku, mesh in shapes.items():
        mesh.export(folder / f"{sku}.glb")
    path = folder / "catalog.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["sku", "title", "mesh_uri"])
        w.writeheader()
        w.writerows({"sku": sku, "title": sku, "mesh_uri": f"{sku}.glb"} for sku in shapes)
    return path


def _old_attempt(root: str, sku: str, catalog: Path, *, failed: str | None = None,
                 metrics: dict | None = None) -> str:
    """An attempt of an earlier run, as the runner records it (recipe, catalog file)."""
    recipe = build_recipe("web", "mesh", TINY)
    state = AssetState(sku=sku, spec=SkuSpec(sku=sku), store_uri=root, run_id="r0",
                       attempt_id=new_attempt_id(), asset_id=f"old-{sku}", profile="web",
                       metrics=metrics or {"metrics_iou_min": 0.97},
                       failure=StageFailure(failed, "it broke", "retry") if failed else None)
    now = time.time()
    write_attempt(open_storage(root), asset_row(
        state, started_at=now - 5, finished_at=now, recipe=recipe.describe(),
        recipe_hash=recipe.hash, input_hashes={}, catalog_source=str(catalog)), [])
    return state.attempt_id


def _setup(root: str, catalog: Path) -> dict[str, str]:
    ids = {
        "mug-01": _old_attempt(root, "mug-01", catalog),
        "bottle-01": _old_attempt(root, "bottle-01", catalog, failed="texture"),
        "shoebox-01": _old_attempt(root, "shoebox-01", catalog,
                                   metrics={"metrics_iou_min": 0.8}),
        "ghost-01": _old_attempt(root, "ghost-01", catalog, failed="ingest"),
    }
    record_decision(root, "mug-01", "approve", reviewer="ann")
    record_decision(root, "shoebox-01", "rework", reviewer="ann", note="blurry",
                    overrides={"texture": {"size": 64}})
    return ids


def test_the_selection_is_exact(tmp_path, demo_catalog):
    root = str(tmp_path)
    ids = _setup(root, demo_catalog)

    def skus(**kw) -> list[str]:
        return [it.sku for it in plan_reprocess(root, **kw)["items"]]

    assert skus(failures_of="r0") == ["bottle-01", "ghost-01"]
    assert skus(where="metric_silhouette_iou < 0.9") == ["shoebox-01"]
    assert skus(where="failed_stage = 'texture'") == ["bottle-01"]
    assert skus(reworks=True) == ["shoebox-01"]
    plan = plan_reprocess(root, failures_of="r0", reworks=True)
    items = {it.sku: it for it in plan["items"]}
    assert items["shoebox-01"].attempt_id == ids["shoebox-01"]
    assert items["shoebox-01"].trigger.startswith("rework:")
    # the old run's own overrides are kept, the rework's are layered on top
    assert items["shoebox-01"].overrides["texture"] == {"size": 64}
    assert items["shoebox-01"].overrides["simplify"] == {"target_tris": 600}
    assert items["bottle-01"].overrides["texture"] == {"size": 128}
    assert [m["sku"] for m in plan["missing"]] == ["ghost-01"]
    assert "not in the catalog file" in plan["missing"][0]["reason"]
    assert sorted(len(g) for g in plan["groups"].values()) == [1, 1]   # two recipes
    with pytest.raises(ValueError, match="say what to reprocess"):
        plan_reprocess(root)
    # the command: the same plan, nothing converted with --dry-run; bad --set refused
    from typer.testing import CliRunner

    from assetfactory.cli import app

    res = CliRunner().invoke(app, ["reprocess", "--out", root, "--failures", "r0",
                                   "--where", "metric_silhouette_iou < 0.9", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "3 SKU(s) selected" in res.output and "ghost-01" in res.output
    assert "not in the catalog file" in res.output
    res = CliRunner().invoke(app, ["reprocess", "--out", root, "--reworks",
                                   "--set", "texture.colour=1"])
    assert res.exit_code == 2 and "texture has no option 'colour'" in res.output
    assert query(root, "SELECT count(*) FROM attempts")[1] == [(4,)]
    # a rework that changes a profile field re-derives every option that follows from it
    record_decision(root, "mug-01", "rework", reviewer="bob",
                    overrides={"profile": {"texture_px": 256}})
    mug = next(it for it in plan_reprocess(root, reworks=True)["items"] if it.sku == "mug-01")
    assert mug.overrides["profile"] == {"texture_px": 256}
    assert mug.overrides["simplify"] == {"target_tris": 600}       # not derived: kept
    assert "size" not in mug.overrides.get("texture", {})
    opts = {c.name: c.options for c in build_recipe("web", "mesh",
                                                    {k: dict(v) for k, v in
                                                     mug.overrides.items()}).calls}
    assert (opts["texture"].size, opts["export"].texture_size, opts["uv"].resolution,
            opts["simplify"].target_tris) == (256, 256, 256, 600)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_reprocess_converts_exactly_the_selection_and_links_it(where, tmp_path, request,
                                                                demo_catalog, ray_local):
    root = str(tmp_path / "out") if where == "local" else request.getfixturevalue("s3_root")
    ids = _setup(root, demo_catalog)
    # locally: the run's failures and the open reworks; on S3: the reworks alone
    summary = reprocess(out=root, failures_of="r0" if where == "local" else None,
                        reworks=True)
    want = {"bottle-01", "shoebox-01"} if where == "local" else {"shoebox-01"}
    assert {a["sku"] for a in summary["attempts"]} == want
    assert [m["sku"] for m in summary["missing"]] == (["ghost-01"] if where == "local" else [])
    _, rows = query(root, "SELECT sku, attempt_id, supersedes, trigger, status, recipe, run_id "
                          "FROM attempts WHERE run_id <> 'r0'")
    assert {r[0] for r in rows} == want                  # nothing else was converted
    for sku, attempt, supersedes, trigger, status, recipe, run in rows:
        assert supersedes == ids[sku] and run == summary["run_id"]
        assert status == "ok", (sku, rows)
        opts = {s["name"]: s["options"] for s in json.loads(recipe)["stages"]}
        assert opts["texture"]["size"] == (64 if sku == "shoebox-01" else 128)
        assert opts["simplify"]["target_tris"] == 600
    assert trigger_of(rows, "shoebox-01").startswith("rework:")
    # the new attempts are current, the rework is closed, and they were judged
    _, cur = query(root, "SELECT sku, attempt_id FROM current_assets")
    cur = dict(cur)
    for sku, attempt, *_ in rows:
        assert cur[sku] == attempt
    assert cur["mug-01"] == ids["mug-01"]
    assert open_reworks(root) == []
    _, judged = query(root, "SELECT count(*) FROM verdicts WHERE run_id = ?",
                      [summary["run_id"]])
    assert judged == [(len(want),)]


def trigger_of(rows, sku: str) -> str:
    return next(r[3] for r in rows if r[0] == sku)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
