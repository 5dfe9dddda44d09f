"""Output profiles and the recipes (ordered stage calls) they expand to.

A recipe is data: the stage's import path plus its frozen options. Its hash, with the stage
versions, is part of every asset's identity, so changing a profile or an option re-makes exactly
the assets it affects.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

from ..core.hashing import sha256_obj
from ..core.stage import Stage
from ..core.types import Resources


@dataclass(frozen=True)
class Profile:
    """What an output profile asks of an asset (see ARCHITECTURE.md, Output profiles)."""

    name: str
    target_tris: int
    texture_px: int
    max_glb_mb: float
    outputs: tuple[str, ...]
    description: str = ""


PROFILES: dict[str, Profile] = {
    "ar": Profile("ar", 23_000, 2048, 5.0, ("glb", "usdz", "poster"),
                  "web viewers, AR Quick Look, Scene Viewer"),
    "web": Profile("web", 23_000, 1024, 3.0, ("glb", "poster"), "product pages"),
    "game": Profile("game", 23_000, 2048, 20.0, ("glb", "poster"), "engines (LOD0)"),
    "print": Profile("print", 100_000, 1024, 50.0, ("glb", "poster"), "3D printing"),
    "render": Profile("render", 500_000, 4096, 200.0, ("glb", "poster"), "offline renders"),
}

STAGE_ORDER = ("ingest", "generate", "cleanup", "simplify", "uv", "bake", "texture", "export",
               "metrics")


@dataclass(frozen=True)
class StageCall:
    name: str
    path: str          # "module:attribute" of the Stage object
    options: Any

    def stage(self) -> Stage:
        return resolve_stage(self.path)


@dataclass(frozen=True)
class Recipe:
    profile: str
    backend: str
    calls: tuple[StageCall, ...] = field(default_factory=tuple)
    #: (what, sha256 manifest digest) of the learned models the recipe uses, set by
    #: ``preflight``; part of the identity, so new weights re-make the assets.
    weights: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict[str, Any]:
        out = {
            "profile": self.profile,
            "backend": self.backend,
            "stages": [{"name": c.name, "version": c.stage().version,
                        "options": dataclasses.asdict(c.options)} for c in self.calls],
        }
        if self.weights:  # absent for weight-free recipes: their identities stay as they were
            out["weights"] = dict(self.weights)
        return out

    @property
    def hash(self) -> str:
        return sha256_obj(self.describe())


def resolve_stage(path: str) -> Stage:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _make_options(stage: Stage, wanted: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(stage.options_type)}
    return stage.options(**{k: v for k, v in wanted.items() if k in names and v is not None})


def build_recipe(profile: str = "ar", backend: str = "silhouette",
                 overrides: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """Expand a profile into stage calls. ``overrides`` maps stage name -> option values."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    p = PROFILES[profile]
    wanted: dict[str, dict[str, Any]] = {
        "generate": {"backend": backend},
        # holes are closed where the profile needs closed parts; print rejects what stays open
        "cleanup": {"fill_holes": profile in ("ar", "print"), "require_closed": profile == "print"},
        "simplify": {"target_tris": p.target_tris,
                     **({"lods": (8000, 2500), "collision_hulls": 16} if profile == "game" else {})},
        "uv": {"resolution": min(p.texture_px, 2048)},
        "bake": {"size": min(p.texture_px, 2048)},
        "texture": {"size": p.texture_px},
        "export": {"texture_size": p.texture_px, "max_glb_mb": p.max_glb_mb,
                   "write_poster": "poster" in p.outputs, "write_usdz": "usdz" in p.outputs},
    }
    for name, opts in (overrides or {}).items():
        wanted.setdefault(name, {}).update(opts)
    calls = []
    for name in STAGE_ORDER:
        path = f"assetfactory.tasks.{name}:{name}"
        st = resolve_stage(path)
        calls.append(StageCall(name, path, _make_options(st, wanted.get(name, {}))))
    return Recipe(profile, backend, tuple(calls))


def _call(recipe: Recipe, name: str) -> StageCall | None:
    return next((c for c in recipe.calls if c.name == name), None)


def generate_config(recipe: Recipe) -> Any:
    """The backend config the recipe's generate stage builds for rows without a mesh."""
    from ..tasks.generate import backend_config

    call = _call(recipe, "generate")
    return None if call is None else backend_config(call.options.backend, call.options)


def preflight(recipe: Recipe) -> Recipe:
    """Check, before any SKU is touched, that the recipe's models can run here: libraries
    importable, weights complete, pinned digests matching. Raises the backend's error
    (``MissingWeightsError`` names the folder and files expected). Returns the recipe with the
    weights' digests added to its identity."""
    from ..models.base import preflight as backend_preflight

    digests: dict[str, str] = {}
    config = generate_config(recipe)
    if config is not None:
        digest = backend_preflight(config)
        if digest:
            digests["generate"] = digest
    ingest = _call(recipe, "ingest")
    if ingest is not None and getattr(ingest.options, "mask_model", ""):
        from ..models.masks import MaskModelConfig

        digests["ingest.mask_model"] = MaskModelConfig(
            ingest.options.mask_model, device=ingest.options.mask_device).preflight()
    return dataclasses.replace(recipe, weights=tuple(sorted(digests.items())))


def call_resources(call: StageCall) -> Resources:
    """A stage call's scheduler resources: the stage's own, or for generate its backend's
    (a learned backend asks for its GPU)."""
    resources = call.stage().resources
    if call.name == "generate":
        from ..models.base import backend_resources
        from ..tasks.generate import backend_config

        needs = backend_resources(backend_config(call.options.backend, call.options))
        resources = Resources(cpus=max(resources.cpus, needs.cpus), gpus=needs.gpus,
                              memory_mb=max(resources.memory_mb, needs.memory_mb))
    return resources
