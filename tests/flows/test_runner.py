"""The runner: failures stay with their SKU, in-process and on real Ray."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_stages

from assetfactory.catalog.views import query
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.flows.recipe import Recipe, StageCall, build_recipe
from assetfactory.flows.runner import AttemptMeta, run_asset, run_assets_on_ray, run_stage

RECIPE = Recipe("test", "none", (
    StageCall("count", "toy_stages:count", toy_stages.CountOptions(2)),
    StageCall("picky", "toy_stages:picky", toy_stages.CountOptions()),
    StageCall("count", "toy_stages:count", toy_stages.CountOptions(3)),
))


def _state(tmp_path, sku):
    return AssetState(sku=sku, spec=SkuSpec(sku=sku), store_uri=str(tmp_path), run_id="r",
                      attempt_id=f"att-{sku}", asset_id=f"id-{sku}")


def test_run_asset_in_process(tmp_path):
    ok = run_asset(_state(tmp_path, "good"), RECIPE)
    assert ok.ok and ok.metrics["count"] == 5 and len(ok.records) == 3
    bad = run_asset(_state(tmp_path, "bad1"), RECIPE)
    assert bad.failure.stage == "picky" and bad.failure.fix == "make it good"
    assert bad.metrics["count"] == 2  # later stages did not run
    assert [r.status for r in bad.records] == ["ok", "failed"]
    bug = run_stage(RECIPE.calls[1], _state(tmp_path, "bug1"))
    assert bug.failure.kind == "internal" and "RuntimeError" in bug.failure.message


def test_recipe_is_data_and_hash_tracks_options():
    a, b = build_recipe("ar"), build_recipe("web")
    assert [c.name for c in a.calls][:2] == ["ingest", "generate"]
    assert a.hash != b.hash
    assert build_recipe("ar").hash == a.hash
    with pytest.raises(ValueError):
        build_recipe("nope")


@pytest.mark.slow
def test_ray_isolates_failures_and_records_every_sku(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 [str(Path(__file__).parent)] + sys.path)}})
    try:
        skus = ["good1", "bad1", "bug1", "die1", "good2"]
        states = [_state(tmp_path, s) for s in skus]
        metas = [AttemptMeta(0.0, {}, "rh", {}, "test")] * len(skus)
        seen = []
        results = run_assets_on_ray(states, RECIPE, metas, on_done=seen.append)
    finally:
        ray.shutdown()
    assert sorted(r["sku"] for r in results) == sorted(skus) == sorted(s["sku"] for s in seen)
    _, rows = query(str(tmp_path), "SELECT sku, status, failed_stage FROM assets ORDER BY sku")
    got = {r[0]: (r[1], r[2]) for r in rows}
    assert got["good1"] == ("ok", None) and got["good2"] == ("ok", None)
    assert got["bad1"] == ("failed", "picky") and got["bug1"] == ("failed", "picky")
    assert got["die1"] == ("failed", "runner")
