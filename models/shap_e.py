"""Shap-E image-to-3D through diffusers' ``ShapEImg2ImgPipeline``, mesh output.

The pipeline's prior turns the product photo (CLIP image embedding) into the latent of an
implicit function; the renderer projects that latent into the weights of a small MLP whose
signed distance field diffusers meshes with its marching cubes (``decode_to_mesh``), with
per-vertex colours from the same MLP. We ask the pipeline for the latents and call
``decode_to_mesh`` ourselves only to choose the grid size (the pipeline fixes it at 128).

Weights: the diffusers layout of ``openai/shap-e-img2img`` (``model_index.json``, ``prior/``,
``image_encoder/``, ``image_processor/``, ``scheduler/``, ``shap_e_renderer/``), from a local
folder or the local Hugging Face cache; never downloaded (``local_files_only``).

Shap-E meshes are Z-up with the front facing -Y (as its own pan cameras and diffusers' docs
show); ``up_axis``/``front_axis`` rotate them into the project's +Y up, front +Z, and the mesh is
turned to face the camera of the photo it was made from.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core.errors import MissingWeightsError, ProcessingError
from ..core.stage import check
from . import learned
from .base import DenseMesh, GenerateRequest
from .learned import WrongWeightsError

log = logging.getLogger(__name__)

PIPELINE_CLASS = "ShapEImg2ImgPipeline"
ENV_VAR = "ASSETFACTORY_SHAP_E_WEIGHTS"
_WEIGHT_STEMS = ("diffusion_pytorch_model", "model")


@dataclass(frozen=True)
class ShapEConfig(learned.LearnedConfig):
    """Options of the Shap-E backend.

    weights: a local folder in diffusers' layout, or a Hugging Face repo id looked up in the
        local cache only (``$ASSETFACTORY_SHAP_E_WEIGHTS`` overrides both).
    revision: the cache revision (branch or commit) when ``weights`` is a repo id.
    variant: weight-file variant to load (e.g. "fp16" for ``*.fp16.safetensors``); None loads
        the full-precision files.
    expected_sha256: pin: the run fails before any work if the weights' manifest differs.
    device: "auto" (the GPU when torch sees one), "cuda", "cuda:N" or "cpu".
    dtype: "auto" (float16 on a GPU, float32 on the CPU), "float32", "float16", "bfloat16".
    allow_cpu_fallback: without a GPU run on the CPU (flagged) instead of failing the run.
    steps, guidance_scale: the prior's sampling steps and classifier-free guidance
        (diffusers' example: 64 and 3.0).
    mesh_grid_size: SDF samples per side for marching cubes (diffusers' default 128).
    query_batch_size: SDF points per MLP call (memory against speed).
    max_batch: SKUs sampled together in one ``generate_batch`` call.
    up_axis, front_axis: the model's own axes (Shap-E: +z up, front -y).
    num_gpus, num_cpus, memory_mb: what one model actor needs (scheduler resources).
    """

    name: ClassVar[str] = "shap-e"
    weights: str = "openai/shap-e-img2img"
    steps: int = 64
    guidance_scale: float = 3.0
    max_batch: int = 4
    up_axis: str = "+z"
    front_axis: str = "-y"
    mesh_grid_size: int = 128
    query_batch_size: int = 4096

    def _check(self) -> None:
        check(8 <= self.mesh_grid_size <= 512, "shap-e: mesh_grid_size not in 8..512")
        check(self.query_batch_size >= 64, "shap-e: query_batch_size must be >= 64")

    def load_weights(self) -> learned.Weights:
        """The weights folder, checked and hashed (cached per process)."""
        return learned.load_weights(self.weights, ENV_VAR, self.revision,
                                    lambda root: diffusers_files(root, self.variant, self.name),
                                    self.expected_sha256, self.name,
                                    root_files=("model_index.json",))

    def build(self) -> ShapEGenerator:
        return ShapEGenerator(self)


def diffusers_files(root: Path, variant: str | None, backend: str) -> list[str]:
    """The files ``DiffusionPipeline.from_pretrained`` reads from a diffusers folder.

    Per component of ``model_index.json``: its JSON configs, and for a model (a folder with a
    ``config.json``) the weights of the chosen variant, sharded or not.
    """
    try:
        index = json.loads((root / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WrongWeightsError(f"{backend}: {root / 'model_index.json'} is unreadable ({exc}); "
                                "copy the complete diffusers folder again") from exc
    cls = index.get("_class_name")
    if cls != PIPELINE_CLASS:
        raise WrongWeightsError(
            f"{backend}: {root} holds a {cls!r} pipeline, not {PIPELINE_CLASS!r} (image to 3D). "
            "Use the diffusers weights of openai/shap-e-img2img.")
    files = ["model_index.json"]
    for component, spec in sorted(index.items()):
        if component.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        folder = root / component
        if not folder.is_dir():
            raise MissingWeightsError(
                f"{backend}: the weights folder {root} lacks the component folder {component}/ "
                "named in model_index.json; copy the complete model there")
        files += [f"{component}/{p.name}" for p in sorted(folder.glob("*.json"))
                  if not p.name.endswith(".index.json")]
        if (folder / "config.json").is_file():
            files += _weight_files(root, component, variant, backend)
    return files


def _weight_files(root: Path, component: str, variant: str | None, backend: str) -> list[str]:
    infix = f".{variant}" if variant else ""
    candidates = [f"{component}/{stem}{infix}.{ext}" for ext in ("safetensors", "bin")
                  for stem in _WEIGHT_STEMS]
    for name in candidates:
        if (root / name).is_file():
            return [name]
        index = root / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
            return [f"{name}.index.json"] + [f"{component}/{s}" for s in shards]
    others = sorted(p.name for p in (root / component).glob("*.safetensors")) + sorted(
        p.name for p in (root / component).glob("*.bin"))
    hint = ""
    if others and not variant and any(".fp16." in o for o in others):
        hint = " (the folder has fp16 files only: set variant='fp16')"
    elif others and variant:
        hint = f" (the folder has {others}: set variant to match, or None for the full files)"
    err = learned.missing_file(root, backend, f"weights for {component}", candidates)
    raise MissingWeightsError(str(err) + hint)


class ShapEGenerator(learned.BatchedGenerator):
    """Holds the loaded pipeline; ``generate``/``generate_batch`` serve any number of SKUs."""

    def __init__(self, config: ShapEConfig) -> None:
        self.config = config
        torch = learned.require("torch", config.name)
        diffusers = learned.require("diffusers", config.name)
        learned.require("transformers", config.name)
        self.weights = config.load_weights()
        self.choice = learned.choose_device(config.device, config.allow_cpu_fallback,
                                            config.name)
        self.dtype = learned.torch_dtype(config.dtype, self.choice.device)
        learned.make_deterministic(self.choice.device)
        learned.quiet_progress_bars()
        try:
            with warnings.catch_warnings():  # newer diffusers renamed torch_dtype to dtype
                warnings.filterwarnings("ignore", ".*torch_dtype.*", FutureWarning)
                pipe = diffusers.ShapEImg2ImgPipeline.from_pretrained(
                    str(self.weights.root), local_files_only=True, torch_dtype=self.dtype,
                    variant=config.variant)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise WrongWeightsError(
                f"shap-e: the weights in {self.weights.root} could not be loaded as "
                f"{PIPELINE_CLASS} ({type(exc).__name__}: {str(exc)[:400]}); copy the complete "
                "diffusers weights of openai/shap-e-img2img there") from exc
        if not bool(pipe.shap_e_renderer.mesh_decoder.masks.any()):
            raise WrongWeightsError(
                f"shap-e: the renderer in {self.weights.root} has an empty marching-cubes table "
                "(shap_e_renderer weights incomplete or converted without it); copy the "
                "renderer weights of openai/shap-e-img2img again")
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.choice.device)
        self.torch = torch
        self.rotation = learned.to_project_frame(config.up_axis, config.front_axis)
        self.info = learned.runtime_info(self.choice, self.dtype, self.weights,
                                         ("torch", "diffusers", "transformers"))
        log.info("shap-e: loaded %s on %s (%s), weights sha256 %s", self.weights.root,
                 self.choice.device, self.info["dtype"], self.weights.digest[:12])

    def _batch(self, requests: list[GenerateRequest]) -> list[DenseMesh]:
        cfg = self.config
        views = [learned.conditioning_view(r, cfg.name) for r in requests]
        images = [learned.rgb_on_white(v) for v in views]
        gens = [learned.generator_for(r.seed, self.choice.device) for r in requests]
        # A tensor batch: the pipeline encodes only the first image of a list of PIL images.
        pixels = self.pipe.image_processor(images, return_tensors="pt").pixel_values
        with self.torch.inference_mode():
            latents = self.pipe(pixels, generator=gens, num_inference_steps=cfg.steps,
                                guidance_scale=cfg.guidance_scale, output_type="latent").images
            results = []
            for request, view, latent in zip(requests, views, latents):
                raw = self.pipe.shap_e_renderer.decode_to_mesh(
                    latent[None], self.choice.device, grid_size=cfg.mesh_grid_size,
                    query_batch_size=cfg.query_batch_size)
                results.append(self._dense(request, view, raw))
        return results

    def _dense(self, request: GenerateRequest, view: Any, raw: Any) -> DenseMesh:
        verts = raw.verts.detach().float().cpu().numpy()
        faces = raw.faces.detach().cpu().numpy()
        if len(faces) == 0:
            raise ProcessingError(
                f"Shap-E found no surface for the {view.label} photo (an empty shape)",
                "try another seed or photo, or the silhouette backend")
        colors = learned.colors_from_channels(raw.vertex_channels, len(verts))
        rotation = learned.yaw(view.camera.azimuth_deg) @ self.rotation
        mesh = learned.place_generated(verts, faces, rotation, colors)
        info = {**self.info, "method": "shap-e", "view": view.label, "seed": request.seed,
                "steps": self.config.steps, "raw_faces": len(faces)}
        log.info("%s generate/shap-e: %s photo -> %d faces on %s", request.sku, view.label,
                 mesh.n_faces, self.choice.device)
        return DenseMesh(mesh=mesh, cameras=[v.camera for v in request.views], info=info)

