"""Verdicts (rules applied to attempts, recorded as rows) and the triage queue.

``record_verdicts`` judges attempts with a rule set and appends one verdict row per attempt;
it never changes a row already written, so recomputing an old run under new rules just adds
rows, and the latest verdict of an attempt is the one the queue shows (``current_verdicts``).

``triage_queue`` is what the CLI and the dashboard list: the current attempt of each SKU with
its verdict, reasons and review status, filtered, sorted and paginated in DuckDB with bound
parameters (only the sort column is an identifier, checked against the catalog's columns).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..core.storage import open_storage
from .fragments import RULESET_SCHEMA, VERDICT_SCHEMA, parquet_bytes, rows_table
from .rules import RuleSet, compile_rules, load_rules, rules_json
from .views import ALIASES, Catalog, open_catalog, quote_ident, with_retry


def actor() -> str:
    """Who is acting, for rows that record it: ``user@host``."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class VerdictBatch:
    """The outcome of one ``record_verdicts`` call."""

    batch_id: str
    rules_version: str
    rules_hash: str
    counts: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_BUDGETS = """
    SELECT recipe_hash,
           TRY_CAST(json_extract(r, '$.stages[*].options.target_tris')[1] AS DOUBLE) AS _budget_tris,
           TRY_CAST(json_extract(r, '$.stages[*].options.max_glb_mb')[1] AS DOUBLE) * 1e6 AS _budget_glb_bytes
    FROM (SELECT recipe_hash, any_value(recipe) AS r FROM scope GROUP BY recipe_hash)
    WHERE json_valid(r)"""
# (grouped first: a recipe is the same text for every attempt of its hash, and validating
# each attempt's copy was gigabytes of JSON at a million attempts)


def record_verdicts(root: str | Catalog, *, runs: Sequence[str] | None = None,
                    attempt_ids: Sequence[str] | None = None, rules: RuleSet | None = None,
                    recompute: bool = False, computed_by: str | None = None) -> VerdictBatch:
    """Judge attempts (of ``runs``, or these ``attempt_ids``, or all) and append verdict rows.

    Without ``recompute`` only attempts that have no verdict yet are judged; with it, every
    attempt in scope gets a new verdict under ``rules`` (older verdict rows stay as they were).
    """
    cat, mine = open_catalog(root)
    try:
        rules = rules or load_rules()
        where, params = ["true"], []
        # with runs: only their files are read (partition pruning)
        assets = cat.relation("assets", runs)
        verdicts = cat.relation("verdicts", runs)
        if runs is not None:
            where.append(f"run_id IN ({', '.join('?' for _ in runs) or 'NULL'})")
            params += list(runs)
        if attempt_ids is not None:
            where.append(f"attempt_id IN ({', '.join('?' for _ in attempt_ids) or 'NULL'})")
            params += list(attempt_ids)
        if not recompute:
            where.append(f"attempt_id NOT IN (SELECT attempt_id FROM {verdicts} "
                         "WHERE attempt_id IS NOT NULL)")
        scope = f"SELECT * FROM {assets} WHERE {' AND '.join(where)}"
        sql = (f"WITH scope AS ({scope}), budgets AS ({_BUDGETS}), "
               "src AS (SELECT s.*, b._budget_tris, b._budget_glb_bytes FROM scope s "
               "LEFT JOIN budgets b USING (recipe_hash)) "
               + compile_rules(rules, cat.columns["assets"], "src"))
        batch = VerdictBatch(f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-"
                             f"{uuid.uuid4().hex[:8]}", rules.version, rules.hash)
        # streamed: the verdicts go from DuckDB to each run's file a batch of rows at a time
        # (a run's verdicts in memory at once grew with the run, in the driver of a run)
        store = open_storage(cat.root)
        ruleset_known = _ruleset_known(cat, rules)   # asked first: a query ends the stream
        reader = record_batches(cat, sql, params, VERDICT_BATCH_ROWS)
        writers: dict[str | None, _VerdictFile] = {}
        counts: dict[str, int] = {}
        now = int(time.time() * 1000)
        by = computed_by or actor()
        try:
            for rb in reader:
                if rb.num_rows == 0:
                    continue
                if not ruleset_known:   # the rule set, once, before the first verdict row
                    _put_ruleset(store, rules)
                    ruleset_known = True
                full = _verdict_rows(pa.Table.from_batches([rb]), batch, rules, now, by)
                for c in pc.value_counts(full["verdict"]).to_pylist():
                    counts[c["values"]] = counts.get(c["values"], 0) + int(c["counts"])
                runs_here = pc.unique(full["run_id"]).to_pylist()
                for run in runs_here:
                    part = full.filter(pc.equal(full["run_id"], run)) if run is not None \
                        else full.filter(pc.is_null(full["run_id"]))
                    if run not in writers:
                        writers[run] = _VerdictFile(
                            store, f"catalog/verdicts/run={run or '_none'}/"
                            f"{batch.batch_id}.parquet")
                    writers[run].write(part)
            for run in sorted(writers, key=lambda r: r or ""):
                batch.keys.append(writers.pop(run).publish())
        finally:
            for w in writers.values():  # an error part-way: nothing of this batch published
                w.discard()
        batch.counts = counts
        return batch
    finally:
        if mine:
            cat.close()


#: Verdict rows handed from DuckDB to the files at a time.
VERDICT_BATCH_ROWS = 16_384


def record_batches(cat: Catalog, sql: str, params: Sequence[Any],
                   rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` as Arrow record batches of up to ``rows`` rows, streamed from DuckDB
    (a relation's reader: a cursor's result would be held whole first)."""
    rel = with_retry(cat, lambda: cat.con.sql(sql, params=list(params)))
    fn = getattr(rel, "to_arrow_reader", None) or rel.record_batch
    yield from fn(rows)


def _verdict_rows(table: pa.Table, batch: VerdictBatch, rules: RuleSet, now: int,
                  by: str) -> pa.Table:
    n = table.num_rows
    ids = pc.binary_join_element_wise(table["attempt_id"], pa.array([batch.batch_id] * n), ":")
    return pa.table({
        "verdict_id": ids,
        "attempt_id": table["attempt_id"], "run_id": table["run_id"], "sku": table["sku"],
        "verdict": table["verdict"], "severity": table["severity"],
        "reasons": table["reasons"], "rules_hit": table["rules_hit"],
        "details": table["details"],
        "rules_version": pa.array([rules.version] * n, pa.string()),
        "rules_hash": pa.array([rules.hash] * n, pa.string()),
        "computed_at": pa.array([now] * n, pa.timestamp("ms", tz="UTC")),
        "computed_by": pa.array([by] * n, pa.string()),
    }).cast(VERDICT_SCHEMA)


class _VerdictFile:
    """One run's verdict fragment, written a batch at a time into a staged file and made
    visible whole (``publish``: a rename locally, one PUT on S3), or not at all."""

    def __init__(self, store, key: str) -> None:
        import tempfile

        import pyarrow.parquet as pq

        from .compact import staging_file

        self.store, self.key = store, key
        self.tmpdir = tempfile.mkdtemp(prefix="assetfactory-verdicts-")
        self.path = staging_file(store, key, self.tmpdir)
        self.writer = pq.ParquetWriter(str(self.path), VERDICT_SCHEMA, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def publish(self) -> str:
        from .compact import publish

        self.writer.close()
        publish(self.store, self.path, self.key)
        self._rmtmp()
        return self.key

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        self.path.unlink(missing_ok=True)
        self._rmtmp()

    def _rmtmp(self) -> None:
        import shutil

        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _ruleset_known(cat: Catalog, rules: RuleSet) -> bool:
    return bool(cat.execute("SELECT count(*) FROM rulesets WHERE rules_hash = ?",
                            [rules.hash]).fetchall()[0][0])


def _put_ruleset(store, rules: RuleSet) -> None:
    row = {"rules_hash": rules.hash, "rules_version": rules.version,
           "sources": json.dumps(list(rules.sources)), "rules": rules_json(rules),
           "recorded_at": int(time.time() * 1000)}
    store.put(f"catalog/rulesets/{rules.hash}.parquet",
              parquet_bytes(rows_table([row], RULESET_SCHEMA)))


# ---------------------------------------------------------------- the queue

#: Sort keys the queue accepts besides any metric column of the attempts.
SORTS = {
    "severity": "_rank", "sku": "sku", "finished_at": "finished_at", "run_id": "run_id",
    "failed_stage": "failed_stage", "verdict": "_rank", "review_status": "review_status",
    "wall_s": "wall_s", "triaged_at": "triaged_at", "decided_at": "decided_at",
}
REVIEW_STATES = ("unreviewed", "approve", "reject", "rework")
VERDICT_STATES = ("fail", "review", "pass", "untriaged")

#: What each queue item carries (the dashboard's row).
ITEM_COLUMNS = ("sku", "title", "run_id", "attempt_id", "status", "failed_stage", "error", "fix",
                "profile", "finished_at", "wall_s", "glb_uri", "poster_uri", "supersedes",
                "trigger")


@dataclass
class QueuePage:
    """One page of the queue and the total it was cut from."""

    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    sort: str
    descending: bool


def _in(col: str, values: Sequence[str], params: list[Any]) -> str:
    params.extend(values)
    return f"{col} IN ({', '.join('?' for _ in values) or 'NULL'})"


def triage_queue(root: str | Catalog, *, run: str | None = None,
                 verdicts: Sequence[str] | None = None, review: Sequence[str] | None = None,
                 stage: str | None = None, rule: str | None = None, sku: str | None = None,
                 where: str | None = None, sort: str = "severity",
                 descending: bool | None = None, limit: int = 50, offset: int = 0,
                 metrics: Sequence[str] = ()) -> QueuePage:
    """The current assets, worst first (by default), with verdicts and review status.

    run: only SKUs whose current attempt belongs to this run. verdicts: e.g. ("fail",
    "review"); "untriaged" matches attempts without a verdict. review: e.g. ("unreviewed",);
    "approve", "reject", "rework" match the latest decision. stage: failed at this stage.
    rule: flagged by this rule id. sku: case-insensitive substring. where: extra SQL over the
    ``queue`` view's columns (trusted callers only: it is not a parameter). sort: a key of
    ``SORTS`` or a metric column; descending defaults to True for severity, else False.
    metrics: extra metric columns to return with each item.
    """
    cat, mine = open_catalog(root)
    try:
        cols = cat.columns["assets"]
        for m in metrics:
            if m not in cols:
                raise ValueError(f"unknown metric column {m!r}; list them with "
                                 "assetfactory query \"DESCRIBE attempts\"")
        if sort in SORTS:
            sort_expr = SORTS[sort]
        elif sort in cols:
            sort_expr = quote_ident(sort)
        else:
            raise ValueError(f"cannot sort by {sort!r}: use one of {sorted(SORTS)} or a metric "
                             "column")
        desc = (sort in ("severity", "verdict")) if descending is None else descending
        limit, offset = max(0, int(limit)), max(0, int(offset))
        params: list[Any] = []
        conds = ["true"]
        if run is not None:
            conds.append("run_id = ?")
            params.append(run)
        if verdicts:
            bad = set(verdicts) - set(VERDICT_STATES)
            if bad:
                raise ValueError(f"unknown verdict(s) {sorted(bad)}; use {VERDICT_STATES}")
            conds.append(_in("verdict", verdicts, params))
        if review:
            bad = set(review) - set(REVIEW_STATES)
            if bad:
                raise ValueError(f"unknown review state(s) {sorted(bad)}; use {REVIEW_STATES}")
            conds.append(_in("review_status", review, params))
        if stage:
            conds.append("failed_stage = ?")
            params.append(stage)
        if rule:
            conds.append("list_contains(rules_hit, ?)")
            params.append(rule)
        if sku:
            conds.append("contains(lower(sku), lower(?))")
            params.append(sku)
        if where:
            if ";" in where:
                raise ValueError("--where takes one SQL condition, without ';'")
            conds.append(f"({where})")
        narrow = ("_rank", "sku", "finished_at", "run_id", "failed_stage", "review_status",
                  "wall_s", "triaged_at", "decided_at")
        wide = bool(where) or sort_expr not in narrow
        # one pass over the attempts (the current attempt of each SKU and the few columns the
        # queue sorts and filters on), one over the verdicts of those attempts, one over the
        # decisions; the page's other columns are looked up for its rows only (``_fill``)
        key = "(finished_at, attempt_id)"
        dkey = "(decided_at, review_id)"
        # the latest verdict of each attempt as the largest struct that starts with its key
        # (computed_at, verdict_id): one aggregate state per attempt instead of one per column
        vfields = {"t": "computed_at", "i": "verdict_id", "v": "verdict", "s": "severity"}
        if rule or wide:
            vfields["r"] = "rules_hit"
        if wide:
            vfields.update(reasons="reasons", rules_version="rules_version")
        vstruct = ", ".join(f"'{k}': {c}" for k, c in vfields.items())
        rules_col = ", m.r AS rules_hit" if rule or wide else ", NULL::VARCHAR[] AS rules_hit"
        extra = v_wide = d_wide = ""
        if wide:
            # a --where may name any column of the ``queue`` view
            aliases = "".join(f", {expr} AS {name}" for name, expr in ALIASES.items())
            extra = (", a.* EXCLUDE (attempt_id, sku, run_id, status, failed_stage, "
                     f"finished_at, wall_s) {aliases}, cv.reasons, cv.rules_version, "
                     "cd.reviewer, cd.review_note, cd.review_overrides")
            v_wide = ", m.reasons AS reasons, m.rules_version AS rules_version"
            d_wide = (f", max_by(reviewer, {dkey}) AS reviewer, "
                      f"max_by(note, {dkey}) AS review_note, "
                      f"max_by(overrides, {dkey}) AS review_overrides")
        join_a = "JOIN attempts a ON a.attempt_id = cur.attempt_id" if wide else ""
        sql = f"""
            WITH cur AS MATERIALIZED (
                SELECT sku, max_by(attempt_id, {key}) AS attempt_id,
                       max_by(run_id, {key}) AS run_id, max_by(status, {key}) AS status,
                       max_by(failed_stage, {key}) AS failed_stage,
                       max(finished_at) AS finished_at, max_by(wall_s, {key}) AS wall_s
                FROM attempts GROUP BY sku),
            cv AS (
                SELECT attempt_id, m.v AS verdict, m.s AS severity, m.i AS verdict_id,
                       m.t AS triaged_at {rules_col} {v_wide}
                FROM (SELECT attempt_id, max({{{vstruct}}}) AS m
                      FROM verdicts WHERE attempt_id IN (SELECT attempt_id FROM cur)
                      GROUP BY attempt_id)),
            cd AS (
                SELECT attempt_id, max_by(decision, (decided_at, review_id)) AS decision,
                       max_by(review_id, (decided_at, review_id)) AS review_id,
                       max(decided_at) AS decided_at {d_wide}
                FROM reviews GROUP BY attempt_id),
            base AS (
                SELECT cur.*, coalesce(cv.verdict, 'untriaged') AS verdict, cv.severity,
                       cv.rules_hit, cv.verdict_id, cv.triaged_at,
                       coalesce(cd.decision, 'unreviewed') AS review_status, cd.review_id,
                       cd.decided_at,
                       CASE coalesce(cv.verdict, 'untriaged') WHEN 'fail' THEN 3
                            WHEN 'review' THEN 2 WHEN 'untriaged' THEN 1 ELSE 0 END AS _rank
                       {extra}
                FROM cur LEFT JOIN cv ON cv.attempt_id = cur.attempt_id
                LEFT JOIN cd ON cd.attempt_id = cur.attempt_id {join_a})
            SELECT attempt_id, sku, verdict, severity, verdict_id, triaged_at, review_status,
                   review_id, decided_at, count(*) OVER () AS _total
            FROM base WHERE {' AND '.join(conds)}
            ORDER BY {sort_expr} {'DESC' if desc else 'ASC'} NULLS LAST, sku ASC
            LIMIT {limit} OFFSET {offset}"""
        page = cat.rows(sql, params)
        total = int(page[0]["_total"]) if page else _count(cat, sql, params, offset)
        items = _fill(cat, page, metrics)
        return QueuePage(items, total, limit, offset, sort, desc)
    finally:
        if mine:
            cat.close()


def _count(cat: Catalog, sql: str, params: list[Any], offset: int) -> int:
    """The total when the page is empty (an offset past the end)."""
    if offset == 0:
        return 0
    body = sql[:sql.rindex("ORDER BY")]
    return int(cat.execute(f"SELECT count(*) FROM ({body})", params).fetchone()[0])


def _fill(cat: Catalog, page: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict]:
    """Add each page item's attempt columns, aliases, asked-for metrics, verdict reasons and
    decision details (lookups for the page's rows only; SKU filters prune row groups)."""
    if not page:
        return []
    ids = [p["attempt_id"] for p in page]
    skus = sorted({p["sku"] for p in page})
    in_skus = f"sku IN ({', '.join('?' for _ in skus)})"
    extra = "".join(f", {quote_ident(m)}" for m in metrics)
    aliases = "".join(f", {expr} AS {name}" for name, expr in ALIASES.items())
    rows = cat.rows(
        f"SELECT {', '.join(ITEM_COLUMNS)} {aliases} {extra} FROM attempts "
        f"WHERE {in_skus} AND attempt_id IN ({', '.join('?' for _ in ids)})", skus + ids)
    by_id = {r["attempt_id"]: r for r in rows}
    vids = [p["verdict_id"] for p in page if p.get("verdict_id")]
    verdicts = {r["verdict_id"]: r for r in cat.rows(
        f"SELECT verdict_id, reasons, rules_hit, rules_version FROM verdicts WHERE {in_skus} "
        f"AND verdict_id IN ({', '.join('?' for _ in vids)})", skus + vids)} if vids else {}
    rids = [p["review_id"] for p in page if p.get("review_id")]
    reviews = {r["review_id"]: r for r in cat.rows(
        f"SELECT review_id, reviewer, note AS review_note, overrides AS review_overrides "
        f"FROM reviews WHERE {in_skus} AND review_id IN ({', '.join('?' for _ in rids)})",
        skus + rids)} if rids else {}
    out = []
    for p in page:
        v = verdicts.get(p.get("verdict_id"), {})
        d = reviews.get(p.get("review_id"), {})
        item = {**by_id.get(p["attempt_id"], {}),
                **{k: v for k, v in p.items() if not k.startswith("_")},
                "reasons": v.get("reasons"), "rules_hit": v.get("rules_hit"),
                "rules_version": v.get("rules_version"), "reviewer": d.get("reviewer"),
                "review_note": d.get("review_note"),
                "review_overrides": d.get("review_overrides")}
        out.append(item)
    return out


def failures_by_stage(root: str | Catalog, run: str | None = None) -> list[dict[str, Any]]:
    """Failed assets per stage (of ``run``'s attempts, else of the current assets), with the
    most common error of each stage."""
    cat, mine = open_catalog(root)
    try:
        if run is not None:
            scope, params = f"SELECT * FROM {cat.relation('assets', [run])} WHERE run_id = ?", [run]
        else:
            scope, params = ("SELECT * FROM attempts WHERE attempt_id IN (SELECT max_by("
                             "attempt_id, (finished_at, attempt_id)) FROM attempts "
                             "GROUP BY sku)"), []
        return cat.rows(f"""
            SELECT failed_stage AS stage, count(*) AS failed,
                   mode(error) AS most_common_error, mode(fix) AS fix
            FROM ({scope}) WHERE status = 'failed'
            GROUP BY failed_stage ORDER BY failed DESC, stage""", params)
    finally:
        if mine:
            cat.close()
