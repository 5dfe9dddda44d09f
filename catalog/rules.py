"""Triage rules: versioned TOML files of metric / comparison / threshold -> verdict + reason.

The defaults ship with the package (``triage_rules.toml``, read as package data). A user file
(``$ASSETFACTORY_RULES``, else ``$XDG_CONFIG_HOME/assetfactory/triage.toml``) and a file named
for one run or one triage (``--rules``) are layered on top, in that order: a rule with an id
already present updates the fields it names, ``enabled = false`` removes it, a new id is
appended. The effective rule set has a version (the layers' versions joined) and a hash; both go
into every verdict row, and the rules themselves into a ``rulesets`` row, so a verdict can always
be explained and recomputed later under other rules without touching what was recorded.

Rules compile to one DuckDB query (``compile_rules``), so judging a million attempts is one
scan, not a Python loop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.hashing import sha256_obj

VERDICTS = ("pass", "review", "fail")
SEVERITY = {"pass": 0, "review": 1, "fail": 2}
OPS = ("<", "<=", ">", ">=", "==", "!=")

#: Metrics derived from recorded ones, as SQL over an attempt row (see the default TOML).
DERIVED: dict[str, str] = {
    "budget_tris": "_budget_tris",
    "budget_glb_bytes": "_budget_glb_bytes",
    "views_unposed": "(TRY_CAST(ingest_views AS BIGINT) - TRY_CAST(ingest_views_posed AS BIGINT))",
    "parts_open": "(TRY_CAST(cleanup_parts AS BIGINT) - "
                  "TRY_CAST(cleanup_parts_watertight AS BIGINT))",
}

_FIELDS = {"id", "metric", "op", "threshold", "threshold_metric", "scale", "verdict", "reason",
           "profiles", "missing", "enabled", "description"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
_SPEC = re.compile(r"^[<>^]?[+-]?\d*(?:,)?(?:\.\d+)?[dfeg%]?$")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, the rule and the fix."""


@dataclass(frozen=True)
class Rule:
    """One check: ``metric op threshold`` (or ``op threshold_metric * scale``) -> verdict."""

    id: str
    metric: str
    op: str
    verdict: str
    reason: str
    threshold: float | int | str | bool | None = None
    threshold_metric: str | None = None
    scale: float = 1.0
    profiles: tuple[str, ...] = ()
    missing: str = "skip"
    description: str = ""

    @property
    def severity(self) -> int:
        return SEVERITY[self.verdict]


@dataclass(frozen=True)
class RuleSet:
    """The effective rules after layering, with their version and the files they came from."""

    rules: tuple[Rule, ...]
    version: str
    sources: tuple[str, ...]

    def describe(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in self.rules]

    @property
    def hash(self) -> str:
        return sha256_obj({"version": self.version, "rules": self.describe()})[:16]

    def get(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def default_rules_text() -> str:
    return resources.files("assetfactory.catalog").joinpath("triage_rules.toml").read_text()


def user_rules_path() -> Path | None:
    """``$ASSETFACTORY_RULES``, else ``~/.config/assetfactory/triage.toml`` when it exists."""
    env = os.environ.get("ASSETFACTORY_RULES")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise RulesError(f"ASSETFACTORY_RULES names {p}, which is not a file; point it at a "
                             "TOML rules file or unset it")
        return p
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    p = Path(base) / "assetfactory" / "triage.toml"
    return p if p.is_file() else None


def _parse(text: str, source: str) -> tuple[str, list[dict[str, Any]]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML ({exc}); fix the syntax") from None
    unknown = set(doc) - {"version", "rules"}
    if unknown:
        raise RulesError(f"{source}: unknown top-level key(s) {sorted(unknown)}; a rules file "
                         "has `version` and [[rules]] tables")
    version = str(doc.get("version", "")).strip()
    if not version:
        raise RulesError(f'{source}: missing `version = "..."`; give the file a version and '
                         "raise it whenever you change a rule")
    rules = doc.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise RulesError(f"{source}: `rules` must be an array of tables ([[rules]])")
    for r in rules:
        if "id" not in r:
            raise RulesError(f"{source}: a rule without an `id`; give every rule a unique id")
        bad = set(r) - _FIELDS
        if bad:
            raise RulesError(f"{source}: rule {r['id']!r} has unknown field(s) {sorted(bad)}; "
                             f"allowed: {sorted(_FIELDS)}")
    return version, rules


def _build(raw: Mapping[str, Any], source: str) -> Rule:
    rid = str(raw["id"])

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise RulesError(f"{source}: rule {rid!r}: {msg}")

    for k in ("metric", "op", "verdict", "reason"):
        need(k in raw and str(raw[k]).strip() != "", f"`{k}` is missing")
    need(raw["op"] in OPS, f"op {raw['op']!r} is not one of {OPS}")
    need(raw["verdict"] in ("review", "fail"), f"verdict {raw['verdict']!r} must be "
         "'review' or 'fail' (an attempt no rule flags passes)")
    has_t, has_m = raw.get("threshold") is not None, raw.get("threshold_metric") is not None
    need(has_t != has_m, "give exactly one of `threshold` and `threshold_metric`")
    need(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(raw["metric"])) is not None,
         f"metric {raw['metric']!r} is not a column name")
    if has_m:
        need(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(raw["threshold_metric"])) is not None,
             f"threshold_metric {raw['threshold_metric']!r} is not a column name")
    thr = raw.get("threshold")
    need(thr is None or isinstance(thr, (int, float, str, bool)),
         "threshold must be a number, text or true/false")
    if isinstance(thr, (str, bool)):
        need(raw["op"] in ("==", "!="), f"text and boolean thresholds take == or !=, not "
             f"{raw['op']}")
    missing = str(raw.get("missing", "skip"))
    need(missing in ("skip", "review", "fail"), "missing must be 'skip', 'review' or 'fail'")
    profiles = raw.get("profiles", ())
    need(isinstance(profiles, (list, tuple)) and all(isinstance(p, str) for p in profiles),
         "profiles must be a list of profile names")
    for m in _PLACEHOLDER.finditer(str(raw["reason"])):
        spec = m.group(2)
        need(spec is None or _SPEC.match(spec) is not None,
             f"format spec {spec!r} in the reason is not supported (use e.g. .2f, .0%, d)")
    return Rule(id=rid, metric=str(raw["metric"]), op=str(raw["op"]),
                verdict=str(raw["verdict"]), reason=str(raw["reason"]), threshold=thr,
                threshold_metric=raw.get("threshold_metric"), scale=float(raw.get("scale", 1.0)),
                profiles=tuple(profiles), missing=missing,
                description=str(raw.get("description", "")))


def layer(layers: list[tuple[str, str]]) -> RuleSet:
    """Combine ``(source name, TOML text)`` layers, first = base."""
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    versions, sources = [], []
    for source, text in layers:
        version, rules = _parse(text, source)
        versions.append(f"{Path(source).stem if source != 'default' else 'default'}@{version}")
        sources.append(source)
        for r in rules:
            rid = str(r["id"])
            if r.get("enabled") is False:
                merged.pop(rid, None)
                continue
            base = merged.get(rid, {})
            new = {**base, **{k: v for k, v in r.items() if k != "enabled"}}
            if "threshold" in r and "threshold_metric" not in r:
                new.pop("threshold_metric", None)
            if "threshold_metric" in r and "threshold" not in r:
                new.pop("threshold", None)
            merged[rid] = new
            origin[rid] = source
    built = tuple(_build(r, origin[rid]) for rid, r in merged.items())
    return RuleSet(built, "+".join(versions), tuple(sources))


def load_rules(path: str | Path | None = None, *, user: bool = True) -> RuleSet:
    """The package defaults, then the user's file (when ``user``), then ``path``."""
    layers = [("default", default_rules_text())]
    if user:
        up = user_rules_path()
        if up is not None:
            layers.append((str(up), up.read_text()))
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise RulesError(f"rules file {p} not found; pass a TOML file (see the defaults "
                             "with `assetfactory triage --show-rules`)")
        layers.append((str(p), p.read_text()))
    return layer(layers)


# ---------------------------------------------------------------- compiling to SQL

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v)) if isinstance(v, float) else str(v)
    return "'" + str(v).replace("'", "''") + "'"


def _column(name: str, columns: Mapping[str, str]) -> str:
    if name in DERIVED:
        return DERIVED[name]
    return _ident(name) if name in columns else "NULL"


def _format_arg(expr: str, spec: str | None) -> str:
    if spec is None:
        return f"coalesce(CAST({expr} AS VARCHAR), 'n/a')"
    if spec.endswith("%"):
        return (f"coalesce(format('{{:{spec[:-1]}f}}', TRY_CAST({expr} AS DOUBLE) * 100) "
                "|| '%', 'n/a')")
    if spec.endswith("d"):
        return f"coalesce(format('{{:{spec}}}', TRY_CAST({expr} AS BIGINT)), 'n/a')"
    return f"coalesce(format('{{:{spec}}}', TRY_CAST({expr} AS DOUBLE)), 'n/a')"


def reason_sql(rule: Rule, value: str, threshold: str, columns: Mapping[str, str]) -> str:
    """The rule's reason template as a SQL string expression."""
    parts: list[str] = []
    pos = 0
    text = rule.reason
    for m in _PLACEHOLDER.finditer(text):
        if m.start() > pos:
            parts.append(_lit(text[pos:m.start()]))
        name, spec = m.group(1), m.group(2)
        if name == "value":
            expr = value
        elif name == "threshold":
            expr = threshold
        elif name == "metric":
            expr = _lit(rule.metric)
        else:
            expr = _column(name, columns)
        parts.append(_format_arg(expr, spec))
        pos = m.end()
    if pos < len(text):
        parts.append(_lit(text[pos:]))
    return "concat(" + ", ".join(parts) + ")" if parts else "''"


def compile_rule(rule: Rule, columns: Mapping[str, str]) -> tuple[str, str, str, str]:
    """(hit, reason, value, threshold) SQL expressions for one rule over an attempt row."""
    value = _column(rule.metric, columns)
    if rule.threshold_metric is not None:
        threshold = f"(TRY_CAST({_column(rule.threshold_metric, columns)} AS DOUBLE) * " \
                    f"{float(rule.scale)!r})"
        lhs = f"TRY_CAST({value} AS DOUBLE)"
    elif isinstance(rule.threshold, bool):
        threshold = _lit(rule.threshold)
        lhs = f"TRY_CAST({value} AS BOOLEAN)"
    elif isinstance(rule.threshold, str):
        threshold = _lit(rule.threshold)
        lhs = f"CAST({value} AS VARCHAR)"
    else:
        threshold = _lit(rule.threshold)
        lhs = f"TRY_CAST({value} AS DOUBLE)"
    op = "=" if rule.op == "==" else ("<>" if rule.op == "!=" else rule.op)
    cmp = f"({lhs} {op} {threshold})"
    if rule.missing != "skip":
        cmp = f"({cmp} OR {lhs} IS NULL)"
    hit = f"coalesce({cmp}, false)"
    if rule.profiles:
        hit = f"({hit} AND profile IN ({', '.join(_lit(p) for p in rule.profiles)}))"
    return hit, reason_sql(rule, value, threshold, columns), value, threshold


def compile_rules(rules: RuleSet, columns: Mapping[str, str], source: str) -> str:
    """One SELECT over ``source`` (attempt rows) giving each row's verdict, severity, reasons
    (worst first), the ids of the rules it hit and a JSON of the details."""
    ordered = sorted(rules.rules, key=lambda r: -r.severity)
    hits, reasons, details, sevs = [], [], [], []
    for r in ordered:
        hit, reason, value, thr = compile_rule(r, columns)
        hits.append(f"CASE WHEN {hit} THEN {_lit(r.id)} END")
        reasons.append(f"CASE WHEN {hit} THEN {reason} END")
        sevs.append(f"CASE WHEN {hit} THEN {r.severity} ELSE 0 END")
        details.append(
            f"CASE WHEN {hit} THEN {{'rule': {_lit(r.id)}, 'verdict': {_lit(r.verdict)}, "
            f"'metric': {_lit(r.metric)}, 'value': CAST({value} AS VARCHAR), "
            f"'threshold': CAST({thr} AS VARCHAR)}} END")
    if not ordered:
        return (f"SELECT attempt_id, run_id, sku, 'pass' AS verdict, 0::BIGINT AS severity, "
                f"'' AS reasons, []::VARCHAR[] AS rules_hit, '[]' AS details FROM {source}")
    sev = f"greatest({', '.join(sevs)})" if len(sevs) > 1 else sevs[0]
    return f"""
        SELECT attempt_id, run_id, sku,
               CASE sev WHEN 2 THEN 'fail' WHEN 1 THEN 'review' ELSE 'pass' END AS verdict,
               sev::BIGINT AS severity,
               array_to_string([x FOR x IN reasons IF x IS NOT NULL], '; ') AS reasons,
               [x FOR x IN hit_ids IF x IS NOT NULL] AS rules_hit,
               CAST(to_json([x FOR x IN details IF x IS NOT NULL]) AS VARCHAR) AS details
        FROM (SELECT attempt_id, run_id, sku, {sev} AS sev,
                     [{', '.join(reasons)}] AS reasons,
                     [{', '.join(hits)}] AS hit_ids,
                     [{', '.join(details)}] AS details
              FROM {source})"""


def rules_json(rules: RuleSet) -> str:
    return json.dumps(rules.describe(), sort_keys=True)
