"""Preflight: what a recipe needs on this machine, checked once when a run starts.

Without it a missing tool or model shows up deep inside a stage, once per SKU (every asset of a
10,000-row catalog failing export with the same "Node.js was not found", or generate with the
same missing weights folder). Here, before any work:

* each external tool the recipe will use (Node + the glTF-Validator, EGL, usd-core) is checked;
* each learned model it uses (the generate backend, ingest's mask model) is checked without
  loading it: libraries importable, weights folder complete, pinned digest matching; the
  weights' digests are added to the recipe, so they join every asset's identity.

``preflight`` returns the checked recipe. A lone model problem raises the model's own error
(``MissingWeightsError`` naming the folder and the files expected, ``MissingDependencyError``
naming the extra to install); missing tools, with or without a model problem, raise one
``PreflightError`` listing each with its fix.
"""

from __future__ import annotations

import dataclasses

from ..core.errors import MissingWeightsError, PreflightError
from .recipe import Recipe, generate_config


def _options(recipe: Recipe, name: str):
    for call in recipe.calls:
        if call.name == name:
            return call.options
    return None


def needs(recipe: Recipe) -> dict[str, str]:
    """Tool -> the stage(s) that need it, for this recipe."""
    out: dict[str, list[str]] = {}
    export = _options(recipe, "export")
    if export is not None and export.validate:
        out.setdefault("gltf-validator", []).append("export")
    if export is not None and export.write_usdz:
        out.setdefault("usd", []).append("export")
    render = []
    if _options(recipe, "bake") is not None:
        render.append("bake")
    if _options(recipe, "texture") is not None:
        render.append("texture")
    if export is not None and export.write_poster:
        render.append("export")
    metrics = _options(recipe, "metrics")
    if metrics is not None and metrics.iou_views != "none":
        render.append("metrics")
    cleanup = _options(recipe, "cleanup")
    if cleanup is not None and cleanup.remove_interior and cleanup.visibility_method == "render":
        render.append("cleanup")
    if render:
        out["egl"] = render
    return {tool: ", ".join(stages) for tool, stages in out.items()}


def _check_gltf_validator() -> str | None:
    from ..core.validate import find_node, find_node_modules

    try:
        find_node()
        find_node_modules()
    except RuntimeError as exc:
        return str(exc)
    return None


def _check_usd() -> str | None:
    try:
        from pxr import Usd, UsdValidation  # noqa: F401
    except ImportError as exc:
        return f"usd-core is not importable ({exc}): pip install usd-core"
    return None


def _check_egl() -> str | None:
    from ..geometry.render import get_renderer

    try:
        get_renderer()
    except Exception as exc:  # noqa: BLE001 - any EGL/driver failure means: no GL here
        return (f"no headless OpenGL context ({type(exc).__name__}: {exc}); install Mesa's EGL "
                "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri), or run on a machine with a GPU")
    return None


CHECKS = {"gltf-validator": ("Node.js + the Khronos glTF-Validator", _check_gltf_validator),
          "usd": ("usd-core (USDZ writing and validation)", _check_usd),
          "egl": ("headless OpenGL (EGL)", _check_egl)}


def check_tools(recipe: Recipe) -> list[tuple[str, str]]:
    """(what is missing and which stages need it, how to install it) for each external tool
    the recipe needs that this machine lacks."""
    problems = []
    for tool, stages in needs(recipe).items():
        what, check = CHECKS[tool]
        why = check()
        if why:
            problems.append((f"{what}, needed by {stages}", why))
    return problems


def check_models(recipe: Recipe) -> Recipe:
    """Check that the recipe's models can run here (libraries importable, weights complete,
    pinned digests matching) without loading them; raise the backend's error otherwise.
    Returns the recipe with the weights' digests added to its identity."""
    from ..models.base import preflight as backend_preflight

    digests: dict[str, str] = {}
    config = generate_config(recipe)
    if config is not None:
        digest = backend_preflight(config)
        if digest:
            digests["generate"] = digest
    ingest = _options(recipe, "ingest")
    if ingest is not None and getattr(ingest, "mask_model", ""):
        from ..models.masks import MaskModelConfig

        digests["ingest.mask_model"] = MaskModelConfig(
            ingest.mask_model, device=ingest.mask_device).preflight()
    return dataclasses.replace(recipe, weights=tuple(sorted(digests.items())))


def preflight(recipe: Recipe) -> Recipe:
    """Check every external tool and learned model the recipe needs, once, before any work.

    Returns the recipe with its weights' digests (see ``check_models``). Raises one
    ``PreflightError`` listing each missing tool (and a model problem found beside them), or,
    when only a model is the problem, that model's own error.
    """
    from ..models.learned import MissingDependencyError

    problems = check_tools(recipe)
    try:
        checked = check_models(recipe)
    except (MissingWeightsError, MissingDependencyError) as exc:
        if not problems:
            raise
        problems.append(("a learned model the recipe uses", str(exc)))
        raise PreflightError(problems) from exc
    if problems:
        raise PreflightError(problems)
    return checked
