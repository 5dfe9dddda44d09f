"""One SKU's history, and the difference between two runs of the same catalog.

Both read the named views (``sku_history``, ``run_diff``, ``run_metric_changes`` are also
table macros anyone can call from ``assetfactory query``); filters are bound parameters and
reach the Parquet scans, so one SKU's history reads a few row groups of a compacted catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .views import Catalog, open_catalog, quote_ident, run_diff_sql, with_retry

CHANGES = ("new", "fixed", "regressed", "same", "missing")


@dataclass
class SkuHistory:
    """Everything that happened to one SKU, oldest first, and its attempts in detail."""

    sku: str
    events: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    current_attempt_id: str | None


def sku_history(root: str | Catalog, sku: str) -> SkuHistory:
    """Attempts (with lineage), verdicts, decisions and publications of ``sku``."""
    cat, mine = open_catalog(root)
    try:
        events = cat.rows("SELECT * FROM sku_history(?)", [sku])
        attempts = cat.rows("""
            SELECT a.attempt_id, a.run_id, a.status, a.failed_stage, a.error, a.fix,
                   a.finished_at, a.supersedes, a.trigger, a.profile, a.recipe_hash,
                   a.glb_sha256, v.verdict, v.reasons, d.decision, d.reviewer, d.note
            FROM (SELECT * FROM attempts WHERE sku = ?) a
            LEFT JOIN (SELECT attempt_id, max_by(verdict, (computed_at, verdict_id)) AS verdict,
                              max_by(reasons, (computed_at, verdict_id)) AS reasons
                       FROM verdicts WHERE sku = ? GROUP BY attempt_id) v
                   ON v.attempt_id = a.attempt_id
            LEFT JOIN (SELECT attempt_id, max_by(decision, (decided_at, review_id)) AS decision,
                              max_by(reviewer, (decided_at, review_id)) AS reviewer,
                              max_by(note, (decided_at, review_id)) AS note
                       FROM reviews WHERE sku = ? GROUP BY attempt_id) d
                   ON d.attempt_id = a.attempt_id
            ORDER BY a.finished_at, a.attempt_id""", [sku, sku, sku])
        # (the latest verdict and decision of this SKU's attempts only: the ``current_verdicts``
        # view picks the latest of every attempt in the catalog before a SKU filter applies)
        current = attempts[-1]["attempt_id"] if attempts else None
        return SkuHistory(sku, events, attempts, current)
    finally:
        if mine:
            cat.close()


@dataclass
class RunDiff:
    """How run ``run_b`` differs from run ``run_a``."""

    run_a: str
    run_b: str
    counts: dict[str, int]
    rows: list[dict[str, Any]]                     # per SKU, the changes asked for
    moved: list[dict[str, Any]] = field(default_factory=list)   # per metric


def latest_runs(root: str | Catalog, n: int = 2) -> list[str]:
    """The ``n`` most recent runs, oldest first."""
    cat, mine = open_catalog(root)
    try:
        # (the ``runs`` view's order, without its counts and sums over every attempt)
        rows = cat.rows("SELECT run_id FROM attempts GROUP BY run_id "
                        "ORDER BY max(finished_at) DESC, run_id DESC LIMIT ?", [n])
        return [r["run_id"] for r in reversed(rows)]
    finally:
        if mine:
            cat.close()


def run_diff(root: str | Catalog, run_a: str, run_b: str, *, tolerance: float = 0.01,
             changes: Sequence[str] = ("new", "fixed", "regressed", "missing"),
             limit: int = 100, offset: int = 0,
             metrics: Sequence[str] | None = None) -> RunDiff:
    """Counts of new / fixed / regressed / same / missing SKUs, the SKUs of ``changes``
    (paginated), and for each metric how many SKUs present in both runs it moved for (by more
    than ``tolerance``, relative) and by how much on average."""
    bad = set(changes) - set(CHANGES)
    if bad:
        raise ValueError(f"unknown change kind(s) {sorted(bad)}; use {CHANGES}")
    cat, mine = open_catalog(root)
    try:
        ms = list(metrics) if metrics is not None else cat.metric_columns()
        known = cat.columns["assets"]
        ms = [m for m in ms if m in known]

        def diff() -> tuple[dict[str, int], list[dict[str, Any]], list[dict[str, Any]]]:
            sides, aligned = _diff_table(cat, run_a, run_b, ms)
            counts = {c: 0 for c in CHANGES}
            for change, n in cat.con.execute(
                    "SELECT change, count(*) FROM _run_diff GROUP BY change").fetchall():
                counts[change] = int(n)
            rows = []
            if changes:
                cur = cat.con.execute(
                    f"SELECT * FROM _run_diff WHERE change IN "
                    f"({', '.join('?' for _ in changes)}) ORDER BY change, sku LIMIT ? OFFSET ?",
                    list(changes) + [limit, offset])
                names = [d[0] for d in cur.description]
                rows = [dict(zip(names, r)) for r in cur.fetchall()]
            moved = _moved(cat, *sides, ms, tolerance, aligned) if ms else []
            return counts, rows, moved

        # (a compaction that deletes a file under the snapshot: a new snapshot, all again)
        counts, rows, moved = with_retry(cat, diff)
        return RunDiff(run_a, run_b, counts, rows, moved)
    finally:
        if mine:
            cat.close()


def _diff_table(cat: Catalog, run_a: str, run_b: str,
                metrics: Sequence[str]) -> tuple[list[str], bool]:
    """Write ``_run_diff`` (one row per SKU in either run); returns each run's side for the
    metric comparison, and whether the two sides hold the same SKUs in the same order.

    Each side is one row per SKU: the run's latest attempt with its verdict and ``metrics``,
    read from the run's latest-attempt table when one is fresh (written by the compaction,
    sorted by SKU: a scan of what the diff needs and nothing else), else computed from the
    run's own files (``views.latest_sql``) into a temporary table once. Two tables of the same
    SKUs (a catalog converted again: the common case) are paired row by row, a positional
    join, instead of a hash join on SKU."""
    sides, tables = [], []
    for i, run in enumerate((run_a, run_b)):
        sql, from_table = cat.latest(run, metrics)
        if not from_table:
            cat.con.execute(f"CREATE OR REPLACE TEMP TABLE _run_side_{i} AS SELECT * FROM {sql}")
            sql = f"_run_side_{i}"
        sides.append(sql)
        tables.append(from_table)
    aligned = False
    if all(tables):
        n_a, n_b = (cat.con.execute(f"SELECT count(*) FROM {x}").fetchone()[0] for x in sides)
        aligned = n_a == n_b and bool(cat.con.execute(
            f"SELECT coalesce(bool_and(a.sku = b.sku), true) FROM (SELECT sku FROM {sides[0]}) a "
            f"POSITIONAL JOIN (SELECT sku FROM {sides[1]}) b").fetchone()[0])
    cat.con.execute(f"CREATE OR REPLACE TEMP TABLE _run_diff AS "
                    f"{run_diff_sql(*sides, positional=aligned)}")
    return sides, aligned


def _moved(cat: Catalog, side_a: str, side_b: str, metrics: Sequence[str],
           tolerance: float, aligned: bool = False) -> list[dict[str, Any]]:
    """One pass over the SKUs in both runs: per metric, how many moved and the mean change.

    The two sides (one row per SKU each) meet by SKU with the metric columns only; with
    ``aligned`` (both are latest-attempt tables, sorted by SKU, of the same SKUs) row by row,
    a positional join instead of a hash join of ~100 columns. A numeric metric is compared as
    a DOUBLE directly (``TRY_CAST`` only for a column of another type). "Moved" is counted as
    ``count_if(|b - a| > tol * max(|a|, 1e-12))`` plus the pairs where exactly one side is
    NULL, which is ``count(a) + count(b) - 2 count(b - a)``: the counts the means need anyway,
    instead of a NULL test, an inequality and an OR per metric and row (at 250,000 pairs and
    48 metrics the expressions cost as much as reading the tables)."""
    numeric = {"BIGINT", "DOUBLE", "INTEGER", "BOOLEAN", "FLOAT", "HUGEINT", "SMALLINT"}
    types = cat.columns["assets"]
    aggs = []
    for i, m in enumerate(metrics):
        q = quote_ident(m)
        conv = "CAST" if types.get(m) in numeric else "TRY_CAST"
        a, b = f"{conv}(a.{q} AS DOUBLE)", f"{conv}(b.{q} AS DOUBLE)"
        aggs.append(f"count_if(abs({b} - {a}) > $tol * greatest(abs({a}), 1e-12)) AS r{i}, "
                    f"count({a}) AS ca{i}, count({b}) AS cb{i}, count({b} - {a}) AS cd{i}, "
                    f"sum({a}) AS sa{i}, sum({b}) AS sb{i}, sum({b} - {a}) AS sd{i}")
    cols = ", ".join(["sku"] + [quote_ident(m) for m in metrics])
    join = "POSITIONAL JOIN" if aligned else "JOIN"
    on = "" if aligned else "ON a.sku = b.sku"
    sql = f"""
        SELECT count(*) AS pairs, {', '.join(aggs)}
        FROM (SELECT {cols} FROM {side_a}) a {join} (SELECT {cols} FROM {side_b}) b {on}"""
    row = cat.con.execute(sql, {"tol": tolerance}).fetchone()
    names = ["pairs"] + [f"{k}{i}" for i in range(len(metrics))
                         for k in ("r", "ca", "cb", "cd", "sa", "sb", "sd")]
    row = dict(zip(names, row))

    def mean(total: Any, n: Any) -> float | None:
        return float(total) / int(n) if n else None

    out = []
    for i, m in enumerate(metrics):
        n = int(row[f"r{i}"] or 0) + int(row[f"ca{i}"]) + int(row[f"cb{i}"]) \
            - 2 * int(row[f"cd{i}"])
        if n:
            out.append({"metric": m, "skus_moved": n, "pairs": int(row["pairs"]),
                        "mean_a": mean(row[f"sa{i}"], row[f"ca{i}"]),
                        "mean_b": mean(row[f"sb{i}"], row[f"cb{i}"]),
                        "mean_delta": mean(row[f"sd{i}"], row[f"cd{i}"])})
    out.sort(key=lambda r: (-r["skus_moved"], r["metric"]))
    return out
