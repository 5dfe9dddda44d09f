"""Merge many small fragments into one file per kind without losing or duplicating a row.

The merged file is written first (atomically); only then are the merged fragments deleted. A
crash between the two leaves both, and the views deduplicate by attempt_id, so no row is ever
counted twice or lost.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.storage import LocalStorage, open_storage
from .fragments import _parquet_bytes


def compact(root: str, kinds: tuple[str, ...] = ("assets", "stages", "flow_runs", "ingested")
            ) -> dict[str, int]:
    """Merge the fragments of each kind into ``catalog/compacted/<kind>-<id>.parquet``."""
    store = open_storage(root)
    merged: dict[str, int] = {}
    for kind in kinds:
        keys = [k for k in store.list(f"catalog/{kind}/") if k.endswith(".parquet")]
        if len(keys) < 2:
            merged[kind] = 0
            continue
        tables = [pq.read_table(pa.BufferReader(store.get(k))) for k in keys]
        table = pa.concat_tables(tables, promote_options="permissive")
        store.put(f"catalog/compacted/{kind}-{uuid.uuid4().hex[:12]}.parquet",
                  _parquet_bytes(table))
        for k in keys:
            _delete(store, k)
        merged[kind] = table.num_rows
    return merged


def _delete(store, key: str) -> None:
    if isinstance(store, LocalStorage):
        path = store.local_path(key)
        if path is not None:
            Path(path).unlink(missing_ok=True)
    else:
        store.client.delete_object(Bucket=store.bucket, Key=store._key(key))
