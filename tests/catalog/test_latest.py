"""Each run's latest-attempt table: written by the compaction, used by run diffs while it
matches the run's files, ignored (with the same answer) once the run has a newer file, and
the ``run_diff`` / ``run_metric_changes`` macros equal to the Python path either way."""

from __future__ import annotations

import pytest
from catalog_rows import OK, write, write_two_runs

from assetfactory.catalog.compact import compact
from assetfactory.catalog.files import LATEST_PREFIX, snapshot
from assetfactory.catalog.history import run_diff
from assetfactory.catalog.latest import build_latest, latest_tables
from assetfactory.catalog.triage import record_verdicts
from assetfactory.catalog.views import Catalog

KINDS = ("assets", "verdicts")      # what the tables are made from (stage rows: not needed)


@pytest.fixture(autouse=True)
def _no_user_rules(monkeypatch, tmp_path_factory):
    monkeypatch.delenv("ASSETFACTORY_RULES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def _answers(cat: Catalog) -> dict:
    """The Python path and both macros, in comparable form."""
    d = run_diff(cat, "r1", "r2", tolerance=0.01, changes=("new", "fixed", "regressed",
                                                           "same", "missing"))
    macro = cat.rows("SELECT * FROM run_diff('r1', 'r2') ORDER BY change, sku")
    assert macro == d.rows                     # the macro equals the Python path row for row
    changes = cat.rows("SELECT sku, metric, value_a, value_b FROM "
                       "run_metric_changes('r1', 'r2', 0.01) ORDER BY sku, metric")
    per_metric: dict[str, int] = {}
    for c in changes:
        per_metric[c["metric"]] = per_metric.get(c["metric"], 0) + 1
    assert per_metric == {m["metric"]: m["skus_moved"] for m in d.moved}
    latest = cat.rows("SELECT * FROM run_latest ORDER BY run_id, sku")
    return {"counts": d.counts, "rows": d.rows, "moved": d.moved, "changes": changes,
            "latest": latest}


def test_compaction_writes_tables_diffs_use_them_while_fresh_and_ignore_them_when_stale(
        tmp_path):
    root = str(tmp_path)
    write_two_runs(root)
    with Catalog(root) as cat:                  # nothing compacted: computed from the rows
        assert not cat.latest("r1")[1] and not cat.latest("r2")[1]
        rows_answer = _answers(cat)
    assert rows_answer["counts"] == {"new": 1, "fixed": 1, "regressed": 2, "same": 1,
                                     "missing": 1}

    report = compact(root, kinds=KINDS)
    assert sorted(k.split("/")[-2] for k in report.latest) == ["run=r1", "run=r2"]
    with Catalog(root) as cat:
        assert cat.latest("r1")[1] and cat.latest("r2")[1]
        assert _answers(cat) == rows_answer
        # the table holds one row per SKU of the run, sorted by SKU, with the metrics
        r2 = cat.rows(f"SELECT sku, status, verdict, metrics_iou_min FROM "
                      f"{cat.latest('r2', ['metrics_iou_min'])[0]}")
    assert [r["sku"] for r in r2] == ["breaks", "fixme", "fresh", "same", "worse"]
    assert {r["sku"]: (r["status"], r["verdict"]) for r in r2}["fixme"] == ("ok", "pass")

    # a new attempt in r2 (and its verdict): r2's table no longer matches its files and is
    # ignored (r1's is still used); the answer is the rows' answer, with the new attempt
    write(root, "worse", "r2", metrics=OK, files=False)
    record_verdicts(root)
    with Catalog(root) as cat:
        assert cat.latest("r1")[1] and not cat.latest("r2")[1]
        stale = _answers(cat)
    assert stale["counts"]["regressed"] == 1 and stale["counts"]["same"] == 2
    assert stale["changes"] != rows_answer["changes"]

    # the next compaction replaces r2's table (the old one is deleted); r1's stays as it was
    before = latest_tables(root)
    compact(root, kinds=KINDS)
    after = latest_tables(root)
    assert len(after) == 2 and [k for k in after if "run=r1" in k] == \
        [k for k in before if "run=r1" in k]
    with Catalog(root) as cat:
        assert cat.latest("r1")[1] and cat.latest("r2")[1]
        assert _answers(cat) == stale

    # derived data: deleted, the same answer from the rows; rebuilt, the same tables
    for key in after:
        (tmp_path / key).unlink()
    with Catalog(root) as cat:
        assert not cat.latest("r1")[1] and not cat.latest("r2")[1]
        assert _answers(cat) == stale
    assert sorted(build_latest(root)) == after

    # a new verdict alone (triage again, under the same rules) also makes a table stale
    record_verdicts(root, runs=["r2"], recompute=True)
    with Catalog(root) as cat:
        assert cat.latest("r1")[1] and not cat.latest("r2")[1]
        again = _answers(cat)
    for answer in (again, stale):               # (the new verdicts have new ids)
        answer["latest"] = [{**r, "verdict_id": None} for r in answer["latest"]]
    assert again == stale


def test_build_latest_skips_runs_with_fragments_and_makes_missing_tables(tmp_path):
    root = str(tmp_path)
    write(root, "a", "r1", metrics=OK, files=False)
    write(root, "a", "r2", metrics=OK, files=False)
    compact(root, kinds=("assets",), runs=["r1"])
    # only r1 is compacted (and untriaged: a table without verdicts)
    assert [k.split("/")[-2] for k in latest_tables(root)] == ["run=r1"]
    assert build_latest(root) == []             # r2 still has a fragment; r1 is fresh
    snap = snapshot(root)
    assert snap.fresh_latest("r1") is not None and snap.fresh_latest("r2") is None
    assert all(k.startswith(LATEST_PREFIX) for k in snap.derived)


def test_a_crashed_builds_staged_file_is_swept_once_old_and_a_live_ones_kept(tmp_path):
    import os
    import time

    root = str(tmp_path)
    write(root, "a", "r1", metrics=OK, files=False)
    compact(root, kinds=("assets",), runs=["r1"])
    (table,) = latest_tables(root)
    folder = tmp_path / table.rsplit("/", 1)[0]
    old, live = folder / ".tmp-crashed.parquet", folder / ".tmp-live.parquet"
    old.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    write(root, "b", "r1", metrics=OK, files=False)     # a newer attempt: the table is stale
    compact(root, kinds=("assets",), runs=["r1"])
    assert not old.exists() and live.exists()
    (rebuilt,) = latest_tables(root)
    assert rebuilt != table
