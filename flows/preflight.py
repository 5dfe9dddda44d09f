"""Preflight: the external tools a recipe needs, checked once when a run starts.

Without it a missing tool shows up deep inside a stage, once per SKU (every asset of a
10,000-row catalog failing export with the same "Node.js was not found"). Here each tool the
recipe will use is checked once, before any work, and every missing one is listed with how to
install it, in one ``PreflightError``.
"""

from __future__ import annotations

from .recipe import Recipe


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


def preflight(recipe: Recipe) -> None:
    """Check every external tool the recipe needs; raise one ``PreflightError`` listing each
    missing tool, the stages that need it and how to install it."""
    from ..core.errors import PreflightError

    problems = []
    for tool, stages in needs(recipe).items():
        what, check = CHECKS[tool]
        why = check()
        if why:
            problems.append((f"{what}, needed by {stages}", why))
    if problems:
        raise PreflightError(problems)
