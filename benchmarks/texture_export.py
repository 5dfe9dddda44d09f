"""Benchmark: texture-stage variants and export encodings on real models.

For each model (4-view renders of ../shared/data/models as the photos, the model itself as the
mesh, ``web`` recipe up to ``uv``), it runs the texture stage with

* ``base``   : visibility + incidence + front/back prior + 3D fill (edge band and mip off),
* ``+edge``  : + depth-discontinuity / mask-border band,
* ``+mip``   : + footprint (pyramid level) filtering,
* ``full``   : both (the default, mip_bias -1),
* ``mip0``   : full with the textbook mip level (mip_bias 0),
* ``flat``   : full + shading flattening,

and scores each by the metrics stage's PSNR/SSIM of the unlit render at the 4 input views
(inside the masks). (Held-out views are not scored yet: the 8-view renders' cameras would need
ingest's crop applied to line up.) Then export: GLB bytes and time for PNG vs JPEG base colour, and
the USDZ (``ar``) time and size.

    .venv/bin/python benchmarks/texture_export.py           # 3 models, 1024 px (~3 min)
    .venv/bin/python benchmarks/texture_export.py --quick   # 1 model, 512 px (~40 s)

Prints tables; writes benchmarks/out/texture_export.png and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assetfactory.catalog.input import read_catalog
from assetfactory.catalog.renders import catalog_from_renders
from assetfactory.core.artifacts import load_image, load_mesh
from assetfactory.core.types import AssetState
from assetfactory.flows.recipe import build_recipe
from assetfactory.flows.runner import run_asset
from assetfactory.tasks.export import ExportOptions, export
from assetfactory.tasks.metrics import masked_psnr, masked_ssim
from assetfactory.tasks.texture import TextureOptions, texture

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
OUT = REPO / "benchmarks" / "out"
MODELS = {"basemesh_coffee_cup": "basemesh_coffee_cup.glb", "kenney_blaster": "kenney_blaster",
          "bevy_cakeBirthday": "bevy_cakeBirthday.glb"}
VARIANTS = {
    "base": {"edge_px": 0, "mip_filter": False},
    "+edge": {"mip_filter": False},
    "+mip": {"edge_px": 0},
    "full": {},
    "mip0": {"mip_bias": 0.0},
    "flat": {"flatten_shading": True},
}


def _catalog(root: Path, model: str) -> Path:
    return catalog_from_renders(DATA / "renders" / model / "4views", root, model,
                                DATA / "models" / MODELS[model])


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB") if "mask" not in path.name else im.convert("L"))


def score(state: AssetState, views) -> tuple[float, float]:
    from assetfactory.geometry.render import get_renderer

    mesh = load_mesh(state, "mesh")
    tex = load_image(state, "texture/base_color")
    ps, ss = [], []
    for cam, photo, mask in views:
        render = get_renderer().render(mesh, cam, texture=tex, shading="unlit")
        ps.append(masked_psnr(render, photo, mask))
        ss.append(masked_ssim(render, photo, mask))
    return float(np.mean(ps)), float(np.mean(ss))


def input_views(state: AssetState):
    from assetfactory.tasks.texture import read_views

    return [(cam, rgb, (mask[..., 0] if mask.ndim == 3 else mask) > 127)
            for cam, rgb, mask in read_views(state)]


def run_model(model: str, size: int, tmp: Path) -> dict:
    parse = read_catalog(_catalog(tmp / model / "catalog", model))
    spec = parse.specs[0]
    state = AssetState(sku=spec.sku, spec=spec, store_uri=str(tmp / model / "store"),
                       profile="web", backend="mesh")
    recipe = build_recipe("web", "mesh", {"texture": {"size": size}})
    upto = dataclasses.replace(recipe, calls=tuple(c for c in recipe.calls
                                                   if c.name not in ("texture", "export",
                                                                     "metrics")))
    state = run_asset(state, upto)
    if not state.ok:
        return {"model": model, "error": f"{state.failure.stage}: {state.failure.message}"}
    ins = input_views(state)
    rows = []
    for name, opts in VARIANTS.items():
        t0 = time.perf_counter()
        res = texture(state, TextureOptions(size=size, **opts))
        dt = time.perf_counter() - t0
        st = state.apply(res)
        p_in, s_in = score(st, ins)
        rows.append({"variant": name, "seconds": dt, "psnr_in": p_in, "ssim_in": s_in,
                     "observed": res.metrics["texture_observed_frac"],
                     "mip_level": res.metrics["texture_mip_level_mean"]})
        if name == "full":
            final = st
    exports = []
    # "budget": a size budget that forces smaller maps and a JPEG base colour (normal and
    # ORM maps stay PNG); "tight": one no texture size can meet (the SKU fails with a fix)
    for label, opts in (("png", {"allow_jpeg": False}), ("budget 0.2 MB", {"max_glb_mb": 0.2}),
                        ("tight 0.08 MB", {"max_glb_mb": 0.08}),
                        ("usdz", {"write_usdz": True})):
        t0 = time.perf_counter()
        try:
            r = export(final, ExportOptions(texture_size=size, write_poster=False, **opts))
            exports.append({"export": label, "seconds": time.perf_counter() - t0,
                            "glb_bytes": r.metrics["export_glb_bytes"],
                            "usdz_bytes": r.metrics.get("export_usdz_bytes"),
                            "texture_px": r.metrics["export_texture_px"],
                            "format": r.metrics["export_base_color_format"],
                            "maps": r.metrics.get("export_maps"),
                            "gltf_warnings": r.metrics["gltf_warnings"]})
        except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
            exports.append({"export": label, "error": str(exc)[:200]})
    return {"model": model, "faces": load_mesh(state, "mesh").n_faces, "texture": rows,
            "export": exports}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one model at 512 px")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    models = list(MODELS)[:1] if args.quick else list(MODELS)
    size = 512 if args.quick else 1024
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-texture-"))
    try:
        results = [run_model(m, size, tmp) for m in models]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntexture variants ({size} px; PSNR dB / SSIM at the 4 input views, inside masks)")
    print(f"{'model':22} {'variant':7} {'s':>6} {'psnr_in':>8} {'ssim_in':>8} {'observed':>8} "
          f"{'mip':>5}")
    for r in results:
        if "error" in r:
            print(f"{r['model']:22} failed upstream: {r['error']}")
            continue
        for t in r["texture"]:
            print(f"{r['model']:22} {t['variant']:7} {t['seconds']:6.2f} {t['psnr_in']:8.2f} "
                  f"{t['ssim_in']:8.3f} {t['observed']:8.3f} {t['mip_level']:5.2f}")
    print("\nexport")
    for r in results:
        for e in r.get("export", []):
            if "error" in e:
                print(f"{r['model']:22} {e['export']:14} error: {e['error']}")
                continue
            print(f"{r['model']:22} {e['export']:14} {e['seconds']:6.2f} s  glb "
                  f"{e['glb_bytes'] / 1e6:6.3f} MB  usdz "
                  f"{(e['usdz_bytes'] or 0) / 1e6:6.3f} MB  {e['texture_px']} px {e['format']}"
                  f"  maps {e['maps']}  gltf warnings {e['gltf_warnings']}")
    (OUT / "texture_export.json").write_text(json.dumps(results, indent=1))
    plot(results)


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(VARIANTS))
    for ax, key, title in ((axes[0], "psnr_in", "PSNR at input views (dB)"),
                           (axes[1], "ssim_in", "SSIM at input views")):
        for i, name in enumerate(VARIANTS):
            vals = [next(t[key] for t in r["texture"] if t["variant"] == name) for r in ok]
            ax.bar(np.arange(len(ok)) + i * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(ok)) + 0.4 - width / 2)
        ax.set_xticklabels([r["model"] for r in ok], rotation=15, fontsize=8)
        ax.set_title(title)
        lo = min((t[key] for r in ok for t in r["texture"] if np.isfinite(t[key])), default=0)
        ax.set_ylim(max(0, lo - (3 if key == "psnr_in" else 0.05)), None)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "texture_export.png", dpi=110)
    print(f"\nwrote {OUT / 'texture_export.png'}")


if __name__ == "__main__":
    main()
