"""The validators every exported file passes: Khronos glTF-Validator (GLB), USD's (USDZ).

Why Node: the reference validator (the one Khronos, Google's Scene Viewer and the 3D Commerce
certification use) ships as the npm package ``gltf-validator``; re-implementing its checks
would drift. ``core/gltf_validate.mjs`` feeds it the GLB on stdin and prints the report as
JSON. The npm package comes from ``npm ci`` in the project folder (package.json pins it).

``node_modules`` is found through ``ASSETFACTORY_NODE_MODULES`` (the folder itself or one that
holds it), else by walking up from this file (an editable install or a checkout), else in the
current directory.

USDZ: ``validate_usdz`` runs, through ``pxr.UsdValidation``, the validator groups that
``usdchecker`` runs in OpenUSD 25+ (usd-core 26 ships no ``usdchecker`` binary), plus the
ARKit-only rules of the former ``usdchecker --arkit``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import struct
import subprocess
import threading
import time
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


class _Server:
    """One long-lived Node process per Python process that validates file after file.

    Starting Node and loading the validator costs ~0.2 s, as much as the rest of exporting a
    small asset; a served process pays it once. Requests are serialised by a lock; a process
    that dies or overruns its time is ended, and the next request starts a fresh one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._cmd: list[str] = []

    def _start(self) -> subprocess.Popen:
        # looked up on every call (two stats): a missing setup is reported, never masked
        cmd = [find_node(), str(SCRIPT), str(find_node_modules()), "--serve"]
        if cmd != self._cmd or self._proc is None or self._proc.poll() is not None:
            self.stop()
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
            self._cmd = cmd
        return self._proc

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _read(self, proc: subprocess.Popen, n: int, deadline: float) -> bytes:
        out = bytearray()
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return bytes(out)

    def validate(self, data: bytes, max_issues: int, timeout_s: float) -> dict:
        with self._lock:
            proc = self._start()
            deadline = time.monotonic() + timeout_s
            try:
                pipe = proc.stdin
                assert pipe is not None
                pipe.write(struct.pack("<II", len(data), int(max_issues)) + data)
                pipe.flush()
                size = struct.unpack("<I", self._read(proc, 4, deadline))[0]
                answer = json.loads(self._read(proc, size, deadline))
            except TimeoutError:
                self.stop()
                raise RuntimeError(f"glTF-Validator took longer than {timeout_s:.0f} s") from None
            except (EOFError, BrokenPipeError, OSError) as exc:
                code = proc.poll()
                self.stop()
                raise RuntimeError(f"glTF-Validator failed (exit {code}): {exc}") from exc
        if "error" in answer and "issues" not in answer:
            raise RuntimeError(f"glTF-Validator failed: {answer['error']}")
        return answer


_SERVER = _Server()


def validate_gltf(data: bytes, max_issues: int = 200, timeout_s: float = 120.0) -> GltfReport:
    """Validate GLB (or glTF JSON) bytes with the Khronos validator.

    Raises ``RuntimeError`` when Node or the npm package is missing or the validator crashes:
    that is a setup problem, not a property of the asset.
    """
    report = parse_report(_SERVER.validate(bytes(data), max_issues, timeout_s))
    log.debug("glTF-Validator: %d errors, %d warnings", report.errors, report.warnings)
    return report


def validate_gltf_once(data: bytes, max_issues: int = 200, timeout_s: float = 120.0
                       ) -> GltfReport:
    """``validate_gltf`` in a Node process of its own (what the served mode is checked against)."""
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


# ---------------------------------------------------------------------------- USDZ

#: The validator groups ``usdchecker`` runs (OpenUSD 25+; usd-core ships no usdchecker binary).
USD_KEYWORDS = ("UsdCoreValidators", "UsdGeomValidators", "UsdShadeValidators", "UsdzValidators")
#: Extra validators ``usdchecker`` runs on every file.
USD_VALIDATORS = ("usdUtilsValidators:MissingReferenceValidator",)
#: What AR Quick Look accepts inside a package, and the only shaders it understands.
ARKIT_FILE_TYPES = {"usdc", "usda", "usd", "png", "jpg", "jpeg", "m4a", "mp3", "wav"}
ARKIT_SHADERS = {"UsdPreviewSurface", "UsdUVTexture", "UsdTransform2d", "UsdPrimvarReader_float",
                 "UsdPrimvarReader_float2", "UsdPrimvarReader_float3", "UsdPrimvarReader_float4",
                 "UsdPrimvarReader_int", "UsdPrimvarReader_string", "UsdPrimvarReader_normal",
                 "UsdPrimvarReader_point", "UsdPrimvarReader_vector", "UsdPrimvarReader_matrix"}


@dataclass(frozen=True)
class UsdReport:
    """Errors and warnings of the USD validators (``usdchecker --arkit`` equivalent)."""

    errors: int
    warnings: int
    messages: list[str] = field(default_factory=list)
    validators: int = 0

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def first(self, n: int = 5) -> list[str]:
        return self.messages[:n]


def validate_usdz(path: str | os.PathLike) -> UsdReport:
    """Run the validators ``usdchecker --arkit`` runs on a ``.usdz`` file, plus ARKit's rules
    (file types inside the package, UsdPreviewSurface-family shaders only, upAxis and
    metersPerUnit authored, a defaultPrim).

    Messages read ``ERROR|WARNING <validator>: <message>``; errors come first. Raises
    ``RuntimeError`` when usd-core is not installed (a setup problem, not the asset's).
    """
    try:
        from pxr import Usd, UsdValidation
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("usd-core is not installed: pip install usd-core") from exc
    path = Path(path)
    errors: list[str] = []
    warnings: list[str] = []
    try:
        stage = Usd.Stage.Open(str(path))
    except Exception as exc:  # noqa: BLE001 - pxr raises Tf.ErrorException for bad packages
        stage, why = None, " ".join(str(exc).split())[-300:]
    else:
        why = ""
    if stage is None:
        return UsdReport(1, 0, [f"ERROR open: USD cannot open {path.name}: {why}"])
    registry = UsdValidation.ValidationRegistry()
    validators = list(registry.GetOrLoadValidatorsByName(list(USD_VALIDATORS)))
    for kw in USD_KEYWORDS:
        for meta in registry.GetValidatorMetadataForKeyword(kw):
            v = registry.GetOrLoadValidatorByName(meta.name)
            if v is not None and v not in validators:
                validators.append(v)
    ctx = UsdValidation.ValidationContext(validators)
    for err in ctx.Validate(stage):
        if err.HasNoError():
            continue
        name = err.GetValidator().GetMetadata().name if err.GetValidator() else err.GetName()
        line = f"{name}: {err.GetMessage()}"
        kind = err.GetType()
        if kind == UsdValidation.ValidationErrorType.Error:
            errors.append(f"ERROR {line}")
        elif kind == UsdValidation.ValidationErrorType.Warn:
            warnings.append(f"WARNING {line}")
    errors += [f"ERROR arkit: {m}" for m in _arkit_rules(path, stage)]
    return UsdReport(len(errors), len(warnings), errors + warnings, len(validators))


def _arkit_rules(path: Path, stage) -> list[str]:
    """The ARKit-only checks of the old ``usdchecker --arkit`` (ComplianceChecker(arkit=True))."""
    import zipfile

    from pxr import UsdGeom, UsdShade

    problems = []
    if path.suffix.lower() == ".usdz":
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                ext = info.filename.rsplit(".", 1)[-1].lower()
                if ext not in ARKIT_FILE_TYPES:
                    problems.append(f"file type .{ext} of {info.filename} is not allowed")
                if info.compress_type != zipfile.ZIP_STORED:
                    problems.append(f"{info.filename} is compressed; USDZ must store files")
    layer = stage.GetRootLayer()
    if not layer.HasDefaultPrim() or not stage.GetDefaultPrim():
        problems.append("no defaultPrim")
    if not stage.HasAuthoredMetadata("upAxis"):
        problems.append("upAxis is not authored")
    if not stage.HasAuthoredMetadata("metersPerUnit"):
        problems.append("metersPerUnit is not authored")
    elif UsdGeom.GetStageMetersPerUnit(stage) <= 0:
        problems.append("metersPerUnit must be > 0")
    for prim in stage.Traverse():
        if prim.IsA(UsdShade.Shader):
            sid = UsdShade.Shader(prim).GetIdAttr().Get()
            if sid not in ARKIT_SHADERS:
                problems.append(f"shader {prim.GetPath()} has id {sid!r}, which ARKit ignores")
    return problems
