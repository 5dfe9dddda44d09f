"""Which attempts a reprocess re-does, and with which options.

Three selections, combinable: a run's failures (still current), the SKUs a SQL condition over
the ``queue`` view selects, and the open ``rework`` decisions. Each selected SKU becomes one
``ReprocessItem`` naming the attempt it supersedes, why, and the option overrides of its re-run:
the overrides its old attempt ran with (its recipe compared with the profile's defaults), then
the rework decision's, then the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .reviews import normalise
from .views import Catalog, open_catalog

_ITEM_COLS = ("sku, attempt_id, run_id, profile, backend, catalog_source, recipe, status, "
              "failed_stage")


@dataclass(frozen=True)
class ReprocessItem:
    """One SKU to convert again."""

    sku: str
    attempt_id: str                      # the attempt the new one supersedes
    trigger: str                         # failures:<run> | where:<sql> | rework:<review_id>
    profile: str
    backend: str
    catalog_source: str
    recipe: str                          # the old attempt's recipe (JSON)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def select_for_reprocess(root: str | Catalog, *, failures_of: str | None = None,
                         where: str | None = None, reworks: bool = False,
                         overrides: Mapping[str, Mapping[str, Any]] | None = None,
                         ) -> list[ReprocessItem]:
    """The items to re-run, one per SKU (a rework's overrides win over a plain selection)."""
    if not (failures_of or where or reworks):
        raise ValueError("say what to reprocess: a run's failures (--failures RUN), a SQL "
                         "selection (--where ...) or the open rework decisions (--reworks)")
    cat, mine = open_catalog(root)
    try:
        picked: dict[str, tuple[dict[str, Any], str, dict]] = {}
        if failures_of:
            for r in cat.rows(f"SELECT {_ITEM_COLS} FROM queue WHERE run_id = ? "
                              "AND status = 'failed' ORDER BY sku", [failures_of]):
                picked[r["sku"]] = (r, f"failures:{failures_of}", {})
        if where:
            if ";" in where:
                raise ValueError("--where takes one SQL condition, without ';'")
            for r in cat.rows(f"SELECT {_ITEM_COLS} FROM queue WHERE ({where}) ORDER BY sku"):
                picked.setdefault(r["sku"], (r, f"where:{where}", {}))
        if reworks:
            for r in cat.rows(f"SELECT {_ITEM_COLS}, review_id, review_overrides "
                              "FROM open_reworks ORDER BY sku"):
                picked[r["sku"]] = (r, f"rework:{r['review_id']}",
                                    json.loads(r["review_overrides"] or "{}"))
        items = []
        for sku, (r, trigger, decided) in sorted(picked.items()):
            merged = recipe_overrides(r["recipe"], r["profile"] or "ar",
                                      r["backend"] or "silhouette")
            for layer in (decided, overrides or {}):
                if layer.get("profile"):
                    # new profile fields re-derive their options: drop the inherited values
                    for stage, opt in derived_options(r["profile"] or "ar",
                                                      r["backend"] or "silhouette",
                                                      layer["profile"]):
                        merged.get(stage, {}).pop(opt, None)
                for stage, opts in layer.items():
                    merged.setdefault(stage, {}).update(opts)
            items.append(ReprocessItem(
                sku=sku, attempt_id=r["attempt_id"], trigger=trigger,
                profile=r["profile"] or "ar", backend=r["backend"] or "silhouette",
                catalog_source=r["catalog_source"] or "", recipe=r["recipe"] or "{}",
                overrides={k: normalise(v) for k, v in merged.items() if v}))
        return items
    finally:
        if mine:
            cat.close()


def recipe_overrides(recipe_json: str | None, profile: str, backend: str
                     ) -> dict[str, dict[str, Any]]:
    """The options an attempt's recipe set differently from the profile's defaults (what a
    run's ``--target-tris`` or an earlier rework changed), so a re-run keeps them."""
    from ..flows.recipe import build_recipe

    try:
        old = json.loads(recipe_json or "{}")
    except json.JSONDecodeError:
        return {}
    stages = {s.get("name"): s.get("options", {}) for s in old.get("stages", [])
              if isinstance(s, dict)}
    if not stages:
        return {}
    base = {s["name"]: json.loads(json.dumps(s["options"], default=str))
            for s in build_recipe(profile, backend).describe()["stages"]}
    out: dict[str, dict[str, Any]] = {}
    for name, opts in stages.items():
        ref = base.get(name)
        if ref is None or not isinstance(opts, dict):
            continue
        diff = {k: v for k, v in opts.items() if k in ref and ref[k] != v}
        if diff:
            out[name] = diff
    return out


#: Two values of each numeric profile field, to find the stage options derived from it.
_PROBES: dict[str, tuple[Any, Any]] = {"target_tris": (1000, 2000), "texture_px": (256, 512),
                                       "max_glb_mb": (1.0, 2.0)}


def derived_options(profile: str, backend: str, fields: Mapping[str, Any]
                    ) -> list[tuple[str, str]]:
    """(stage, option) pairs the recipe derives from these profile ``fields``: the options
    that change when the fields do."""
    from ..flows.recipe import build_recipe

    def options(change: dict[str, Any]) -> dict[tuple[str, str], Any]:
        d = build_recipe(profile, backend, {"profile": change}).describe()
        return {(s["name"], k): v for s in d["stages"] for k, v in s["options"].items()}

    out: set[tuple[str, str]] = set()
    for name in fields:
        a, b = (options({name: v}) for v in _PROBES.get(name, (None, fields[name])))
        out |= {k for k in a if a[k] != b.get(k)}
    return sorted(out)


def group_items(items: Sequence[ReprocessItem], catalog: str | None = None
                ) -> dict[tuple[str, str, str, str], list[ReprocessItem]]:
    """Items grouped by (catalog file, profile, backend, overrides): one recipe per group."""
    groups: dict[tuple[str, str, str, str], list[ReprocessItem]] = {}
    for it in items:
        key = (catalog or it.catalog_source, it.profile, it.backend,
               json.dumps(it.overrides, sort_keys=True, default=list))
        groups.setdefault(key, []).append(it)
    return groups
