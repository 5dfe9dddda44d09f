"""A synthetic catalog of many assets, for the dashboard's benchmark and tests.

Rows have the real schemas (``catalog.fragments``) and realistic spreads: a few percent fail at a
stage with an error kind, metrics scatter around the values real runs record, nine stage rows per
attempt. They are written as a few large Parquet files per run, as a compaction would leave them
(100k one-row fragments would measure the file system, not the dashboard). No meshes or images
are written: the pages that need files show what is missing, as they do for a failed attempt.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..catalog.fragments import ASSET_SCHEMA, STAGE_SCHEMA, write_table_fragment
from ..core.storage import open_storage

STAGES = ("ingest", "generate", "cleanup", "simplify", "uv", "bake", "texture", "export",
          "metrics")
STAGE_MEAN_S = (0.4, 1.2, 0.7, 0.4, 2.2, 16.0, 10.0, 2.0, 0.8)
ERRORS = [("ingest", "InputError", "image photos/x.png is corrupt or truncated",
           "re-export the photo"),
          ("generate", "ProcessingError", "the silhouettes do not agree on a shape",
           "add photos from more views"),
          ("export", "ValidationFailed", "the GLB is 6.1 MB, over the 5 MB budget",
           "lower export texture_size")]
CATEGORIES = ("kitchen", "furniture", "packaging", "toys", "lighting", "garden", "bath")
EXTRA_METRICS = 60     # real rows carry ~150 metric columns; most are never filtered on


def write_synthetic_catalog(root: str | Path, n_assets: int, n_runs: int = 4,
                            files_per_run: int = 4, seed: int = 0,
                            titles: dict[int, str] | None = None) -> dict:
    """Write ``n_assets`` attempts (and nine stage rows each) under ``root``'s catalog."""
    rng = np.random.default_rng(seed)
    store = open_storage(str(root))
    t0 = time.time() - 86400 * n_runs
    per_run = int(np.ceil(n_assets / n_runs))
    written = 0
    for run in range(n_runs):
        run_id = f"20261101T0000{run:02d}-synthetic{run:02d}"
        lo, hi = run * per_run, min(n_assets, (run + 1) * per_run)
        if lo >= hi:
            break
        chunks = np.array_split(np.arange(lo, hi), files_per_run)
        for ci, idx in enumerate(chunks):
            assets, stages = [], []
            for i in idx:
                a, st = _asset(rng, int(i), run_id, t0 + run * 86400 + float(i - lo) * 2.0,
                               (titles or {}).get(int(i)))
                assets.append(a)
                stages += st
            write_table_fragment(store, f"catalog/assets/run={run_id}/bulk-{ci:03d}.parquet",
                                 assets, ASSET_SCHEMA)
            write_table_fragment(store, f"catalog/stages/run={run_id}/bulk-{ci:03d}.parquet",
                                 stages, STAGE_SCHEMA)
            written += len(assets)
    return {"assets": written, "runs": n_runs}


def _asset(rng, i: int, run_id: str, start: float, title: str | None):
    sku = f"SKU-{i:07d}"
    attempt = f"{run_id[:15]}-{i:012x}"
    fail = rng.random() < 0.04
    err = ERRORS[int(rng.integers(len(ERRORS)))] if fail else None
    failed_at = STAGES.index(err[0]) if err else len(STAGES)
    durs = [float(rng.gamma(2.0, m / 2.0)) for m in STAGE_MEAN_S]
    wall = sum(durs[: failed_at + 1])
    iou = float(np.clip(rng.normal(0.95, 0.04), 0.5, 1.0))
    observed = float(np.clip(rng.normal(0.7, 0.18), 0.05, 1.0))
    tris = int(min(23000, rng.integers(4000, 24000)))
    glb = int(rng.lognormal(np.log(1.6e6), 0.45))
    part = sku.lower()
    metrics = {} if fail else {
        "metrics_iou_mean": round(iou, 4), "metrics_iou_min": round(iou - 0.02, 4),
        "texture_observed_frac": round(observed, 4), "metrics_tris": tris,
        "metrics_glb_bytes": glb, "export_glb_bytes": glb, "metrics_watertight": True,
        "gltf_errors": 0, "gltf_warnings": 0, "usd_errors": 0, "usd_warnings": 0,
        **{f"extra_metric_{k:02d}": round(float(rng.random()), 4) for k in range(EXTRA_METRICS)},
    }
    row = {
        "attempt_id": attempt, "run_id": run_id, "asset_id": f"{i:032x}", "sku": sku,
        "title": title if title is not None else f"Product {i}",
        "category": CATEGORIES[i % len(CATEGORIES)], "row": i,
        "status": "failed" if fail else "ok",
        "failed_stage": err[0] if err else None, "error": err[2] if err else None,
        "fix": err[3] if err else None, "error_kind": err[1] if err else None,
        "profile": "ar", "backend": "silhouette", "catalog_source": "synthetic.csv",
        "started_at": int(start * 1000), "finished_at": int((start + wall) * 1000),
        "wall_s": wall, "peak_rss_mb": float(rng.normal(900, 100)),
        "glb_uri": None if fail else f"assets/{part}/{part}.glb",
        "poster_uri": None if fail else f"assets/{part}/poster.png",
        "glb_sha256": None, "input_hashes": "{}", "recipe_hash": "synthetic",
        "recipe": "{}", "code_version": "synthetic", "library_versions": "{}",
        "host": "synthetic", "metrics": json.dumps(metrics, sort_keys=True), **metrics,
    }
    stages = []
    t = start
    for seq, (name, d) in enumerate(zip(STAGES, durs)):
        if seq > failed_at:
            break
        status = "failed" if (err and seq == failed_at) else "ok"
        stages.append({"attempt_id": attempt, "run_id": run_id, "asset_id": row["asset_id"],
                       "sku": sku, "seq": seq, "stage": name, "version": "1",
                       "status": status, "error": err[2] if status == "failed" else None,
                       "options_hash": "0" * 16, "options": "{}", "inputs": "{}",
                       "outputs": "{}", "started_at": int(t * 1000), "duration_s": d,
                       "host": "synthetic", "device": "cpu", "peak_rss_mb": 800.0})
        t += d
    return row, stages


def main() -> None:  # pragma: no cover - a convenience for trying the dashboard by hand
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("-n", type=int, default=100_000)
    a = ap.parse_args()
    print(write_synthetic_catalog(Path(a.out), a.n))


if __name__ == "__main__":  # pragma: no cover
    main()
