"""Benchmark: serial vs partition-parallel UV unwrapping, and normal/AO bake time and error.

    .venv/bin/python benchmarks/uv_bake.py            # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/uv_bake.py --quick    # smoke run (~1 min)

Source: a synthetic ~1M-face marching-cubes surface (a rippled sphere fused with a torus
handle: fine relief for the normal map, creases for AO), decimated with fast-simplification
(as the simplify stage does) to each target. UV: the same decimated mesh through
(a) the stage's serial mode (xatlas generate at 1024 px, re-run at a lower density when
the charts overflow, as the stage did before), (a') one xatlas generate with no size limit
(the single-core floor, timing only), (b) partitions unwrapped one after another (workers=1: what
partitioning alone buys), (c) partitions in a process pool (workers = cores); all charts packed
into one atlas at 1024 px, padding 4. Every xatlas call runs in a child process in all three.
Bake: the ``bake`` stage (closest points on the 1M mesh, 16 AO rays per texel) on each target
after ``uv``, at 1024 and 2048 px. Prints tables and writes benchmarks/out/uv_bake.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import blender_peer
import numpy as np

from assetfactory.algorithms.unwrap import _run, apply_unwrap, unwrap_chunk, unwrap_guarded
from assetfactory.algorithms.uv_quality import uv_metrics
from assetfactory.core.artifacts import save_bytes, save_mesh
from assetfactory.core.errors import ProcessingError
from assetfactory.core.mesh import MeshData
from assetfactory.core.stage import cpu_count
from assetfactory.core.types import AssetState, SkuSpec, StageResult
from assetfactory.tasks.bake import BakeOptions, bake
from assetfactory.tasks.uv import UVOptions, uv

OUT = Path(__file__).resolve().parent / "out"
UV_KEYS = ("uv_utilization", "uv_charts", "uv_seam_length", "uv_stretch_area_mean",
           "uv_stretch_area_p95", "uv_stretch_angle_mean", "uv_stretch_angle_p95",
           "uv_texel_density_cv", "uv_overlaps")


def source_mesh(grid: int) -> MeshData:
    """Rippled sphere + torus handle, marching cubes on a grid^3 lattice (400 -> ~950k faces)."""
    from skimage.measure import marching_cubes

    g = np.linspace(-1.2, 1.2, grid)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    sphere = np.sqrt(x**2 + y**2 + z**2) - 0.8 - 0.04 * np.sin(14 * x) * np.sin(14 * y) * np.sin(
        14 * z)
    torus = np.sqrt((np.sqrt(x**2 + (y - 0.2) ** 2) - 0.9) ** 2 + z**2) - 0.15
    v, f, _, _ = marching_cubes(np.minimum(sphere, torus), 0.0, spacing=(g[1] - g[0],) * 3)
    return MeshData(v - 1.2, f)


def decimate(mesh: MeshData, target: int) -> MeshData:
    import fast_simplification

    v, f = fast_simplification.simplify(mesh.vertices.astype(np.float32),
                                        mesh.faces.astype(np.int32), 1 - target / mesh.n_faces)
    return MeshData(v, f)


def uv_rows(source: MeshData, targets: list[int], workers: int) -> list[dict]:
    rows = []
    for target in targets:
        low = decimate(source, target)
        base = None
        t0 = time.perf_counter()
        try:  # the floor for one core: a single xatlas generate, no repack, in a child process
            _run([(unwrap_chunk, low.vertices, low.faces, None, 0.0)], 1, "the mesh")
            rows.append({"faces": low.n_faces, "mode": "xatlas, one call", "seconds":
                         time.perf_counter() - t0, "speedup": None})
            print(f"| {low.n_faces:>7} | xatlas, one call       | {rows[-1]['seconds']:8.2f} |",
                  flush=True)
        except ProcessingError as exc:
            rows.append({"faces": low.n_faces, "mode": "xatlas, one call", "seconds": None,
                         "error": str(exc)[:60]})
        for name, opts in (("serial", UVOptions(mode="serial")),
                           ("partitions, 1 worker", UVOptions(mode="parallel", workers=1)),
                           (f"partitions, {workers} workers",
                            UVOptions(mode="parallel", workers=workers))):
            t0 = time.perf_counter()
            try:
                result, _ = unwrap_guarded(low, opts)
            except ProcessingError as exc:  # a crash is a result too
                rows.append({"faces": low.n_faces, "mode": name, "seconds": None,
                             "error": str(exc)[:60]})
                continue
            seconds = time.perf_counter() - t0
            base = seconds if name == "serial" else base
            metrics = uv_metrics(apply_unwrap(low, result), opts.resolution)
            rows.append({"faces": low.n_faces, "mode": name, "seconds": seconds,
                         "speedup": None if base is None else base / seconds,
                         **{k: metrics[k] for k in UV_KEYS}})
            print(_fmt_uv(rows[-1]), flush=True)
    return rows


def bake_rows(source: MeshData, targets: list[int], sizes: list[int],
              blender: bool) -> list[dict]:
    """Our bake stage (normal + AO, and normal alone) and, with ``blender``, Blender's Cycles
    bake of the same low mesh and UVs, side by side."""
    from assetfactory.core.artifacts import load_mesh
    from assetfactory.tasks import bake as bk

    rows = []
    dense = bk.DenseSurface(source) if blender else None
    with tempfile.TemporaryDirectory() as tmp:
        state = AssetState(sku="bench", spec=SkuSpec(sku="bench"), store_uri=tmp)
        dense_ref = save_bytes(state, source.to_bytes(), ".npz")
        for target in targets:
            low = decimate(source, target)
            for size in sizes:
                s = state.apply(StageResult(artifacts={"mesh": save_mesh(state, low),
                                                       "clean_mesh": dense_ref}))
                s = s.apply(uv(s, UVOptions(resolution=size)))
                m = bake(s, BakeOptions(size=size)).metrics
                t0 = time.perf_counter()
                bake(s, BakeOptions(size=size, ao_rays=0, error_samples=0))
                normal_only = time.perf_counter() - t0
                row = {"faces": low.n_faces, "size": size, **m, "normal_only_s": normal_only}
                if blender:
                    lowuv = load_mesh(s, "mesh")
                    normals = bk.low_normals(lowuv)
                    tangents = bk.vertex_tangents(lowuv, normals)
                    peer = blender_peer.bake(lowuv, source, size)
                    err, _ = bk.normal_error(lowuv, normals, tangents, peer["normal"], dense,
                                             20_000, 0)
                    row.update(blender_normal_s=peer["normal_seconds"],
                               blender_ao_s=peer["ao_seconds"],
                               blender_err_mean=float(err.mean()),
                               blender_err_median=float(np.median(err)))
                rows.append(row)
                print(_fmt_bake(rows[-1]), flush=True)
    return rows


def _fmt_uv(r: dict) -> str:
    if r.get("seconds") is None:
        return f"| {r['faces']:>7} | {r['mode']:<22} | failed: {r.get('error', '')} |"
    sp = "-" if r.get("speedup") is None else f"{r['speedup']:.2f}x"
    return (f"| {r['faces']:>7} | {r['mode']:<22} | {r['seconds']:8.2f} | {sp:>7} | "
            f"{r['uv_utilization']:.3f} | {r['uv_charts']:>5} | {r['uv_seam_length']:6.1f} | "
            f"{r['uv_stretch_area_mean']:.3f} / {r['uv_stretch_area_p95']:.3f} | "
            f"{r['uv_stretch_angle_mean']:.3f} / {r['uv_stretch_angle_p95']:.3f} | "
            f"{r['uv_texel_density_cv']:.3f} | {r['uv_overlaps']} |")


def _fmt_bake(r: dict) -> str:
    peer = (f"{r['blender_normal_s']:7.2f} | {r['blender_ao_s']:7.2f} | "
            f"{r['blender_err_mean']:.3f} / {r['blender_err_median']:.3f} |"
            if "blender_normal_s" in r else " - | - | - |")
    return (f"| {r['faces']:>7} | {r['size']:>5} | {r['bake_seconds']:7.2f} | "
            f"{r['normal_only_s']:7.2f} | "
            f"{r['bake_normal_error_mean_deg']:.3f} / {r['bake_normal_error_median_deg']:.3f} | "
            f"{r['bake_normal_error_low_mean_deg']:.3f} | {r['bake_ao_mean']:.3f} | "
            f"{r['bake_texels']:>8} | {peer}")


UV_HEAD = ("| faces | mode | seconds | speedup | utilisation | charts | seam | area stretch "
           "mean / p95 | angle stretch mean / p95 | texel CV | overlaps |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|")
BAKE_HEAD = ("| low faces | px | ours: bake s (normal + AO) | ours: normal only s | ours: normal "
             "err mean / median deg | low mesh alone, mean deg | AO mean | texels | Blender: "
             "normal bake s | Blender: AO bake s | Blender: normal err mean / median deg |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|")


def chart(uv: list[dict], bk: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    modes = list(dict.fromkeys(r["mode"] for r in uv))
    faces = sorted({r["faces"] for r in uv})
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        secs = [next((r["seconds"] or 0 for r in uv if r["faces"] == f and r["mode"] == mode), 0)
                for f in faces]
        a.bar(np.arange(len(faces)) + i * width, secs, width, label=mode)
    a.set_xticks(np.arange(len(faces)) + width * (len(modes) - 1) / 2,
                 [f"{f // 1000}k" for f in faces])
    a.set_yscale("log")
    a.set_ylabel("seconds (log)")
    a.set_title("UV unwrap + pack, one run")
    a.legend()
    for size in sorted({r["size"] for r in bk}):
        rows = [r for r in bk if r["size"] == size]
        b.plot([r["faces"] for r in rows], [r["bake_seconds"] for r in rows], "o-",
               label=f"ours, normal + AO, {size} px")
        b.plot([r["faces"] for r in rows], [r["normal_only_s"] for r in rows], "s--",
               label=f"ours, normal only, {size} px")
        if all("blender_normal_s" in r for r in rows):
            b.plot([r["faces"] for r in rows], [r["blender_normal_s"] for r in rows], "x:",
                   label=f"Blender Cycles, normal only, {size} px")
        for r in rows:
            b.annotate(f"{r['bake_normal_error_mean_deg']:.2f} deg",
                       (r["faces"], r["bake_seconds"]), fontsize=8)
    b.set_xscale("log")
    b.set_xlabel("low-poly faces")
    b.set_ylabel("bake seconds")
    b.set_yscale("log")
    b.set_title("bake from the dense source; labels: our mean normal error")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--no-uv", action="store_true", help="bake section only")
    ap.add_argument("--no-blender", action="store_true", help="skip the Blender peer")
    args = ap.parse_args()
    grid, uv_targets, bake_targets, sizes = ((140, [3000, 8000], [2000, 5000], [256, 512])
                                             if args.quick else
                                             (400, [10_000, 23_000, 100_000],
                                              [5_000, 23_000, 100_000], [1024, 2048]))
    workers = cpu_count()
    t0 = time.perf_counter()
    source = source_mesh(grid)
    print(f"source: {source.n_faces} faces ({time.perf_counter() - t0:.1f} s); "
          f"{workers} cores\n\nUV\n{UV_HEAD}", flush=True)
    uv_table = [] if args.no_uv else uv_rows(source, uv_targets, workers)
    blender = not args.no_blender and blender_peer.available() is not None
    if not blender:
        print("(Blender peer skipped: " + ("--no-blender" if args.no_blender else
              "no `blender` on PATH; `apt-get install blender` adds it") + ")")
    print(f"\nBake\n{BAKE_HEAD}", flush=True)
    bake_table = bake_rows(source, bake_targets, sizes, blender)
    OUT.mkdir(exist_ok=True)
    chart(uv_table, bake_table, OUT / "uv_bake.png")
    print(f"\nchart: {OUT / 'uv_bake.png'}")


if __name__ == "__main__":
    main()
