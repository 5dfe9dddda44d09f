"""Benchmark: the texture stage's options on one shape, scored where the photos were not taken.

Why: ``multiview.py`` scores a whole asset (shape, cameras, every view, twice registered), which
costs minutes per asset on a shared machine; a question about the texture alone ("does this
blending option help at the held-out views?") needs the shape once and a few seconds per
texture. Each case (``model:views:catalog``; catalog ``labels``, ``exact``, ``mesh`` = the
original model textured from the photos, or ``labels+carve`` = the silhouette backend with
``photo_carve``) runs ingest .. uv once and is cached under ``benchmarks/out/texture_variants/``
(the pickled state and its store); every variant then runs the texture stage on it and is
scored by ``multiview.py``'s functions: the asset placed by the camera registration (or the
bounding box, whichever reproduces the input silhouettes better) and refined, then silhouette
IoU, masked PSNR (unlit and lit like the photos) and SSIM at the four held-out views.

    .venv/bin/python benchmarks/texture_variants.py \\
        --cases basemesh_coffee_cup:4:labels,kenney_blaster:4:labels \\
        --variants '{"base": {}, "consistent": {"blend": "consistent"}}'

Prints one JSON line per case and variant; appends them to ``texture_variants/results.jsonl``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import multiview as mv

CACHE = mv.OUT / "texture_variants"
#: Stages run per variant: the texture, then the factory's own scores at the input views.
VARIANT_STAGES = ("texture", "metrics")


def recipe(backend: str, tex: dict, gen: dict | None = None):
    from assetfactory.flows.recipe import build_recipe

    o: dict = {"texture": {"size": mv.TEXTURE_PX, **tex}, "uv": {"resolution": mv.TEXTURE_PX}}
    if gen:
        o["generate"] = {"backend_options": gen}
    r = build_recipe("ar", backend, o)
    calls = [c for c in r.calls if c.name not in ("bake", "export")]
    first = next(i for i, c in enumerate(calls) if c.name == "texture")
    return r, calls, first


def case(model: str, nv: int, mode: str):
    """(shape state before texture, input views, {held views, registered mesh, shape scores}),
    made once and cached."""
    from assetfactory.catalog.input import read_catalog
    from assetfactory.catalog.renders import catalog_from_renders
    from assetfactory.core.artifacts import load_cameras, load_mesh
    from assetfactory.core.types import AssetState
    from assetfactory.flows.runner import run_asset

    d = CACHE / f"{model}-{nv}-{mode}"
    views_dir = mv.DATA / "renders" / model / f"{nv}views"
    cams = json.loads((mv.DATA / "renders" / model / "4views" / "cameras.json").read_text())
    _, _, inputs = mv.input_views(views_dir)
    if (d / "shape.pkl").exists():
        shape = pickle.loads((d / "shape.pkl").read_bytes())
    else:
        d.mkdir(parents=True, exist_ok=True)
        backend = "mesh" if mode == "mesh" else "silhouette"
        sku = f"{model.lower().replace('_', '-')}-{nv}"
        path = catalog_from_renders(views_dir, d / "catalog", sku,
                                    mesh=mv.model_source(model) if mode == "mesh" else None,
                                    labels_only=mode.startswith("labels"))
        spec = read_catalog(path).specs[0]
        state = AssetState(sku=spec.sku, spec=spec, store_uri=str(d / "store"), profile="ar",
                           backend=backend)
        r, calls, first = recipe(backend, {}, {"photo_carve": True} if "carve" in mode else None)
        shape = run_asset(state, dataclasses.replace(r, calls=tuple(calls[:first])))
        if not shape.ok:
            raise SystemExit(f"{model} {nv} {mode}: {shape.failure}")
        (d / "shape.pkl").write_bytes(pickle.dumps(shape))
    ctx = pickle.loads((d / "ctx.pkl").read_bytes()) if (d / "ctx.pkl").exists() else {}
    if "best" not in ctx or "shape" not in ctx:
        prims, truth = mv.truth_of(model, cams)
        dist = float((cams.get("views") or cams["cameras"])[0]["distance"])
        ctx["held"] = mv.held_out_views(prims, dist, model)
        raw = load_mesh(shape, "mesh")
        mesh = mv.normalised(raw)
        reg = mv.registered(raw, load_cameras(shape), [c for c, _, _ in inputs])
        start = mesh
        if reg is not None and (mv.image_scores(reg, None, inputs)["sil_iou"]
                                > mv.image_scores(mesh, None, inputs)["sil_iou"]):
            start = reg
        ctx["best"] = mv.refine_registration(start, inputs)
        ctx["shape"] = mv.shape_scores(mesh, truth["solid"], truth["points"])
        (d / "ctx.pkl").write_bytes(pickle.dumps(ctx))
    return shape, inputs, ctx


def main() -> None:
    from PIL import Image

    from assetfactory.core.artifacts import load_image
    from assetfactory.flows.runner import run_asset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="model:views:catalog, comma-separated")
    ap.add_argument("--variants", default='{"base": {}}', help="{name: texture options} JSON")
    ap.add_argument("--inputs", action="store_true", help="also score at the input views")
    ap.add_argument("--cache", default="texture_variants",
                    help="folder under benchmarks/out for the shapes (a new name after a change "
                    "of the stages before texture)")
    args = ap.parse_args()
    global CACHE
    CACHE = mv.OUT / args.cache
    variants = json.loads(args.variants)
    CACHE.mkdir(parents=True, exist_ok=True)
    for spec in args.cases.split(","):
        model, nv, mode = spec.split(":")
        shape, inputs, ctx = case(model, int(nv), mode)
        for name, tex in variants.items():
            r, calls, first = recipe(shape.backend, tex)
            t0 = time.perf_counter()
            done = run_asset(shape, dataclasses.replace(
                r, calls=tuple(c for c in calls[first:] if c.name in VARIANT_STAGES)))
            secs = time.perf_counter() - t0
            if not done.ok:
                print(json.dumps({"case": spec, "variant": name, "error": str(done.failure)}))
                continue
            img = load_image(done, "texture/base_color")[..., :3]
            held = mv.image_scores(ctx["best"], img, ctx["held"])
            held.update(mv.error_breakdown(ctx["best"], img, ctx["held"], inputs))
            row = {"model": model, "views": int(nv), "catalog": mode, "variant": name,
                   "texture_s": round(secs, 1), **{f"held_{k}": v for k, v in held.items()},
                   "factory_psnr": done.metrics.get("metrics_psnr_mean"),
                   "factory_ssim": done.metrics.get("metrics_ssim_mean"),
                   **ctx["shape"],
                   **{k: v for k, v in done.metrics.items()
                      if k in ("texture_observed_frac", "texture_delit")}}
            if args.inputs:
                row.update({f"in_{k}": v for k, v in
                            mv.image_scores(ctx["best"], img, inputs).items()})
            Image.fromarray(img).save(CACHE / f"{model}-{nv}-{mode}" / f"texture_{name}.png")
            line = json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                               for k, v in row.items()})
            print(line, flush=True)
            with open(CACHE / "results.jsonl", "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
