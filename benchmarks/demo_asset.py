"""Benchmark: the demo products through the whole ``ar`` recipe, one asset at a time, with CPU
time per stage (all threads of the process) beside wall time, this tree beside a peer: the
same script's worker run on another git revision's code (``--peer``, default ``main``).

Why CPU time: on a shared machine wall time swings with the load; CPU time of the process
(every thread, plus its finished child processes) is what an asset costs the cores a worker
declares, and is what a streaming run of many assets on N cores is bounded by.

    .venv/bin/python benchmarks/demo_asset.py                 # every demo product (12)
    .venv/bin/python benchmarks/demo_asset.py --skus 3        # the first 3
    .venv/bin/python benchmarks/demo_asset.py --peer none     # this tree alone
    .venv/bin/python benchmarks/demo_asset.py --profile 0     # cProfile product 0, top costs
    .venv/bin/python benchmarks/demo_asset.py --whole         # every stage on each version

Two worker processes, one per code version (the peer's from ``git archive``, laid out as the
package under ``benchmarks/out/peer-<commit>`` and put first on ``PYTHONPATH``), each warmed
up on the first product, take the products in turn, one asset at a time and never both at
once, alternating which goes first, so that both meet the same machine load.

Prints a per-stage table (mean CPU s and wall s per asset), the quality metrics the bake and
texture stages and the metrics stage report (baked-normal error, PSNR at the input views), and
writes benchmarks/out/demo_asset.json. The demo catalog is synthesised once under
benchmarks/out/demo-catalog (the same bytes every time on the same renderer).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

# A Ray worker running a 1-CPU stage gets OMP_NUM_THREADS=1 (Ray sets it from num_cpus), so
# BLAS and OpenMP pools are one thread there; do the same here, before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
#: The folders setuptools maps to ``assetfactory.<name>`` (pyproject's package-dir).
SUBPACKAGES = ("core", "geometry", "algorithms", "tasks", "models", "catalog", "flows", "demo")
QUALITY = ("bake_normal_error_mean_deg", "bake_normal_error_low_mean_deg", "bake_ao_mean",
           "metrics_psnr_mean", "metrics_ssim_mean", "texture_observed_frac", "uv_overlaps",
           "uv_utilization")


def _catalog() -> Path:
    from assetfactory.demo import make_demo_catalog

    return make_demo_catalog(OUT / "demo-catalog")


def cpu_seconds() -> float:
    """CPU seconds of this process (every thread), of its children that have ended (the glTF
    validator) and of those still running (uv's pool of xatlas processes)."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def run_calls(calls, state) -> tuple[object, dict, dict]:
    """Run stage calls in order; (state, CPU s per stage, wall s per stage)."""
    from assetfactory.flows.runner import run_stage

    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}
    for call in calls:
        c0, w0 = cpu_seconds(), time.perf_counter()
        state = run_stage(call, state)
        cpu[call.name] = cpu_seconds() - c0
        wall[call.name] = time.perf_counter() - w0
        if not state.ok:
            break
    return state, cpu, wall


def new_state(spec, recipe, store: Path):
    from assetfactory.core.types import AssetState

    return AssetState(sku=spec.sku, spec=spec, store_uri=str(store), profile=recipe.profile,
                      backend=recipe.backend)


def result(state, cpu: dict, wall: dict) -> dict:
    if not state.ok:
        return {"sku": state.sku, "error": f"{state.failure.stage}: {state.failure.message}"}
    return {"sku": state.sku, "cpu": cpu, "wall": wall,
            "quality": {k: state.metrics.get(k) for k in QUALITY}}


def run_one(spec, recipe, store: Path) -> dict:
    return result(*run_calls(recipe.calls, new_state(spec, recipe, store)))


def peer_tree(ref: str) -> Path:
    """The package of git revision ``ref`` laid out as ``assetfactory/`` under
    ``benchmarks/out/peer-<commit>`` (extracted once); put its parent first on PYTHONPATH."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    dest = OUT / f"peer-{commit}"
    if not (dest / "assetfactory" / "__init__.py").exists():
        raw = OUT / f"peer-{commit}.src"
        raw.mkdir(parents=True, exist_ok=True)
        data = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True,
                              capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(raw, filter="data")
        dest.mkdir(parents=True, exist_ok=True)
        (raw / "assetfactory").rename(dest / "assetfactory")
        for name in SUBPACKAGES:
            if (raw / name).is_dir():
                (raw / name).rename(dest / "assetfactory" / name)
    return dest


def worker(texture_px: int | None, work: Path) -> None:
    """Answer commands on stdin with one ``RESULT {json}`` line each: ``prep I`` runs product
    I's stages before the bake and pickles the state; ``finish I`` runs the bake and the
    stages after it from that state (the store is content-addressed, so two code versions
    finishing the same state write side by side)."""
    import pickle

    import assetfactory
    from assetfactory.catalog.input import read_catalog
    from assetfactory.demo import BROKEN_SKU
    from assetfactory.flows.recipe import build_recipe

    specs = [s for s in read_catalog(OUT / "demo-catalog" / "catalog.csv").specs
             if s.sku != BROKEN_SKU]
    over = {"profile": {"texture_px": texture_px}} if texture_px else None
    recipe = build_recipe("ar", "silhouette", over)
    first = [c.name for c in recipe.calls].index("bake")
    # warm-up at 256 px: libraries, the EGL context and every numba kernel loaded once
    run_one(specs[0], build_recipe("ar", "silhouette", {"profile": {"texture_px": 256}}),
            work / "warm" / str(os.getpid()))
    print("READY " + str(Path(assetfactory.__file__).parent), flush=True)
    for line in sys.stdin:
        cmd, i, tag = line.split()
        saved = work / f"state-{i}-{tag}.pkl"
        if cmd == "prep":
            state, cpu, wall = run_calls(recipe.calls[:first],
                                         new_state(specs[int(i)], recipe, work / "store"))
            saved.write_bytes(pickle.dumps(state))
            row = {"cpu": cpu, "wall": wall, "error": None if state.ok else
                   f"{state.failure.stage}: {state.failure.message}"}
        else:
            row = result(*run_calls(recipe.calls[first:], pickle.loads(saved.read_bytes())))
        print("RESULT " + json.dumps(row, default=float), flush=True)


class Worker:
    """One worker process (this tree's code, or the peer's with ``pythonpath``)."""

    def __init__(self, name: str, pythonpath: Path | None, texture_px: int | None,
                 work: Path) -> None:
        env = dict(os.environ)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, __file__, "--worker", str(work)]
        if texture_px:
            cmd += ["--texture-px", str(texture_px)]
        self.name = name
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def ready(self) -> str:
        return self._read("READY ")

    def _read(self, prefix: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise RuntimeError(f"{self.name} worker ended (exit {self.proc.wait()})")

    def run(self, cmd: str, i: int, tag: str = "shared") -> dict:
        self.proc.stdin.write(f"{cmd} {i} {tag}\n")
        self.proc.stdin.flush()
        return json.loads(self._read("RESULT "))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _table(name: str, ok: list[dict]) -> list[str]:
    stages = list(ok[0]["cpu"]) if ok else []
    out = [f"\n{name}: {len(ok)} assets",
           "| stage | CPU s per asset (mean) | wall s per asset (mean) |", "| --- | ---: | ---: |"]
    for st in stages:
        c = sum(r["cpu"][st] for r in ok) / len(ok)
        w = sum(r["wall"][st] for r in ok) / len(ok)
        out.append(f"| {st} | {c:.2f} | {w:.2f} |")
    tc = sum(sum(r["cpu"].values()) for r in ok) / max(len(ok), 1)
    tw = sum(sum(r["wall"].values()) for r in ok) / max(len(ok), 1)
    out.append(f"| **all** | **{tc:.2f}** | **{tw:.2f}** |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skus", type=int, default=0, help="first N good products (0 = all)")
    ap.add_argument("--peer", default="main",
                    help="git revision run side by side ('none': this tree alone)")
    ap.add_argument("--profile", type=int, default=None,
                    help="cProfile the product with this index instead of timing all")
    ap.add_argument("--top", type=int, default=40, help="rows of the profile to print")
    ap.add_argument("--texture-px", type=int, default=None, help="override the profile's px")
    ap.add_argument("--whole", action="store_true",
                    help="each version runs every stage (default: the stages before the bake "
                         "run once, on this tree's code, and both versions finish that state)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.texture_px, Path(args.worker))
        return

    from assetfactory.catalog.input import read_catalog
    from assetfactory.demo import BROKEN_SKU
    from assetfactory.flows.recipe import build_recipe

    specs = [s for s in read_catalog(_catalog()).specs if s.sku != BROKEN_SKU]
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)
    if args.profile is not None:
        over = {"profile": {"texture_px": args.texture_px}} if args.texture_px else None
        recipe = build_recipe("ar", "silhouette", over)
        with tempfile.TemporaryDirectory() as tmp:
            run_one(specs[0], recipe, Path(tmp) / "warm")
            prof = cProfile.Profile(time.process_time)   # CPU time: the load does not skew it
            prof.enable()
            row = run_one(specs[args.profile], recipe, Path(tmp) / "prof")
            prof.disable()
        print(json.dumps(row, indent=1, default=float))
        s = io.StringIO()
        ps = pstats.Stats(prof, stream=s)
        ps.sort_stats("cumulative").print_stats(args.top)
        ps.sort_stats("tottime").print_stats(args.top)
        print(s.getvalue())
        OUT.mkdir(exist_ok=True)
        prof.dump_stats(OUT / "demo_asset.prof")
        return

    work = Path(tempfile.mkdtemp(prefix="demo_asset-"))
    workers = [Worker("this tree", None, args.texture_px, work)]
    if args.peer != "none":
        workers.append(Worker(f"peer {args.peer}", peer_tree(args.peer), args.texture_px, work))
    for w in workers:
        print(f"{w.name}: {w.ready()}", flush=True)
    rows: dict[str, list[dict]] = {w.name: [] for w in workers}
    try:
        for i, spec in enumerate(specs[: args.skus or None]):
            order = workers if i % 2 == 0 else workers[::-1]
            if not args.whole:
                prep = workers[0].run("prep", i)     # the stages before the bake, once
                if prep["error"]:
                    print(f"{spec.sku:<24} FAILED {prep['error']}", flush=True)
                    continue
            for k, w in enumerate(order):
                if args.whole:                       # every stage on each version's code
                    prep = w.run("prep", i, str(k))
                    if prep["error"]:
                        rows[w.name].append({"sku": spec.sku, "error": prep["error"]})
                        print(f"{w.name:<10} {spec.sku:<24} FAILED {prep['error']}", flush=True)
                        continue
                    row = w.run("finish", i, str(k))
                else:
                    row = w.run("finish", i)
                if "error" in row:
                    rows[w.name].append(row)
                    print(f"{w.name:<10} {spec.sku:<24} FAILED {row['error']}", flush=True)
                    continue
                row["cpu"] = {**prep["cpu"], **row["cpu"]}
                row["wall"] = {**prep["wall"], **row["wall"]}
                rows[w.name].append(row)
                q = row["quality"]
                print(f"{w.name:<10} {spec.sku:<24} cpu {sum(row['cpu'].values()):6.1f} s  "
                      f"wall {sum(row['wall'].values()):6.1f} s  bake {row['cpu']['bake']:5.1f}"
                      f"  texture {row['cpu']['texture']:5.1f}  normal err "
                      f"{q['bake_normal_error_mean_deg']}  psnr {q['metrics_psnr_mean']}",
                      flush=True)
    finally:
        for w in workers:
            w.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    ok = {name: [r for r in rs if "error" not in r] for name, rs in rows.items()}
    for name in rows:
        print("\n".join(_table(name, ok[name])))
    print("\n| quality (mean over assets) | " + " | ".join(rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    for k in QUALITY:
        cells = []
        for name in rows:
            vals = [r["quality"][k] for r in ok[name] if r["quality"].get(k) is not None]
            cells.append(f"{sum(vals) / len(vals):.4f}" if vals else "-")
        print(f"| {k} | " + " | ".join(cells) + " |")
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "demo_asset.json").write_text(json.dumps({"rows": rows, "load_end": load}, indent=1))


if __name__ == "__main__":
    main()
