"""Write small real catalog fragments for storage tests."""

from __future__ import annotations

import time

from assetfactory.catalog.fragments import asset_row, new_attempt_id, stage_rows, write_attempt
from assetfactory.core.types import AssetState, SkuSpec, StageFailure, StageRecord


def write_attempts(store, skus, failed) -> None:
    for sku in skus:
        rec = StageRecord("ingest", "1", "h", {}, {}, {}, time.time(), 0.1, "host", "cpu", 10.0)
        state = AssetState(sku=sku, spec=SkuSpec(sku=sku), store_uri=store.root_uri, run_id="r",
                           attempt_id=new_attempt_id(), asset_id=f"id-{sku}", records=(rec,),
                           failure=StageFailure("ingest", "bad", "fix") if sku in failed else None)
        now = time.time()
        row = asset_row(state, started_at=now, finished_at=now, recipe={}, recipe_hash="r",
                        input_hashes={})
        write_attempt(store, row, stage_rows(state))
