"""The layer rule of ARCHITECTURE.md, checked on every import statement in the package
(top-level and inside functions): each layer imports only the layers below it, a stage never
imports another stage, and nothing below ``flows`` imports Prefect, Ray or DuckDB."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: folder -> (package, the assetfactory packages it may import)
LAYERS = {
    "core": ("core", {"core"}),
    "geometry": ("geometry", {"core", "geometry"}),
    "algorithms": ("algorithms", {"core", "geometry", "algorithms"}),
    "models": ("models", {"core", "geometry", "algorithms", "models"}),
    "tasks": ("tasks", {"core", "geometry", "algorithms", "models", "tasks"}),
}
ORCHESTRATION = ("prefect", "ray", "duckdb")


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["assetfactory", *parts])


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None or node.level and not node.module:
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, target))
    return out


def _files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_each_layer_imports_only_the_layers_below(folder):
    _, allowed = LAYERS[folder]
    bad = []
    for path in _files(folder):
        for line, target in _imports(path):
            parts = target.split(".")
            if parts[0] == "assetfactory" and len(parts) > 1 and parts[1] not in allowed:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
            if parts[0] in ORCHESTRATION:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target} (orchestration "
                           "belongs in flows/)")
    assert not bad, "layer rule broken:\n" + "\n".join(bad)


def test_a_stage_never_imports_another_stage():
    bad = []
    for path in _files("tasks"):
        me = _module(path)
        for line, target in _imports(path):
            parts = target.split(".")
            if parts[:2] == ["assetfactory", "tasks"] and len(parts) > 2 \
                    and ".".join(parts[:3]) != me:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "stages importing stages:\n" + "\n".join(bad)


def test_the_check_sees_imports():
    """The parser resolves relative imports (so the rule cannot pass by seeing nothing)."""
    found = {t: n for n, t in _imports(REPO / "tasks" / "cleanup.py")}
    assert "assetfactory.algorithms.holes" in found
    assert "assetfactory.core.mesh" in found
    assert any(t.startswith("assetfactory.geometry.") for t in found)
