"""A synthetic catalog of many assets, for the dashboard's benchmark and tests.

Rows have the real schemas (``catalog.fragments``) and realistic spreads: ~4% fail at a stage
with an error kind, metrics scatter around the values real runs record (some below the triage
rules' thresholds), nine stage rows per attempt. They are written as a few large Parquet files
per run (100k one-row fragments would measure the file system, not the dashboard), judged by
the real triage rules (``catalog.triage``), so every attempt has a verdict row, and compacted
(``catalog.compact``) as a finished run leaves its partitions. No meshes or images are written: the pages that need files show
what is missing, as they do for a failed attempt.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..catalog.fragments import ASSET_SCHEMA, STAGE_SCHEMA, parquet_bytes
from ..core.storage import open_storage

STAGES = ("ingest", "generate", "cleanup", "simplify", "uv", "bake", "texture", "export",
          "metrics")
STAGE_MEAN_S = np.array([0.4, 1.2, 0.7, 0.4, 2.2, 16.0, 10.0, 2.0, 0.8])
ERRORS = [("ingest", "InputError", "image photos/x.png is corrupt or truncated",
           "re-export the photo"),
          ("generate", "ProcessingError", "the silhouettes do not agree on a shape",
           "add photos from more views"),
          ("export", "ValidationFailed", "the GLB is 6.1 MB, over the 5 MB budget",
           "lower export texture_size")]
CATEGORIES = ("kitchen", "furniture", "packaging", "toys", "lighting", "garden", "bath")
EXTRA_METRICS = 60     # real rows carry ~150 metric columns; most are never filtered on
RECIPE = json.dumps({"profile": "ar", "backend": "silhouette", "stages": [
    {"name": "simplify", "version": "1", "options": {"target_tris": 23000}},
    {"name": "export", "version": "1", "options": {"max_glb_mb": 5.0}}]})


def write_synthetic_catalog(root: str | Path, n_assets: int, n_runs: int = 4,
                            files_per_run: int = 4, seed: int = 0,
                            titles: dict[int, str] | None = None,
                            triage: bool = True, compact: bool = True) -> dict:
    """Write ``n_assets`` attempts (nine stage rows each) under ``root``; judge them and
    compact each run's partitions, as a finished run does (``flows.convert``)."""
    rng = np.random.default_rng(seed)
    store = open_storage(str(root))
    t0 = time.time() - 86400 * n_runs
    per_run = int(np.ceil(n_assets / n_runs))
    written = 0
    for run in range(n_runs):
        run_id = f"20261101-0000{run:02d}-synth{run:02d}"
        lo, hi = run * per_run, min(n_assets, (run + 1) * per_run)
        if lo >= hi:
            break
        for ci, idx in enumerate(np.array_split(np.arange(lo, hi), files_per_run)):
            if len(idx) == 0:
                continue
            assets, stages = _tables(rng, idx, run_id, t0 + run * 86400 + (idx - lo) * 2.0,
                                     titles or {}, store)
            store.put(f"catalog/assets/run={run_id}/bulk-{ci:03d}.parquet",
                      parquet_bytes(assets))
            store.put(f"catalog/stages/run={run_id}/bulk-{ci:03d}.parquet",
                      parquet_bytes(stages))
            written += len(idx)
    verdicts = {}
    if triage:
        from ..catalog.triage import record_verdicts

        verdicts = record_verdicts(str(root)).counts
    if compact:
        from ..catalog.compact import compact as compact_catalog

        compact_catalog(str(root), ("assets", "stages", "verdicts"))
    return {"assets": written, "runs": n_runs, "verdicts": verdicts}


def _tables(rng, idx: np.ndarray, run_id: str, start: np.ndarray, titles: dict[int, str],
            store) -> tuple[pa.Table, pa.Table]:
    n = len(idx)
    fail = rng.random(n) < 0.04
    err = rng.integers(len(ERRORS), size=n)
    failed_at = np.where(fail, [STAGES.index(ERRORS[e][0]) for e in err], len(STAGES))
    durs = rng.gamma(2.0, STAGE_MEAN_S / 2.0, size=(n, len(STAGES)))
    ran = np.arange(len(STAGES))[None, :] <= failed_at[:, None]
    wall = (durs * ran).sum(axis=1)
    sku = [f"SKU-{i:07d}" for i in idx]
    attempt = [f"{run_id[:15]}-{i:012x}" for i in idx]
    ok = ~fail

    def metric(values, kind=pa.float64()):
        return pa.array(np.where(ok, values, np.nan) if kind == pa.float64() else values,
                        kind, mask=fail)

    iou = np.clip(rng.normal(0.95, 0.04, n), 0.5, 1.0).round(4)
    observed = np.clip(rng.normal(0.7, 0.18, n), 0.05, 1.0).round(4)
    tris = np.minimum(23000, rng.integers(4000, 24500, n))
    glb = rng.lognormal(np.log(1.6e6), 0.45, n).astype(np.int64)
    started = (start * 1000).astype(np.int64)
    cols: dict[str, pa.Array] = {
        "attempt_id": pa.array(attempt), "run_id": pa.array([run_id] * n),
        "asset_id": pa.array([f"{i:032x}" for i in idx]), "sku": pa.array(sku),
        "title": pa.array([titles.get(int(i), f"Product {i}") for i in idx]),
        "category": pa.array([CATEGORIES[i % len(CATEGORIES)] for i in idx]),
        "row": pa.array(idx.astype(np.int64)),
        "status": pa.array(np.where(fail, "failed", "ok")),
        "failed_stage": pa.array([ERRORS[e][0] for e in err], mask=ok),
        "error": pa.array([ERRORS[e][2] for e in err], mask=ok),
        "fix": pa.array([ERRORS[e][3] for e in err], mask=ok),
        "error_kind": pa.array([ERRORS[e][1] for e in err], mask=ok),
        "profile": pa.array(["ar"] * n), "backend": pa.array(["silhouette"] * n),
        "catalog_source": pa.array(["synthetic.csv"] * n),
        "started_at": pa.array(started, pa.timestamp("ms", tz="UTC")),
        "finished_at": pa.array(started + (wall * 1000).astype(np.int64),
                                pa.timestamp("ms", tz="UTC")),
        "wall_s": pa.array(wall), "peak_rss_mb": pa.array(rng.normal(900, 100, n)),
        "glb_uri": pa.array([store.uri_for(f"assets/{s.lower()}/{s.lower()}.glb")
                             for s in sku], mask=fail),
        "poster_uri": pa.array([store.uri_for(f"assets/{s.lower()}/poster.png") for s in sku],
                               mask=fail),
        "recipe_hash": pa.array(["synthetic"] * n), "recipe": pa.array([RECIPE] * n),
        "code_version": pa.array(["synthetic"] * n), "host": pa.array(["synthetic"] * n),
        "input_hashes": pa.array(["{}"] * n), "library_versions": pa.array(["{}"] * n),
    }
    metrics: dict[str, pa.Array] = {
        "metrics_iou_mean": metric(np.minimum(1.0, iou + 0.02)), "metrics_iou_min": metric(iou),
        "texture_observed_frac": metric(observed),
        "metrics_tris": metric(tris, pa.int64()), "metrics_glb_bytes": metric(glb, pa.int64()),
        "export_glb_bytes": metric(glb, pa.int64()),
        "gltf_errors": metric(np.zeros(n, np.int64), pa.int64()),
        "usd_errors": metric(np.zeros(n, np.int64), pa.int64()),
    }
    for k in range(EXTRA_METRICS):
        metrics[f"extra_metric_{k:02d}"] = metric(rng.random(n).round(4))
    blob = [json.dumps({k: v[i].as_py() for k, v in list(metrics.items())[:8]})
            if ok[i] else "{}" for i in range(n)]
    cols["metrics"] = pa.array(blob)
    fields = [f for f in ASSET_SCHEMA if f.name in cols]
    assets = pa.table({f.name: cols[f.name].cast(f.type) for f in fields} | metrics)
    # stage rows: one per stage that ran
    rows_i, rows_s = np.nonzero(ran)
    offs = np.cumsum(np.concatenate([np.zeros((n, 1)), durs[:, :-1]], axis=1), axis=1)
    st_status = np.where(fail[rows_i] & (rows_s == failed_at[rows_i]), "failed", "ok")
    stage_cols = {
        "attempt_id": pa.array([attempt[i] for i in rows_i]),
        "run_id": pa.array([run_id] * len(rows_i)),
        "asset_id": pa.array([f"{idx[i]:032x}" for i in rows_i]),
        "sku": pa.array([sku[i] for i in rows_i]), "seq": pa.array(rows_s.astype(np.int64)),
        "stage": pa.array([STAGES[s] for s in rows_s]),
        "version": pa.array(["1"] * len(rows_i)), "status": pa.array(st_status),
        "error": pa.array([ERRORS[err[i]][2] for i in rows_i], mask=st_status == "ok"),
        "options_hash": pa.array(["0" * 16] * len(rows_i)),
        "options": pa.array(["{}"] * len(rows_i)), "inputs": pa.array(["{}"] * len(rows_i)),
        "outputs": pa.array(["{}"] * len(rows_i)),
        "started_at": pa.array(started[rows_i] + (offs[rows_i, rows_s] * 1000).astype(np.int64),
                               pa.timestamp("ms", tz="UTC")),
        "duration_s": pa.array(durs[rows_i, rows_s]),
        "host": pa.array(["synthetic"] * len(rows_i)),
        "device": pa.array(["cpu"] * len(rows_i)),
        "peak_rss_mb": pa.array(np.full(len(rows_i), 800.0)),
    }
    stages = pa.table({f.name: stage_cols[f.name].cast(f.type) for f in STAGE_SCHEMA})
    return assets, stages


def main() -> None:  # pragma: no cover - a convenience for trying the dashboard by hand
    import argparse

    ap = argparse.ArgumentParser(description="write a synthetic catalog for the dashboard")
    ap.add_argument("out")
    ap.add_argument("-n", type=int, default=100_000)
    a = ap.parse_args()
    print(write_synthetic_catalog(Path(a.out), a.n))


if __name__ == "__main__":  # pragma: no cover
    main()
