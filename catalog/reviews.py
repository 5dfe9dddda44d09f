"""Review decisions: approve, reject or rework (with option overrides), as rows.

A decision is about one attempt (the SKU's current attempt when it was made) and is never
changed; a later decision on the same attempt wins. A ``rework`` decision stays *open* while its
attempt is still the SKU's current one; ``reprocess --reworks`` re-runs it with its overrides,
and the new attempt (pointing back through ``supersedes``) closes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.storage import open_storage
from .fragments import REVIEW_SCHEMA, new_attempt_id, parquet_bytes, rows_table
from .views import Catalog, open_catalog

DECISIONS = ("approve", "reject", "rework")
REVIEWER_ENV = "ASSETFACTORY_REVIEWER"


class ReviewError(ValueError):
    """A decision that cannot be recorded; the message says why and what to do."""


def reviewer_name(flag: str | None = None) -> str:
    """The reviewer: the flag, else ``$ASSETFACTORY_REVIEWER``; a decision needs a name."""
    name = (flag or os.environ.get(REVIEWER_ENV) or "").strip()
    if not name:
        raise ReviewError(f"a decision needs a named reviewer: pass --reviewer NAME or set "
                          f"{REVIEWER_ENV}")
    return name


def parse_value(text: str) -> Any:
    """An option value from the command line: a TOML literal (1024, 0.5, true, [1, 2],
    "text") or, failing that, the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["simplify.target_tris=5000", "texture.size=1024"]`` -> {stage: {option: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, option = key.strip().partition(".")
        if not sep or not dot or not stage or not option:
            raise ReviewError(f"--set {item!r}: write STAGE.OPTION=VALUE, e.g. "
                              "--set simplify.target_tris=5000")
        out.setdefault(stage, {})[option] = parse_value(value.strip())
    return out


def check_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> None:
    """Every STAGE.OPTION must exist and its value must pass the options' own validation."""
    from ..core.errors import OptionsError
    from ..flows.recipe import STAGE_ORDER, resolve_stage

    for stage_name, opts in overrides.items():
        if stage_name == "profile":    # profile fields: every dependent option follows
            from ..flows.recipe import profile_with

            try:
                if "name" in opts:
                    raise ValueError("the profile itself is not an option; its fields are "
                                     "target_tris, texture_px, max_glb_mb, lods")
                profile_with("ar", normalise(opts))
            except (OptionsError, ValueError, TypeError) as exc:
                raise ReviewError(f"--set profile.*: {exc}") from None
            continue
        if stage_name not in STAGE_ORDER:
            raise ReviewError(f"--set {stage_name}.*: no stage {stage_name!r}; stages are "
                              f"{', '.join(STAGE_ORDER)} (or profile.target_tris, "
                              "profile.texture_px, profile.max_glb_mb)")
        st = resolve_stage(f"assetfactory.tasks.{stage_name}:{stage_name}")
        fields = {f.name: f for f in dataclasses.fields(st.options_type)}
        for name in opts:
            if name not in fields:
                raise ReviewError(f"--set {stage_name}.{name}: {stage_name} has no option "
                                  f"{name!r}; it has {', '.join(sorted(fields))}")
        try:
            st.options(**normalise(opts))
        except (OptionsError, ValueError, TypeError) as exc:
            raise ReviewError(f"--set {stage_name}.*: {exc}") from None


def normalise(opts: Mapping[str, Any]) -> dict[str, Any]:
    """JSON and TOML give lists; frozen options hold tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}


def current_attempt(cat: Catalog, sku: str) -> dict[str, Any] | None:
    rows = cat.rows("SELECT * FROM attempts WHERE sku = ? "
                    "ORDER BY finished_at DESC, attempt_id DESC LIMIT 1", [sku])
    return rows[0] if rows else None


def record_decision(root: str | Catalog, sku: str, decision: str, *, reviewer: str,
                    note: str | None = None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None,
                    attempt_id: str | None = None, source: str = "api") -> dict[str, Any]:
    """Record a decision on the SKU's current attempt and return the row written.

    ``attempt_id``, when given (the dashboard passes the attempt it showed), must still be the
    current one, so a decision is never silently applied to an attempt nobody looked at.
    """
    if decision not in DECISIONS:
        raise ReviewError(f"decision {decision!r}: use one of {', '.join(DECISIONS)}")
    if not reviewer or not reviewer.strip():
        raise ReviewError(f"{sku}: a decision needs a named reviewer")
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    if overrides and decision != "rework":
        raise ReviewError(f"{sku}: --set goes with rework (the overrides of the re-run), "
                          f"not with {decision}")
    if overrides:
        check_overrides(overrides)
    cat, mine = open_catalog(root)
    try:
        cur = current_attempt(cat, sku)
        if cur is None:
            raise ReviewError(f"no SKU {sku!r} in the catalog under {cat.root}; check the "
                              "spelling (assetfactory triage lists the SKUs)")
        if attempt_id is not None and attempt_id != cur["attempt_id"]:
            raise ReviewError(f"{sku}: attempt {attempt_id} is no longer the current one "
                              f"({cur['attempt_id']} is newer); review the current attempt")
        if decision == "approve" and cur["status"] != "ok":
            raise ReviewError(f"{sku}: the current attempt failed at {cur['failed_stage']} "
                              f"({cur['error']}); it has nothing to approve. Reject it or "
                              "ask for rework")
        verdict = cat.rows("SELECT verdict FROM current_verdicts WHERE attempt_id = ?",
                           [cur["attempt_id"]])
        row = {
            "review_id": new_attempt_id(), "sku": sku, "attempt_id": cur["attempt_id"],
            "run_id": cur["run_id"], "asset_id": cur["asset_id"], "decision": decision,
            "note": note or None, "overrides": json.dumps(overrides, sort_keys=True),
            "reviewer": reviewer.strip(), "decided_at": int(time.time() * 1000),
            "source": source, "verdict": verdict[0]["verdict"] if verdict else None,
        }
        open_storage(cat.root).put(f"catalog/reviews/{row['review_id']}.parquet",
                                   parquet_bytes(rows_table([row], REVIEW_SCHEMA)))
        return row
    finally:
        if mine:
            cat.close()


def open_reworks(root: str | Catalog) -> list[dict[str, Any]]:
    """Rework decisions whose attempt is still its SKU's current one, with their overrides."""
    cat, mine = open_catalog(root)
    try:
        rows = cat.rows("""
            SELECT sku, attempt_id, run_id, review_id, reviewer, review_note AS note,
                   review_overrides AS overrides, profile, backend, catalog_source, recipe
            FROM open_reworks ORDER BY sku""")
        for r in rows:
            r["overrides"] = json.loads(r["overrides"] or "{}")
        return rows
    finally:
        if mine:
            cat.close()
