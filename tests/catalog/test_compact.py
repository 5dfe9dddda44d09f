"""The catalog under concurrency: writers that lose no row, readers that see every row exactly
once while a compaction runs or after it crashed, older schemas, and the compaction lock.
Locally and on S3 (SeaweedFS)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from catalog_rows import append_worker, compact_worker, with_env, write

from assetfactory.catalog.compact import compact
from assetfactory.catalog.files import snapshot
from assetfactory.catalog.fragments import ASSET_FIELDS
from assetfactory.catalog.history import run_diff
from assetfactory.catalog.triage import record_verdicts, triage_queue
from assetfactory.catalog.views import Catalog, query
from assetfactory.core.storage import open_storage

CHECK = {
    "attempts": "SELECT count(*), count(DISTINCT attempt_id), "
                "sum(hash(attempt_id, sku, status, run_id)::HUGEINT) FROM attempts",
    "stages": "SELECT count(*), count(DISTINCT (attempt_id, seq)), "
              "sum(hash(attempt_id, seq, stage, duration_s)::HUGEINT) FROM stages",
    "reviews": "SELECT count(*), count(DISTINCT review_id), "
               "sum(hash(review_id, sku, decision)::HUGEINT) FROM reviews",
}


def _processes():
    """Real separate processes, forked from a server that has imported the writers' code once
    (a fresh interpreter per writer spent seconds importing numpy and pyarrow before its
    first row; the server itself is single-threaded, so forking it is safe)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["catalog_rows", "assetfactory.catalog.compact"])
    return ctx


def _root(where: str, tmp_path, request) -> str:
    return str(tmp_path / "factory") if where == "local" else request.getfixturevalue("s3_root")


def _observe(root: str) -> dict[str, tuple]:
    with Catalog(root) as cat:
        return {k: tuple(cat.execute(sql).fetchone()) for k, sql in CHECK.items()}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_several_processes_appending_at_once_lose_no_row(where, tmp_path, request):
    root = _root(where, tmp_path, request)
    ctx = _processes()
    procs = [ctx.Process(target=with_env, args=(dict(os.environ), append_worker, root, w, 8))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    with Catalog(root) as cat:
        seen = {k: tuple(cat.execute(sql).fetchone()) for k, sql in CHECK.items()}
        skus = cat.execute("SELECT DISTINCT sku FROM attempts").fetchall()
    assert seen["attempts"][:2] == (32, 32)
    assert seen["stages"][:2] == (96, 96)
    assert seen["reviews"][:2] == (8, 8)
    assert {s for (s,) in skus} == {f"w{w}-{i:03d}" for w in range(4) for i in range(8)}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_reader_during_compaction_sees_every_row_exactly_once(where, tmp_path, request):
    root = _root(where, tmp_path, request)
    append_worker(root, 0, 9)
    append_worker(root, 1, 9)
    expected = _observe(root)
    assert expected["attempts"][:2] == (18, 18)
    ctx = _processes()
    ready = ctx.Event()
    proc = ctx.Process(target=with_env, args=(dict(os.environ), compact_worker, root, ready,
                                              0.5))
    proc.start()
    assert ready.wait(timeout=120)
    reads, mixed = [], 0
    while proc.is_alive() or len(reads) < 3:
        with Catalog(root) as cat:
            reads.append({k: tuple(cat.execute(sql).fetchone()) for k, sql in CHECK.items()})
            files = [f for k in CHECK for f in cat.snap.of(k.replace("attempts", "assets"))]
            mixed += any(f.compacted for f in files) and not all(f.compacted for f in files)
    proc.join(timeout=300)
    assert proc.exitcode == 0
    assert all(r == expected for r in reads), [r for r in reads if r != expected][:2]
    assert mixed >= 1, "no read happened while the compaction was half done"
    snap = snapshot(root)
    assert all(f.compacted for kind in ("assets", "stages", "reviews") for f in snap.of(kind))
    assert _observe(root) == expected


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_crash_between_writing_and_deleting_loses_and_duplicates_nothing(where, tmp_path,
                                                                           request):
    root = _root(where, tmp_path, request)
    append_worker(root, 0, 12)
    expected = _observe(root)
    seen_mid = []

    def crash(key: str) -> None:
        # the merged file is in place, its inputs are not yet deleted: both are listed
        seen_mid.append(_observe(root))
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        compact(root, kinds=("assets",), on_written=crash)
    assert seen_mid == [expected]
    assert _observe(root) == expected
    kinds = snapshot(root).of("assets")
    assert any(f.compacted for f in kinds) and any(not f.compacted for f in kinds)
    # a sidecar whose data file never appeared (a crash before the data PUT) is inert
    store = open_storage(root)
    store.put("catalog/compacted/assets/run=run-0/c-orphan.sources.json", json.dumps(
        {"sources": [f.key for f in kinds]}).encode())
    assert _observe(root) == expected
    # the next compaction finishes the job: no fragment left, one file per partition
    compact(root)
    assert _observe(root) == expected
    after = snapshot(root).of("assets")
    assert all(f.compacted for f in after)
    assert sorted(f.partition for f in after) == ["run-0", "run-1", "run-2"]
    # and writes each run's latest-attempt table, which a run diff then reads
    with Catalog(root) as cat:
        assert all(cat.latest(r)[1] for r in ("run-0", "run-1", "run-2"))
        d = run_diff(cat, "run-0", "run-1")
    assert (d.counts["new"], d.counts["missing"], d.counts["same"]) == (4, 4, 0)


def test_a_fragment_with_an_older_schema_still_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    root = str(tmp_path)
    write(root, "new-sku", "r2", metrics={"metrics_tris": 1000, "metrics_iou_min": 0.95})
    store = open_storage(root)
    old_fields = [f for f in ASSET_FIELDS if f.name not in (
        "usdz_uri", "usdz_sha256", "poster_sha256", "supersedes", "trigger", "metrics",
        "library_versions")]
    now = pa.scalar(int(time.time() * 1000) - 60_000, pa.timestamp("ms", tz="UTC"))

    def old_row(sku: str, run: str) -> dict:
        row = {f.name: None for f in old_fields}
        row.update(attempt_id=f"old-{sku}", run_id=run, sku=sku, status="ok",
                   finished_at=now.value, started_at=now.value, recipe="{}",
                   glb_uri=f"/nowhere/{sku}.glb")
        return row

    def table(rows: list[dict], tris_type: pa.DataType) -> pa.Table:
        t = pa.Table.from_pylist(rows, schema=pa.schema(old_fields))
        # a metric that was once written as text, and one no newer row has
        return t.append_column(pa.field("metrics_tris", tris_type),
                               pa.array(["800"] * len(rows), tris_type)) \
                .append_column("legacy_score", pa.array([0.5] * len(rows)))

    store.put("catalog/assets/run=r0/old-a.parquet", _bytes(table([old_row("old-a", "r0")],
                                                                  pa.string())))
    # and a compacted file of the first layout, which mixed runs in one file
    store.put("catalog/compacted/assets-0123456789ab.parquet", _bytes(table(
        [old_row("old-b", "r0"), old_row("old-c", "r1")], pa.string())))
    _, rows = query(root, "SELECT sku, supersedes, usdz_uri, TRY_CAST(metrics_tris AS BIGINT), "
                          "legacy_score FROM attempts ORDER BY sku")
    assert rows == [("new-sku", None, rows[0][2], 1000, None), ("old-a", None, None, 800, 0.5),
                    ("old-b", None, None, 800, 0.5), ("old-c", None, None, 800, 0.5)]
    assert rows[0][2].endswith("new-sku.usdz")
    assert record_verdicts(root).total == 4
    assert {i["sku"] for i in triage_queue(root).items} == {"new-sku", "old-a", "old-b", "old-c"}
    before = query(root, CHECK["attempts"])[1]
    compact(root)
    assert query(root, CHECK["attempts"])[1] == before


def test_one_compaction_at_a_time_per_partition(tmp_path):
    root = str(tmp_path)
    for i in range(4):
        write(root, f"s{i}", "r1", files=False)
    store = open_storage(root)
    lock = "catalog/compacted/assets/run=r1/_lock"
    store.put(lock, json.dumps({"at": time.time(), "host": "elsewhere"}).encode())
    report = compact(root)
    busy = [(p.kind, p.partition) for p in report.partitions if p.busy]
    assert busy == [("assets", "r1")]
    assert not any(f.compacted for f in snapshot(root).of("assets"))
    assert all(f.compacted for f in snapshot(root).of("stages"))
    # a lock left by a compaction that died long ago is broken
    store.put(lock, json.dumps({"at": time.time() - 7200, "host": "gone"}).encode())
    assert compact(root).rows["assets"] == 4
    assert not store.exists(lock)


def test_compacted_files_are_sorted_by_sku_with_statistics(tmp_path):
    root = str(tmp_path)
    for i in reversed(range(30)):
        write(root, f"sku-{i:02d}", "r1", files=False)
    compact(root)
    (f,) = snapshot(root).of("assets")
    meta = pq.ParquetFile(str(open_storage(root).local_path(f.key)))
    skus = meta.read(columns=["sku"]).column("sku").to_pylist()
    assert skus == sorted(skus) and len(skus) == 30
    stats = meta.metadata.row_group(0).column(meta.schema_arrow.get_field_index("sku"))
    assert stats.statistics.has_min_max and stats.statistics.min == "sku-00"


def _bytes(table: pa.Table) -> bytes:
    import io

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _every_row(root: str, view: str, key: str) -> list[dict]:
    """Every column of every row of ``view`` (by name: files may order their columns apart)."""
    with Catalog(root) as cat:
        cur = cat.execute(f"SELECT * FROM {view} ORDER BY {key}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def _a_run_of_fragments(root: str) -> None:
    """14 attempts of run r1, each its own fragment with its own columns (metrics that only
    some attempts have, failures without metrics, 1-3 stage rows)."""
    for i in range(14):
        metrics = {"metrics_tris": 1000 + i} if i % 3 else {"metrics_iou_min": 0.9,
                                                             f"extra_{i % 2}": i}
        write(root, f"sku-{(i * 5) % 14:02d}", "r1", files=False, stages=1 + i % 3,
              metrics={} if i % 5 == 0 else metrics, failed="uv" if i % 5 == 0 else None)


def test_a_run_compacted_in_chunks_and_groups_keeps_every_row(tmp_path, monkeypatch):
    import shutil

    from assetfactory.catalog import compact as compact_module

    root = str(tmp_path / "run")
    _a_run_of_fragments(root)
    views = (("attempts", "attempt_id"), ("stages", "attempt_id, seq"))
    expected = {v: _every_row(root, v, k) for v, k in views}
    assert len(expected["attempts"]) == 14 and len(expected["stages"]) == 27
    # the fragments read a few files at a time (several levels of groups), in one file
    monkeypatch.setattr(compact_module, "GROUP_FILES", 3)
    grouped = str(tmp_path / "grouped")
    shutil.copytree(root, grouped)
    compact(grouped, ("assets", "stages"))
    assert [len(snapshot(grouped).of(k)) for k in ("assets", "stages")] == [1, 1]
    assert {v: _every_row(grouped, v, k) for v, k in views} == expected
    # as a run does when it ends: one sorted file per chunk of at most ~4 fragments
    chunked = str(tmp_path / "chunked")
    shutil.copytree(root, chunked)
    size = max(f.size for f in snapshot(chunked).of("assets"))
    report = compact(chunked, ("assets", "stages"), runs=["r1"], chunk_bytes=4 * size)
    (assets,) = [p for p in report.partitions if p.kind == "assets"]
    assert len(assets.outputs) >= 4 and assets.rows == 14
    files = snapshot(chunked).of("assets")
    assert all(f.compacted for f in files) and len(files) == len(assets.outputs)
    for f in files:
        skus = pq.read_table(str(open_storage(chunked).local_path(f.key))).column("sku")
        assert skus.to_pylist() == sorted(skus.to_pylist())
    assert {v: _every_row(chunked, v, k) for v, k in views} == expected


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_crash_between_two_chunks_loses_and_duplicates_nothing(where, tmp_path, request):
    root = _root(where, tmp_path, request)
    _a_run_of_fragments(root)
    expected = _observe(root)
    size = max(f.size for f in snapshot(root).of("assets"))
    written = []

    def crash_at_the_second(key: str) -> None:
        written.append(key)
        assert _observe(root) == expected
        if len(written) == 2:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        compact(root, ("assets",), runs=["r1"], chunk_bytes=4 * size,
                on_written=crash_at_the_second)
    assert _observe(root) == expected
    # the next run of it merges what is left (fragments beside compacted files: one sort)
    compact(root, ("assets",), runs=["r1"], chunk_bytes=4 * size)
    assert _observe(root) == expected
    assert all(f.compacted for f in snapshot(root).of("assets"))
