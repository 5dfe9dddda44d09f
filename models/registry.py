"""Backend registry: name -> config class, without filling anything as an import side effect.

Three sources, looked up in this order when a name is asked for:

1. names given to ``register`` at run time (tests, notebooks);
2. the built-ins, known by dotted path and imported only when asked for;
3. the ``assetfactory.backends`` entry-point group, so outside packages plug in a backend by
   declaring ``mybackend = mypkg.module:MyConfig`` in their own pyproject.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata

log = logging.getLogger(__name__)

GROUP = "assetfactory.backends"

#: Built-in backends by dotted path ("module:attribute"); imported lazily by ``find``.
BUILTINS: dict[str, str] = {
    "silhouette": "assetfactory.models.silhouette:SilhouetteConfig",
    "mesh": "assetfactory.models.mesh:MeshImportConfig",
    "shap-e": "assetfactory.models.shap_e:ShapEConfig",
    "hunyuan3d": "assetfactory.models.hunyuan3d:Hunyuan3DConfig",
    "http": "assetfactory.models.http:HttpConfig",
}

_registered: dict[str, type] = {}


class UnknownBackendError(KeyError):
    """No backend of that name; the message lists the ones available."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


def register(name: str, config_cls: type) -> None:
    """Make ``config_cls`` findable as ``name`` in this process (overrides a built-in)."""
    if not name or not isinstance(name, str):
        raise ValueError("backend name must be a non-empty string")
    if not hasattr(config_cls, "build"):
        raise TypeError(f"backend {name!r}: {config_cls!r} has no build() method")
    _registered[name] = config_cls


def unregister(name: str) -> None:
    """Forget a name given to ``register`` (tests use it to clean up)."""
    _registered.pop(name, None)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    try:
        eps = metadata.entry_points(group=GROUP)
    except Exception as exc:  # noqa: BLE001 - a broken distribution must not hide built-ins
        log.warning("registry: cannot read entry points %s: %s", GROUP, exc)
        return {}
    return {ep.name: ep for ep in eps}


def _load_dotted(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def available() -> list[str]:
    """Every backend name this process can find, without importing any backend."""
    return sorted(set(_registered) | set(BUILTINS) | set(_entry_points()))


def find(name: str) -> type:
    """The config class for ``name``; raises ``UnknownBackendError`` listing what exists."""
    if name in _registered:
        return _registered[name]
    if name in BUILTINS:
        return _load_dotted(BUILTINS[name])
    eps = _entry_points()
    if name in eps:
        try:
            return eps[name].load()
        except Exception as exc:
            raise ImportError(
                f"backend {name!r} is declared by entry point {eps[name].value!r} but failed to "
                f"import: {exc}. Install the package that provides it.") from exc
    raise UnknownBackendError(
        f"unknown generator backend {name!r}; available: {', '.join(available())}. "
        f"Plug in another through the {GROUP!r} entry-point group or registry.register().")
