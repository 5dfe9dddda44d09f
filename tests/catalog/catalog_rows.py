"""Write real catalog rows (and, for successful attempts, real files) for catalog tests."""

from __future__ import annotations

import functools
import io
import time
from typing import Any

from assetfactory.catalog.fragments import asset_row, new_attempt_id, write_attempt
from assetfactory.core.storage import open_storage
from assetfactory.core.types import AssetState, SkuSpec, StageFailure, StageRecord

STAGES = ("ingest", "generate", "cleanup", "simplify", "uv", "bake", "texture", "export",
          "metrics")


def recipe(profile: str = "ar", target_tris: int = 23000, max_glb_mb: float = 5.0) -> dict:
    """A recipe shaped like ``Recipe.describe()`` (budgets are read from it)."""
    return {"profile": profile, "backend": "silhouette", "stages": [
        {"name": "simplify", "version": "1", "options": {"target_tris": target_tris}},
        {"name": "export", "version": "1", "options": {"max_glb_mb": max_glb_mb}}]}


@functools.cache
def box_glb(size: float) -> bytes:
    """A small real GLB (a box of edge ``size`` metres)."""
    import trimesh

    buf = io.BytesIO()
    trimesh.creation.box(extents=(size, size, size)).export(buf, file_type="glb")
    return buf.getvalue()


def write(root: str, sku: str, run: str = "r1", *, metrics: dict[str, Any] | None = None,
          failed: str | None = None, profile: str = "ar", rec: dict | None = None,
          files: bool = True, supersedes: str | None = None, stages: int = 3,
          catalog_source: str = "", title: str | None = None) -> dict[str, Any]:
    """One committed attempt of ``sku`` in ``run``; returns its asset row."""
    store = open_storage(root)
    artifacts = {}
    if files and not failed:
        part = sku.replace("/", "_")
        artifacts["glb"] = store.put(f"assets/{part}/{part}.glb", box_glb(0.1 + len(run) / 100))
        artifacts["usdz"] = store.put(f"assets/{part}/{part}.usdz", b"PK-usdz-" + run.encode())
        artifacts["poster"] = store.put(f"assets/{part}/poster.png", b"png-" + run.encode())
    now = time.time()
    records = tuple(StageRecord(STAGES[i % 9], "1", "h", {"i": i}, {}, {"out": f"{i}"}, now,
                                0.01 * (i + 1), "host", "cpu", 10.0) for i in range(stages))
    state = AssetState(
        sku=sku, spec=SkuSpec(sku=sku, title=title or sku.title()), store_uri=root,
        run_id=run, attempt_id=new_attempt_id(), asset_id=f"id-{sku}-{run}", profile=profile,
        metrics=metrics if metrics is not None else {"metrics_tris": 1000,
                                                    "metrics_iou_min": 0.95,
                                                    "metrics_bbox_x_m": 0.1,
                                                    "metrics_bbox_y_m": 0.2,
                                                    "metrics_bbox_z_m": 0.3},
        artifacts=artifacts, records=records,
        failure=StageFailure(failed, f"{failed} broke", "do the fix") if failed else None)
    row = asset_row(state, started_at=now, finished_at=now, recipe=rec or recipe(profile),
                    recipe_hash="rh", input_hashes={}, catalog_source=catalog_source,
                    supersedes=supersedes)
    from assetfactory.catalog.fragments import stage_rows

    write_attempt(store, row, stage_rows(state))
    time.sleep(0.002)   # attempts of one SKU keep a strict order by finish time
    return row


def append_worker(root: str, worker: int, n: int) -> None:
    """A writer process: ``n`` attempts (3 stage rows each) and one decision row per 4."""
    from assetfactory.catalog.fragments import REVIEW_SCHEMA, write_table_fragment

    store = open_storage(root)
    for i in range(n):
        row = write(root, f"w{worker}-{i:03d}", f"run-{i % 3}", files=False)
        if i % 4 == 0:
            write_table_fragment(store, f"catalog/reviews/{row['attempt_id']}.parquet", [{
                "review_id": f"rv-{row['attempt_id']}", "sku": row["sku"],
                "attempt_id": row["attempt_id"], "run_id": row["run_id"], "decision": "approve",
                "reviewer": f"worker-{worker}", "decided_at": int(time.time() * 1000)}],
                REVIEW_SCHEMA)


def compact_worker(root: str, ready=None, pause_s: float = 0.0) -> None:
    """A compaction in its own process; ``ready`` is set once it is about to start, and it
    lingers ``pause_s`` in each partition between writing the merged file and deleting its
    inputs (the moment readers must not see rows twice)."""
    from assetfactory.catalog.compact import compact

    if ready is not None:
        ready.set()
    compact(root, on_written=lambda key: time.sleep(pause_s))


def with_env(env: dict[str, str], fn, *args) -> None:
    """Run ``fn(*args)`` with ``env`` (a child forked from a server started earlier has that
    server's environment, not the test's: the S3 endpoint and keys come through here)."""
    import os

    os.environ.clear()
    os.environ.update(env)
    fn(*args)


#: metrics of a good attempt in the constructed catalogs
OK = {"metrics_tris": 1000, "metrics_iou_min": 0.95, "export_glb_bytes": 100_000}


def write_two_runs(root: str) -> None:
    """Runs r1 and r2 of one catalog, triaged: ``same`` (its triangles 0.5 % up), ``fixme``
    (failed, then converted twice in r2: the later, good one counts), ``breaks`` (good, then
    converted twice in r2: the later one fails), ``worse`` (its silhouette IoU down to 0.5),
    ``gone`` (r1 only) and ``fresh`` (r2 only)."""
    from assetfactory.catalog.triage import record_verdicts

    write(root, "same", "r1", metrics=OK, files=False)
    write(root, "fixme", "r1", failed="uv", metrics={}, files=False)
    write(root, "breaks", "r1", metrics=OK, files=False)
    write(root, "worse", "r1", metrics=OK, files=False)
    write(root, "gone", "r1", metrics=OK, files=False)
    write(root, "same", "r2", metrics={**OK, "metrics_tris": 1005}, files=False)
    write(root, "fixme", "r2", failed="bake", metrics={}, files=False)
    write(root, "breaks", "r2", metrics=OK, files=False)
    time.sleep(0.01)                  # finished_at is kept in milliseconds
    write(root, "fixme", "r2", metrics=OK, files=False)
    write(root, "breaks", "r2", failed="export", metrics={}, files=False)
    write(root, "worse", "r2", metrics={**OK, "metrics_iou_min": 0.5}, files=False)
    write(root, "fresh", "r2", metrics=OK, files=False)
    record_verdicts(root)
