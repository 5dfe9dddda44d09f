"""The review dashboard on a synthetic catalog of 100k assets: how fast are its pages?

Writes a synthetic catalog (``assetfactory.dashboard.synthetic``: real schemas, ~4% failures,
nine stage rows per asset, a few large Parquet files per run), starts the real
``assetfactory serve`` on a free loopback port and times HTTP requests from this process:

* the queue's first page (the default view: assets needing attention),
* a filtered page (run + category + a metric range, sorted by a metric, page 5),
* the asset page of SKUs picked at random,
* the runs page (charts of the newest run).

Each is requested ``--repeat`` times after one warm-up request; the table gives the median,
the 95th percentile and the first (cold) request, and the server process's CPU time per
request (user + system, from psutil): on a shared machine the wall times include waiting for a
core, the CPU time does not. Targets: queue pages < 300 ms, asset page
< 500 ms. The peer row runs the queue page's SQL directly on the catalog views
(``catalog.views.connect``, as ``assetfactory query`` does) to show what the in-memory snapshot
saves. Writes ``benchmarks/out/dashboard.json`` and ``benchmarks/out/dashboard.png``.

    .venv/bin/python benchmarks/dashboard.py            # 100k assets
    .venv/bin/python benchmarks/dashboard.py --quick    # 5k assets, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def timed_get(url: str) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
        status = r.status
    return (time.perf_counter() - t0) * 1000.0, status, len(body)


def start_server(root: Path, cfg: Path) -> tuple[subprocess.Popen, str, float]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(cfg), "PYTHONUNBUFFERED": "1"}
    log = cfg / "serve.log"
    t0 = time.perf_counter()
    with open(log, "wb") as fh:   # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "assetfactory", "serve", "--out",
                                 str(root), "--port", "0", "--refresh", "0"], stdout=fh,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    while True:
        m = re.search(r"dashboard: (http://\S+)/\?token=", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1), time.perf_counter() - t0
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.1)


def peer_queue_ms(root: Path, repeat: int) -> list[float]:
    """The queue's first page through the catalog views directly (no snapshot)."""
    from assetfactory.catalog.views import connect

    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        con = connect(str(root))
        con.execute("""SELECT * FROM assets WHERE status = 'failed'
                       ORDER BY sku LIMIT 48""").fetchall()
        con.execute("SELECT count(*) FROM assets WHERE status = 'failed'").fetchone()
        con.close()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="assets in the synthetic catalog")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5k assets, 5 repeats")
    ap.add_argument("--root", type=Path, default=None,
                    help="where to write the catalog (default: a temporary folder)")
    a = ap.parse_args()
    if a.quick:
        a.n, a.repeat = 5000, 5
    from assetfactory.dashboard.synthetic import write_synthetic_catalog

    tmp = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    root = a.root or tmp / "catalog-root"
    t0 = time.perf_counter()
    info = write_synthetic_catalog(root, a.n, n_runs=4, files_per_run=5)
    write_s = time.perf_counter() - t0
    print(f"synthetic catalog: {info['assets']:,} assets in {write_s:.1f} s under {root}")
    proc, url, start_s = start_server(root, tmp)
    print(f"assetfactory serve answered after {start_s:.1f} s (snapshot load included)")
    results: dict[str, dict] = {}
    try:
        runs = re.findall(r'href="/runs\?run=([^"]+)"',
                          urllib.request.urlopen(url + "/runs").read().decode())
        run = runs[-1] if runs else ""
        rng = random.Random(0)
        skus = [f"SKU-{rng.randrange(a.n):07d}" for _ in range(a.repeat + 1)]
        cases = {
            "queue, first page": [url + "/queue"] * (a.repeat + 1),
            "queue, filtered page": [
                url + f"/queue?all=1&run={run}&category=kitchen&m=metrics_iou_mean&lo=0.9"
                      "&hi=0.98&sort=metrics_tris&desc=1&page=5"] * (a.repeat + 1),
            "asset page": [url + f"/asset?sku={s}" for s in skus],
            "runs page": [url + "/runs"] * (a.repeat + 1),
        }
        import psutil

        server = psutil.Process(proc.pid)
        for name, urls in cases.items():
            times, sizes = [], []
            for i, u in enumerate(urls):
                if i == 1:
                    cpu0 = sum(server.cpu_times()[:2])
                ms, status, size = timed_get(u)
                if status != 200:
                    raise SystemExit(f"{u}: HTTP {status}")
                times.append(ms)
                sizes.append(size)
            cpu_ms = 1000.0 * (sum(server.cpu_times()[:2]) - cpu0) / max(1, len(urls) - 1)
            warm = times[1:]
            results[name] = {"first_ms": times[0], "median_ms": statistics.median(warm),
                             "p95_ms": sorted(warm)[max(0, int(0.95 * len(warm)) - 1)],
                             "cpu_ms": cpu_ms, "bytes": int(statistics.median(sizes))}
        peer = peer_queue_ms(root, max(3, a.repeat // 4))
        results["peer: queue SQL on the catalog views"] = {
            "first_ms": peer[0], "median_ms": statistics.median(peer[1:] or peer),
            "p95_ms": max(peer), "cpu_ms": None, "bytes": 0}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    load = os.getloadavg()
    targets = {"queue, first page": 300, "queue, filtered page": 300, "asset page": 500}
    print(f"\n{a.n:,} assets, {a.repeat} requests each after one cold request; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs\n")
    print(f"| {'request':40} | median ms | p95 ms | first ms | server CPU ms | target "
          "(p95) | page KB |")
    print(f"| {'-' * 40} | ---: | ---: | ---: | ---: | --- | ---: |")
    for name, r in results.items():
        t = targets.get(name)
        verdict = "" if t is None else (f"< {t} ms " + ("met" if r["p95_ms"] < t else "MISSED"))
        cpu = "" if r["cpu_ms"] is None else f"{r['cpu_ms']:.0f}"
        print(f"| {name:40} | {r['median_ms']:.0f} | {r['p95_ms']:.0f} | {r['first_ms']:.0f} | "
              f"{cpu} | {verdict} | {r['bytes'] / 1024:.0f} |")
    print(f"\nserver start with the snapshot load: {start_s:.1f} s")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dashboard.json").write_text(json.dumps(
        {"n": a.n, "repeat": a.repeat, "load": load, "start_s": start_s, "results": results},
        indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(results)
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ax.barh(names, [results[k]["median_ms"] for k in names], color="#6d8fd0",
                label="median")
        ax.scatter([results[k]["p95_ms"] for k in names], names, color="#1d2330", marker="|",
                   s=200, label="p95")
        for name, t in targets.items():
            ax.plot([t, t], [names.index(name) - 0.4, names.index(name) + 0.4], color="#c0392b")
        ax.set_xlabel("ms per request (red: target)")
        ax.set_title(f"dashboard on {a.n:,} synthetic assets")
        ax.invert_yaxis()
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(OUT / "dashboard.png", dpi=120)
        print(f"chart: {OUT / 'dashboard.png'}")
    except ImportError:
        print("matplotlib not installed: no chart (make setup-test installs it)")
    if a.root is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
