"""Triage rules: the shipped defaults give the documented verdicts; layering and errors."""

from __future__ import annotations

import json

import pytest
from catalog_rows import recipe, write

from assetfactory.catalog.rules import RulesError, layer, load_rules
from assetfactory.catalog.triage import record_verdicts
from assetfactory.catalog.views import query

GOOD = {"metrics_tris": 23000, "metrics_iou_min": 0.95, "texture_observed_frac": 0.8,
        "cleanup_dims_error_max": 0.01, "gltf_errors": 0, "usd_errors": 0,
        "export_glb_bytes": 4_000_000, "export_usdz_bytes": 4_000_000, "ingest_views": 4,
        "ingest_views_posed": 4, "cleanup_parts": 2, "cleanup_parts_watertight": 2,
        "metrics_boundary_edges": 0}

# (sku, profile, metric changes, failed stage, verdict, rules hit, text in the reasons)
CASES = [
    ("clean", "ar", {}, None, "pass", set(), ""),
    ("no-metrics", "ar", None, None, "pass", set(), ""),
    ("failed", "ar", {}, "texture", "fail", {"failed"}, "failed at texture: texture broke"),
    ("gltf", "ar", {"gltf_errors": 2}, None, "fail", {"gltf-validator-errors"}, "2 error(s)"),
    ("usdz", "ar", {"usd_errors": 1}, None, "fail", {"usdz-check-errors"}, "USDZ check"),
    ("tris-at", "ar", {"metrics_tris": 23000}, None, "pass", set(), ""),
    ("tris-over", "ar", {"metrics_tris": 23001}, None, "fail", {"over-triangle-budget"},
     "23001 triangles, over the profile's budget of 23000"),
    ("glb-at", "ar", {"export_glb_bytes": 5_000_000}, None, "pass", set(), ""),
    ("glb-over", "ar", {"export_glb_bytes": 5_000_001}, None, "fail", {"over-size-budget"},
     "budget of 5000000"),
    ("usdz-over", "ar", {"export_usdz_bytes": 6_000_000}, None, "fail",
     {"usdz-over-size-budget"}, "USDZ is 6000000 bytes"),
    ("print-open-part", "print", {"cleanup_parts_watertight": 1}, None, "fail",
     {"print-part-open"}, "1 part(s) left open"),
    ("ar-open-part", "ar", {"cleanup_parts_watertight": 1}, None, "pass", set(), ""),
    ("print-open-mesh", "print", {"metrics_boundary_edges": 4}, None, "fail",
     {"print-mesh-open"}, "4 open edge(s)"),
    ("web-open-mesh", "web", {"metrics_boundary_edges": 4}, None, "pass", set(), ""),
    ("iou-at", "ar", {"metrics_iou_min": 0.9}, None, "pass", set(), ""),
    ("iou-low", "ar", {"metrics_iou_min": 0.89}, None, "review", {"silhouette-iou-low"},
     "silhouette IoU 0.890"),
    ("texels-at", "ar", {"texture_observed_frac": 0.5}, None, "pass", set(), ""),
    ("texels-low", "ar", {"texture_observed_frac": 0.49}, None, "review",
     {"texels-unobserved"}, "only 49% of the texels"),
    ("dims-at", "ar", {"cleanup_dims_error_max": 0.05}, None, "pass", set(), ""),
    ("dims-off", "ar", {"cleanup_dims_error_max": 0.062}, None, "review",
     {"dims-off-catalog"}, "by 6.2%"),
    ("views", "ar", {"ingest_views": 4, "ingest_views_posed": 3}, None, "review",
     {"views-unknown"}, "1 photo(s) without a known view"),
    ("both", "ar", {"metrics_iou_min": 0.5, "gltf_errors": 1}, None, "fail",
     {"gltf-validator-errors", "silhouette-iou-low"}, "GLB; silhouette IoU 0.500"),
]


@pytest.fixture(autouse=True)
def _no_user_rules(monkeypatch, tmp_path_factory):
    monkeypatch.delenv("ASSETFACTORY_RULES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def _write_cases(root: str) -> None:
    for sku, profile, change, failed, *_ in CASES:
        metrics = None if change is None else {**GOOD, **change}
        write(root, sku, metrics=metrics or {}, failed=failed, profile=profile,
              rec=recipe(profile, 23000, 5.0), files=False)


def test_shipped_rules_give_the_documented_verdicts(tmp_path):
    root = str(tmp_path)
    _write_cases(root)
    batch = record_verdicts(root)
    assert batch.total == len(CASES) and batch.rules_version == "default@1"
    _, rows = query(root, "SELECT sku, verdict, severity, rules_hit, reasons FROM verdicts")
    got = {r[0]: r[1:] for r in rows}
    for sku, _, _, _, verdict, hit, text in CASES:
        v, sev, rules_hit, reasons = got[sku]
        assert (v, set(rules_hit)) == (verdict, hit), sku
        assert sev == {"pass": 0, "review": 1, "fail": 2}[verdict]
        assert text in reasons, (sku, reasons)
    # worst first: the fail rule's reason precedes the review rule's
    assert got["both"][3].index("GLB") < got["both"][3].index("IoU")


def test_every_shipped_rule_is_exercised():
    shipped = {r.id for r in load_rules(user=False).rules}
    assert shipped == set().union(*(c[5] for c in CASES))


def test_user_and_run_files_override_the_defaults(tmp_path, monkeypatch):
    user = tmp_path / "user.toml"
    user.write_text('version = "7"\n'
                    '[[rules]]\nid = "silhouette-iou-low"\nthreshold = 0.8\n'
                    '[[rules]]\nid = "views-unknown"\nenabled = false\n')
    run = tmp_path / "run.toml"
    run.write_text('version = "2"\n[[rules]]\nid = "heavy"\nmetric = "export_glb_bytes"\n'
                   'op = ">"\nthreshold = 1000000\nverdict = "review"\n'
                   'reason = "heavy: {value} bytes"\n')
    monkeypatch.setenv("ASSETFACTORY_RULES", str(user))
    rules = load_rules(run)
    ids = [r.id for r in rules.rules]
    assert "views-unknown" not in ids and ids[-1] == "heavy"
    assert rules.get("silhouette-iou-low").threshold == 0.8
    assert rules.get("silhouette-iou-low").verdict == "review"   # the rest kept
    assert rules.version == "default@1+user@7+run@2"
    assert rules.hash != load_rules(user=False).hash
    root = str(tmp_path / "cat")
    write(root, "iou-85", metrics={**GOOD, "metrics_iou_min": 0.85}, files=False)
    write(root, "views", metrics={**GOOD, "ingest_views_posed": 1}, files=False)
    record_verdicts(root, rules=rules)
    _, rows = query(root, "SELECT sku, verdict, rules_hit FROM verdicts ORDER BY sku")
    assert rows == [("iou-85", "review", ["heavy"]), ("views", "review", ["heavy"])]


def _rule(**fields: object) -> str:
    """A one-rule file: a valid rule with ``fields`` changed (None drops a field)."""
    base = {"id": "x", "metric": "a", "op": ">", "threshold": 1, "verdict": "fail",
            "reason": "r"}
    base.update(fields)
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in base.items() if v is not None)
    return f'version = "1"\n[[rules]]\n{body}\n'


@pytest.mark.parametrize("text, message", [
    ('[[rules]]\nid = "x"', "missing `version"),
    ('version = "1"\n[[rules]]\nmetric = "a"', "without an `id`"),
    (_rule(op="~"), "op '~'"),
    (_rule(verdict="maybe"), "verdict 'maybe'"),
    (_rule(colour="red"), "unknown field(s) ['colour']"),
    (_rule(metric="a b"), "not a column name"),
    (_rule(threshold="big"), "take == or !="),
    (_rule(threshold=None), "exactly one of `threshold`"),
    (_rule(reason="{value:!r}"), "format spec"),
    ('version = 1\nrules = [', "not valid TOML"),
])
def test_bad_rules_files_name_the_file_and_the_rule(text, message):
    with pytest.raises(RulesError, match="mine.toml") as err:
        layer([("mine.toml", text)])
    assert message in str(err.value)


def test_recomputing_under_new_rules_adds_rows_and_keeps_the_old(tmp_path):
    root = str(tmp_path)
    write(root, "a", metrics={**GOOD, "metrics_iou_min": 0.85}, files=False)
    write(root, "b", metrics=GOOD, files=False)
    first = record_verdicts(root)
    assert record_verdicts(root).total == 0          # nothing new to judge
    before = query(root, "SELECT * FROM verdicts ORDER BY verdict_id")[1]
    stricter_file = tmp_path / "strict.toml"
    stricter_file.write_text('version = "9"\n[[rules]]\nid = "silhouette-iou-low"\n'
                             'threshold = 0.99\nverdict = "fail"\n')
    second = record_verdicts(root, rules=load_rules(stricter_file), recompute=True)
    assert second.total == 2 and second.rules_hash != first.rules_hash
    after = query(root, "SELECT * FROM verdicts ORDER BY verdict_id")[1]
    assert [r for r in after if r in before] == before          # old rows untouched
    _, cur = query(root, "SELECT sku, verdict, rules_version FROM current_verdicts ORDER BY sku")
    assert cur == [("a", "fail", "default@1+strict@9"), ("b", "fail", "default@1+strict@9")]
    _, sets = query(root, "SELECT rules_hash FROM rulesets ORDER BY rules_hash")
    assert sorted(h for (h,) in sets) == sorted([first.rules_hash, second.rules_hash])
