"""One SKU's history and the difference between two runs, as functions, views and commands."""

from __future__ import annotations

import json

import pytest
from catalog_rows import OK, write, write_two_runs
from typer.testing import CliRunner

from assetfactory.catalog.history import latest_runs, run_diff, sku_history
from assetfactory.catalog.reviews import record_decision
from assetfactory.catalog.triage import record_verdicts
from assetfactory.catalog.views import query
from assetfactory.cli import app


@pytest.fixture(autouse=True)
def _no_user_rules(monkeypatch, tmp_path_factory):
    monkeypatch.delenv("ASSETFACTORY_RULES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def test_sku_history_lists_attempts_verdicts_and_decisions_in_order(tmp_path):
    root = str(tmp_path)
    first = write(root, "mug", "r1", failed="texture", files=False)
    write(root, "lamp", "r1", metrics=OK, files=False)
    record_verdicts(root)
    record_decision(root, "mug", "rework", reviewer="ann", note="retry",
                    overrides={"texture": {"size": 512}})
    second = write(root, "mug", "r2", metrics=OK, files=False, supersedes=first["attempt_id"])
    record_verdicts(root)
    record_decision(root, "mug", "approve", reviewer="bob")
    h = sku_history(root, "mug")
    assert [(e["event"], e["outcome"]) for e in h.events] == [
        ("attempt", "failed"), ("verdict", "fail"), ("decision", "rework"),
        ("attempt", "ok"), ("verdict", "pass"), ("decision", "approve")]
    assert "supersedes " + first["attempt_id"] in h.events[3]["detail"]
    assert "set {" in h.events[2]["detail"] and h.events[2]["actor"] == "ann"
    assert h.current_attempt_id == second["attempt_id"]
    assert [(a["status"], a["decision"]) for a in h.attempts] == [("failed", "rework"),
                                                                  ("ok", "approve")]
    # the same through the named macro
    _, rows = query(root, "SELECT event FROM sku_history('mug')")
    assert [r[0] for r in rows] == [e["event"] for e in h.events]
    assert sku_history(root, "nope").events == []


def test_run_diff_new_fixed_regressed_missing_and_moved_metrics(tmp_path):
    root = str(tmp_path)
    # fixme and breaks are converted twice in r2: their latest attempt there is the one compared
    write_two_runs(root)
    assert latest_runs(root) == ["r1", "r2"]
    d = run_diff(root, "r1", "r2", tolerance=0.01)
    assert d.counts == {"new": 1, "fixed": 1, "regressed": 2, "same": 1, "missing": 1}
    assert {r["sku"]: r["change"] for r in d.rows} == {
        "fresh": "new", "fixme": "fixed", "breaks": "regressed",
        "worse": "regressed", "gone": "missing"}
    moved = {m["metric"]: m for m in d.moved}
    assert moved["metrics_iou_min"]["skus_moved"] == 1 + 2   # worse; fixme/breaks gain/lose it
    assert "metrics_tris" in moved and moved["metrics_tris"]["skus_moved"] == 2
    # 1000 -> 1005 is 0.5%: not moved at 1%, moved at 0.1%
    strict = run_diff(root, "r1", "r2", tolerance=0.001)
    assert {m["metric"]: m["skus_moved"] for m in strict.moved}["metrics_tris"] == 3
    _, rows = query(root, "SELECT sku, change FROM run_diff('r1', 'r2') ORDER BY sku")
    assert dict(rows)["worse"] == "regressed"
    _, rows = query(root, "SELECT sku, metric, value_a, value_b FROM "
                          "run_metric_changes('r1', 'r2', 0.01) WHERE sku = 'worse'")
    assert rows == [("worse", "metrics_iou_min", 0.95, 0.5)]


def test_history_and_diff_commands(tmp_path):
    root = str(tmp_path)
    write(root, "mug", "r1", failed="uv", files=False)
    write(root, "mug", "r2", metrics=OK, files=False)
    runner = CliRunner()
    res = runner.invoke(app, ["history", "mug", "--out", root, "--json"])
    assert res.exit_code == 0
    assert [json.loads(x)["outcome"] for x in res.output.strip().splitlines()] == ["failed", "ok"]
    res = runner.invoke(app, ["history", "nope", "--out", root])
    assert res.exit_code == 1 and "no SKU 'nope'" in res.output
    res = runner.invoke(app, ["diff", "--out", root, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["run_a"], out["run_b"], out["counts"]["fixed"]) == ("r1", "r2", 1)
    res = runner.invoke(app, ["diff", "--out", root])
    assert res.exit_code == 0 and "fixed 1" in res.output
