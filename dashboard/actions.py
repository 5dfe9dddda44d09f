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

def thresholds(detail) -> dict[str, list[Threshold]]:
    """Lines to draw on the runs page's histograms: the triage rules that judged the run (the
    rules in force now when it has no verdicts yet), on the metrics they judge."""
    from .data import KEY_METRICS

    rules = detail.rules
    if not rules:
        from ..catalog.rules import load_rules

        rules = load_rules().describe()
    out: dict[str, list[Threshold]] = {}
    for label, (col, div) in KEY_METRICS.items():
        for rule in rules:
            if rule.get("metric") != col or rule.get("op") not in ("<", "<=", ">", ">="):
                continue
            if rule.get("profiles") and detail.profile not in rule["profiles"]:
                continue
            value = rule.get("threshold")
            if rule.get("threshold_metric"):
                base = detail.budgets.get(rule["threshold_metric"])
                value = None if base is None else base * float(rule.get("scale") or 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            v = value / div
            shown = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
            out.setdefault(label, []).append(Threshold(
                v, f"{rule['verdict']} if {rule['op']} {shown}", rule.get("verdict", "review")))
    return out


def reasons(row: dict[str, Any]) -> list[str]:
    """Why an asset is in the queue, as short lines (the verdict's reasons, worst first)."""
    raw = row.get("reasons")
    out = [s.strip() for s in raw.split("; ")] if isinstance(raw, str) and raw else []
    if row.get("status") == "failed" and not any(s.startswith("failed at") for s in out):
        out.insert(0, f"failed at {row.get('failed_stage') or '?'}: {row.get('error') or ''}")
    return [s for s in out if s]


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

def record_decisions(cat: Catalog, body: dict[str, Any], default_reviewer: str | None = None
                     ) -> dict[str, Any]:
    """Record one decision per SKU through ``catalog.reviews.record_decision`` (the rows
    ``assetfactory review`` writes, with ``source = "dashboard"``)."""
    from ..catalog.reviews import ReviewError, parse_overrides, record_decision, reviewer_name
    from ..catalog.views import Catalog as CatalogViews

    decision = body.get("decision")
    if decision not in DECISIONS:
        raise DecisionError(f"decision must be one of {', '.join(DECISIONS)}")
    skus = body.get("skus")
    if not isinstance(skus, list) or not skus or not all(isinstance(s, str) for s in skus):
        raise DecisionError("skus must be a non-empty list of SKUs")
    if len(skus) > MAX_SELECTION:
        raise DecisionError(f"at most {MAX_SELECTION} SKUs per request")
    attempts = body.get("attempt_ids")
    if attempts is not None and (not isinstance(attempts, list) or len(attempts) != len(skus)):
        raise DecisionError("attempt_ids, when given, must name one attempt per SKU")
    items = body.get("overrides") or []
    if isinstance(items, str):
        items = [items]
    note = body.get("note")
    try:
        who = reviewer_name(str(body.get("reviewer") or "").strip() or default_reviewer)
        overrides = parse_overrides([str(i) for i in items]) if items else {}
    except ReviewError as exc:
        raise DecisionError(str(exc)) from None
    written, refused = [], []
    # a fresh view of the files, not the page's snapshot: a decision must land on the attempt
    # that is current now (record_decision refuses one that a newer attempt replaced)
    with CatalogViews(cat.root) as fresh:
        for i, sku in enumerate(skus):
            try:
                written.append(record_decision(
                    fresh, sku, decision, reviewer=who, note=str(note) if note else None,
                    overrides=overrides or None, source="dashboard",
                    attempt_id=attempts[i] if attempts else None))
            except ReviewError as exc:
                refused.append({"sku": sku, "reason": str(exc)})
    cat.add_reviews(written)
    out: dict[str, Any] = {"recorded": len(written), "refused": refused,
                           "review_ids": [w["review_id"] for w in written],
                           "decision": decision, "reviewer": who}
    if decision == "rework" and written and body.get("start_reprocess", True):
        out["reprocess"] = start_reprocess(cat, {})
    return out


def start_reprocess(cat: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    """Start ``assetfactory reprocess --reworks`` for the open rework decisions, once at a time:
    while one runs, another request is remembered and started when it ends (so two never pick
    the same rework)."""
    with _jobs_lock:
        running = [j for j in _jobs if j["proc"].poll() is None]
        if running:
            _pending.add(cat.root)
            job = running[-1]
            return {k: v for k, v in job.items() if k != "proc"} | {"queued_after": job["id"]}
    return _spawn(["reprocess", "--reworks", "--out", cat.root], "reprocess open reworks",
                  cat.root)


_jobs: list[dict[str, Any]] = []
_jobs_lock = threading.Lock()
_pending: set[str] = set()


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


def _spawn(args: list[str], what: str, root: str) -> dict[str, Any]:
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

    def follow_up() -> None:
        proc.wait()
        with _jobs_lock:
            again = root in _pending
            _pending.discard(root)
        if again:
            _spawn(args, what, root)

    threading.Thread(target=follow_up, name="reprocess-watch", daemon=True).start()
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
