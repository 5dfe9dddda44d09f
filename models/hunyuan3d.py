"""Hunyuan3D-2 shape generation through ``hy3dgen``'s ``Hunyuan3DDiTFlowMatchingPipeline``.

A DINOv2 image encoder conditions a flow-matching DiT that samples a latent shape set; the
ShapeVAE decodes it to an occupancy field on an octree-resolution grid, meshed by marching
cubes. We take that raw mesh (``output_type="mesh"``) and leave ``hy3dgen``'s postprocessors
(floater and degenerate-face removal, face reduction through temporary files) to our own
cleanup and simplify stages, which every backend shares.

Weights are the checkpoint folders of the Hugging Face repos (``tencent/Hunyuan3D-2mini`` ->
``hunyuan3d-dit-v2-mini/config.yaml`` and ``model.fp16.safetensors``), from a local folder or the
local hub cache. ``hy3dgen``'s own ``from_pretrained`` downloads what it does not find, so it is
never called: the checkpoint is loaded with ``from_single_file`` from the resolved paths, after
checking that the config names only ``hy3dgen`` classes and carries the image encoder's
architecture inline (an encoder named by hub id would be fetched).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core.errors import MissingWeightsError, ProcessingError
from ..core.stage import check
from . import learned
from .base import DenseMesh, GenerateRequest
from .learned import WrongWeightsError

log = logging.getLogger(__name__)

ENV_VAR = "ASSETFACTORY_HUNYUAN3D_WEIGHTS"
_SECTIONS = ("model", "vae", "conditioner", "scheduler", "image_processor")
_CHECKPOINT_PARTS = ("model", "vae", "conditioner")


@dataclass(frozen=True)
class Hunyuan3DConfig(learned.LearnedConfig):
    """Options of the Hunyuan3D-2 backend.

    weights: a local folder holding ``subfolder``, or a repo id looked up in the local Hugging
        Face cache only (``$ASSETFACTORY_HUNYUAN3D_WEIGHTS`` overrides both).
    subfolder: the checkpoint inside it (``hunyuan3d-dit-v2-mini``, ``-fast``, ``-turbo``,
        ``hunyuan3d-dit-v2-0`` in ``tencent/Hunyuan3D-2``, ...).
    variant: checkpoint file variant: "fp16" -> ``model.fp16.safetensors``; None -> ``model.*``.
    use_safetensors: load ``.safetensors`` (else ``.ckpt``).
    expected_sha256: pin: the run fails before any work if the weights' manifest differs.
    device, dtype, allow_cpu_fallback: as for every learned backend (see ``models.learned``).
    steps: flow-matching steps (hy3dgen's default 50; the turbo checkpoints need ~5).
    guidance_scale: classifier-free guidance (hy3dgen's default 5.0).
    octree_resolution: occupancy grid per side (hy3dgen's default 384; 256 is plenty for the
        profiles' triangle budgets and much lighter).
    num_chunks: grid points decoded per VAE call (memory against speed).
    mc_level: the occupancy iso-level meshed (hy3dgen's default 0).
    box_v: half-size of the decoded box (hy3dgen's default 1.01).
    max_batch: SKUs sampled together in one ``generate_batch`` call.
    up_axis, front_axis: the model's own axes (+y up; front +z assumed, as its GLBs open in
        glTF viewers facing the viewer).
    num_gpus, num_cpus, memory_mb: what one model actor needs (scheduler resources).
    """

    LIBRARIES: ClassVar[tuple[str, ...]] = ("torch", "diffusers", "transformers", "hy3dgen",
                                            "einops", "yaml")
    name: ClassVar[str] = "hunyuan3d"
    weights: str = "tencent/Hunyuan3D-2mini"
    variant: str | None = "fp16"
    max_batch: int = 2
    subfolder: str = "hunyuan3d-dit-v2-mini"
    use_safetensors: bool = True
    octree_resolution: int = 256
    num_chunks: int = 8000
    mc_level: float = 0.0
    box_v: float = 1.01

    def _check(self) -> None:
        check(16 <= self.octree_resolution <= 1024, "hunyuan3d: octree_resolution not in 16..1024")
        check(self.num_chunks >= 64, "hunyuan3d: num_chunks must be >= 64")
        check(0.1 <= self.box_v <= 10.0, "hunyuan3d: box_v not in 0.1..10")
        check(bool(self.subfolder) and ".." not in Path(self.subfolder).parts,
              "hunyuan3d: subfolder must be a folder name inside the weights")

    @property
    def checkpoint_name(self) -> str:
        ext = "safetensors" if self.use_safetensors else "ckpt"
        return f"model{'.' + self.variant if self.variant else ''}.{ext}"

    def _files(self, root: Path) -> list[str]:
        folder = root / self.subfolder
        if not folder.is_dir():
            raise MissingWeightsError(
                f"hunyuan3d: the weights folder {root} has no {self.subfolder}/ checkpoint "
                f"folder (expected {self.subfolder}/config.yaml and "
                f"{self.subfolder}/{self.checkpoint_name}); copy it there (weights are never "
                "downloaded at run time)")
        return [f"{self.subfolder}/config.yaml", f"{self.subfolder}/{self.checkpoint_name}"]

    def load_weights(self) -> learned.Weights:
        """The checkpoint folder, checked and hashed (cached per process)."""
        weights = learned.load_weights(self.weights, ENV_VAR, self.revision, self._files,
                                       self.expected_sha256, self.name)
        check_config(weights.path(f"{self.subfolder}/config.yaml"))
        return weights

    def build(self) -> Hunyuan3DGenerator:
        return Hunyuan3DGenerator(self)


def check_config(path: Path) -> dict:
    """The checkpoint's config.yaml, refused when loading it would run foreign code or fetch.

    ``hy3dgen`` instantiates every ``target`` it names (any importable class), and an image
    encoder given by hub id (``version``) instead of an inline ``config`` would be downloaded.
    """
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WrongWeightsError(f"hunyuan3d: {path} is not readable YAML ({exc}); copy the "
                                "checkpoint folder again") from exc
    if not isinstance(config, dict) or any(s not in config for s in _SECTIONS):
        raise WrongWeightsError(
            f"hunyuan3d: {path} is not a Hunyuan3D-2 shape config (it needs the sections "
            f"{list(_SECTIONS)}); point subfolder at a hunyuan3d-dit-* checkpoint")
    for section in _SECTIONS:
        target = str((config[section] or {}).get("target", ""))
        if not target.startswith("hy3dgen.shapegen."):
            raise WrongWeightsError(
                f"hunyuan3d: {path} section {section!r} names {target!r}; only hy3dgen.shapegen "
                "classes are loaded (a config naming other code is refused)")
    params = config["conditioner"].get("params") or {}
    for key, encoder in params.items():
        kwargs = (encoder or {}).get("kwargs") or {}
        if not isinstance(kwargs.get("config"), dict):
            raise WrongWeightsError(
                f"hunyuan3d: {path}: the image encoder {key!r} has no inline 'config' (it names "
                f"{kwargs.get('version')!r}, which hy3dgen would download); use the published "
                "checkpoint's config.yaml")
    return config


@contextlib.contextmanager
def _quiet_hy3dgen():
    """hy3dgen logs every load at INFO through its own handler; keep it to warnings."""
    logger = logging.getLogger("hy3dgen.shapgen")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


def import_pipeline():
    """``Hunyuan3DDiTFlowMatchingPipeline``, importable without torchvision (see tv_transforms).
    """
    from .tv_transforms import shim

    learned.require("einops", "hunyuan3d")
    # These probe for torchvision on first import and must not meet the shim.
    learned.require("diffusers.utils.torch_utils", "hunyuan3d")
    transformers = learned.require("transformers", "hunyuan3d")
    transformers.Dinov2Model, transformers.CLIPVisionModelWithProjection  # noqa: B018 - import now
    with shim():
        module = learned.require("hy3dgen.shapegen.pipelines", "hunyuan3d")
        learned.require("hy3dgen.shapegen.models", "hunyuan3d")
    logging.getLogger("hy3dgen.shapgen").setLevel(logging.WARNING)
    return module.Hunyuan3DDiTFlowMatchingPipeline


def _checkpoint_parts(path: Path, use_safetensors: bool) -> set[str]:
    if not use_safetensors:
        return set(_CHECKPOINT_PARTS)  # a .ckpt must be unpickled to list its keys
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return {k.split(".", 1)[0] for k in fh.keys()}  # noqa: SIM118 - safe_open is not a dict


class Hunyuan3DGenerator(learned.BatchedGenerator):
    """Holds the loaded pipeline; ``generate``/``generate_batch`` serve any number of SKUs."""

    def __init__(self, config: Hunyuan3DConfig) -> None:
        self.config = config
        self.torch = learned.require("torch", config.name)
        pipeline_cls = import_pipeline()
        self.weights = config.load_weights()
        ckpt = self.weights.path(f"{config.subfolder}/{config.checkpoint_name}")
        cfg_path = self.weights.path(f"{config.subfolder}/config.yaml")
        parts = _checkpoint_parts(ckpt, config.use_safetensors)
        missing = [p for p in _CHECKPOINT_PARTS if p not in parts]
        if missing:
            raise WrongWeightsError(
                f"hunyuan3d: {ckpt} has no weights for {missing} (it holds {sorted(parts)}); "
                "without them those parts would stay randomly initialised. Copy the published "
                "checkpoint there")
        self.choice = learned.choose_device(config.device, config.allow_cpu_fallback,
                                            config.name)
        self.dtype = learned.torch_dtype(config.dtype, self.choice.device)
        learned.make_deterministic(self.choice.device)
        try:
            with _quiet_hy3dgen():
                self.pipe = pipeline_cls.from_single_file(
                    str(ckpt), str(cfg_path), device=self.choice.device, dtype=self.dtype,
                    use_safetensors=config.use_safetensors)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise WrongWeightsError(
                f"hunyuan3d: {ckpt} does not load with {cfg_path} ({type(exc).__name__}: "
                f"{str(exc)[:400]}); the checkpoint and config.yaml must come from the same "
                "published folder") from exc
        self.rotation = learned.to_project_frame(config.up_axis, config.front_axis)
        self.info = learned.runtime_info(self.choice, self.dtype, self.weights,
                                         ("torch", "hy3dgen", "diffusers", "transformers"))
        log.info("hunyuan3d: loaded %s on %s (%s), weights sha256 %s", ckpt,
                 self.choice.device, self.info["dtype"], self.weights.digest[:12])

    def _batch(self, requests: list[GenerateRequest]) -> list[DenseMesh]:
        cfg = self.config
        views = [learned.conditioning_view(r, cfg.name) for r in requests]
        images = [learned.rgba_image(v) for v in views]
        gens = [learned.generator_for(r.seed, self.choice.device) for r in requests]
        with _quiet_hy3dgen():
            raws = self.pipe(image=images, num_inference_steps=cfg.steps,
                             guidance_scale=cfg.guidance_scale,
                             generator=gens if len(gens) > 1 else gens[0],
                             octree_resolution=cfg.octree_resolution, num_chunks=cfg.num_chunks,
                             mc_level=cfg.mc_level, box_v=cfg.box_v, output_type="mesh",
                             enable_pbar=False)
        return [self._dense(r, v, raw) for r, v, raw in zip(requests, views, raws)]

    def _dense(self, request: GenerateRequest, view: Any, raw: Any) -> DenseMesh:
        if raw is None or raw.mesh_f is None or len(raw.mesh_f) == 0:
            raise ProcessingError(
                f"Hunyuan3D found no surface for the {view.label} photo (its occupancy field "
                f"never crosses level {self.config.mc_level})",
                "try another seed or photo, or the silhouette backend")
        # hy3dgen flips the marching-cubes winding when it exports (export_to_trimesh).
        faces = raw.mesh_f[:, ::-1]
        rotation = learned.yaw(view.camera.azimuth_deg) @ self.rotation
        mesh = learned.place_generated(raw.mesh_v, faces, rotation)
        info = {**self.info, "method": "hunyuan3d", "view": view.label, "seed": request.seed,
                "steps": self.config.steps, "octree_resolution": self.config.octree_resolution,
                "raw_faces": len(faces)}
        log.info("%s generate/hunyuan3d: %s photo -> %d faces on %s", request.sku, view.label,
                 mesh.n_faces, self.choice.device)
        return DenseMesh(mesh=mesh, cameras=[v.camera for v in request.views], info=info)
