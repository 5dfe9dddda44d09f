"""Review decisions: named reviewers, checked overrides, open reworks, and rows that survive
compaction (locally and on S3)."""

from __future__ import annotations

import pytest
from catalog_rows import write
from typer.testing import CliRunner

from assetfactory.catalog.compact import compact
from assetfactory.catalog.reviews import (
    ReviewError,
    open_reworks,
    parse_overrides,
    record_decision,
    reviewer_name,
)
from assetfactory.catalog.views import query
from assetfactory.cli import app


def test_a_decision_needs_a_named_reviewer(monkeypatch):
    monkeypatch.delenv("ASSETFACTORY_REVIEWER", raising=False)
    with pytest.raises(ReviewError, match="--reviewer NAME or set ASSETFACTORY_REVIEWER"):
        reviewer_name(None)
    monkeypatch.setenv("ASSETFACTORY_REVIEWER", "ann")
    assert reviewer_name(None) == "ann" and reviewer_name("bob") == "bob"


def test_overrides_are_parsed_and_checked_against_the_stages(tmp_path):
    assert parse_overrides(["simplify.target_tris=5000", "texture.size=1024",
                            "cleanup.fill_holes=false", "generate.backend=mesh"]) == {
        "simplify": {"target_tris": 5000}, "texture": {"size": 1024},
        "cleanup": {"fill_holes": False}, "generate": {"backend": "mesh"}}
    with pytest.raises(ReviewError, match="STAGE.OPTION=VALUE"):
        parse_overrides(["target_tris=5"])
    root = str(tmp_path)
    write(root, "mug", files=False)
    for bad, msg in ((["polish.level=3"], "no stage 'polish'"),
                     (["simplify.colour=3"], "simplify has no option 'colour'"),
                     (["simplify.target_tris=-5"], "simplify"),
                     (["profile.texture_px=100"], "power of two"),
                     (["profile.colour=3"], "unknown profile field")):
        with pytest.raises(ReviewError, match=msg):
            record_decision(root, "mug", "rework", reviewer="ann",
                            overrides=parse_overrides(bad))
    row = record_decision(root, "mug", "rework", reviewer="ann",
                          overrides=parse_overrides(["profile.texture_px=512"]))
    assert row["overrides"] == '{"profile": {"texture_px": 512}}'
    with pytest.raises(ReviewError, match="goes with rework"):
        record_decision(root, "mug", "approve", reviewer="ann",
                        overrides={"texture": {"size": 512}})


def test_decisions_target_the_current_attempt(tmp_path):
    root = str(tmp_path)
    old = write(root, "mug", "r1", files=False)
    failed = write(root, "lamp", "r1", failed="bake", files=False)
    with pytest.raises(ReviewError, match="no SKU 'nope'"):
        record_decision(root, "nope", "approve", reviewer="ann")
    with pytest.raises(ReviewError, match="failed at bake"):
        record_decision(root, "lamp", "approve", reviewer="ann")
    row = record_decision(root, "lamp", "rework", reviewer="ann", note="try a bigger budget",
                          overrides={"simplify": {"target_tris": 40000}})
    assert row["attempt_id"] == failed["attempt_id"]
    new = write(root, "mug", "r2", files=False)
    with pytest.raises(ReviewError, match="no longer the current one"):
        record_decision(root, "mug", "approve", reviewer="ann", attempt_id=old["attempt_id"])
    assert record_decision(root, "mug", "approve", reviewer="ann",
                           attempt_id=new["attempt_id"])["attempt_id"] == new["attempt_id"]
    reworks = open_reworks(root)
    assert [(r["sku"], r["overrides"]) for r in reworks] == [
        ("lamp", {"simplify": {"target_tris": 40000}})]
    # a new attempt of the SKU closes the rework; the decision row stays in the history
    write(root, "lamp", "r3", files=False, supersedes=failed["attempt_id"])
    assert open_reworks(root) == []
    assert query(root, "SELECT count(*) FROM reviews")[1] == [(2,)]


def test_review_command(tmp_path, monkeypatch):
    root = str(tmp_path)
    for sku in ("a", "b", "c"):
        write(root, sku, files=False)
    runner = CliRunner()
    monkeypatch.delenv("ASSETFACTORY_REVIEWER", raising=False)
    res = runner.invoke(app, ["review", "a", "approve", "--out", root])
    assert res.exit_code == 2 and "named reviewer" in res.output
    monkeypatch.setenv("ASSETFACTORY_REVIEWER", "ann")
    res = runner.invoke(app, ["review", "a", "b", "rework", "--set", "texture.size=512",
                              "--note", "blurry", "--out", root])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["review", "--where", "sku = 'c'", "reject", "--reviewer", "bob",
                              "--out", root])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["review", "a", "maybe", "--out", root])
    assert res.exit_code == 2 and "approve, reject, rework" in res.output
    _, rows = query(root, "SELECT sku, decision, reviewer, note, overrides FROM decisions "
                          "ORDER BY sku")
    assert rows == [("a", "rework", "ann", "blurry", '{"texture": {"size": 512}}'),
                    ("b", "rework", "ann", "blurry", '{"texture": {"size": 512}}'),
                    ("c", "reject", "bob", None, "{}")]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_decisions_survive_compaction(where, tmp_path, request):
    root = str(tmp_path) if where == "local" else request.getfixturevalue("s3_root")
    for i in range(6):
        write(root, f"sku-{i}", "r1", files=False)
    decided = [record_decision(root, f"sku-{i}", ("approve", "reject", "rework")[i % 3],
                               reviewer="ann", note=f"n{i}",
                               overrides={"texture": {"size": 256}} if i % 3 == 2 else None)
               for i in range(6)]
    before = query(root, "SELECT * FROM reviews ORDER BY review_id")[1]
    report = compact(root)
    assert report.rows["reviews"] == 6
    after = query(root, "SELECT * FROM reviews ORDER BY review_id")[1]
    assert after == before and len(after) == len(decided)
    assert [r["sku"] for r in open_reworks(root)] == ["sku-2", "sku-5"]
    assert open_reworks(root)[0]["overrides"] == {"texture": {"size": 256}}
    # a decision after compaction lands beside the compacted rows
    record_decision(root, "sku-0", "reject", reviewer="bob")
    _, rows = query(root, "SELECT decision, reviewer FROM decisions WHERE sku = 'sku-0'")
    assert rows == [("reject", "bob")]


def test_refreshing_only_the_decisions_shows_new_ones_in_every_view(tmp_path):
    """What a long-lived reader (the dashboard) does after a decision: re-list one kind."""
    from assetfactory.catalog.views import Catalog

    root = str(tmp_path)
    write(root, "mug", "r1", files=False)
    write(root, "lamp", "r1", files=False)
    with Catalog(root) as cat:
        assert cat.rows("SELECT count(*) AS n FROM queue WHERE review_status = 'unreviewed'") \
            == [{"n": 2}]
        record_decision(root, "mug", "rework", reviewer="ann", overrides={"texture": {"size": 1024}})
        write(root, "sofa", "r1", files=False)      # not re-listed: assets keep their snapshot
        cat.refresh_kinds(["reviews"])
        assert cat.rows("SELECT sku, reviewer FROM open_reworks") == \
            [{"sku": "mug", "reviewer": "ann"}]
        assert cat.rows("SELECT count(*) AS n FROM attempts") == [{"n": 2}]
        with pytest.raises(ValueError, match="unknown kind"):
            cat.refresh_kinds(["nope"])
