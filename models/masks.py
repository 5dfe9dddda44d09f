"""Learned object masks for ingest: a segmentation model from a local weights folder.

The classical mask (``algorithms.masking.background_mask``) models the background as a smooth
colour field; it fails where the background is textured or shares the product's colour (a pink
armchair on a pink wall loses its back; a chest on a grey-brown gradient keeps part of it). A
segmentation network sees *what* the pixels are instead. Any ``transformers`` semantic
segmentation model saved with ``save_pretrained`` works (SegFormer, DPT, BEiT, MobileViT, ...):

* a two-label model (``background`` / object): the object is every pixel not labelled
  background;
* a scene-parsing model (e.g. SegFormer on ADE20K): the object is every pixel not of a
  background class (wall, floor, ceiling, sky, ... — ``DEFAULT_BACKGROUND``, overridable);
* a one-label model: the object is where its sigmoid exceeds 0.5.

The model's mask is used when it is plausible (covers between ``min_fraction`` and
``max_fraction`` of the photo); otherwise ingest falls back to the classical mask and flags the
photo ``learned_mask_fallback``. A photo with real transparency keeps its alpha as the mask.
Weights are never downloaded (``local_files_only``); remote code in a weights folder is
refused (``trust_remote_code`` stays off).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import MissingWeightsError
from ..core.stage import check
from . import learned
from .learned import WrongWeightsError

log = logging.getLogger(__name__)

ENV_VAR = "ASSETFACTORY_MASK_WEIGHTS"
#: Scene-parsing classes that are never the product in a product photo.
DEFAULT_BACKGROUND = ("background", "wall", "floor", "flooring", "ceiling", "sky", "ground",
                      "earth", "road", "sidewalk", "grass", "field", "sand", "water", "sea",
                      "mountain", "building", "windowpane")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class MaskModelConfig:
    """A segmentation model for ingest's object masks.

    weights: local folder (``config.json``, ``preprocessor_config.json``, the weights) or a repo
        id in the local Hugging Face cache (``$ASSETFACTORY_MASK_WEIGHTS`` overrides both).
    device: "cpu" (ingest runs in CPU tasks), "auto", "cuda" or "cuda:N".
    background_labels: labels counted as background (case-insensitive); empty = the defaults.
    min_fraction, max_fraction: plausible object share of the photo; outside it, fall back.
    """

    weights: str
    device: str = "cpu"
    revision: str | None = None
    background_labels: tuple[str, ...] = ()
    min_fraction: float = 0.002
    max_fraction: float = 0.98
    expected_sha256: str | None = None

    def __post_init__(self) -> None:
        check(bool(self.weights), "mask model: weights must name a folder or repo id")
        learned.check_device(self.device, "mask model")
        check(0.0 <= self.min_fraction < self.max_fraction <= 1.0,
              "mask model: need 0 <= min_fraction < max_fraction <= 1")

    def load_weights(self) -> learned.Weights:
        return learned.load_weights(self.weights, ENV_VAR, self.revision, _files,
                                    self.expected_sha256, "mask model",
                                    root_files=("config.json",))

    def preflight(self) -> str:
        for module in ("torch", "transformers"):
            if importlib.util.find_spec(module) is None:
                learned.require(module, "mask model")
        return self.load_weights().digest


def _files(root: Path) -> list[str]:
    files = ["config.json"]
    if not (root / "preprocessor_config.json").is_file():
        raise MissingWeightsError(
            f"mask model: the weights folder {root} has no preprocessor_config.json (the image "
            "processor saved with the model); copy the complete model folder there")
    files.append("preprocessor_config.json")
    for name in _WEIGHTS:
        if (root / name).is_file():
            return files + [name]
        index = root / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
            return files + [index.name] + shards
    raise learned.missing_file(root, "mask model", "model weights", list(_WEIGHTS))


class MaskModel:
    """A loaded segmentation model; ``__call__`` gives one photo's object mask."""

    def __init__(self, config: MaskModelConfig) -> None:
        self.config = config
        self.torch = learned.require("torch", "mask model")
        transformers = learned.require("transformers", "mask model")
        self.weights = config.load_weights()
        self.choice = learned.choose_device(config.device, True, "mask model")
        learned.quiet_progress_bars()
        root = str(self.weights.root)
        try:
            self.processor = transformers.AutoImageProcessor.from_pretrained(
                root, local_files_only=True)
            self.model = transformers.AutoModelForSemanticSegmentation.from_pretrained(
                root, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise WrongWeightsError(
                f"mask model: {root} is not a transformers semantic-segmentation model "
                f"({type(exc).__name__}: {str(exc)[:300]}); use a folder saved with "
                "save_pretrained from e.g. SegformerForSemanticSegmentation") from exc
        self.model.to(self.choice.device).eval()
        labels = {int(k): str(v).strip().lower()
                  for k, v in (self.model.config.id2label or {}).items()}
        background = {b.lower() for b in (config.background_labels or DEFAULT_BACKGROUND)}
        self.n_labels = int(self.model.config.num_labels)
        self.background_ids = sorted(i for i, name in labels.items() if name in background)
        if self.n_labels > 1 and not self.background_ids:
            raise WrongWeightsError(
                f"mask model: none of {root}'s labels {sorted(labels.values())[:12]} is a "
                f"background class ({sorted(background)[:6]}...); set background_labels")
        log.info("mask model: %s on %s, %d labels, background %s", root, self.choice.device,
                 self.n_labels, [labels[i] for i in self.background_ids])

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) bool: True on the product."""
        torch = self.torch
        h, w = rgb.shape[:2]
        inputs = self.processor(images=np.asarray(rgb, np.uint8)[..., :3], return_tensors="pt")
        inputs = {k: v.to(self.choice.device) for k, v in inputs.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float()
            logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear",
                                                     align_corners=False)[0]
        if self.n_labels == 1:
            return (torch.sigmoid(logits[0]) > 0.5).cpu().numpy()
        labels = logits.argmax(dim=0).cpu().numpy()
        return ~np.isin(labels, self.background_ids)

    def object_mask(self, rgb: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
        """The model's mask, or None with a flag when it is implausible (caller falls back)."""
        mask = self(rgb)
        frac = float(mask.mean())
        if not self.config.min_fraction <= frac <= self.config.max_fraction:
            log.info("mask model: object share %.4f outside [%g, %g]: classical mask used",
                     frac, self.config.min_fraction, self.config.max_fraction)
            return None, ["learned_mask_fallback"]
        return mask, []


@functools.lru_cache(maxsize=2)
def load_mask_model(config: MaskModelConfig) -> MaskModel:
    """One loaded model per config per process (ingest calls it for every photo)."""
    return MaskModel(config)
