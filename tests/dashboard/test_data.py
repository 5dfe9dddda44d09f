"""The dashboard's catalog snapshot and queries, on a synthetic catalog (real Parquet, DuckDB)."""

from __future__ import annotations

import duckdb
import pytest

from assetfactory.catalog.views import connect
from assetfactory.dashboard.data import (
    Catalog,
    QueueQuery,
    asset_detail,
    queue_page,
    run_detail,
    runs_overview,
)
from assetfactory.dashboard.synthetic import write_synthetic_catalog

N = 600


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    write_synthetic_catalog(root, N, n_runs=3, files_per_run=2,
                            titles={7: "it's a \"quoted\" title; DROP TABLE assets; --"})
    c = Catalog(str(root), refresh_s=0)
    c.load()
    yield c
    c.stop()


def _truth(cat, sql, params=()):
    con = connect(cat.root)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_runs_overview_matches_the_catalog_views(cat):
    runs = runs_overview(cat)
    truth = dict(_truth(cat, "SELECT run_id, count(*) FROM attempts GROUP BY run_id"))
    assert {r["run_id"]: r["attempts"] for r in runs} == truth
    for r in runs:
        assert r["ok"] + r["failed"] == r["attempts"]
        assert r["wall_s"] > 0 and r["throughput_per_min"] > 0


def test_run_detail_has_stage_times_and_metrics(cat):
    run = runs_overview(cat)[0]["run_id"]
    d = run_detail(cat, run)
    assert [s["stage"] for s in d.stages][:3] == ["ingest", "generate", "cleanup"]
    ok = _truth(cat, "SELECT count(*) FROM attempts WHERE run_id = ? AND status = 'ok'", [run])
    assert len(d.metrics["silhouette IoU (worst view)"]) == ok[0][0]
    # the rules that judged the run and the recipe's budgets come with it (chart thresholds)
    assert any(r["metric"] == "metrics_iou_min" for r in d.rules)
    assert d.budgets == {"budget_tris": 23000.0, "budget_glb_bytes": 5e6}
    from assetfactory.dashboard.actions import thresholds

    lines = thresholds(d)
    assert [t.value for t in lines["silhouette IoU (worst view)"]] == [0.9]
    assert [t.value for t in lines["triangles"]] == [23000.0]
    assert [t.value for t in lines["file size (MB)"]] == [5.0]
    assert run_detail(cat, "no-such-run") is None


def test_queue_attention_default_is_what_needs_a_look(cat):
    rows, total = queue_page(cat, QueueQuery(per_page=500))
    truth = _truth(cat, """SELECT count(*) FROM queue WHERE (status = 'failed' OR
        verdict IN ('fail', 'review', 'untriaged')) AND review_status = 'unreviewed'""")[0][0]
    assert total == truth > 0
    # worst first: every failed asset before every review verdict
    ranks = [(r["status"] == "failed", r["verdict"]) for r in rows]
    first_review = next(i for i, (f, v) in enumerate(ranks) if not f and v == "review")
    assert all(f or v == "fail" for f, v in ranks[:first_review])
    assert all(not f and v == "review" for f, v in ranks[first_review:])


def test_queue_filters_ranges_sort_and_pages(cat):
    q = QueueQuery(equals={"category": "kitchen", "status": "ok"},
                   ranges=[("metric_silhouette_iou", 0.9, 0.97)], attention=False,
                   sort="metric_triangles", desc=True, per_page=25)
    rows, total = queue_page(cat, q)
    truth = _truth(cat, """SELECT sku FROM assets WHERE category = 'kitchen' AND status = 'ok'
        AND metrics_iou_min BETWEEN 0.9 AND 0.97 ORDER BY metrics_tris DESC, sku""")
    assert total == len(truth) > 25
    assert [r["sku"] for r in rows] == [s for (s,) in truth[:25]]
    q.page = 2
    rows2, _ = queue_page(cat, q)
    assert [r["sku"] for r in rows2] == [s for (s,) in truth[25:50]]


def test_values_are_parameters_not_sql(cat):
    evil = "x' OR '1'='1"
    rows, total = queue_page(cat, QueueQuery(equals={"category": evil}, attention=False))
    assert total == 0 and rows == []
    rows, total = queue_page(cat, QueueQuery(text="DROP TABLE assets", attention=False))
    assert [r["sku"] for r in rows] == ["SKU-0000007"]
    # identifiers are checked against the snapshot's columns, never spliced in from a request
    with pytest.raises(ValueError):
        queue_page(cat, QueueQuery(sort="sku; DROP TABLE assets", attention=False))
    with pytest.raises(ValueError):
        queue_page(cat, QueueQuery(ranges=[("1=1) OR (metrics_tris", 0, 1)], attention=False))
    assert _truth(cat, "SELECT count(*) FROM assets")[0][0] == N


def test_asset_detail_reads_stage_rows_of_that_attempt(cat):
    d = asset_detail(cat, "SKU-0000003")
    assert d is not None and d.row["sku"] == "SKU-0000003" and d.current
    assert d.row["verdict"] in ("pass", "review", "fail")
    assert [s["seq"] for s in d.stages] == list(range(len(d.stages)))
    assert {s["attempt_id"] for s in d.stages} == {d.row["attempt_id"]}
    assert asset_detail(cat, "SKU-nope") is None


def test_snapshot_refreshes_when_the_catalog_changes(cat, tmp_path):
    write_synthetic_catalog(tmp_path, 20, n_runs=1, files_per_run=1)
    c = Catalog(str(tmp_path), refresh_s=0)
    c.load()
    assert not c.refresh_if_changed()
    write_synthetic_catalog(tmp_path / "more", 5, n_runs=1, files_per_run=1, triage=False,
                            compact=False)
    (tmp_path / "catalog" / "assets" / "run=new").mkdir()
    src = next((tmp_path / "more" / "catalog" / "assets").rglob("*.parquet"))
    (tmp_path / "catalog" / "assets" / "run=new" / "x.parquet").write_bytes(
        _renamed(src.read_bytes()))
    assert c.refresh_if_changed()
    cur = c.reader().con
    assert cur.execute("SELECT count(*) FROM assets WHERE sku LIKE 'NEW-%'").fetchone()[0] == 5
    cur.close()
    c.stop()


def _renamed(parquet: bytes) -> bytes:
    """The same rows under other SKUs and attempt ids."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from assetfactory.catalog.fragments import parquet_bytes

    t = pq.read_table(pa.BufferReader(parquet))
    for col in ("sku", "attempt_id"):
        t = t.set_column(t.schema.get_field_index(col), col,
                         pc.binary_join_element_wise("NEW", t[col], "-"))
    return parquet_bytes(t)


def test_snapshot_holds_the_row_sources_in_memory(cat):
    r = cat.reader()
    tables = {t for (t,) in r.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    r.close()
    assert {"_mem_assets", "_mem_verdicts", "_mem_reviews", "stage_times"} <= tables
    assert isinstance(cat.reader().con, duckdb.DuckDBPyConnection)


def test_a_decision_elsewhere_reloads_only_the_decisions(tmp_path):
    """Another reviewer (here the review API the CLI uses) decides: the next refresh re-reads
    the decisions and the queue without a full reload, and the queue shows the decision."""
    from assetfactory.catalog.reviews import record_decision

    write_synthetic_catalog(tmp_path, 60, n_runs=1, files_per_run=1)
    c = Catalog(str(tmp_path), refresh_s=0)
    c.load()
    rows, total = queue_page(c, QueueQuery())
    sku = rows[0]["sku"]
    generation = c.generation
    record_decision(str(tmp_path), sku, "reject", reviewer="someone", source="cli")
    assert c.refresh_if_changed()
    assert c.generation == generation            # no full reload
    rows2, total2 = queue_page(c, QueueQuery())
    assert total2 == total - 1 and sku not in [r["sku"] for r in rows2]
    decided, _ = queue_page(c, QueueQuery(equals={"decision": "reject"}, attention=False))
    assert [r["sku"] for r in decided] == [sku]
    assert not c.refresh_if_changed()
    c.stop()


def test_decision_rows_added_in_place_match_a_full_reload(tmp_path):
    """``add_reviews`` (what the dashboard does after its own write) gives the same queue
    rows as reading everything again from the files."""
    from assetfactory.catalog.reviews import record_decision

    write_synthetic_catalog(tmp_path, 40, n_runs=1, files_per_run=1)
    c = Catalog(str(tmp_path), refresh_s=0)
    c.load()
    rows, _ = queue_page(c, QueueQuery(attention=False, sort="sku"))
    ok = [r["sku"] for r in rows if r["status"] == "ok"][:2]
    written = [record_decision(str(tmp_path), s, d, reviewer="r", note="n", source="dashboard")
               for s, d in zip(ok, ("approve", "reject"))]
    c.add_reviews(written)
    cols = ("sku", "review_status", "reviewer", "review_note", "review_id", "decided_at")
    in_place = [{k: r[k] for k in cols} for r in queue_page(
        c, QueueQuery(attention=False, sort="sku"))[0]]
    c.load()
    reloaded = [{k: r[k] for k in cols} for r in queue_page(
        c, QueueQuery(attention=False, sort="sku"))[0]]
    assert in_place == reloaded
    assert {r["sku"]: r["review_status"] for r in reloaded if r["sku"] in ok} == \
        {ok[0]: "approve", ok[1]: "reject"}
    c.stop()
