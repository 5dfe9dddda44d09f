"""Benchmark: uv options (and what they do to the bake and the texture) on the demo products
and on the dense faceted scan, every variant from the same saved state before uv.

The stages before uv run once (``prep``, this tree's code) and each product's state is
pickled; ``run`` then runs uv and every stage after it (``--finish``; uv alone without it)
from those states with the uv options given (``--uv '{"chunk_faces": 2000}'``) and prints
one JSON row per product (CPU s and wall s per stage, uv's metrics, baked-normal error,
PSNR and SSIM at the photos) and a summary, saved with ``--out``. Run it from another
checkout's venv for that code's numbers (the states are plain pickles of ``AssetState``).

``--turn``: every chart is packed turned by 180 degrees (``_min_area_rotation`` negated), a
re-layout that should not change quality; the spread it gives is the noise any change of the
atlas brings to PSNR, SSIM and the normal error.

    .venv/bin/python benchmarks/uv_variants.py prep --work /tmp/uvv             # 12 products
    .venv/bin/python benchmarks/uv_variants.py prep --work /tmp/uvv --dense     # the scan
    .venv/bin/python benchmarks/uv_variants.py run --work /tmp/uvv --finish --out a.json
    .venv/bin/python benchmarks/uv_variants.py run --work /tmp/uvv --finish --dense \\
        --uv '{"partition_texels": 0}'
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_asset

KEYS = ("uv_utilization", "uv_charts", "uv_seam_length", "uv_stretch_area_mean",
        "uv_stretch_angle_mean", "uv_overlaps", "bake_normal_error_mean_deg",
        "metrics_psnr_mean", "metrics_ssim_mean")


def _demo_specs():
    from assetfactory.catalog.input import read_catalog
    from assetfactory.demo import BROKEN_SKU

    return [s for s in read_catalog(demo_asset._catalog()).specs if s.sku != BROKEN_SKU]


def prep(work: Path, dense: bool, only: list[int] | None) -> None:
    from assetfactory.flows.recipe import build_recipe
    from assetfactory.flows.runner import run_stage

    work.mkdir(parents=True, exist_ok=True)
    if dense:
        import dense_asset

        from assetfactory.catalog.input import read_catalog
        from assetfactory.core.types import AssetState

        v, f = dense_asset.faceted_scan(1_000_000)
        catalog = dense_asset.write_catalog(work / "dense" / "catalog", "faceted_scan", v, f)
        spec = read_catalog(catalog).specs[0]
        state = AssetState(sku=spec.sku, spec=spec, store_uri=str(work / "dense" / "store"),
                           profile="web", backend="mesh")
        for call in build_recipe("web", "mesh").calls:
            if call.name == "uv":
                break
            state = run_stage(call, state, cpus=2)
        (work / "dense.pkl").write_bytes(pickle.dumps(state))
        return
    recipe = build_recipe("ar", "silhouette")
    first = [c.name for c in recipe.calls].index("uv")
    for i, spec in enumerate(_demo_specs()):
        if only and i not in only:
            continue
        state, _, _ = demo_asset.run_calls(recipe.calls[:first],
                                           demo_asset.new_state(spec, recipe, work / "store"))
        (work / f"demo-{i}.pkl").write_bytes(pickle.dumps(state))
        print(i, spec.sku, "ok" if state.ok else state.failure.message, flush=True)


def run(args) -> None:
    from assetfactory.flows.recipe import build_recipe
    from assetfactory.flows.runner import run_stage

    if args.turn:
        from assetfactory.algorithms import chart_packing

        rotation = chart_packing._min_area_rotation
        chart_packing._min_area_rotation = lambda pts: -rotation(pts)
    over = json.loads(args.uv or "{}")
    profile, backend = ("web", "mesh") if args.dense else ("ar", "silhouette")
    recipe = build_recipe(profile, backend, {"uv": over} if over else None)
    names = [c.name for c in recipe.calls]
    last = (names.index("bake") + 1 if args.dense else len(names)) if args.finish else \
        names.index("uv") + 1
    calls = recipe.calls[names.index("uv"):last]
    if args.dense:
        items, cpus = [("dense", args.work / "dense.pkl")], 2
    else:
        items = [(i, args.work / f"demo-{i}.pkl") for i in range(12)
                 if (args.work / f"demo-{i}.pkl").exists() and (not args.only or i in args.only)]
        cpus = None  # each stage's declared CPUs, as the demo runs them
    # warm-up: the pool's children forked, numba kernels loaded
    run_stage(calls[0], pickle.loads(items[0][1].read_bytes()), cpus=cpus)
    rows = []
    for i, path in items:
        state = pickle.loads(path.read_bytes())
        row: dict = {"i": i, "cpu": {}, "wall": {}}
        for call in calls:
            c0, w0 = demo_asset.cpu_seconds(), time.perf_counter()
            state = run_stage(call, state, cpus=cpus)
            row["cpu"][call.name] = demo_asset.cpu_seconds() - c0
            row["wall"][call.name] = time.perf_counter() - w0
            if not state.ok:
                row["error"] = state.failure.message
                break
        row.update({k: state.metrics[k] for k in KEYS if k in state.metrics})
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    ok = [r for r in rows if "error" not in r]
    summary = {k: statistics.mean(r[k] for r in ok) for k in KEYS if all(k in r for r in ok)}
    summary["uv_cpu"] = statistics.mean(r["cpu"]["uv"] for r in ok)
    summary["uv_wall"] = statistics.mean(r["wall"]["uv"] for r in ok)
    print("SUMMARY", json.dumps(summary), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary, "uv": over,
                                              "turn": args.turn}, default=float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=("prep", "run"))
    ap.add_argument("--work", type=Path, required=True, help="folder of the saved states")
    ap.add_argument("--dense", action="store_true", help="the dense faceted scan (web, 2 CPUs)")
    ap.add_argument("--only", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma-separated product indices")
    ap.add_argument("--uv", default=None, help="uv options as JSON")
    ap.add_argument("--finish", action="store_true", help="the stages after uv too")
    ap.add_argument("--turn", action="store_true", help="charts packed turned by 180 degrees")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.cmd == "prep":
        prep(args.work, args.dense, args.only)
    else:
        run(args)


if __name__ == "__main__":
    main()
