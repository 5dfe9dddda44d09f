"""Catalog fragments, DuckDB views and compaction: append-only, nothing lost or duplicated."""

from __future__ import annotations

import time

import pytest

from assetfactory.catalog.compact import compact
from assetfactory.catalog.fragments import (
    asset_row,
    committed_attempts,
    new_attempt_id,
    stage_rows,
    write_attempt,
    write_attempts,
)
from assetfactory.catalog.summary import run_summary
from assetfactory.catalog.views import connect, query
from assetfactory.core.storage import LocalStorage
from assetfactory.core.types import AssetState, SkuSpec, StageFailure, StageRecord


def _state(root, sku, run="r1", failed=False, metrics=None):
    rec = StageRecord("ingest", "1", "h", {"size": 512}, {}, {"image/front": "ab"},
                      time.time() - 1, 0.5, "host", "cpu", 100.0)
    rec2 = StageRecord("generate", "1", "h", {}, {}, {}, time.time() - 0.5, 1.5, "host", "cpu",
                       200.0, status="failed" if failed else "ok")
    return AssetState(sku=sku, spec=SkuSpec(sku=sku, title=sku.upper()), store_uri=str(root),
                      run_id=run, attempt_id=new_attempt_id(), asset_id=f"id-{sku}",
                      metrics=metrics or {"tris": 100, "iou_mean": 0.95, "watertight": True},
                      records=(rec, rec2),
                      failure=StageFailure("generate", "boom", "do x") if failed else None)


def _write(root, state):
    now = time.time()
    row = asset_row(state, started_at=now - 2, finished_at=now, recipe={"p": 1}, recipe_hash="rh",
                    input_hashes={"image": "x"})
    write_attempt(LocalStorage(root), row, stage_rows(state))


def test_fragments_and_views(tmp_path):
    _write(tmp_path, _state(tmp_path, "a"))
    _write(tmp_path, _state(tmp_path, "b", failed=True))
    con = connect(str(tmp_path))
    rows = con.execute("SELECT sku, status, failed_stage, tris, watertight FROM assets "
                       "ORDER BY sku").fetchall()
    assert rows == [("a", "ok", None, 100, True), ("b", "failed", "generate", 100, True)]
    assert con.execute("SELECT count(*) FROM stages").fetchone()[0] == 4
    s = run_summary(str(tmp_path), "r1")
    assert s["counts"] == {"failed": 1, "ok": 1}
    assert s["failures"][0]["sku"] == "b" and s["failures"][0]["fix"] == "do x"
    assert {r["stage"] for r in s["stages"]} == {"ingest", "generate"}
    assert abs(sum(r["share"] for r in s["stages"]) - 1) < 1e-9


def test_a_block_of_attempts_is_two_files_and_rewriting_it_adds_no_row(tmp_path):
    store = LocalStorage(tmp_path)
    states = [_state(tmp_path, sku, failed=sku == "b") for sku in ("a", "b", "c")]
    now = time.time()

    def rows(sts):
        return [asset_row(st, started_at=now - 2, finished_at=now, recipe={}, recipe_hash="rh",
                          input_hashes={}) for st in sts]

    key = write_attempts(store, rows(states), [r for st in states for r in stage_rows(st)])
    # a retried task: the same attempts in another order, the same file
    again = write_attempts(store, rows(states[::-1]),
                           [r for st in states[::-1] for r in stage_rows(st)])
    assert again == key and key.rsplit("/", 1)[-1].startswith("b-")
    assert len(list(store.list("catalog/assets/"))) == 1
    assert len(list(store.list("catalog/stages/"))) == 1
    _write(tmp_path, _state(tmp_path, "d"))  # one recorded on its own beside the block
    con = connect(str(tmp_path))
    assert con.execute("SELECT count(*), count(DISTINCT attempt_id) FROM attempts").fetchone() \
        == (4, 4)
    assert con.execute("SELECT count(*) FROM stages").fetchone()[0] == 8
    con.close()
    found = committed_attempts(store, "r1")
    assert {r["sku"] for r in found.values()} == {"a", "b", "c", "d"}
    one = committed_attempts(store, "r1", [states[1].attempt_id, "never-written"])
    assert list(one) == [states[1].attempt_id] and one[states[1].attempt_id]["status"] == "failed"
    assert committed_attempts(store, "other-run") == {}
    with pytest.raises(ValueError, match="one run"):
        write_attempts(store, rows([states[0], _state(tmp_path, "e", run="r2")]), [])


def test_latest_attempt_wins_and_metrics_can_differ(tmp_path):
    _write(tmp_path, _state(tmp_path, "a", run="r1", failed=True))
    time.sleep(0.01)
    _write(tmp_path, _state(tmp_path, "a", run="r2", metrics={"extra_metric": "x"}))
    _cols, rows = query(str(tmp_path), "SELECT sku, status, run_id, extra_metric FROM assets")
    assert rows == [("a", "ok", "r2", "x")]
    assert query(str(tmp_path), "SELECT count(*) FROM attempts")[1][0][0] == 2


def test_uncommitted_stage_rows_are_ignored(tmp_path):
    st = _state(tmp_path, "a")
    from assetfactory.catalog.fragments import STAGE_SCHEMA, write_table_fragment

    write_table_fragment(LocalStorage(tmp_path), "catalog/stages/run=r1/orphan.parquet",
                         stage_rows(st), STAGE_SCHEMA)
    _write(tmp_path, _state(tmp_path, "b"))
    assert query(str(tmp_path), "SELECT DISTINCT sku FROM stages")[1] == [("b",)]


def test_compaction_loses_and_duplicates_nothing(tmp_path):
    for sku in "abcde":
        _write(tmp_path, _state(tmp_path, sku, failed=sku == "c"))
    before = sorted(query(str(tmp_path), "SELECT attempt_id, sku, status FROM attempts")[1])
    stages_before = query(str(tmp_path), "SELECT count(*) FROM stages")[1][0][0]
    merged = compact(str(tmp_path))
    assert merged.rows == {"assets": 5, "stages": 10}
    assert not list(LocalStorage(tmp_path).list("catalog/assets/"))
    assert sorted(query(str(tmp_path), "SELECT attempt_id, sku, status FROM attempts")[1]) == before
    assert query(str(tmp_path), "SELECT count(*) FROM stages")[1][0][0] == stages_before
    # a new fragment after compaction shows up beside the compacted rows
    _write(tmp_path, _state(tmp_path, "f"))
    assert query(str(tmp_path), "SELECT count(*) FROM assets")[1][0][0] == 6


def test_empty_catalog_views(tmp_path):
    assert query(str(tmp_path), "SELECT count(*) FROM assets")[1] == [(0,)]
    assert run_summary(str(tmp_path))["run_id"] is None


def test_large_fragments_are_read_in_place_with_the_same_answers(tmp_path, monkeypatch):
    """Writers' batches (large fragments) are read where they are instead of held in memory;
    the views, run-scoped reads and compaction give the same rows either way."""
    from assetfactory.catalog import views
    from assetfactory.catalog.views import Catalog

    for sku in "abc":
        _write(tmp_path, _state(tmp_path, sku, run="r1", failed=sku == "b"))
    _write(tmp_path, _state(tmp_path, "d", run="r2"))
    sql = "SELECT attempt_id, sku, status, run_id FROM attempts ORDER BY attempt_id"
    with Catalog(str(tmp_path)) as cat:
        held = cat.rows(sql)
        held_r2 = cat.rows(f"SELECT sku FROM {cat.relation('assets', ['r2'])}")
    monkeypatch.setattr(views, "_many_small", lambda files: False)
    with Catalog(str(tmp_path)) as cat:
        assert not cat._loaded["assets"] and cat._direct["assets"]
        assert cat.rows(sql) == held
        assert cat.rows(f"SELECT sku FROM {cat.relation('assets', ['r2'])}") == held_r2
        assert [r["sku"] for r in held_r2] == ["d"]
        assert cat.rows(f"SELECT count(*) AS n FROM {cat.relation('stages', ['r1'])}") == \
            [{"n": 6}]
        compact(str(tmp_path), runs=["r1"])     # r1 compacted, r2 still a fragment
        cat.refresh()
        assert cat.rows(sql) == held
