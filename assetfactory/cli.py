"""The ``assetfactory`` command line: demo, run, sync, ingest, serve-flows, status, show,
query, compact, warmup, triage, review, reprocess, history, diff, publish, serve."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Turn product catalogs into production 3D assets.")
console = Console()

DEFAULT_OUT = "factory-data"
INPUT_ROOT_HELP = ("a folder or s3:// prefix, besides the catalog's folder, that the catalog may "
                   "read files from (repeatable; also input_roots in assetfactory.toml)")
CONFIG_HELP = "settings file (default: ./assetfactory.toml when it exists)"


def _input_roots(cli_roots: list[str], config: Path | None) -> list[str]:
    """Config-file roots plus command-line roots; a bad config stops here with one line."""
    from assetfactory.catalog.input import input_roots
    from assetfactory.core.config import effective_input_roots
    from assetfactory.core.errors import InputError

    try:
        roots = effective_input_roots(cli_roots, config)
        input_roots(roots)  # each must exist: say so before any Prefect or Ray start-up
        return roots
    except InputError as exc:
        console.print(f"[red]error:[/] {exc.message}\n  fix: {exc.fix}")
        raise typer.Exit(2) from None


def _quiet_prefect() -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's 20 s default for its temporary server to come up is short on a busy machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _stop(message: str) -> None:
    """A run that cannot start: one line, exit code 2, nothing converted."""
    from rich.markup import escape

    # escaped: messages quote paths and lists in brackets
    console.print(f"[red]cannot start the run:[/red] {escape(message)}", highlight=False,
                  soft_wrap=True)
    raise typer.Exit(2)


def _timeouts(values: list[str]) -> dict[str, float]:
    """``--timeout 600`` (every stage) and ``--timeout uv=300`` (one stage) -> seconds."""
    out: dict[str, float] = {}
    for v in values:
        name, _, secs = v.rpartition("=")
        try:
            seconds = float(secs)
            if not seconds > 0:
                raise ValueError
        except ValueError:
            _stop(f"--timeout {v!r}: give SECONDS or STAGE=SECONDS with a positive number")
        out[name or "*"] = seconds
    return out


def _convert(catalog: str, out: str, profile: str, backend: str, force: bool,
             overrides: dict | None = None, ray_address: str | None = None,
             shard_size: int = 1000, execution: dict | None = None,
             input_roots: list[str] | None = None, rules: str | None = None) -> dict[str, Any]:
    _quiet_prefect()
    from prefect.exceptions import FailedRun

    from assetfactory.flows import convert as conv
    from assetfactory.flows.executor import early_ray

    try:  # names and the file are checked before Prefect and Ray start (seconds otherwise)
        conv.check_names(profile, backend)
        if not catalog.startswith("s3://"):
            conv.check_catalog_file(catalog)
    except conv.RunInputError as exc:
        _stop(str(exc))

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[last]}"),
                        console=console, transient=False)
    task_id = progress.add_task("starting Prefect + Ray", total=None, last="")

    def on_plan(n: int, skipped: int) -> None:
        progress.update(task_id, total=n, description="converting",
                        last=f"{skipped} up to date" if skipped else "")

    def on_done(s: dict[str, Any]) -> None:
        if s["status"] == "skipped":
            progress.update(task_id, advance=1, last=f"{s['sku']}: up to date")
            return
        mark = "[green]ok[/]" if s["status"] == "ok" else f"[red]failed at {s['failed_stage']}[/]"
        progress.update(task_id, advance=1, last=f"{s['sku']}: {mark}")
        if s["status"] != "ok":
            progress.console.print(f"  [red]✗[/] {s['sku']} [{s['failed_stage']}] {s['error']}")

    conv.PROGRESS_HOOK, conv.PLAN_HOOK = on_done, on_plan
    t0 = time.perf_counter()
    try:
        # Ray starts beside Prefect's temporary server (the flow's session takes it over)
        with progress, early_ray(ray_address):
            summary = conv.convert_catalog(catalog=str(catalog), out=out, profile=profile,
                                           backend=backend, force=force, overrides=overrides,
                                           ray_address=ray_address, shard_size=shard_size,
                                           execution=execution,
                                           input_roots=input_roots or None, rules=rules)
    except FailedRun as exc:  # the flow refused its inputs (see convert.RunInputError)
        _stop(str(exc))
    summary["elapsed_s"] = time.perf_counter() - t0
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    console.rule(f"run {s.get('run_id')}")
    counts = s.get("counts", {})
    t = Table(title="assets by status")
    t.add_column("status")
    t.add_column("count", justify="right")
    for k, v in counts.items():
        t.add_row(k, str(v))
    if s.get("skipped"):
        t.add_row("up to date (skipped)", str(s["skipped"]))
    console.print(t)
    if s.get("failures"):
        f = Table(title="failures by stage")
        for c in ("sku", "stage", "error", "fix"):
            f.add_column(c, overflow="fold")
        for r in s["failures"]:
            f.add_row(r["sku"], r["stage"] or "", r["error"] or "", r["fix"] or "")
        console.print(f)
    if s.get("stages"):
        st = Table(title="slowest stages")
        for c in ("stage", "runs", "mean s", "p95 s", "share"):
            st.add_column(c, justify="right" if c != "stage" else "left")
        for r in s["stages"]:
            st.add_row(r["stage"], str(r["runs"]), f"{r['mean_s']:.2f}", f"{r['p95_s']:.2f}",
                       f"{100 * (r['share'] or 0):.0f}%")
        console.print(st)
    if s.get("elapsed_s") is not None:
        console.print(f"wall time {s['elapsed_s']:.1f} s; outputs under {s.get('out')}")


@app.command()
def demo(out: str = typer.Option(DEFAULT_OUT, help="output folder (or s3://bucket/prefix)"),
         profile: str = typer.Option("ar", help="ar | web | game | print | render"),
         n: int = typer.Option(13, help="number of demo SKUs (the last one is deliberately broken)"),
         force: bool = typer.Option(False, help="re-make assets that are already up to date")):
    """Synthesise a demo catalog of textured products and convert it."""
    from assetfactory.demo import make_demo_catalog

    local_out = out if not out.startswith("s3://") else DEFAULT_OUT
    console.print("[bold]making the demo catalog[/] (procedural products, rendered photos)")
    catalog = make_demo_catalog(Path(local_out) / "demo-catalog", n=n)
    console.print(f"demo catalog: {catalog}")
    summary = _convert(str(catalog), out, profile, "silhouette", force)
    _print_summary(summary)


@app.command()
def run(catalog: Path = typer.Argument(..., help="CSV, JSONL, Parquet or Shopify product CSV"),
        profile: str = typer.Option("ar", help="ar | web | game | print | render"),
        backend: str = typer.Option("silhouette", help="generator backend"),
        out: str = typer.Option(DEFAULT_OUT, help="output folder (or s3://bucket/prefix)"),
        force: bool = typer.Option(False, help="re-make assets that are already up to date"),
        target_tris: int | None = typer.Option(None, help="override the triangle budget"),
        texture_px: int | None = typer.Option(None, help="override the texture size"),
        ray_address: str | None = typer.Option(
            None, envvar="RAY_ADDRESS", help="join this Ray cluster (default: start a local one)"),
        shard_size: int = typer.Option(1000, min=1, help="SKUs per Prefect task (a crashed run "
                                       "resumes shard by shard)"),
        timeout: list[str] = typer.Option(
            [], help="stage time limit: SECONDS for every stage or STAGE=SECONDS (repeatable)"),
        backend_option: list[str] = typer.Option(
            [], "--backend-option", "-B",
            help="a backend config field, KEY=VALUE (repeatable), e.g. -B weights=/models/x"),
        device: str | None = typer.Option(None, help="auto | cpu | cuda | cuda:N (generate)"),
        seed: int | None = typer.Option(None, help="seed for learned generators"),
        mask_model: str | None = typer.Option(
            None, help="segmentation model folder for ingest's object masks"),
        input_root: list[str] = typer.Option([], "--input-root", help=INPUT_ROOT_HELP),
        config: Path | None = typer.Option(None, help=CONFIG_HELP),
        rules: str | None = typer.Option(None, help="triage rules (TOML) layered over the "
                                         "defaults for this run's verdicts")):
    """Convert a catalog."""
    roots = _input_roots(input_root, config)
    # profile fields: the recipe derives every stage option that depends on them (uv and bake
    # resolution, texture and export size, the simplify budget, export LODs)
    overrides: dict[str, dict[str, Any]] = _recipe_overrides(target_tris, texture_px) or {}
    generate: dict[str, Any] = {}
    if backend_option:
        generate["backend_options"] = _key_values(backend_option)
    if device:
        generate["device"] = device
    if seed is not None:
        generate["seed"] = seed
    if generate:
        overrides["generate"] = generate
    if mask_model:
        overrides["ingest"] = {"mask_model": mask_model}
    execution = {"timeouts": _timeouts(timeout)} if timeout else None
    summary = _convert(str(catalog), out, profile, backend, force, overrides or None,
                       ray_address=ray_address, shard_size=shard_size, execution=execution,
                       input_roots=roots, rules=rules)
    _print_summary(summary)
    if summary.get("counts", {}).get("failed"):
        raise typer.Exit(code=0)


def _key_values(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; a VALUE that parses as JSON (numbers, true, null) is taken as such."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--backend-option")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@app.command()
def status(run_id: str | None = typer.Argument(None, help="run id (default: the latest)"),
           out: str = typer.Option(DEFAULT_OUT, help="output folder")):
    """Summarise a run from the catalog."""
    from assetfactory.catalog.summary import run_summary

    s = run_summary(out, run_id)
    if s.get("run_id") is None:
        console.print(f"no runs recorded under {out}")
        raise typer.Exit(code=1)
    _print_summary(s)


@app.command()
def show(sku: str, out: str = typer.Option(DEFAULT_OUT, help="output folder")):
    """Show one SKU's latest attempt: status, outputs, metrics and stages."""
    from assetfactory.catalog.views import connect

    con = connect(out)
    try:
        cur = con.execute("SELECT * FROM assets WHERE sku = ?", [sku])
        cols = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            console.print(f"[red]no SKU {sku!r} in the catalog under {out}[/]")
            raise typer.Exit(code=1)
        rec = dict(zip(cols, row))
        t = Table(title=f"{sku} ({rec['status']})", show_header=False)
        t.add_column("field")
        t.add_column("value", overflow="fold")
        for k in ("status", "failed_stage", "error", "fix", "profile", "backend", "glb_uri",
                  "poster_uri", "wall_s", "peak_rss_mb", "attempt_id", "run_id", "asset_id"):
            if rec.get(k) is not None:
                t.add_row(k, str(rec[k]))
        for k, v in sorted(json.loads(rec.get("metrics") or "{}").items()):
            t.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        console.print(t)
        st = Table(title="stages")
        for c in ("stage", "status", "seconds", "peak MB", "error"):
            st.add_column(c)
        for r in con.execute("SELECT stage, status, duration_s, peak_rss_mb, error FROM stages "
                             "WHERE attempt_id = ? ORDER BY seq", [rec["attempt_id"]]).fetchall():
            st.add_row(r[0], r[1], f"{r[2]:.2f}", f"{r[3]:.0f}", r[4] or "")
        console.print(st)
    finally:
        con.close()


@app.command()
def query(sql: str, out: str = typer.Option(DEFAULT_OUT, help="output folder"),
          as_json: bool = typer.Option(False, "--json", help="print rows as JSON lines")):
    """Run SQL (DuckDB) over the catalog views: assets, attempts, stages, runs, reviews."""
    import duckdb

    from assetfactory.catalog.views import query as q

    try:
        cols, rows = q(out, sql)
    except duckdb.Error as exc:  # the user's SQL: say what is wrong, no traceback
        console.print(f"[red]query failed:[/red] {exc}\n"
                      "the views are assets, attempts, stages, runs, reviews; list a view's "
                      "columns with: assetfactory query \"DESCRIBE assets\"")
        raise typer.Exit(2) from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(dict(zip(cols, r)), default=str))
        return
    t = Table()
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    console.print(t)


@app.command()
def compact(out: str = typer.Option(DEFAULT_OUT, help="output folder")):
    """Merge the catalog's fragments (no row lost or duplicated)."""
    from assetfactory.catalog.compact import compact as do_compact

    report = do_compact(out)
    t = Table(title="compaction")
    for c in ("kind", "partition", "files merged", "rows", "seconds", "note"):
        t.add_column(c, justify="right" if c in ("files merged", "rows", "seconds") else "left")
    for p in report.partitions:
        t.add_row(p.kind, str(p.partition), str(p.files_in), str(p.rows), f"{p.seconds:.2f}",
                  "busy: another compaction holds it" if p.busy else "")
    console.print(t if report.partitions else "nothing to compact")
    if report.latest:
        console.print(f"latest-attempt tables (for run diffs) written for "
                      f"{len(report.latest)} run(s)")


@app.command()
def serve(out: str = typer.Option(DEFAULT_OUT, help="output folder (or s3://bucket/prefix)"),
          host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback "
                                   "exposes the catalog to the network"),
          port: int = typer.Option(8765, help="port (0 picks a free one)"),
          token: str | None = typer.Option(None, help="write token (default: "
                                           "$ASSETFACTORY_DASHBOARD_TOKEN, else the one stored "
                                           "in the user's config folder, made at first start)"),
          refresh: float = typer.Option(30.0, help="seconds between checks for new catalog "
                                        "rows (0: never)"),
          reviewer: str | None = typer.Option(None, help="the reviewer name decisions carry "
                                              "when the page gives none (default: "
                                              "$ASSETFACTORY_REVIEWER)")):
    """Open the review dashboard: runs, the triage queue, assets in 3D and AR, decisions."""
    import socket

    import uvicorn

    from assetfactory.dashboard import Settings, create_app
    from assetfactory.dashboard.security import load_or_create_token

    value, source = load_or_create_token(token)
    console.print(f"[bold]reading the catalog under {out}[/]")
    try:
        web = create_app(Settings(root=out, token=value, host=host, refresh_s=refresh,
                                  reviewer=reviewer or os.environ.get("ASSETFACTORY_REVIEWER")))
    except RuntimeError as exc:  # model-viewer missing, unreadable catalog: say what to do
        console.print(f"[red]cannot start the dashboard:[/] {exc}")
        raise typer.Exit(2) from None
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)   # connections queue from now on, so the printed URL answers at once
    bound = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]listening on {host}: anyone who can reach it can read the "
                      "catalog; writes still need the token[/]")
    console.print(f"write token from {source}")
    console.print(f"dashboard: [bold]http://{shown}:{bound}/?token={value}[/]")
    config = uvicorn.Config(web, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


@app.command()
def warmup():
    """Compile every numba kernel into numba's on-disk cache (``make setup`` runs this)."""
    from assetfactory.warmup import uncompiled, warm_up

    seconds = warm_up()
    missing = uncompiled()
    console.print(f"numba kernels compiled and cached in {seconds:.1f} s")
    if missing:
        console.print(f"[red]not compiled:[/] {', '.join(missing)}")
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- scheduled flows


def _recipe_overrides(target_tris: int | None, texture_px: int | None) -> dict | None:
    """Profile fields: the recipe derives every stage option that depends on them (uv and bake
    resolution, texture and export size, the simplify budget, export LODs)."""
    if not (target_tris or texture_px):
        return None
    return {"profile": {"target_tris": target_tris, "texture_px": texture_px}}


@app.command()
def sync(catalog: str = typer.Argument(..., help="catalog file or s3://bucket/key"),
         out: str = typer.Option(DEFAULT_OUT, help="output folder (or s3://bucket/prefix)"),
         profile: str = typer.Option("ar", help="ar | web | game | print | render"),
         backend: str = typer.Option("silhouette", help="generator backend"),
         texture_px: int | None = typer.Option(None, help="override the texture size"),
         ray_address: str | None = typer.Option(
             None, envvar="RAY_ADDRESS", help="join this Ray cluster (default: start a local one)"),
         input_root: list[str] = typer.Option([], "--input-root", help=INPUT_ROOT_HELP),
         config: Path | None = typer.Option(None, help=CONFIG_HELP)):
    """Convert the catalog's new and changed rows (what a nightly schedule runs)."""
    roots = _input_roots(input_root, config)
    _quiet_prefect()
    from prefect.exceptions import FailedRun

    from assetfactory.flows.sync import sync_catalog

    t0 = time.perf_counter()
    try:
        summary = sync_catalog(catalog=catalog, out=out, profile=profile, backend=backend,
                               input_roots=roots or None, ray_address=ray_address,
                               overrides=_recipe_overrides(None, texture_px))
    except FailedRun as exc:  # the conversion refused its inputs (recorded in flow_runs)
        _stop(str(exc))
    summary["elapsed_s"] = time.perf_counter() - t0
    _print_summary(summary)
    console.print(f"recorded as flow run {summary['flow_run_id']} "
                  "(assetfactory query \"SELECT * FROM flow_runs\")")


@app.command()
def ingest(prefix: str = typer.Argument(..., help="folder or s3://bucket/prefix catalog files "
                                        "are dropped in"),
           out: str = typer.Option(DEFAULT_OUT, help="output folder (or s3://bucket/prefix)"),
           profile: str = typer.Option("ar", help="ar | web | game | print | render"),
           backend: str = typer.Option("silhouette", help="generator backend"),
           texture_px: int | None = typer.Option(None, help="override the texture size"),
           ray_address: str | None = typer.Option(
               None, envvar="RAY_ADDRESS", help="join this Ray cluster (default: a local one)"),
           input_root: list[str] = typer.Option([], "--input-root", help=INPUT_ROOT_HELP),
           config: Path | None = typer.Option(None, help=CONFIG_HELP)):
    """Convert every catalog file under PREFIX that was not ingested before."""
    roots = _input_roots(input_root, config)
    _quiet_prefect()
    from prefect.exceptions import FailedRun

    from assetfactory.core.errors import InputError
    from assetfactory.flows.ingest import ingest_prefix

    try:
        result = ingest_prefix(prefix=prefix, out=out, profile=profile, backend=backend,
                               input_roots=roots or None, ray_address=ray_address,
                               overrides=_recipe_overrides(None, texture_px))
    except InputError as exc:
        console.print(f"[red]error:[/] {exc.message}\n  fix: {exc.fix}")
        raise typer.Exit(2) from None
    except FailedRun as exc:  # a conversion refused the run's settings (recorded in flow_runs)
        _stop(str(exc))
    t = Table(title=f"catalog files under {prefix}")
    for c in ("file", "status", "converted", "ok", "failed", "skipped", "note"):
        t.add_column(c, overflow="fold")
    for f in result["files"]:
        t.add_row(f["uri"], f["status"], *(str(f.get(k, "")) for k in
                                          ("converted", "ok", "failed", "skipped")),
                  f.get("error") or "")
    console.print(t)
    c = result["counts"]
    console.print(f"{c.get('files_new', 0)} new of {c.get('files_seen', 0)} files; outputs "
                  f"under {result['out']}; recorded as flow run {result['flow_run_id']}")


@app.command("serve-flows")
def serve_flows(prefect_file: Path | None = typer.Option(
                    None, help="deployments file (default: the installed infra/prefect.yaml)"),
                only: list[str] = typer.Option([], "--only", help="serve only this deployment "
                                               "(repeatable)")):
    """Register the scheduled deployments with the Prefect server and run them here."""
    from assetfactory.flows.deployments import DEFAULT_FILE, DeploymentFileError, serve_deployments

    try:
        serve_deployments(prefect_file or DEFAULT_FILE, only or None)
    except DeploymentFileError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


from assetfactory.cli_review import register as _register_review

_register_review(app, console, DEFAULT_OUT, _quiet_prefect, _input_roots)

if __name__ == "__main__":
    app()
