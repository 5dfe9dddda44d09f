"""Benchmark: one dense, faceted input from import through bake, stage by stage, one process.

Inputs (~1M faces each):

* ``faceted_scan``: a real model from ../shared/data/models (``odedstein_boot.obj``, a 40k-face
  scan), midpoint-subdivided (1 -> 4, every new triangle coplanar with its parent) and then
  centroid-split (1 -> 3, also coplanar and conforming) on a seeded random subset of faces
  until the wanted count: the over-tessellated, faceted kind of mesh scans and CAD exports
  arrive as. Skipped, with a line saying so, when ../shared/data is absent.
* ``csg_part``: a boolean CSG part (manifold3d: a plate minus drilled holes and a slot, plus a
  boss) whose large flat faces are midpoint-subdivided to the wanted count.

Each input is written as a GLB into a temporary catalog (a mesh-only row) and run through the
``mesh`` backend and the ``web`` profile, one stage after another in this process
(``run_stage``): ingest, generate (import), cleanup, simplify, uv, bake. Each stage's wall time
is printed, with the texels covered twice in the uv atlas (exact rasterisation at the uv
resolution; the stage's ``uv_overlaps`` metric).

Before/after: each run saves ``benchmarks/out/dense_asset_<label>.json``; the table prints
every saved label side by side (run once with ``--label before`` from the checkout to compare
against, once with ``--label after`` from this one: ``--out`` points both at one folder).

    .venv/bin/python benchmarks/dense_asset.py --label after
    .venv/bin/python benchmarks/dense_asset.py --quick        # ~250k faces, smoke run

Writes benchmarks/out/dense_asset.png (per-stage seconds per label).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent / ".." / "shared" / "data" / "models"
STAGES = ("ingest", "generate", "cleanup", "simplify", "uv", "bake")


# ------------------------------------------------------------------------------ meshes


def midpoint_subdivide(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1 -> 4 split at edge midpoints (coplanar with the parent, conforming)."""
    import trimesh.remesh

    return trimesh.remesh.subdivide(v, f)


def centroid_split(v: np.ndarray, f: np.ndarray, n_faces: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a seeded random subset of faces at their centroids (1 -> 3, coplanar and
    conforming: no edge gains a vertex) until about ``n_faces`` faces."""
    k = max(0, min(len(f), (n_faces - len(f)) // 2))
    if k == 0:
        return v, f
    pick = np.random.default_rng(seed).choice(len(f), k, replace=False)
    keep = np.ones(len(f), bool)
    keep[pick] = False
    sel = f[pick]
    c = np.arange(len(v), len(v) + k)
    new = np.concatenate([np.stack([sel[:, 0], sel[:, 1], c], 1),
                          np.stack([sel[:, 1], sel[:, 2], c], 1),
                          np.stack([sel[:, 2], sel[:, 0], c], 1)])
    return (np.concatenate([v, v[sel].mean(1)]), np.concatenate([f[keep], new]))


def faceted_scan(faces_wanted: int, name: str = "odedstein_boot.obj"):
    """A real model, midpoint-subdivided then centroid-split to ~``faces_wanted``."""
    import trimesh

    path = MODELS / name
    if not path.exists():
        return None
    m = trimesh.load(str(path), force="mesh")
    m.merge_vertices()
    v, f = np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)
    while len(f) * 4 <= faces_wanted:
        v, f = midpoint_subdivide(v, f)
    return centroid_split(v, f, faces_wanted)


def csg_part(faces_wanted: int):
    """A plate minus four drilled holes and a slot, plus a boss (manifold3d booleans): large
    flat faces, sharp creases; midpoint-subdivided to ~``faces_wanted`` faces."""
    import manifold3d as mf

    plate = mf.Manifold.cube([1.6, 0.4, 1.2], center=True)
    for cx, cz in ((-0.5, -0.3), (0.5, -0.3), (-0.5, 0.3), (0.5, 0.3)):
        hole = mf.Manifold.cylinder(0.6, 0.09, 0.09, 48, center=True).rotate([90, 0, 0])
        plate = plate - hole.translate([cx, 0, cz])
    plate = plate - mf.Manifold.cube([0.8, 0.1, 0.05], center=True).translate([0, 0.2, 0])
    boss = mf.Manifold.cylinder(0.2, 0.25, 0.25, 64, center=True).rotate([90, 0, 0])
    part = plate + boss.translate([0, 0.3, 0])
    mesh = part.to_mesh()
    v = np.asarray(mesh.vert_properties, np.float64)[:, :3]
    f = np.asarray(mesh.tri_verts, np.int64)
    while len(f) * 4 <= faces_wanted:
        v, f = midpoint_subdivide(v, f)
    return v, f


def write_catalog(root: Path, sku: str, v: np.ndarray, f: np.ndarray) -> Path:
    import trimesh

    (root / "models").mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(v, f, process=False).export(root / "models" / f"{sku}.glb")
    path = root / "catalog.csv"
    path.write_text(f"sku,mesh_uri\n{sku},models/{sku}.glb\n")
    return path


# --------------------------------------------------------------------------------- runs


def _cpu() -> float:
    """CPU seconds of this process and its finished children (uv's xatlas processes): on a
    shared, loaded machine a steadier figure than wall time."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_input(sku: str, v: np.ndarray, f: np.ndarray, tmp: Path, cpus: float = 0) -> dict:
    """``cpus``: the CPUs each stage is granted (what the executor reserves for its task with
    ``ExecutorOptions(resources={stage: Resources(cpus=N)})``); 0: each stage's declared."""
    from assetfactory.catalog.input import read_catalog
    from assetfactory.core.types import AssetState
    from assetfactory.flows.recipe import build_recipe
    from assetfactory.flows.runner import run_stage

    parse = read_catalog(write_catalog(tmp / sku / "catalog", sku, v, f))
    spec = parse.specs[0]
    state = AssetState(sku=spec.sku, spec=spec, store_uri=str(tmp / sku / "store"),
                       profile="web", backend="mesh")
    recipe = build_recipe("web", "mesh")
    row: dict = {"input": sku, "faces_in": len(f), "seconds": {}}
    for call in recipe.calls:
        if call.name not in STAGES:
            continue
        t, c = time.perf_counter(), _cpu()
        state = run_stage(call, state, cpus=cpus or None)
        row["seconds"][call.name] = time.perf_counter() - t
        row.setdefault("cpu_seconds", {})[call.name] = _cpu() - c
        if not state.ok:
            row["error"] = f"{state.failure.stage}: {state.failure.message}"
            break
    m = state.metrics
    row["import_to_bake_s"] = sum(row["seconds"].get(s, 0.0) for s in STAGES[1:])
    row["uv_overlaps"] = m.get("uv_overlaps")
    for k in ("cleanup_faces_out", "simplify_tris_out", "simplify_chamfer",
              "simplify_hausdorff", "uv_charts", "uv_utilization", "bake_normal_error_mean_deg"):
        if k in m:
            row[k] = m[k]
    row["seconds_detail"] = {k: v for k, v in m.items() if "seconds" in k
                             and isinstance(v, (int, float))}
    return row


def warm_up(cpus: float = 0) -> None:
    """Compile the numba kernels, import the libraries and start the uv stage's xatlas
    children outside the timings, with the CPUs the timed run grants (a worker that has run
    a stage before: its children are kept between assets)."""
    import trimesh

    s = trimesh.creation.icosphere(3)
    with tempfile.TemporaryDirectory() as d:
        run_input("warm", np.asarray(s.vertices), np.asarray(s.faces), Path(d), cpus)


# ------------------------------------------------------------------------------ output


def load_runs(out: Path) -> dict[str, list[dict]]:
    runs = {}
    for p in sorted(out.glob("dense_asset_*.json")):
        d = json.loads(p.read_text())
        runs[d["label"]] = d["rows"]
    return dict(sorted(runs.items(), key=lambda kv: (kv[0] != "before", kv[0])))


def print_table(runs: dict[str, list[dict]]) -> None:
    labels = list(runs)
    inputs = list(dict.fromkeys(r["input"] for rows in runs.values() for r in rows))
    head = f"{'input':14s} {'stage':18s} " + " ".join(f"{lab:>10s}" for lab in labels)
    print(head)
    print("-" * len(head))
    for name in inputs:
        by = {lab: next((r for r in rows if r["input"] == name), None)
              for lab, rows in runs.items()}

        def cell(lab: str, key: str, fmt: str = "{:10.2f}", by: dict = by) -> str:
            r = by[lab]
            val = None if r is None else (r["seconds"].get(key) if key in STAGES else r.get(key))
            return f"{'-':>10s}" if val is None else fmt.format(val)

        for s in STAGES:
            print(f"{name:14s} {s + ' s':18s} " + " ".join(cell(lab, s) for lab in labels))
        for s in STAGES:
            print(f"{name:14s} {s + ' cpu s':18s} " + " ".join(
                f"{'-':>10s}" if by[lab] is None or s not in by[lab].get("cpu_seconds", {})
                else f"{by[lab]['cpu_seconds'][s]:10.2f}" for lab in labels))
        print(f"{name:14s} {'import->bake s':18s} "
              + " ".join(cell(lab, "import_to_bake_s") for lab in labels))
        print(f"{name:14s} {'texels twice':18s} "
              + " ".join(cell(lab, "uv_overlaps", "{:10d}") for lab in labels))
        print(f"{name:14s} {'faces in':18s} "
              + " ".join(cell(lab, "faces_in", "{:10d}") for lab in labels))
        print(f"{name:14s} {'chamfer (simplify)':18s} "
              + " ".join(cell(lab, "simplify_chamfer", "{:10.2e}") for lab in labels))


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inputs = list(dict.fromkeys(r["input"] for rows in runs.values() for r in rows))
    fig, axes = plt.subplots(1, len(inputs), figsize=(5 * len(inputs), 4), squeeze=False)
    for ax, name in zip(axes[0], inputs):
        bottom = np.zeros(len(runs))
        for s in STAGES:
            vals = np.array([next((r["seconds"].get(s, 0.0) for r in rows
                                   if r["input"] == name), 0.0) for rows in runs.values()])
            ax.bar(list(runs), vals, bottom=bottom, label=s)
            bottom += vals
        ax.axhline(10.0, color="r", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_ylabel("seconds (stacked by stage)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("dense input, import -> bake (red: 10 s target, import through bake)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~250k faces")
    ap.add_argument("--label", default="after")
    ap.add_argument("--faces", type=int, default=0, help="faces wanted (default 1M)")
    ap.add_argument("--only", default="", help="comma-separated inputs to run")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--cpus", type=float, default=0,
                    help="CPUs granted to each stage (0: each stage's declared Resources.cpus)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = args.faces or (250_000 if args.quick else 1_000_000)
    warm_up(args.cpus)
    inputs = {}
    scan = faceted_scan(wanted)
    if scan is None:
        print(f"(skipped faceted_scan: {MODELS} not found)")
    else:
        inputs["faceted_scan"] = scan
    inputs["csg_part"] = csg_part(wanted)
    if args.only:
        inputs = {k: v for k, v in inputs.items() if k in args.only.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, (v, f) in inputs.items():
            r = run_input(name, v, f, Path(d), args.cpus)
            print(f"  {name}: " + ", ".join(f"{k} {s:.2f}" for k, s in r["seconds"].items())
                  + f"; texels twice {r['uv_overlaps']}" + (f"; {r['error']}" if "error" in r
                                                            else ""), file=sys.stderr)
            rows.append(r)
    load = os.getloadavg()
    (out / f"dense_asset_{args.label}.json").write_text(json.dumps(
        {"label": args.label, "faces_wanted": wanted, "load": load, "cpus": args.cpus,
         "rows": rows}, indent=1))
    print(f"\nload average at the end of this run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    runs = load_runs(out)
    print_table(runs)
    plot(runs, out / "dense_asset.png")
    print(f"\nwrote {out / 'dense_asset.png'} and {out / f'dense_asset_{args.label}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
