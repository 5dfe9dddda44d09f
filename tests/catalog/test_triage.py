"""The triage queue: current assets worst first, filters, sorting, pages; the CLI command."""

from __future__ import annotations

import json

import pytest
from catalog_rows import write
from typer.testing import CliRunner

from assetfactory.catalog.reviews import record_decision
from assetfactory.catalog.triage import failures_by_stage, record_verdicts, triage_queue
from assetfactory.cli import app


@pytest.fixture(autouse=True)
def _no_user_rules(monkeypatch, tmp_path_factory):
    monkeypatch.delenv("ASSETFACTORY_RULES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def _catalog(root: str) -> None:
    ok = {"metrics_tris": 1000, "metrics_iou_min": 0.95, "texture_observed_frac": 0.9}
    write(root, "mug", "r1", metrics=ok, files=False)
    write(root, "lamp", "r1", metrics={**ok, "metrics_iou_min": 0.7}, files=False)
    write(root, "chair", "r1", failed="texture", files=False)
    write(root, "sofa", "r1", failed="uv", files=False)
    write(root, "o'neil", "r1", metrics={**ok, "metrics_iou_min": 0.85}, files=False)
    # a newer attempt of the failed chair succeeds: the queue shows only the current one
    write(root, "chair", "r2", metrics=ok, files=False)
    write(root, "desk", "r2", metrics={**ok, "texture_observed_frac": 0.2}, files=False)


def test_queue_is_worst_first_and_filters_with_bound_parameters(tmp_path):
    root = str(tmp_path)
    _catalog(root)
    assert record_verdicts(root).total == 7
    page = triage_queue(root)
    assert page.total == 6          # current assets only: chair's failed attempt is history
    assert [i["sku"] for i in page.items] == ["sofa", "desk", "lamp", "o'neil", "chair", "mug"]
    assert page.items[0]["verdict"] == "fail" and "failed at uv" in page.items[0]["reasons"]
    assert page.items[0]["fix"] == "do the fix" and page.items[0]["review_status"] == "unreviewed"
    assert page.items[2]["metric_silhouette_iou"] == 0.7
    by = {i["sku"]: i for i in page.items}
    assert by["chair"]["run_id"] == "r2" and by["chair"]["verdict"] == "pass"

    assert [i["sku"] for i in triage_queue(root, run="r1").items] == \
        ["sofa", "lamp", "o'neil", "mug"]
    assert [i["sku"] for i in triage_queue(root, verdicts=["review"]).items] == \
        ["desk", "lamp", "o'neil"]
    assert [i["sku"] for i in triage_queue(root, stage="uv").items] == ["sofa"]
    assert [i["sku"] for i in triage_queue(root, rule="texels-unobserved").items] == ["desk"]
    assert [i["sku"] for i in triage_queue(root, sku="O'N").items] == ["o'neil"]
    assert [i["sku"] for i in triage_queue(root, sku="') OR true --").items] == []
    assert [i["sku"] for i in triage_queue(
        root, where="metric_silhouette_iou < 0.9").items] == ["lamp", "o'neil"]
    srt = triage_queue(root, sort="metrics_iou_min", verdicts=["review", "pass"])
    assert [i["sku"] for i in srt.items] == ["lamp", "o'neil", "chair", "desk", "mug"]
    # pages: the total is the filtered count, pages do not overlap
    p1 = triage_queue(root, limit=4, offset=0)
    p2 = triage_queue(root, limit=4, offset=4)
    assert p1.total == p2.total == 6 and len(p1.items) == 4 and len(p2.items) == 2
    assert {i["sku"] for i in p1.items}.isdisjoint({i["sku"] for i in p2.items})
    assert triage_queue(root, limit=4, offset=40).total == 6
    # decisions take an asset out of the unreviewed view
    record_decision(root, "mug", "approve", reviewer="ann")
    assert "mug" not in [i["sku"] for i in triage_queue(root, review=["unreviewed"]).items]
    assert [i["sku"] for i in triage_queue(root, review=["approve"]).items] == ["mug"]
    mug = triage_queue(root, review=["approve"]).items[0]
    assert mug["reviewer"] == "ann" and mug["rules_version"] and mug["reasons"] is not None
    # --where sees every column of the ``queue`` view, the decision's and the verdict's too
    assert [i["sku"] for i in triage_queue(root, where="reviewer = 'ann'").items] == ["mug"]
    assert [i["sku"] for i in triage_queue(
        root, where="len(reasons) > 0 AND rules_version IS NOT NULL").items] == \
        [i["sku"] for i in page.items if i["reasons"]]
    with pytest.raises(ValueError, match="cannot sort by"):
        triage_queue(root, sort="no_such; DROP")
    with pytest.raises(ValueError, match="unknown verdict"):
        triage_queue(root, verdicts=["meh"])


def test_failures_by_stage(tmp_path):
    root = str(tmp_path)
    _catalog(root)
    assert failures_by_stage(root) == [
        {"stage": "uv", "failed": 1, "most_common_error": "uv broke", "fix": "do the fix"}]
    assert [r["stage"] for r in failures_by_stage(root, run="r1")] == ["texture", "uv"]


def test_triage_command_judges_and_prints_the_queue(tmp_path):
    root = str(tmp_path)
    _catalog(root)
    runner = CliRunner()
    res = runner.invoke(app, ["triage", "--out", root])
    assert res.exit_code == 0, res.output
    assert "judged 7 attempt(s)" in res.output and "failed at uv" in res.output
    assert res.output.index("sofa") < res.output.index("mug")
    res = runner.invoke(app, ["triage", "r1", "--out", root, "--json", "--verdict", "review"])
    assert res.exit_code == 0
    items = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [i["sku"] for i in items] == ["lamp", "o'neil"]
    res = runner.invoke(app, ["triage", "--out", root, "--where", "no_such_column > 1"])
    assert res.exit_code == 2 and "--where failed" in res.output
    res = runner.invoke(app, ["triage", "--show-rules"])
    assert res.exit_code == 0 and "silhouette-iou-low" in res.output


def test_verdicts_streamed_in_small_batches_are_the_same_rows(tmp_path, monkeypatch):
    import shutil

    from assetfactory.catalog import triage
    from assetfactory.catalog.views import Catalog

    def content(root: str) -> list[tuple]:
        with Catalog(root) as cat:
            return cat.execute(
                "SELECT attempt_id, run_id, sku, verdict, severity, reasons, rules_hit, "
                "details, rules_version, rules_hash FROM verdicts ORDER BY attempt_id").fetchall()

    one, many = str(tmp_path / "one"), str(tmp_path / "many")
    _catalog(one)
    shutil.copytree(one, many)
    whole = record_verdicts(one)
    monkeypatch.setattr(triage, "VERDICT_BATCH_ROWS", 2)
    streamed = record_verdicts(many)
    assert streamed.counts == whole.counts and streamed.total == 7
    assert content(many) == content(one)
    # one file per run, each holding its run's rows only; the rule set recorded once
    assert sorted(k.split("/")[2] for k in streamed.keys) == ["run=r1", "run=r2"]
    with Catalog(many) as cat:
        assert cat.execute("SELECT count(*) FROM rulesets").fetchall() == [(1,)]
        assert cat.execute("SELECT count(*) FROM verdicts v JOIN attempts a "
                           "USING (attempt_id) WHERE v.run_id <> a.run_id").fetchall() == [(0,)]
    assert record_verdicts(many).total == 0       # nothing new to judge
