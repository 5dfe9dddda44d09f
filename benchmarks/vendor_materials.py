"""Benchmark: do vendor meshes keep their look through the factory?

For each textured model in ../shared/data/models (a model whose materials read at least one
image), the model is converted through the ``mesh`` backend with the ``ar`` profile (cleanup,
simplify to the profile's triangle budget, new UV atlas at the profile's texture size, bake with
material transfer, export GLB + USDZ with both validators). Then the original file and the
exported GLB are rendered from the same 8 views with the same renderer and compared.

The renderer follows ../shared/data/renders (README.md, cameras.json): the model normalised to
its bounding-box centre and largest extent 1, the 8-view cameras of ``renders/<model>/8views``,
512 px with 2x supersampling, white background, linear Lambert with a camera light
(-0.25, 0.35, 1) plus ambient 0.3 / diffuse 0.7, sRGB out, mask = coverage > 0.5. Both sides are
shaded with the full glTF material as a viewer reads it (base colour x factor x vertex colour,
texture transforms and UV sets, normal maps in their tangent frames, MASK cut-outs and BLEND
layers front to back), by ray casting (open3d) and ``material_transfer.SourceShader``; the
result GLB is read back with the factory's own glTF reader and moved back into the source's
frame by the inverse of the cleanup placement.

Reported per model and as the mean: silhouette IoU, PSNR and SSIM inside both silhouettes (lit,
with normal maps; and unlit base colour), triangles and texture size of the GLB, validator errors
(glTF-Validator, USD), the GLB size, and seconds per stage. As a check of the renderer itself, the
original's render is also compared with the shared render of the same view ("ref PSNR"; the
shared renders use base colour only, no normal maps, so this is a consistency check, not 99 dB).

    .venv/bin/python benchmarks/vendor_materials.py              # all textured models
    .venv/bin/python benchmarks/vendor_materials.py --models kenney_blaster trimesh_capsule

Prints the table; writes benchmarks/out/vendor_materials.json, .png (per-model PSNR bars) and
side-by-side view images under benchmarks/out/vendor_materials/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assetfactory.algorithms.material_transfer import SourceShader
from assetfactory.core.appearance import SourceAppearance
from assetfactory.core.artifacts import load_json
from assetfactory.core.errors import InputError
from assetfactory.core.storage import read_ref
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.flows.recipe import PROFILES, build_recipe
from assetfactory.flows.runner import run_stage
from assetfactory.geometry.closest import cast_rays, raycasting_scene
from assetfactory.geometry.colour import linear_to_srgb
from assetfactory.models.mesh import import_with_appearance
from assetfactory.tasks.metrics import masked_psnr, masked_ssim

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
OUT = REPO / "benchmarks" / "out"
LIGHT = np.array([-0.25, 0.35, 1.0]) / np.linalg.norm([-0.25, 0.35, 1.0])
AMBIENT, DIFFUSE = 0.3, 0.7
SSAA = 2
MAX_LAYERS = 6


# ---------------------------------------------------------------------------- rendering


@dataclasses.dataclass
class View:
    label: str
    K: np.ndarray
    world_to_camera_cv: np.ndarray
    position: np.ndarray
    size: tuple[int, int]
    image: Path


def views_of(model: str) -> list[View]:
    folder = DATA / "renders" / model / "8views"
    doc = json.loads((folder / "cameras.json").read_text())
    out = []
    for v in doc["views"]:
        out.append(View(v["label"], np.asarray(v["K"], float),
                        np.asarray(v["world_to_camera_opencv"], float),
                        np.asarray(v["camera_position"], float), tuple(v["image_size"]),
                        folder / v["image"]))
    return out


class Scene:
    """A ``SourceAppearance`` ready to be ray cast and shaded."""

    def __init__(self, appearance: SourceAppearance) -> None:
        self.app = appearance
        s = appearance.surface
        self.rc = raycasting_scene(s.vertices, s.faces)
        self.shader = SourceShader(appearance)
        self.modes = np.array([m.alpha_mode for m in appearance.materials])
        self.cutoff = np.array([m.alpha_cutoff for m in appearance.materials])

    def render(self, view: View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lit, unlit) (H, W, 3) uint8 sRGB on white, and the (H, W) bool coverage, from one
        set of rays."""
        w, h = view.size
        W, H = w * SSAA, h * SSAA
        K = view.K.copy()
        K[:2, :2] *= SSAA
        K[:2, 2] = (K[:2, 2] + 0.5) * SSAA - 0.5
        u, v = np.meshgrid(np.arange(W), np.arange(H))
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(
            u, float)], axis=-1).reshape(-1, 3)
        R = view.world_to_camera_cv[:3, :3]
        dirs = d_cam @ R
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        origin = np.broadcast_to(view.position, dirs.shape).copy()
        n = len(dirs)
        colour = np.zeros((n, 3))
        flat = np.zeros((n, 3))
        trans = np.ones(n)                      # what still shows through
        active = np.arange(n)
        light_world = (LIGHT * (1.0, -1.0, -1.0)) @ R  # OpenGL camera frame -> OpenCV -> world
        for _ in range(MAX_LAYERS):
            if len(active) == 0:
                break
            t, f, bary = cast_rays(self.rc, origin[active], dirs[active])
            ok = f >= 0
            active, t, f, bary = active[ok], t[ok], f[ok], bary[ok]
            if len(active) == 0:
                break
            smp = self.shader.evaluate(f, np.clip(bary, 0, 1))
            base = smp.base
            mat = smp.material
            alpha = np.clip(base[:, 3], 0, 1).astype(np.float64)
            mode = self.modes[mat]
            alpha = np.where(mode == "OPAQUE", 1.0, alpha)
            alpha = np.where(mode == "MASK", (alpha >= self.cutoff[mat]).astype(float), alpha)
            rgb = base[:, :3].astype(np.float64)
            nrm = smp.normal.astype(np.float64)
            towards = -dirs[active]
            nrm = np.where((np.einsum("ij,ij->i", nrm, towards) < 0)[:, None], -nrm, nrm)
            shade = AMBIENT + DIFFUSE * np.clip(nrm @ light_world, 0, None)
            unlit = np.array([self.app.materials[k].unlit for k in mat])
            lit = rgb * np.where(unlit, 1.0, shade)[:, None] + smp.emissive
            colour[active] += (trans[active] * alpha)[:, None] * lit
            flat[active] += (trans[active] * alpha)[:, None] * rgb
            trans[active] *= 1.0 - alpha
            keep = trans[active] > 0.01
            origin[active] = origin[active] + dirs[active] * (t + 1e-5)[:, None]
            active = active[keep]
        def image(c: np.ndarray) -> np.ndarray:
            srgb = np.clip(linear_to_srgb(c) + trans[:, None], 0, 1)  # white shows through
            img = srgb.reshape(h, SSAA, w, SSAA, 3).mean(axis=(1, 3))
            return np.round(img * 255).astype(np.uint8)

        cov = (1.0 - trans).reshape(h, SSAA, w, SSAA).mean(axis=(1, 3))
        return image(colour), image(flat), cov > 0.5


# ---------------------------------------------------------------------------- one model


def model_file(model: str) -> Path:
    p = DATA / "models" / model
    if p.is_dir():
        return next(q for q in sorted(p.iterdir()) if q.suffix.lower() in (".glb", ".gltf",
                                                                           ".obj"))
    return next(q for q in DATA.glob(f"models/{model}.*"))


def textured_models() -> list[str]:
    out = []
    for p in sorted((DATA / "models").iterdir()):
        name = p.stem if p.is_file() else p.name
        try:
            _, _, app = import_with_appearance(str(model_file(name)))
        except (InputError, StopIteration):  # not a model file
            app = None
        if app is not None and app.textured and (DATA / "renders" / name / "8views").is_dir():
            out.append(name)
    return out


def convert(path: Path, root: Path, profile: str, overrides: dict | None = None
            ) -> tuple[AssetState, dict]:
    sku = path.stem.lower().replace(" ", "-")
    state = AssetState(sku=sku, spec=SkuSpec(sku=sku, mesh_uri=str(path)), store_uri=str(root),
                       profile=profile, backend="mesh")
    seconds = {}
    for call in build_recipe(profile, "mesh", overrides).calls:
        t0 = time.perf_counter()
        state = run_stage(call, state)
        seconds[call.name] = time.perf_counter() - t0
        if not state.ok:
            raise RuntimeError(f"{path.name}: stage {state.failure.stage} failed: "
                               f"{state.failure.message}")
    return state, seconds


def result_scene(state: AssetState, tmp: Path) -> Scene:
    glb = tmp / f"{state.sku}.glb"
    glb.write_bytes(read_ref(state.ref("glb")))
    _, _, app = import_with_appearance(str(glb), normalise=False)
    placement = np.asarray(load_json(state, "placement")["matrix"], float)
    return Scene(dataclasses.replace(app, surface=app.surface.transformed(
        np.linalg.inv(placement))))


def compare(a: np.ndarray, ma: np.ndarray, b: np.ndarray, mb: np.ndarray) -> dict:
    inter, union = ma & mb, ma | mb
    return {"iou": float(inter.sum() / max(union.sum(), 1)),
            "psnr": masked_psnr(b, a, inter), "ssim": masked_ssim(b, a, inter)}


def run_model(model: str, root: Path, profile: str, save: Path | None,
              overrides: dict | None = None) -> dict:
    from PIL import Image

    path = model_file(model)
    _, _, src_app = import_with_appearance(str(path))
    src = Scene(src_app)
    state, seconds = convert(path, root, profile, overrides)
    res = result_scene(state, root)
    rows = []
    for v in views_of(model):
        a, au, ma = src.render(v)
        b, bu, mb = res.render(v)
        ref = np.asarray(Image.open(v.image).convert("RGB"))
        ref_mask = np.asarray(Image.open(v.image.parent / f"mask_{v.label}.png")) > 127
        lit = compare(a, ma, b, mb)
        unl = compare(au, ma, bu, mb)
        rows.append({"view": v.label, **lit, "psnr_unlit": unl["psnr"],
                     "ssim_unlit": unl["ssim"],
                     "ref_iou": float((ma & ref_mask).sum() / max((ma | ref_mask).sum(), 1)),
                     "ref_psnr": masked_psnr(a, ref, ma & ref_mask)})
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([a, b], axis=1)).save(save / f"{model}_{v.label}.png")
    m = state.metrics
    mean = lambda k: float(np.mean([r[k] for r in rows if r[k] is not None]))
    return {"model": model, "file": path.name, "views": rows,
            "iou": mean("iou"), "psnr": mean("psnr"), "ssim": mean("ssim"),
            "psnr_unlit": mean("psnr_unlit"), "ssim_unlit": mean("ssim_unlit"),
            "ref_psnr": mean("ref_psnr"), "ref_iou": mean("ref_iou"),
            "source_tris": int(m.get("generate_tris") or 0),
            "tris": int(m.get("simplify_tris_out") or m.get("metrics_tris") or 0),
            "texture_px": int(m.get("export_texture_px") or 0),
            "data_px": int(m.get("export_data_texture_px") or 0),
            "glb_mb": float(m.get("export_glb_bytes") or 0) / 1e6,
            "base_format": m.get("export_base_color_format"),
            "gltf_errors": m.get("gltf_errors"), "usd_errors": m.get("usd_errors"),
            "materials": m.get("export_materials"), "alpha": m.get("bake_source_alpha"),
            "trusted": m.get("bake_source_trusted_share"), "seconds": seconds,
            "total_s": float(sum(seconds.values()))}


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="model names (default: every textured one)")
    ap.add_argument("--profile", default="ar")
    ap.add_argument("--no-images", action="store_true", help="do not write view images")
    ap.add_argument("--set", nargs="*", default=[], metavar="STAGE.OPTION=VALUE",
                    help="recipe overrides, e.g. cleanup.imported_min_component_share=1e-6")
    ap.add_argument("--out", default="vendor_materials", help="name of the JSON/PNG outputs")
    ap.add_argument("--markdown", action="store_true",
                    help="print the last run's table (benchmarks/out/vendor_materials.json) as "
                         "Markdown and exit")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads((OUT / "vendor_materials.json").read_text())))
        return 0
    logging.basicConfig(level=logging.WARNING)
    if not DATA.is_dir():
        print(f"shared data not found at {DATA.resolve()}")
        return 1
    models = args.models or textured_models()
    overrides: dict = {}
    for item in args.set:
        key, _, value = item.partition("=")
        stage_name, _, option = key.partition(".")
        overrides.setdefault(stage_name, {})[option] = json.loads(value)
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    p = PROFILES[args.profile]
    print(f"profile {args.profile}: {p.target_tris} triangles, {p.texture_px} px, "
          f"<= {p.max_glb_mb} MB; models: {', '.join(models)}", flush=True)
    for model in models:
        with tempfile.TemporaryDirectory(prefix="vendor-materials-") as tmp:
            t0 = time.perf_counter()
            try:
                r = run_model(model, Path(tmp), args.profile,
                              None if args.no_images else OUT / args.out, overrides)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                print(f"{model}: FAILED {type(exc).__name__}: {exc}", flush=True)
                results.append({"model": model, "error": str(exc)})
                continue
            r["wall_s"] = time.perf_counter() - t0
            results.append(r)
            print(f"{model}: IoU {r['iou']:.4f} PSNR {r['psnr']:.2f} dB SSIM {r['ssim']:.4f} "
                  f"(unlit {r['psnr_unlit']:.2f} dB) tris {r['tris']} tex {r['texture_px']} "
                  f"errors {r['gltf_errors']}/{r['usd_errors']} convert {r['total_s']:.0f} s",
                  flush=True)
    ok = [r for r in results if "error" not in r]
    print()
    head = (f"{'model':28} {'IoU':>7} {'PSNR':>6} {'SSIM':>6} {'PSNRu':>6} {'SSIMu':>6} "
            f"{'refPSNR':>7} {'tris in':>8} {'tris':>6} {'tex':>5} {'MB':>5} {'base':>5} "
            f"{'gltf':>4} {'usd':>4} {'conv s':>6}")
    print(head)
    for r in ok:
        print(f"{r['model']:28} {r['iou']:7.4f} {r['psnr']:6.2f} {r['ssim']:6.4f} "
              f"{r['psnr_unlit']:6.2f} {r['ssim_unlit']:6.4f} {r['ref_psnr']:7.2f} "
              f"{r['source_tris']:8d} {r['tris']:6d} {r['texture_px']:5d} {r['glb_mb']:5.2f} "
              f"{r['base_format'] or '-':>5} {r['gltf_errors']!s:>4} {r['usd_errors']!s:>4} "
              f"{r['total_s']:6.0f}")
    for r in results:
        if "error" in r:
            print(f"{r['model']:28} FAILED: {r['error']}")
    if ok:
        mean = {k: float(np.mean([r[k] for r in ok])) for k in
                ("iou", "psnr", "ssim", "psnr_unlit", "ssim_unlit", "ref_psnr", "total_s")}
        print(f"{'mean':28} {mean['iou']:7.4f} {mean['psnr']:6.2f} {mean['ssim']:6.4f} "
              f"{mean['psnr_unlit']:6.2f} {mean['ssim_unlit']:6.4f} {mean['ref_psnr']:7.2f} "
              f"{'':8} {'':6} {'':5} {'':5} {'':5} {'':4} {'':4} {mean['total_s']:6.0f}")
        worst = min(ok, key=lambda r: r["psnr"])
        print(f"\ntarget mean PSNR >= 30 dB: {'met' if mean['psnr'] >= 30 else 'NOT met'} "
              f"({mean['psnr']:.2f}); no model below 25 dB: "
              f"{'met' if worst['psnr'] >= 25 else 'NOT met'} (lowest {worst['model']} "
              f"{worst['psnr']:.2f}); validator errors: "
              f"{sum((r['gltf_errors'] or 0) + (r['usd_errors'] or 0) for r in ok)}")
        stages = sorted({k for r in ok for k in r["seconds"]})
        print("\nseconds per stage: " + ", ".join(
            f"{s} {np.mean([r['seconds'].get(s, 0) for r in ok]):.1f}" for s in stages))
    (OUT / f"{args.out}.json").write_text(json.dumps(results, indent=1, default=str))
    _plot(ok, OUT / f"{args.out}.png")
    return 0 if ok and len(ok) == len(results) else 1


def markdown(results: list[dict]) -> str:
    """The results as the Markdown table BENCHMARKS.md shows."""
    ok = [r for r in results if "error" not in r]
    head = ("| model | IoU | PSNR lit (dB) | SSIM lit | PSNR unlit (dB) | SSIM unlit | "
            "triangles in -> out | texture px (base / other maps) | GLB MB | glTF / USD errors | "
            "convert s |")
    rows = [head, "|" + " --- |" * 11]
    for r in ok:
        rows.append(f"| {r['model']} | {r['iou']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                    f"{r['psnr_unlit']:.2f} | {r['ssim_unlit']:.4f} | {r['source_tris']} -> "
                    f"{r['tris']} | {r['texture_px']} / {r.get('data_px') or '-'} "
                    f"({r['base_format']}) | {r['glb_mb']:.2f} | {r['gltf_errors']} / "
                    f"{r['usd_errors']} | {r['total_s']:.0f} |")
    if ok:
        mean = lambda k: float(np.mean([r[k] for r in ok]))
        rows.append(f"| **mean** | {mean('iou'):.4f} | {mean('psnr'):.2f} | {mean('ssim'):.4f} | "
                    f"{mean('psnr_unlit'):.2f} | {mean('ssim_unlit'):.4f} | | | | | "
                    f"{mean('total_s'):.0f} |")
    for r in results:
        if "error" in r:
            rows.append(f"| {r['model']} | failed: {r['error']} |" + " |" * 9)
    return "\n".join(rows)


def _plot(ok: list[dict], path: Path) -> None:
    if not ok:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, len(ok) * 0.9), 4))
    x = np.arange(len(ok))
    ax.bar(x - 0.2, [r["psnr"] for r in ok], 0.4, label="lit (normal maps)")
    ax.bar(x + 0.2, [r["psnr_unlit"] for r in ok], 0.4, label="unlit base colour")
    ax.axhline(30, color="k", ls="--", lw=0.8)
    ax.axhline(25, color="r", ls=":", lw=0.8)
    ax.set_xticks(x, [r["model"] for r in ok], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("masked PSNR (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
