"""The Khronos glTF-Validator, called from Python.

Why Node: the reference validator (the one Khronos, Google's Scene Viewer and the 3D Commerce
certification use) ships as the npm package ``gltf-validator``; re-implementing its checks
would drift. ``core/gltf_validate.mjs`` feeds it the GLB on stdin and prints the report as
JSON. The npm package comes from ``npm ci`` in the project folder (package.json pins it).

``node_modules`` is found through ``ASSETFACTORY_NODE_MODULES`` (the folder itself or one that
holds it), else by walking up from this file (an editable install or a checkout), else in the
current directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "gltf-validator"
SCRIPT = Path(__file__).with_name("gltf_validate.mjs")
SEVERITIES = ("error", "warning", "info", "hint")   # the validator's severity 0..3


@dataclass(frozen=True)
class GltfReport:
    """Counts per severity and the validator's messages (code, message, severity, pointer)."""

    errors: int
    warnings: int
    infos: int
    hints: int
    messages: list[dict] = field(default_factory=list)
    truncated: bool = False
    validator_version: str = ""

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def first(self, severity: str = "error", n: int = 5) -> list[str]:
        """Readable lines for the first ``n`` messages of a severity."""
        level = SEVERITIES.index(severity)
        picked = [m for m in self.messages if m.get("severity") == level][:n]
        return [f"{m.get('code', '?')}: {m.get('message', '')} at "
                f"{m.get('pointer', m.get('offset', '?'))}" for m in picked]


def _candidates() -> list[Path]:
    env = os.environ.get("ASSETFACTORY_NODE_MODULES")
    found: list[Path] = []
    if env:
        found += [Path(env), Path(env) / "node_modules"]
    here = Path(__file__).resolve().parent
    found += [p / "node_modules" for p in (here, *here.parents)]
    found.append(Path.cwd() / "node_modules")
    return found


def find_node_modules() -> Path:
    """The ``node_modules`` folder that holds ``gltf-validator``."""
    for cand in _candidates():
        if (cand / PACKAGE / "package.json").is_file():
            return cand
    raise RuntimeError(
        f"the npm package {PACKAGE!r} was not found (looked in $ASSETFACTORY_NODE_MODULES, "
        "above the assetfactory package and in the current directory): run `npm ci` in the "
        "project folder, or point ASSETFACTORY_NODE_MODULES at a node_modules that has it")


def find_node() -> str:
    node = os.environ.get("ASSETFACTORY_NODE") or shutil.which("node")
    if not node:
        raise RuntimeError("Node.js was not found on PATH: install Node.js 18 or newer "
                           "(or set ASSETFACTORY_NODE to its executable)")
    return node


def parse_report(report: dict) -> GltfReport:
    issues = report.get("issues", {})
    return GltfReport(
        errors=int(issues.get("numErrors", 0)), warnings=int(issues.get("numWarnings", 0)),
        infos=int(issues.get("numInfos", 0)), hints=int(issues.get("numHints", 0)),
        messages=list(issues.get("messages", [])), truncated=bool(issues.get("truncated", False)),
        validator_version=str(report.get("validatorVersion", "")))


def validate_gltf(data: bytes, max_issues: int = 200, timeout_s: float = 120.0) -> GltfReport:
    """Validate GLB (or glTF JSON) bytes with the Khronos validator.

    Raises ``RuntimeError`` when Node or the npm package is missing or the validator crashes:
    that is a setup problem, not a property of the asset.
    """
    cmd = [find_node(), str(SCRIPT), str(find_node_modules()), str(int(max_issues))]
    try:
        proc = subprocess.run(cmd, input=bytes(data), check=False, capture_output=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"glTF-Validator took longer than {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"glTF-Validator failed (exit {proc.returncode}): {err}")
    report = parse_report(json.loads(proc.stdout))
    log.debug("glTF-Validator: %d errors, %d warnings", report.errors, report.warnings)
    return report
