"""What the dashboard asks of the catalog's QA loop: thresholds, reasons, decisions, reprocess.

The decisions and the reprocess flow belong to ``catalog`` (the same rows and the same flow as
``assetfactory review`` and ``assetfactory reprocess``); this module only adapts a request to
them and keeps track of the reprocess processes it started.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .charts import Threshold
from .data import Catalog

DECISIONS = ("approve", "reject", "rework")
MAX_SELECTION = 5000


class DecisionError(ValueError):
    """A decision request the catalog cannot record (said in words the reviewer can act on)."""


# ---------------------------------------------------------------------- thresholds, reasons

def thresholds(cat: Catalog, profile: str | None) -> dict[str, list[Threshold]]:
    """Lines to draw on the runs page's histograms: the profile's budgets."""
    from ..flows.recipe import PROFILES

    out: dict[str, list[Threshold]] = {}
    p = PROFILES.get(profile or "")
    if p is not None:
        out["triangles"] = [Threshold(p.target_tris, f"budget {p.target_tris:,}", "fail")]
        out["file size (MB)"] = [Threshold(p.max_glb_mb, f"budget {p.max_glb_mb:g} MB", "fail")]
    return out


def reasons(row: dict[str, Any]) -> list[str]:
    """Why an asset is in the queue, as short lines."""
    out: list[str] = []
    raw = row.get("reasons") or row.get("verdict_reasons")
    if raw:
        try:
            val = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            val = [raw]
        out += [str(v) for v in (val if isinstance(val, list) else [val])]
    if row.get("status") == "failed":
        out.insert(0, f"failed at {row.get('failed_stage') or '?'}: {row.get('error') or ''}")
    return out


@functools.lru_cache(maxsize=1)
def override_help() -> dict[str, list[str]]:
    """Stage -> option names a rework may override (for the form's hints)."""
    import dataclasses

    from ..flows.recipe import STAGE_ORDER, resolve_stage

    out = {}
    for name in STAGE_ORDER:
        st = resolve_stage(f"assetfactory.tasks.{name}:{name}")
        out[name] = [f.name for f in dataclasses.fields(st.options_type)]
    return out


# ---------------------------------------------------------------------- decisions

def record_decisions(cat: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    raise DecisionError("recording decisions needs the catalog's review API")


def start_reprocess(cat: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    raise DecisionError("reprocessing needs the catalog's reprocess flow")


_jobs: list[dict[str, Any]] = []
_jobs_lock = threading.Lock()


def reprocess_jobs() -> list[dict[str, Any]]:
    with _jobs_lock:
        out = []
        for j in _jobs:
            proc = j["proc"]
            rc = proc.poll()
            out.append({k: v for k, v in j.items() if k != "proc"} |
                       {"running": rc is None, "returncode": rc,
                        "log_tail": _tail(j["log"])})
        return out


def _tail(path: str, n: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - n))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _spawn(args: list[str], what: str) -> dict[str, Any]:
    """Run an ``assetfactory`` command in the background, its output in a log file."""
    fd, log = tempfile.mkstemp(prefix="assetfactory-reprocess-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "assetfactory", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    job = {"id": len(_jobs) + 1, "what": what, "args": args, "pid": proc.pid,
           "started": time.time(), "log": log, "proc": proc}
    with _jobs_lock:
        _jobs.append(job)
    return {k: v for k, v in job.items() if k != "proc"}


# ---------------------------------------------------------------------- validators

def validator_reports(cat: Catalog, attempt_id: str, glb_key: str) -> dict[str, Any]:
    """The glTF-Validator and USD validator messages for one attempt's files, cached."""
    key = f"dashboard/reports/{attempt_id}/validators.json"
    if cat.store.exists(key):
        return json.loads(cat.store.get(key))
    from ..core.validate import validate_gltf, validate_usdz

    report: dict[str, Any] = {}
    try:
        g = validate_gltf(cat.store.get(glb_key))
        report["gltf"] = {"errors": g.errors, "warnings": g.warnings, "infos": g.infos,
                          "hints": g.hints, "validator": g.validator_version,
                          "messages": g.messages[:200]}
    except (RuntimeError, OSError) as exc:
        report["gltf"] = {"unavailable": str(exc)}
    usdz_key = glb_key[:-4] + ".usdz"
    if glb_key.endswith(".glb") and cat.store.exists(usdz_key):
        try:
            local = cat.store.local_path(usdz_key)
            if local is None:
                with tempfile.TemporaryDirectory() as tmp:
                    local_tmp = Path(tmp) / Path(usdz_key).name
                    local_tmp.write_bytes(cat.store.get(usdz_key))
                    u = validate_usdz(local_tmp)
            else:
                u = validate_usdz(local)
            report["usdz"] = {"errors": u.errors, "warnings": u.warnings,
                              "validators": u.validators, "messages": u.messages[:200]}
        except RuntimeError as exc:
            report["usdz"] = {"unavailable": str(exc)}
    cat.store.put(key, json.dumps(report, indent=1, default=str).encode(), "application/json")
    return report
