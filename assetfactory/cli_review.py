"""The daily loop on the command line: triage, review, reprocess, history, diff, publish.

Thin wrappers over the catalog API (``catalog.triage``, ``catalog.reviews``,
``catalog.history``, ``catalog.publish``) and the ``reprocess`` flow; the dashboard calls the
same functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    return out or None


def register(app: typer.Typer, console: Console, default_out: str,
             quiet_prefect: Callable[[], None],
             resolve_roots: Callable[[list[str], Path | None], list[str]]) -> None:
    """Add the triage/review/reprocess/history/diff/publish commands to ``app``.

    ``resolve_roots`` turns ``--input-root`` values and ``--config`` into the run's input
    roots, the same way ``run``, ``sync`` and ``ingest`` do."""

    def fail(msg: str, code: int = 2) -> None:
        console.print(f"[red]{msg}[/]")
        raise typer.Exit(code)

    @app.command()
    def triage(
        run_id: str | None = typer.Argument(None, help="only this run's current assets"),
        out: str = typer.Option(default_out, help="output folder (or s3://bucket/prefix)"),
        rules: str | None = typer.Option(None, help="rules file (TOML) layered over the "
                                         "defaults and your own"),
        recompute: bool = typer.Option(False, help="judge again under the rules now in force "
                                       "(adds verdict rows; old ones stay)"),
        verdict: list[str] = typer.Option(None, help="fail, review, pass, untriaged "
                                          "(repeat or comma-separate)"),
        review: list[str] = typer.Option(None, help="unreviewed, approve, reject, rework"),
        show_all: bool = typer.Option(False, "--all", help="include decided assets"),
        stage: str | None = typer.Option(None, help="failed at this stage"),
        rule: str | None = typer.Option(None, help="flagged by this rule id"),
        sku: str | None = typer.Option(None, help="SKU contains this text"),
        where: str | None = typer.Option(None, help="SQL condition over the queue view"),
        sort: str = typer.Option("severity", help="severity, sku, finished_at, ... or a metric"),
        ascending: bool = typer.Option(False, "--asc", help="ascending order"),
        limit: int = typer.Option(50, help="rows per page"),
        offset: int = typer.Option(0, help="rows to skip"),
        as_json: bool = typer.Option(False, "--json", help="print items as JSON lines"),
        show_rules: bool = typer.Option(False, help="print the rules in force and exit"),
    ):
        """Judge new attempts with the triage rules and print the queue, worst first."""
        from assetfactory.catalog.rules import RulesError, load_rules
        from assetfactory.catalog.triage import record_verdicts, triage_queue
        from assetfactory.catalog.views import Catalog

        try:
            ruleset = load_rules(rules)
        except RulesError as exc:
            fail(str(exc))
        if show_rules:
            t = Table(title=f"triage rules {ruleset.version} ({ruleset.hash})")
            t.add_column("id", no_wrap=True)
            for c in ("verdict", "check", "profiles", "reason"):
                t.add_column(c, overflow="fold")
            for r in ruleset.rules:
                thr = r.threshold if r.threshold_metric is None else (
                    r.threshold_metric + (f" x {r.scale:g}" if r.scale != 1 else ""))
                t.add_row(r.id, r.verdict, f"{r.metric} {r.op} {thr}", ",".join(r.profiles),
                          r.reason)
            console.print(t)
            return
        with Catalog(out) as cat:
            batch = record_verdicts(cat, runs=[run_id] if run_id else None, rules=ruleset,
                                    recompute=recompute)
            if batch.total:
                console.print(f"judged {batch.total} attempt(s) under rules {batch.rules_version}"
                              f": {batch.counts}")
                cat.refresh()
            reviews = _split(review) or (None if show_all else ["unreviewed"])
            try:
                page = triage_queue(cat, run=run_id, verdicts=_split(verdict), review=reviews,
                                    stage=stage, rule=rule, sku=sku, where=where, sort=sort,
                                    descending=None if not ascending else False, limit=limit,
                                    offset=offset)
            except ValueError as exc:
                fail(str(exc))
            except Exception as exc:
                if where and "duckdb" in type(exc).__module__:
                    fail(f"--where failed: {exc}")
                raise
        if as_json:
            for it in page.items:
                typer.echo(json.dumps(it, default=str))
            return
        t = Table(title=f"triage queue{' of run ' + run_id if run_id else ''}: "
                        f"{page.offset + 1 if page.items else 0}-{page.offset + len(page.items)}"
                        f" of {page.total}")
        for c in ("sku", "verdict", "review", "run", "reasons"):
            t.add_column(c, overflow="fold")
        colour = {"fail": "red", "review": "yellow", "pass": "green"}
        for it in page.items:
            v = it["verdict"]
            t.add_row(it["sku"], f"[{colour.get(v, 'white')}]{v}[/]", it["review_status"],
                      it["run_id"] or "", it["reasons"] or "")
        console.print(t)

    @app.command()
    def review(
        targets: list[str] = typer.Argument(..., help="SKU [SKU ...] approve|reject|rework"),
        note: str | None = typer.Option(None, help="why (kept with the decision)"),
        set_: list[str] = typer.Option(None, "--set", help="STAGE.OPTION=VALUE for the rework "
                                       "(repeatable), e.g. --set simplify.target_tris=5000"),
        reviewer: str | None = typer.Option(None, help="your name (default: "
                                            "$ASSETFACTORY_REVIEWER)"),
        where: str | None = typer.Option(None, help="decide on every current asset this SQL "
                                         "condition over the queue view selects"),
        out: str = typer.Option(default_out, help="output folder (or s3://bucket/prefix)"),
    ):
        """Record a review decision on SKUs' current attempts."""
        from assetfactory.catalog.reviews import (
            DECISIONS,
            ReviewError,
            parse_overrides,
            record_decision,
            reviewer_name,
        )
        from assetfactory.catalog.views import Catalog

        action, skus = targets[-1], list(targets[:-1])
        if action not in DECISIONS:
            fail(f"the last argument must be the decision ({', '.join(DECISIONS)}), got "
                 f"{action!r}: assetfactory review SKU approve")
        try:
            name = reviewer_name(reviewer)
            overrides = parse_overrides(set_ or [])
        except ReviewError as exc:
            fail(str(exc))
        with Catalog(out) as cat:
            if where:
                try:
                    skus += [r["sku"] for r in cat.rows(
                        f"SELECT sku FROM queue WHERE ({where}) ORDER BY sku")]
                except Exception as exc:  # noqa: BLE001 - the user's SQL
                    fail(f"--where failed: {exc}")
            if not skus:
                fail("no SKU to decide on: name SKUs or give --where")
            errors = 0
            for sku in dict.fromkeys(skus):
                try:
                    row = record_decision(cat, sku, action, reviewer=name, note=note,
                                          overrides=overrides, source="cli")
                    console.print(f"{sku}: {action} by {name} (attempt {row['attempt_id']})")
                except ReviewError as exc:
                    errors += 1
                    console.print(f"[red]{exc}[/]")
        if errors:
            raise typer.Exit(2)

    @app.command()
    def reprocess(
        failures: str | None = typer.Option(None, "--failures", help="re-run this run's "
                                            "failures (those still current)"),
        where: str | None = typer.Option(None, help="re-run the current assets this SQL "
                                         "condition over the queue view selects, e.g. "
                                         "\"failed_stage = 'texture'\""),
        reworks: bool = typer.Option(False, help="re-run the open rework decisions, each "
                                     "with its own overrides"),
        set_: list[str] = typer.Option(None, "--set", help="STAGE.OPTION=VALUE for every "
                                       "re-run SKU (repeatable)"),
        catalog: str | None = typer.Option(None, help="the catalog file, if it moved since "
                                           "the original run"),
        rules: str | None = typer.Option(None, help="triage rules for the new attempts"),
        dry_run: bool = typer.Option(False, help="list what would be re-run and stop"),
        out: str = typer.Option(default_out, help="output folder (or s3://bucket/prefix)"),
        input_root: list[str] = typer.Option([], "--input-root", help="a folder or S3 prefix "
                                             "besides the catalog's folder that its rows may "
                                             "reference files in (repeatable; also "
                                             "input_roots in assetfactory.toml)"),
        config: Path | None = typer.Option(None, help="settings file (default: "
                                           "./assetfactory.toml when it exists)"),
    ):
        """Convert selected SKUs again (a Prefect flow); new attempts supersede the old."""
        from assetfactory.catalog.reviews import ReviewError, check_overrides, parse_overrides

        try:
            overrides = parse_overrides(set_ or [])
            if overrides:
                check_overrides(overrides)
        except ReviewError as exc:
            fail(str(exc))
        if not (failures or where or reworks):
            fail("say what to reprocess: --failures RUN, --where SQL or --reworks")
        roots = resolve_roots(input_root, config)
        quiet_prefect()
        from assetfactory.flows.reprocess import plan_reprocess
        from assetfactory.flows.reprocess import reprocess as flow

        try:
            plan = plan_reprocess(out, failures_of=failures, where=where, reworks=reworks,
                                  overrides=overrides, catalog=catalog,
                                  input_roots=roots or None)
        except ValueError as exc:
            fail(str(exc))
        t = Table(title=f"reprocess: {len(plan['items'])} SKU(s) selected")
        for c in ("sku", "supersedes", "why", "overrides"):
            t.add_column(c, overflow="fold")
        for it in plan["items"]:
            t.add_row(it.sku, it.attempt_id, it.trigger,
                      json.dumps(it.overrides, default=list) if it.overrides else "")
        console.print(t)
        for m in plan["missing"]:
            console.print(f"[red]{m['sku']}: {m['reason']}.[/] Fix: {m['fix']}")
        if dry_run or not plan["groups"]:
            return
        from prefect.exceptions import FailedRun

        try:
            summary = flow(out=out, failures_of=failures, where=where, reworks=reworks,
                           overrides=overrides or None, catalog=catalog, rules=rules,
                           input_roots=roots or None)
        except FailedRun as exc:  # a group's run refused its inputs (convert.RunInputError)
            fail(f"cannot start the run: {exc}")
        r = Table(title=f"reprocess run {summary['run_id']}: {summary.get('counts', {})}")
        for c in ("sku", "new attempt", "supersedes", "status", "error"):
            r.add_column(c, overflow="fold")
        for a in summary["attempts"]:
            r.add_row(a["sku"], a["attempt_id"], a["supersedes"] or "", a["status"],
                      a["error"] or "")
        console.print(r)

    @app.command()
    def history(sku: str,
                out: str = typer.Option(default_out, help="output folder (or s3://...)"),
                as_json: bool = typer.Option(False, "--json", help="print events as JSON")):
        """One SKU's attempts, verdicts, decisions and publications, oldest first."""
        from assetfactory.catalog.history import sku_history

        h = sku_history(out, sku)
        if not h.events:
            fail(f"no SKU {sku!r} in the catalog under {out}", 1)
        if as_json:
            for e in h.events:
                typer.echo(json.dumps(e, default=str))
            return
        t = Table(title=f"{sku}: current attempt {h.current_attempt_id}")
        for c in ("when", "event", "attempt", "outcome", "detail", "by"):
            t.add_column(c, overflow="fold")
        for e in h.events:
            t.add_row(str(e["happened_at"])[:19], e["event"], e["attempt_id"] or "",
                      e["outcome"] or "", e["detail"] or "", e["actor"] or "")
        console.print(t)

    @app.command()
    def diff(run_a: str | None = typer.Argument(None, help="the earlier run (default: the "
                                                "second latest)"),
             run_b: str | None = typer.Argument(None, help="the later run (default: latest)"),
             out: str = typer.Option(default_out, help="output folder (or s3://...)"),
             tolerance: float = typer.Option(0.01, help="relative change that counts as moved"),
             limit: int = typer.Option(100, help="SKUs to list"),
             as_json: bool = typer.Option(False, "--json", help="print the diff as JSON")):
        """What changed between two runs: new, fixed, regressed SKUs and metrics that moved."""
        from assetfactory.catalog.history import latest_runs, run_diff

        if run_a is None or run_b is None:
            runs = latest_runs(out, 2)
            if len(runs) < 2:
                fail(f"need two runs to compare; {out} has {len(runs)}", 1)
            run_a, run_b = run_a or runs[0], run_b or runs[1]
        d = run_diff(out, run_a, run_b, tolerance=tolerance, limit=limit)
        if as_json:
            typer.echo(json.dumps({"run_a": d.run_a, "run_b": d.run_b, "counts": d.counts,
                                   "rows": d.rows, "moved": d.moved}, default=str))
            return
        console.print(f"[bold]{run_a}[/] -> [bold]{run_b}[/]: " +
                      ", ".join(f"{k} {v}" for k, v in d.counts.items()))
        if d.rows:
            t = Table(title="changed SKUs")
            for c in ("sku", "change", "status", "verdict", "failed stage"):
                t.add_column(c, overflow="fold")
            for r in d.rows:
                t.add_row(r["sku"], r["change"], f"{r['status_a'] or '-'} -> {r['status_b'] or '-'}",
                          f"{r['verdict_a'] or '-'} -> {r['verdict_b'] or '-'}",
                          f"{r['failed_stage_a'] or '-'} -> {r['failed_stage_b'] or '-'}")
            console.print(t)
        if d.moved:
            m = Table(title=f"metrics that moved (> {tolerance:.0%})")
            for c in ("metric", "SKUs moved", "of", "mean before", "mean after"):
                m.add_column(c, justify="left" if c == "metric" else "right")
            for r in d.moved[:30]:
                m.add_row(r["metric"], str(r["skus_moved"]), str(r["pairs"]),
                          _fmt(r["mean_a"]), _fmt(r["mean_b"]))
            console.print(m)

    @app.command()
    def publish(destination: str = typer.Argument(..., help="delivery folder or "
                                                  "s3://bucket/prefix"),
                out: str = typer.Option(default_out, help="output folder (or s3://...)"),
                include_unreviewed: bool = typer.Option(False, help="also deliver current "
                                                        "assets nobody has reviewed yet"),
                base_url: str | None = typer.Option(None, help="URL the destination is "
                                                    "served under (for the manifest)"),
                dry_run: bool = typer.Option(False, help="show what would change"),
                as_json: bool = typer.Option(False, "--json", help="print the result as JSON")):
        """Copy the approved current assets and a manifest (CSV + JSON) to a destination."""
        from assetfactory.catalog.publish import PublishError
        from assetfactory.catalog.publish import publish as do_publish

        try:
            res = do_publish(out, destination, include_unreviewed=include_unreviewed,
                             base_url=base_url, dry_run=dry_run)
        except PublishError as exc:
            fail(str(exc))
        if as_json:
            typer.echo(json.dumps({k: getattr(res, k) for k in (
                "publish_id", "destination", "published", "unchanged", "withdrawn", "refused",
                "manifest_written")}, default=str))
            return
        verb = "would publish" if dry_run else "published"
        console.print(f"{verb} {len(res.published)}, unchanged {len(res.unchanged)}, "
                      f"withdrawn {len(res.withdrawn)}, refused {len(res.refused)} -> "
                      f"{res.destination}"
                      + (" (manifest.csv, manifest.json written)" if res.manifest_written else ""))
        for r in res.refused:
            console.print(f"[red]{r['sku']}: {r['reason']}.[/] Fix: {r['fix']}")
        if res.refused:
            raise typer.Exit(1)
