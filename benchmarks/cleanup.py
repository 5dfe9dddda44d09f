"""Benchmark: segmentation-aware cleanup on "digital clay" from 5k to 1.3M faces.

Run: .venv/bin/python benchmarks/cleanup.py [--quick]

The test mesh is a sphere (the product's outer surface) with an enclosed inner shell (what a
marching-cubes generator leaves inside), three holes punched in the outer surface, and floaters.
Its ground truth is known, so the table reports correctness next to time:

* hidden faces (on the closed sphere + inner shell), side by side: ours (Fibonacci-sphere
  views + normal-gated flood fill) with Embree ray casting (the default) at 64 views and with
  OpenGL face-id renders at 64 and 16 views, and the rays alone without the flood fill:
  outer faces wrongly removed and inner faces wrongly kept;
* hole filling, side by side: ours (ear clipping / centroid fan per loop),
  ``trimesh.repair.fill_holes`` (triangles and quads only) and pymeshlab's
  ``meshing_close_holes``: holes left open and time;
* the whole ``clean_mesh`` on the holed mesh per size (holes are filled first, so the inner
  shell seen through them is then hidden and removed), with the views it used;
* the repair chain, side by side, on the holed mesh with the defects of a raw export added
  (every vertex unwelded, 10 % of faces flipped, 1 % duplicated, 24 floaters): ours
  (``clean_mesh`` without the hidden-face test and the part split) against the equivalent
  pymeshlab filter chain (merge close vertices, remove duplicate and null faces, repair
  non-manifold edges and vertices, drop small components, orient coherently, close holes) and
  trimesh's (``process`` + ``fix_normals`` + ``fill_holes``): time, and whether the output is
  closed, consistently wound and outward, with the floaters gone.

Prints a table, writes ``benchmarks/out/cleanup.png`` and ``benchmarks/out/cleanup.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import trimesh

from assetfactory.algorithms.holes import boundary_loops, fill_holes
from assetfactory.algorithms.visibility import hidden_faces, visible_faces
from assetfactory.core.mesh import MeshData
from assetfactory.tasks.cleanup import CleanupOptions, clean_mesh

OUT = Path(__file__).resolve().parent / "out"


def shelled(subdiv: int) -> tuple[MeshData, int]:
    """A closed sphere with an enclosed inner shell (the hidden-face ground truth)."""
    outer = trimesh.creation.icosphere(subdiv, 1.0)
    inner = trimesh.creation.icosphere(max(subdiv - 1, 1), 0.6)
    verts = np.vstack([outer.vertices, inner.vertices])
    faces = np.vstack([outer.faces, inner.faces + len(outer.vertices)])
    return MeshData(verts, faces), len(outer.faces)


def clay(subdiv: int) -> tuple[MeshData, int, int]:
    """(mesh, outer face count, inner face count): outer sphere with 3 holes, inner shell."""
    outer = trimesh.creation.icosphere(subdiv, 1.0)
    c = outer.vertices[outer.faces].mean(axis=1)
    holes = np.zeros(len(c), bool)
    for d in ([0, 0, 1], [1, 0, 0], [0, -1, 0]):
        holes |= c @ np.asarray(d, float) > 0.995
    outer = trimesh.Trimesh(outer.vertices, outer.faces[~holes], process=False)
    outer.remove_unreferenced_vertices()
    inner = trimesh.creation.icosphere(max(subdiv - 1, 1), 0.6)
    verts = np.vstack([outer.vertices, inner.vertices])
    faces = np.vstack([outer.faces, inner.faces + len(outer.vertices)])
    return MeshData(verts, faces), len(outer.faces), len(inner.faces)


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def hidden_peers(mesh: MeshData, n_outer: int) -> list[dict]:
    rows = []
    for name, fn in (
        ("ours, raycast, 64 views", lambda: hidden_faces(mesh, 64)),
        ("ours, render, 64 views", lambda: hidden_faces(mesh, 64, method="render")),
        ("ours, render, 16 views", lambda: hidden_faces(mesh, 16, method="render")),
        ("rays only, 64 views", lambda: ~visible_faces(mesh, 64)),
    ):
        hidden, s = timed(fn)
        rows.append({"method": name, "seconds": s,
                     "outer_lost": int(hidden[:n_outer].sum()),
                     "inner_kept": int((~hidden[n_outer:]).sum())})
    return rows


def hole_peers(mesh: MeshData) -> list[dict]:
    rows = []
    _, s = timed(fill_holes, mesh)
    out, _, _ = fill_holes(mesh)
    rows.append({"method": "ours", "seconds": s, "holes_left": len(boundary_loops(out.faces))})
    tm = mesh.to_trimesh()
    _, s = timed(trimesh.repair.fill_holes, tm)
    rows.append({"method": "trimesh.repair.fill_holes", "seconds": s,
                 "holes_left": len(boundary_loops(np.asarray(tm.faces)))})
    try:
        import pymeshlab

        ms = pymeshlab.MeshSet()
        ms.add_mesh(pymeshlab.Mesh(mesh.vertices, mesh.faces))
        _, s = timed(ms.meshing_close_holes, maxholesize=100000)
        faces = ms.current_mesh().face_matrix()
        rows.append({"method": "pymeshlab close_holes", "seconds": s,
                     "holes_left": len(boundary_loops(faces))})
    except Exception as exc:  # noqa: BLE001 - a peer failing is a result, not a crash
        rows.append({"method": "pymeshlab close_holes", "seconds": float("nan"),
                     "holes_left": f"error: {type(exc).__name__}"})
    return rows


def raw_export(mesh: MeshData, seed: int = 0) -> tuple[MeshData, int]:
    """``mesh`` with a raw export's defects: every corner its own vertex, 10 % of faces
    flipped, 1 % duplicated, 24 small floaters. Returns it and the component count a correct
    repair leaves (the mesh's own, floaters gone)."""
    rng = np.random.default_rng(seed)
    faces = mesh.faces.copy()
    flip = rng.random(len(faces)) < 0.1
    faces[flip] = faces[flip][:, ::-1]
    faces = np.vstack([faces, faces[rng.random(len(faces)) < 0.01]])
    bits = [MeshData(mesh.vertices[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3))]
    for k in range(24):
        s = trimesh.creation.icosphere(1, 0.01)
        bits.append(MeshData(s.vertices + rng.uniform(-1.5, 1.5, 3), s.faces))
    return MeshData.concatenate(bits), len(trimesh.Trimesh(mesh.vertices, mesh.faces).split(
        only_watertight=False))


def repair_report(vertices: np.ndarray, faces: np.ndarray) -> dict:
    tm = trimesh.Trimesh(vertices, faces, process=True)
    bodies = tm.split(only_watertight=False)
    return {"faces_out": len(tm.faces), "components": len(bodies),
            "closed": bool(tm.is_watertight), "consistent": bool(tm.is_winding_consistent),
            "outward": bool(all(b.volume > 0 for b in bodies if b.is_watertight))}


def repair_peers(mesh: MeshData) -> list[dict]:
    raw, want = raw_export(mesh)
    rows = []
    opts = CleanupOptions(remove_interior=False, part_diameter_split=False)
    (out, _), s = timed(clean_mesh, raw, opts)
    rows.append({"method": "ours (clean_mesh repairs)", "seconds": s, "want": want,
                 **repair_report(out.vertices, out.faces)})
    try:
        import pymeshlab

        def chain():
            ms = pymeshlab.MeshSet()
            ms.add_mesh(pymeshlab.Mesh(raw.vertices, raw.faces))
            ms.meshing_merge_close_vertices(threshold=pymeshlab.PercentageValue(1e-4))
            ms.meshing_remove_duplicate_faces()
            ms.meshing_remove_null_faces()
            ms.meshing_repair_non_manifold_edges()
            ms.meshing_repair_non_manifold_vertices()
            ms.meshing_remove_connected_component_by_diameter(
                mincomponentdiag=pymeshlab.PercentageValue(5))
            ms.meshing_re_orient_faces_coherently()
            ms.meshing_close_holes(maxholesize=100000)
            ms.meshing_remove_unreferenced_vertices()
            m = ms.current_mesh()
            m.compact()  # deleted elements are only flagged until then
            return m.vertex_matrix(), m.face_matrix()  # while the MeshSet that owns m lives

        (v, f), s = timed(chain)
        rows.append({"method": "pymeshlab filter chain", "seconds": s, "want": want,
                     **repair_report(v, f)})
    except Exception as exc:  # noqa: BLE001 - a peer failing is a result, not a crash
        rows.append({"method": "pymeshlab filter chain", "seconds": float("nan"), "want": want,
                     "error": f"{type(exc).__name__}: {exc}"})

    def trimesh_chain():
        tm = trimesh.Trimesh(raw.vertices, raw.faces, process=True)
        tm.update_faces(tm.unique_faces())
        tm.update_faces(tm.nondegenerate_faces())
        bodies = tm.split(only_watertight=False)
        big = max(b.area for b in bodies)
        tm = trimesh.util.concatenate([b for b in bodies if b.area >= 0.01 * big])
        trimesh.repair.fix_normals(tm, multibody=True)
        trimesh.repair.fill_holes(tm)
        return tm

    tm, s = timed(trimesh_chain)
    rows.append({"method": "trimesh (process, fix_normals, fill_holes)", "seconds": s,
                 "want": want, **repair_report(tm.vertices, tm.faces)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    args = ap.parse_args()
    sizes = (3, 4) if args.quick else (5, 6, 7, 8)
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    clean_mesh(clay(2)[0], CleanupOptions())  # load the libraries, compile the kernels
    for subdiv in sizes:
        mesh, n_outer, n_inner = clay(subdiv)
        (out, counts), s = timed(clean_mesh, mesh, CleanupOptions(min_component_area_share=0.0))
        row = {"faces": mesh.n_faces, "outer": n_outer, "inner": n_inner, "clean_seconds": s,
               "clean_views": counts.get("visibility_views"),
               "clean_interior_removed": counts["interior"], "clean_holes": counts["holes"],
               "clean_tris_out": out.n_faces,
               "hidden": hidden_peers(*shelled(subdiv)) if mesh.n_faces <= 400_000 else
               hidden_peers_big(*shelled(subdiv)),
               "holes": hole_peers(mesh.subset_faces(np.arange(mesh.n_faces) < n_outer)),
               "repair": repair_peers(mesh)}
        results.append(row)
        print_row(row)
    (OUT / "cleanup.json").write_text(json.dumps(results, indent=1))
    chart(results, OUT / "cleanup.png")
    print(f"\nwrote {OUT / 'cleanup.json'} and {OUT / 'cleanup.png'}")


def hidden_peers_big(mesh: MeshData, n_outer: int) -> list[dict]:
    """At 1M+ faces: ray casting at 64 views and rendering at 16 (what the render method's
    face budget picks there)."""
    rows = []
    for name, kw in (("ours, raycast, 64 views", {"n_views": 64}),
                     ("ours, render, 16 views", {"n_views": 16, "method": "render"})):
        hidden, s = timed(hidden_faces, mesh, **kw)
        rows.append({"method": name, "seconds": s, "outer_lost": int(hidden[:n_outer].sum()),
                     "inner_kept": int((~hidden[n_outer:]).sum())})
    return rows


def print_row(row: dict) -> None:
    print(f"\n== {row['faces']:,} faces ({row['inner']:,} inner) ==")
    print(f"clean_mesh: {row['clean_seconds']:.2f} s, {row['clean_views']} views, "
          f"interior removed {row['clean_interior_removed']:,}, holes filled "
          f"{row['clean_holes']}, tris out {row['clean_tris_out']:,}")
    print(f"{'hidden faces':<28}{'seconds':>9}{'outer lost':>12}{'inner kept':>12}")
    for r in row["hidden"]:
        print(f"{r['method']:<28}{r['seconds']:>9.2f}{r['outer_lost']:>12,}{r['inner_kept']:>12,}")
    print(f"{'hole filling (3 holes)':<28}{'seconds':>9}{'holes left':>12}")
    for r in row["holes"]:
        print(f"{r['method']:<28}{r['seconds']:>9.3f}{r['holes_left']!s:>12}")
    print(f"{'repair chain (raw export)':<44}{'seconds':>9}{'faces':>10}{'bodies':>8}"
          f"{'closed':>8}{'wound':>7}{'outward':>8}")
    for r in row["repair"]:
        if "error" in r:
            print(f"{r['method']:<44}{'':>9}  {r['error']}")
            continue
        print(f"{r['method']:<44}{r['seconds']:>9.2f}{r['faces_out']:>10,}"
              f"{r['components']:>5}/{r['want']:<2}{_yn(r['closed']):>8}"
              f"{_yn(r['consistent']):>7}{_yn(r['outward']):>8}")


def _yn(flag: bool) -> str:
    return "yes" if flag else "NO"


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4))
    faces = [r["faces"] for r in results]
    ax[0].plot(faces, [r["clean_seconds"] for r in results], "o-", label="clean_mesh (all steps)")
    methods = sorted({h["method"] for r in results for h in r["hidden"]})
    for m in methods:
        pts = [(r["faces"], h["seconds"]) for r in results for h in r["hidden"]
               if h["method"] == m]
        ax[0].plot(*zip(*pts), "s--", label=f"hidden: {m}")
    ax[0].set(xscale="log", yscale="log", xlabel="faces", ylabel="seconds",
              title="cleanup time (2-core CPU; render = llvmpipe)")
    ax[0].legend(fontsize=7)
    for m in ("ours", "trimesh.repair.fill_holes", "pymeshlab close_holes"):
        pts = [(r["faces"], h["holes_left"]) for r in results for h in r["holes"]
               if h["method"] == m and isinstance(h["holes_left"], int)]
        if pts:
            ax[1].plot(*zip(*pts), "o-", label=m)
    ax[1].set(xscale="log", xlabel="faces", ylabel="holes left (of 3)", title="hole filling")
    ax[1].legend(fontsize=7)
    for m in sorted({h["method"] for r in results for h in r.get("repair", [])}):
        pts = [(r["faces"], h["seconds"]) for r in results for h in r.get("repair", [])
               if h["method"] == m and np.isfinite(h["seconds"])]
        if pts:
            ax[2].plot(*zip(*pts), "o-", label=m)
    ax[2].set(xscale="log", yscale="log", xlabel="faces", ylabel="seconds",
              title="repair chain on a raw export")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
