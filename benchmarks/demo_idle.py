"""Benchmark: where the demo's idle core-seconds go, from the run's own records.

    .venv/bin/python benchmarks/demo_idle.py --workdir W --name N    # the demo, 13 SKUs, `ar`

Runs the demo's conversion as ``assetfactory demo`` does (the command line's ``_convert``:
Prefect's temporary server and a local Ray started side by side, all of the machine's CPUs) in
a fresh interpreter in a session of its own (reaped after it), on a demo catalog made
beforehand (not timed; ``--prepare --catalog DIR/catalog.csv`` makes one to share between
versions), into a new output folder under ``--workdir``. Reported:

- the conversion wall (what ``assetfactory demo`` prints as "wall time") and per good asset;
- the summed stage wall time and the idle core-seconds (CPUs x wall - summed stage time),
  split into before the first stage started, between it and the last stage's end, after it
  (``scale.timeline``: every stage execution's start and duration in the catalog);
- the tail: from the end of the last SKU but one to the end of the last (with 2 CPUs, one
  CPU had no SKU to work on through it), and the last SKU's stages with their seconds;
- the CPU seconds of every process of the run by kind (``scale.Sampler``) and their sum
  against CPUs x wall: the cores the run kept busy, counted by the processes themselves (a
  stage that used two threads counts twice here, once in the summed stage wall time);
- each asset's GLB hash and the quality means (PSNR, SSIM, baked-normal error), to check
  that two versions made the same assets.

Run it with another checkout's interpreter (``cd /work/main && .venv/bin/python
<this file> ...``) for a peer: the script imports only the command line, the demo and the
catalog views, and ``scale.py`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _child(workdir: Path, result: Path, n: int, profile: str, catalog: str,
           execution: str) -> None:
    from scale import STEPS, Sampler, load, stamp, timeline

    from assetfactory.catalog.views import connect
    from assetfactory.cli import _convert
    from assetfactory.core.stage import cpu_count
    from assetfactory.demo import make_demo_catalog
    from assetfactory.flows import convert as conv
    from assetfactory.flows import executor

    steps: list[tuple[str, float, float]] = []
    stamp(conv, STEPS, steps)  # the flow's steps: its first one begins once Prefect is up
    stamp(executor, tuple(f for f in ("_warm_session", "await_warm") if hasattr(executor, f)),
          steps)
    catalog = catalog or make_demo_catalog(workdir / "demo-catalog", n=n)
    out = tempfile.mkdtemp(prefix="demo-", dir=workdir)
    cpus = cpu_count()
    load_before = load()
    sampler = Sampler()
    epoch0 = time.time()
    t0 = time.perf_counter()
    summary = _convert(str(catalog), out, profile, "silhouette", False,
                       execution=json.loads(execution) if execution else None)
    wall = time.perf_counter() - t0
    sampler.stop()
    tl = timeline(out, summary["run_id"], epoch0, epoch0 + wall, cpus)
    con = connect(out)
    try:
        stage_s = con.execute("SELECT sum(duration_s) FROM stages WHERE run_id = ?",
                              [summary["run_id"]]).fetchone()[0]
        ends = con.execute(
            "SELECT sku, max(epoch_ms(started_at) / 1000.0 + duration_s) AS e, "
            "min(epoch_ms(started_at) / 1000.0) AS s FROM stages WHERE run_id = ? "
            "GROUP BY sku ORDER BY e", [summary["run_id"]]).fetchall()
        last_sku = ends[-1][0]
        last_stages = con.execute(
            "SELECT stage, epoch_ms(started_at) / 1000.0, duration_s FROM stages "
            "WHERE run_id = ? AND sku = ? ORDER BY seq", [summary["run_id"], last_sku]).fetchall()
        quality = con.execute(
            "SELECT avg(metrics_psnr_mean), avg(metrics_ssim_mean), "
            "avg(bake_normal_error_mean_deg), count(*) FILTER (WHERE status = 'ok') "
            "FROM assets WHERE run_id = ?", [summary["run_id"]]).fetchone()
        hashes = dict(con.execute("SELECT sku, glb_sha256 FROM assets WHERE run_id = ? "
                                  "ORDER BY sku", [summary["run_id"]]).fetchall())
    finally:
        con.close()
    by_kind = sampler.cpu_by_kind({})
    result.write_text(json.dumps({
        "wall_s": wall, "cpus": cpus, "ok": quality[3], "per_asset_s": wall / max(1, quality[3]),
        "stage_s": stage_s, "timeline": tl,
        "steps": [(name, a - epoch0, b - epoch0)
                  for name, a, b in sorted(steps, key=lambda x: x[1])],
        "sku_ends_s": [(s, e - epoch0, b - epoch0) for s, e, b in ends],
        "tail_s": (ends[-1][1] - ends[-2][1]) if len(ends) > 1 else None,
        "last_sku": last_sku,
        "last_sku_stages": [(st, a - epoch0, d) for st, a, d in last_stages],
        "cpu_by_process": by_kind, "run_cpu_s": sum(by_kind.values()),
        "psnr": quality[0], "ssim": quality[1], "normal_error_deg": quality[2],
        "glb_sha256": hashes, "load_before": load_before, "load_after": load(),
        "code": os.path.dirname(os.path.dirname(sys.modules["assetfactory"].__file__)),
    }, indent=1))


def run(workdir: Path, name: str, n: int, profile: str, catalog: str = "",
        execution: str = "") -> dict:
    from scale import end_session

    workdir.mkdir(parents=True, exist_ok=True)
    result = workdir / f"{name}.json"
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.setdefault("PREFECT_HOME", str(workdir / "prefect-home"))
    with open(workdir / f"{name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, __file__, "_child", str(workdir), str(result),
                                 str(n), profile, catalog, execution], env=env,
                                start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait()
        finally:
            end_session(proc)
    if rc:
        raise subprocess.CalledProcessError(rc, proc.args)
    return json.loads(result.read_text())


def report(r: dict, name: str) -> None:
    tl = r["timeline"]
    cpus = r["cpus"]
    idle = cpus * r["wall_s"] - r["stage_s"]
    print(f"{name}: conversion wall {r['wall_s']:.1f} s ({r['ok']} ok: {r['per_asset_s']:.2f} s "
          f"per asset); stage s {r['stage_s']:.1f}; idle {idle:.1f} core-s = before "
          f"{tl['idle_before_core_s']:.1f} + during {tl['idle_during_core_s']:.1f} + after "
          f"{tl['idle_after_core_s']:.1f}; first stage at {tl['first_stage_s']:.1f} s, last "
          f"stage end at {tl['last_stage_end_s']:.1f} s; tail (last SKU alone) "
          f"{r['tail_s']:.1f} s ({r['last_sku']}); run CPU {r['run_cpu_s']:.1f} s = "
          f"{r['run_cpu_s'] / (cpus * r['wall_s']):.1%} of {cpus} x wall; PSNR {r['psnr']:.3f}, "
          f"SSIM {r['ssim']:.4f}, normal error {r['normal_error_deg']:.4f} deg; "
          f"{r['load_before']} -> {r['load_after']}")
    print("  steps (s since the call): " + "; ".join(
        f"{s} {a:.1f}-{b:.1f}" for s, a, b in r.get("steps", [])))
    print("  last SKU's stages (start s, seconds): " + ", ".join(
        f"{s} {a:.1f}/{d:.2f}" for s, a, d in r["last_sku_stages"]))
    print("  CPU s by process: " + ", ".join(
        f"{k} {v:.1f}" for k, v in sorted(r["cpu_by_process"].items(), key=lambda kv: -kv[1])))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6],
               sys.argv[7])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, help="demo catalog, output and logs go here")
    ap.add_argument("--name", default="demo_idle", help="the result's file name (.json)")
    ap.add_argument("--n", type=int, default=13, help="demo SKUs (the last one is broken)")
    ap.add_argument("--profile", default="ar")
    ap.add_argument("--catalog", default="", help="an existing demo catalog (catalog.csv) "
                    "instead of one made here; with --prepare, make it there and stop")
    ap.add_argument("--execution", default="", help="executor options as JSON (the flow's "
                    "`execution`), e.g. '{\"tasks_ahead\": 0}'")
    ap.add_argument("--prepare", action="store_true", help="only make the demo catalog")
    ap.add_argument("--compare", default="", help="a result .json to compare GLB hashes with")
    a = ap.parse_args()
    if a.prepare:
        from assetfactory.demo import make_demo_catalog

        print(make_demo_catalog(Path(a.catalog).parent if a.catalog else
                                Path(a.workdir) / "demo-catalog", n=a.n))
        return
    r = run(Path(a.workdir), a.name, a.n, a.profile, str(Path(a.catalog).resolve())
            if a.catalog else "", a.execution)
    report(r, a.name)
    if a.compare:
        other = json.loads(Path(a.compare).read_text())["glb_sha256"]
        differ = sorted(k for k in set(other) | set(r["glb_sha256"])
                        if other.get(k) != r["glb_sha256"].get(k))
        print(f"  GLBs differing from {a.compare}: {differ or 'none'}")


if __name__ == "__main__":
    main()
