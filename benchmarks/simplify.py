"""Benchmark: our simplify stage beside pymeshlab, fast-simplification and meshoptimizer.

Builds dense meshes (~1M faces; ~200k with --quick): marching cubes of signed distance
functions with small detail, and real models from ../shared/data/models densified by Loop
subdivision. For each mesh and target (23k/10k/5k faces) it times every method on the same
mesh in the same process and measures two-sided point-to-surface Chamfer (mean) and Hausdorff
(max) against the dense surface, with the dense mesh's bounding-box DIAGONAL scaled to 1, and
the mean normal angle error. Then the per-asset critical path: cleanup (which runs the
hidden-face test when the cleanup stage has it) + our simplify.

    .venv/bin/python benchmarks/simplify.py            # full (~10 min on 2 cores)
    .venv/bin/python benchmarks/simplify.py --quick    # smoke run (~1 min)

Prints a table, writes benchmarks/out/simplify.png and benchmarks/out/simplify.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from assetfactory.algorithms import decimate as Q
from assetfactory.algorithms.surface_error import surface_error
from assetfactory.core.mesh import MeshData
from assetfactory.tasks import simplify as S

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent / ".." / "shared" / "data" / "models"
PEERS = ("pymeshlab", "fast_simplification", "meshoptimizer", "fast_qem")


# ------------------------------------------------------------------------------ meshes


def _sdf_bumpy(X, Y, Z):
    """Rounded box + torus handle, with a fine sinusoidal relief (small detail everywhere)."""
    q = np.stack([np.abs(X) - 0.55, np.abs(Y) - 0.35, np.abs(Z) - 0.45])
    box = np.linalg.norm(np.maximum(q, 0), axis=0) + np.minimum(q.max(0), 0) - 0.08
    r = np.sqrt(X ** 2 + Z ** 2) - 0.6
    torus = np.sqrt(r ** 2 + (Y - 0.35) ** 2) - 0.15
    return np.minimum(box, torus) + 0.012 * np.sin(25 * X) * np.sin(25 * Y) * np.sin(25 * Z)


def _sdf_mechanical(X, Y, Z):
    """Sharp-edged CSG part: a plate with drilled holes, engraved grooves, a boss and small
    rivets (sharp creases and tiny features, where QEM placement matters most)."""
    q = np.stack([np.abs(X) - 0.8, np.abs(Y) - 0.2, np.abs(Z) - 0.6])
    plate = np.linalg.norm(np.maximum(q, 0), axis=0) + np.minimum(q.max(0), 0)
    d = plate
    for cx, cz in ((-0.5, -0.3), (0.5, -0.3), (-0.5, 0.3), (0.5, 0.3)):
        d = np.maximum(d, -(np.sqrt((X - cx) ** 2 + (Z - cz) ** 2) - 0.09))   # holes
    for gz in (-0.15, 0.0, 0.15):
        groove = np.maximum(np.abs(Z - gz) - 0.012, np.abs(Y - 0.2) - 0.03)
        d = np.maximum(d, -groove)                                          # grooves on top
    boss = np.maximum(np.sqrt(X ** 2 + Z ** 2) - 0.25, np.abs(Y - 0.3) - 0.1)
    d = np.minimum(d, boss)
    for k in range(12):
        a = 2 * np.pi * k / 12
        rivet = np.sqrt((X - 0.7 * np.cos(a)) ** 2 + (Y + 0.2) ** 2 + (Z - 0.5 * np.sin(a)) ** 2)
        d = np.minimum(d, rivet - 0.035)                                    # rivets below
    return d


def marching_cubes_mesh(sdf, faces_wanted: int) -> MeshData:
    """Marching cubes of ``sdf`` over [-1, 1]^3, the grid sized for about ``faces_wanted``
    faces (the face count grows with the square of the resolution)."""
    from skimage.measure import marching_cubes

    def run(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.linspace(-1, 1, n, dtype=np.float32)
        grid = np.empty((n, n, n), np.float32)
        for i in range(0, n, 32):  # slabs keep the temporaries small
            X, Y, Z = np.meshgrid(x[i:i + 32], x, x, indexing="ij")
            grid[i:i + 32] = sdf(X, Y, Z)
        v, f, _, _ = marching_cubes(grid, 0.0, spacing=(float(x[1] - x[0]),) * 3)
        return v - 1.0, f[:, ::-1]  # outward winding

    _, f0 = run(96)
    n = int(96 * np.sqrt(faces_wanted / len(f0)))
    v, f = run(n)
    return MeshData(v.astype(np.float64), f.astype(np.int64))


def densified_model(path: Path, faces_wanted: int) -> MeshData | None:
    """A real model, welded, Loop-subdivided until the next step would pass ~1.3x the wanted
    face count (a smooth, dense surface through the original shape)."""
    import trimesh
    from trimesh.remesh import subdivide_loop

    if not path.exists():
        return None
    m = trimesh.load(str(path), force="mesh")
    m.merge_vertices(merge_tex=True, merge_norm=True)
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    while len(f) * 4 <= 1.3 * faces_wanted:
        v, f = subdivide_loop(v, f)
    return MeshData(v, f)


def faceted_meshes(faces_wanted: int, quick: bool, only: set[str] | None = None
                   ) -> dict[str, MeshData]:
    """Over-tessellated, faceted inputs (CAD exports, scans whose flat faces were split into
    many coplanar triangles): real models midpoint-subdivided, then centroid-split to the
    wanted count (every new triangle coplanar with its parent), and a boolean CSG part whose
    large flat faces are midpoint-subdivided (see ``dense_asset.py``)."""
    from dense_asset import centroid_split, csg_part, faceted_scan

    out = {}
    names = ["odedstein_boot.obj"] if quick else ["odedstein_boot.obj", "pc_EgyptianCatStatue.glb"]
    for name in names:
        key = "faceted_" + Path(name).stem.split("_")[-1].lower()
        if only and key not in only:
            continue
        vf = faceted_scan(faces_wanted, name)
        if vf is None:
            print(f"(skipped faceted {name}: {MODELS} not found)")
            continue
        out[key] = MeshData(*vf)
    if not only or "csg_part" in only:
        v, f = csg_part(faces_wanted)
        out["csg_part"] = MeshData(*centroid_split(v, f, faces_wanted))
    return out


def build_meshes(faces_wanted: int, quick: bool, sets: str = "smooth,faceted",
                 only: set[str] | None = None) -> dict[str, MeshData]:
    """The sets' dense meshes; ``only``: these mesh names alone (a faceted one is not built
    otherwise; the smooth set is built whole, then filtered)."""
    meshes: dict[str, MeshData] = {}
    if "faceted" in sets:
        meshes.update(faceted_meshes(faces_wanted, quick, only))
    if "smooth" not in sets:
        return meshes
    meshes.update({"sdf_bumpy": marching_cubes_mesh(_sdf_bumpy, faces_wanted),
                   "sdf_mechanical": marching_cubes_mesh(_sdf_mechanical, faces_wanted)})
    models = ["odedstein_boot.obj"] if quick else ["odedstein_boot.obj",
                                                   "pc_EgyptianCatStatue.glb",
                                                   "basemesh_coffee_cup.glb"]
    for name in models:
        m = densified_model(MODELS / name, faces_wanted)
        if m is not None:
            meshes[Path(name).stem] = m
        else:
            print(f"(skipped {name}: {MODELS} not found)")
    if quick:
        meshes.pop("sdf_bumpy")
    return {k: m for k, m in meshes.items() if not only or k in only}


# --------------------------------------------------------------------------------- runs


def run_method(mesh: MeshData, method: str, target: int) -> dict:
    """Time one method end to end (our preparation included) and measure its quality."""
    options = S.SimplifyOptions(target_tris=target, method=method)
    t, c = time.perf_counter(), time.process_time()
    prep = Q.prepare(mesh, True, method == "fast_qem")
    if method == "fast_qem":
        result = Q.decimate_prepared(prep, target, options)
    else:  # the library as it is: no fallback
        result = Q.peer(prep, target, method, options.preserve_border)
    seconds = time.perf_counter() - t
    cpu = time.process_time() - c  # all threads of the process: fair on a loaded machine
    one_thread = None
    if method == "fast_qem":  # the same, without the dense quadrics on a second thread
        t = time.perf_counter()
        Q.decimate_prepared(Q.prepare(mesh, True, True, background=False), target, options)
        one_thread = time.perf_counter() - t
    err = surface_error(mesh, result.mesh, 200_000, seed=1)
    return {"method": method, "target": target, "seconds": seconds, "cpu_seconds": cpu,
            "seconds_one_thread": one_thread,
            "faces": result.mesh.n_faces,
            "watertight_in": result.watertight_in, "watertight_out": result.watertight_out,
            "fallback": result.fallback, "retries": result.retries, **err}


def critical_path(mesh: MeshData, target: int) -> dict:
    """cleanup (repairs + hidden faces when the cleanup stage runs them) + our simplify."""
    from assetfactory.tasks.cleanup import CleanupOptions, clean_mesh

    t = time.perf_counter()
    clean, _ = clean_mesh(mesh, CleanupOptions())
    t_clean = time.perf_counter() - t
    t_hidden = None
    try:  # the hidden-face test alone, for the record (it is also inside clean_mesh)
        from assetfactory.algorithms.visibility import hidden_faces

        t = time.perf_counter()
        hidden_faces(clean)
        t_hidden = time.perf_counter() - t
    except Exception as exc:  # noqa: BLE001 - benchmark: report and go on
        print(f"(hidden_faces not timed: {exc})")
    t = time.perf_counter()
    Q.decimate_prepared(Q.prepare(clean, True, True), target,
                        S.SimplifyOptions(target_tris=target))
    t_simplify = time.perf_counter() - t
    return {"cleanup_s": t_clean, "hidden_faces_s": t_hidden, "simplify_s": t_simplify,
            "path_s": t_clean + t_simplify}


def warm_up() -> None:
    """Compile the numba kernels (cached on disk) and load the libraries outside the timings."""
    import trimesh

    s = trimesh.creation.icosphere(4)
    m = MeshData(s.vertices, s.faces)
    for method in PEERS:
        Q.decimate(m, 500, method=method)
    box = trimesh.creation.box()  # faceted, 8 corners: the crease scan and flat pre-collapse
    Q.decimate(MeshData(*trimesh.remesh.subdivide(*trimesh.remesh.subdivide(
        box.vertices, box.faces))), 64)
    surface_error(m, Q.decimate(m, 500), 2000)
    from assetfactory.tasks.cleanup import CleanupOptions, clean_mesh

    clean_mesh(m, CleanupOptions())


# ------------------------------------------------------------------------------ output


def merge_reference(rows: list[dict], reference: list[dict], faces_in: dict[str, int],
                    targets: list[int]) -> list[dict]:
    """This run's rows with the reference run's rows for the cases run now (same mesh, same
    input face count, same target) and the methods not run now, one row per (mesh, target,
    method): a reference that itself merged an earlier one can hold a case twice, and its
    rows must not stand beside (or in place of) this run's."""
    ran = {(r["mesh"], r["target"], r["method"]) for r in rows}
    by_key: dict[tuple, dict] = {}
    for r in reference:
        key = (r["mesh"], r["target"], r["method"])
        if key in ran or r["mesh"] not in faces_in or r["target"] not in targets \
                or r["tris_in"] != faces_in[r["mesh"]] or r["method"] in {k[2] for k in ran}:
            continue
        by_key[key] = r  # the last row of a case wins
    merged = list(by_key.values()) + rows
    names = list(faces_in)
    merged.sort(key=lambda r: (names.index(r["mesh"]), targets.index(r["target"]),
                               PEERS.index(r["method"])))
    return merged


def print_table(rows: list[dict]) -> None:
    ref = {(r["mesh"], r["target"]): r for r in rows if r["method"] == "pymeshlab"}
    head = (f"{'mesh':22s} {'target':>6s} {'method':20s} {'faces':>6s} {'seconds':>8s} "
            f"{'t/pml':>6s} {'cpu s':>8s} {'cpu/pml':>7s} {'chamfer':>10s} {'c/pml':>6s} {'hausdorff':>10s} {'h/pml':>6s} "
            f"{'normal°':>7s} {'wt':>3s}")
    print(head)
    print("-" * len(head))
    def ratio(r: dict, p: dict | None, k: str) -> str:
        return f"{r[k] / p[k]:6.2f}" if p and p[k] else "     -"

    for r in rows:
        p = ref.get((r["mesh"], r["target"]))
        wt = "yes" if r["watertight_out"] else ("NO" if r["watertight_in"] else "-")
        print(f"{r['mesh']:22s} {r['target']:6d} {r['method'] + (' *' if r['fallback'] else ''):20s} "
              f"{r['faces']:6d} {r['seconds']:8.2f} {ratio(r, p, 'seconds')} "
              f"{r['cpu_seconds']:8.2f} {ratio(r, p, 'cpu_seconds')} "
              f"{r['chamfer']:10.3e} {ratio(r, p, 'chamfer')} {r['hausdorff']:10.3e} "
              f"{ratio(r, p, 'hausdorff')} "
              f"{r['normal_error_deg']:7.2f} {wt:>3s}"
              + (f"  (one thread {r['seconds_one_thread']:.2f} s)"
                 if r.get("seconds_one_thread") is not None else ""))


def markdown_table(rows: list[dict]) -> str:
    """The rows as BENCHMARKS.md's table: each method beside pymeshlab's row of the same case,
    ratios to it, and whether the case meets the target (Chamfer and Hausdorff at most 1.1x
    pymeshlab's, CPU time at most 0.1x)."""
    ref = {(r["mesh"], r["target"]): r for r in rows if r["method"] == "pymeshlab"}
    out = [("| mesh | faces | target | method | faces out | Chamfer | ratio | Hausdorff | ratio "
            "| CPU s | ratio | target met |"),
           "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        p = ref.get((r["mesh"], r["target"]))
        ratio = {k: r[k] / p[k] if p and p[k] else float("nan")
                 for k in ("chamfer", "hausdorff", "cpu_seconds")}
        met = ""
        if r["method"] != "pymeshlab" and p:
            miss = [name for name, k, limit in (("Chamfer", "chamfer", 1.1),
                                                ("Hausdorff", "hausdorff", 1.1),
                                                ("time", "cpu_seconds", 0.1))
                    if not ratio[k] <= limit]
            met = "yes" if not miss else "NO (" + ", ".join(miss) + ")"
        name = "ours" if r["method"] == "fast_qem" else r["method"]
        out.append(f"| {r['mesh']} | {r['tris_in']:,} | {r['target']:,} | {name} | "
                   f"{r['faces']:,} | {r['chamfer']:.3e} | {ratio['chamfer']:.2f} | "
                   f"{r['hausdorff']:.3e} | {ratio['hausdorff']:.2f} | {r['cpu_seconds']:.2f} | "
                   f"{ratio['cpu_seconds']:.2f} | {met} |")
    return "\n".join(out)


def summary(rows: list[dict]) -> dict:
    """Geometric means of ours / pymeshlab over all (mesh, target) cases, and the worst case."""
    ref = {(r["mesh"], r["target"]): r for r in rows if r["method"] == "pymeshlab"}
    out = {}
    for method in PEERS[1:]:
        ratios = {k: [] for k in ("seconds", "cpu_seconds", "seconds_one_thread", "chamfer",
                                  "hausdorff")}
        for r in rows:
            p = ref.get((r["mesh"], r["target"]))
            if r["method"] == method and p:
                for k, values in ratios.items():
                    if r.get(k) is not None:
                        values.append(r[k] / p[k.replace("_one_thread", "")])
        out[method] = {k: {"geomean": float(np.exp(np.mean(np.log(v)))), "max": float(max(v))}
                       for k, v in ratios.items() if v}
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = {(r["mesh"], r["target"]): r for r in rows if r["method"] == "pymeshlab"}
    cases = sorted(ref, key=lambda c: (c[0], -c[1]))
    if not cases:
        return
    fig, axes = plt.subplots(3, 1, figsize=(max(8, len(cases) * 0.9), 10), sharex=True)
    width = 0.8 / len(PEERS)
    for i, method in enumerate(PEERS):
        by = {(r["mesh"], r["target"]): r for r in rows if r["method"] == method}
        if len(by) < len(cases):
            continue
        x = np.arange(len(cases)) + (i - (len(PEERS) - 1) / 2) * width
        for ax, key in zip(axes, ("cpu_seconds", "chamfer", "hausdorff")):
            ax.bar(x, [by[c][key] / ref[c][key] for c in cases], width, label=method)
    for ax, key in zip(axes, ("CPU time", "Chamfer", "Hausdorff")):
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel(f"{key} / pymeshlab")
        ax.set_yscale("log")
    axes[1].axhline(1.1, color="r", lw=0.8, ls="--")
    axes[2].axhline(1.1, color="r", lw=0.8, ls="--")
    axes[0].axhline(0.1, color="r", lw=0.8, ls="--")
    axes[0].legend(ncol=len(PEERS), fontsize=8)
    axes[-1].set_xticks(np.arange(len(cases)), [f"{m}\n{t // 1000}k" for m, t in cases],
                        rotation=45, ha="right", fontsize=7)
    fig.suptitle("simplify: ratio to pymeshlab (lower is better; red: target lines)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~200k-face meshes, fewer of them")
    ap.add_argument("--targets", default="23000,10000,5000")
    ap.add_argument("--sets", default="smooth,faceted",
                    help="mesh sets: smooth (marching cubes, Loop-subdivided models), faceted "
                         "(midpoint-subdivided models, CSG part)")
    ap.add_argument("--methods", default=",".join(PEERS))
    ap.add_argument("--meshes", default="",
                    help="only these meshes, by the names the tables print (e.g. csg_part)")
    ap.add_argument("--faces", type=int, default=0, help="faces wanted (default 1M)")
    ap.add_argument("--no-path", action="store_true", help="skip the cleanup critical path")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--reference", default="",
                    help="a JSON this script wrote: its rows for methods not run now (say, "
                         "pymeshlab's, which take minutes per case) join the table, so a change "
                         "to ours can be measured again without re-running the peers")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    faces_wanted = args.faces or (200_000 if args.quick else 1_000_000)
    targets = [int(t) for t in args.targets.split(",")]
    warm_up()
    t = time.perf_counter()
    only = {m for m in args.meshes.split(",") if m} or None
    meshes = build_meshes(faces_wanted, args.quick, args.sets, only)
    print(f"built {len(meshes)} dense meshes in {time.perf_counter() - t:.0f} s: "
          + ", ".join(f"{k} {m.n_faces}" for k, m in meshes.items()))
    rows, paths = [], {}
    for name, mesh in meshes.items():
        for target in targets:
            for method in args.methods.split(","):
                r = run_method(mesh, method, target)
                r["mesh"], r["tris_in"] = name, mesh.n_faces
                rows.append(r)
                print(f"  {name} {target} {method}: {r['seconds']:.2f} s (cpu {r['cpu_seconds']:.2f} s)"
                      f" chamfer {r['chamfer']:.3e} hausdorff {r['hausdorff']:.3e}",
                      file=sys.stderr, flush=True)
        if args.no_path:
            continue
        try:
            paths[name] = critical_path(mesh, targets[0])
        except Exception as exc:  # noqa: BLE001 - report, keep the simplify figures
            paths[name] = {"error": repr(exc)}
    if args.reference:
        rows = merge_reference(rows, json.loads(Path(args.reference).read_text())["rows"],
                               {n: m.n_faces for n, m in meshes.items()}, targets)
    print()
    print_table(rows)
    print()
    print(markdown_table(rows))
    print("\nours and peers / pymeshlab (geometric mean over cases; max = worst case):")
    for method, d in summary(rows).items():
        print(f"  {method:20s} " + "  ".join(
            f"{k} {v['geomean']:.3f} (max {v['max']:.3f})" for k, v in d.items()))
    print(f"\ncritical path per asset at {targets[0]} tris (cleanup incl. hidden faces + "
          "simplify), seconds:")
    for name, p in paths.items():
        print(f"  {name:22s} " + "  ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in p.items()))
    stem = "simplify" if args.sets == "smooth,faceted" else "simplify_" + args.sets.replace(",", "_")
    if only:
        stem += "_" + "_".join(sorted(only))
    (out / f"{stem}.json").write_text(json.dumps(
        {"rows": rows, "summary": summary(rows), "critical_path": paths,
         "load": os.getloadavg()}, indent=1))
    plot(rows, out / f"{stem}.png")
    print(f"\nload average at the end: {os.getloadavg()}")
    print(f"\nwrote {out / (stem + '.png')} and {out / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
