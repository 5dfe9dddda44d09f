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

from ..core.errors import OptionsError
from ..core.hashing import sha256_obj
from ..core.stage import Stage
from ..core.types import Resources


@dataclass(frozen=True)
class Profile:
    """What an output profile asks of an asset (see ARCHITECTURE.md, Output profiles).

    Every stage option that depends on the budget or the texture size is derived from these
    fields in ``build_recipe``, so overriding one (``--target-tris``, ``--texture-px``)
    reaches every stage it concerns.
    """

    name: str
    target_tris: int
    texture_px: int
    max_glb_mb: float
    outputs: tuple[str, ...]
    description: str = ""
    lods: tuple[int, ...] = ()   # LOD1, LOD2... triangle budgets at this target_tris

    def __post_init__(self) -> None:
        if not (isinstance(self.target_tris, int) and self.target_tris >= 4):
            raise OptionsError(f"target_tris must be an integer >= 4, got {self.target_tris!r}",
                               stage="profile")
        px = self.texture_px
        if not (isinstance(px, int) and 64 <= px <= 8192 and px & (px - 1) == 0):
            raise OptionsError(f"texture_px must be a power of two in 64..8192, got {px!r}",
                               stage="profile")
        if not self.max_glb_mb > 0:
            raise OptionsError(f"max_glb_mb must be > 0, got {self.max_glb_mb!r}",
                               stage="profile")


PROFILES: dict[str, Profile] = {
    "ar": Profile("ar", 23_000, 2048, 5.0, ("glb", "usdz", "poster"),
                  "web viewers, AR Quick Look, Scene Viewer"),
    "web": Profile("web", 23_000, 1024, 3.0, ("glb", "poster"), "product pages"),
    "game": Profile("game", 23_000, 2048, 20.0, ("glb", "poster"), "engines (LOD0)",
                    (8000, 2500)),
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
    #: ``flows.preflight.preflight``; part of the identity, so new weights re-make the assets.
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
    return stage.options(**{k: v for k, v in wanted.items() if v is not None})


def profile_with(name: str, changes: dict[str, Any] | None = None) -> Profile:
    """The named profile with some fields changed (``target_tris``, ``texture_px``, ...);
    LOD budgets keep their share of the triangle budget."""
    if name not in PROFILES:
        raise OptionsError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}",
                           stage="profile")
    p = PROFILES[name]
    changes = {k: v for k, v in (changes or {}).items() if v is not None}
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Profile)})
    if unknown:
        raise OptionsError(f"unknown profile field(s) {', '.join(unknown)}", stage="profile")
    if "target_tris" in changes and "lods" not in changes and p.lods:
        scale = changes["target_tris"] / p.target_tris
        lods = tuple(max(4, round(n * scale)) for n in p.lods)
        changes["lods"] = tuple(n for i, n in enumerate(lods)
                                if n < changes["target_tris"] and (i == 0 or n < lods[i - 1]))
    return dataclasses.replace(p, **changes)


def build_recipe(profile: str = "ar", backend: str = "silhouette",
                 overrides: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """Expand a profile into stage calls. ``overrides`` maps stage name -> option values; the
    key ``"profile"`` changes profile fields instead (``{"profile": {"texture_px": 512}}``),
    from which every dependent stage option is derived (the uv and bake resolution, the
    texture and export size, the simplify budget, the export LODs)."""
    overrides = dict(overrides or {})
    p = profile_with(profile, overrides.pop("profile", None))
    wanted: dict[str, dict[str, Any]] = {
        "generate": {"backend": backend},
        # holes are closed where the profile needs closed parts; print rejects what stays open
        "cleanup": {"fill_holes": profile in ("ar", "print"), "require_closed": profile == "print"},
        "simplify": {"target_tris": p.target_tris,
                     **({"collision_hulls": 16} if profile == "game" else {})},
        "uv": {"resolution": min(p.texture_px, 2048)},
        "bake": {"size": min(p.texture_px, 2048)},
        "texture": {"size": p.texture_px},
        "export": {"texture_size": p.texture_px, "max_glb_mb": p.max_glb_mb,
                   "write_poster": "poster" in p.outputs, "write_usdz": "usdz" in p.outputs,
                   "lods": p.lods},
    }
    for name, opts in overrides.items():
        if name not in STAGE_ORDER:
            raise OptionsError(f"overrides name an unknown stage {name!r}; the stages are "
                               f"{', '.join(STAGE_ORDER)}", stage="recipe")
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
