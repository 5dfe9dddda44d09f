"""A run's summary from the catalog: counts by status, failures by stage, slowest stages."""

from __future__ import annotations

from typing import Any

from .views import connect


def run_summary(root: str, run_id: str | None = None) -> dict[str, Any]:
    con = connect(root)
    try:
        if run_id is None:
            row = con.execute("SELECT run_id FROM attempts ORDER BY finished_at DESC "
                              "LIMIT 1").fetchone()
            if row is None:
                return {"run_id": None, "counts": {}, "failures": [], "stages": [], "total": 0}
            run_id = row[0]
        where = "run_id = ?"
        counts = dict(con.execute(f"SELECT status, count(*) FROM attempts WHERE {where} "
                                  "GROUP BY status ORDER BY status", [run_id]).fetchall())
        failures = [dict(zip(("sku", "stage", "error", "fix"), r)) for r in con.execute(
            f"SELECT sku, failed_stage, error, fix FROM attempts WHERE {where} "
            "AND status = 'failed' ORDER BY failed_stage, sku", [run_id]).fetchall()]
        by_stage = [dict(zip(("stage", "failed"), r)) for r in con.execute(
            f"SELECT failed_stage, count(*) FROM attempts WHERE {where} AND status = 'failed' "
            "GROUP BY failed_stage ORDER BY count(*) DESC", [run_id]).fetchall()]
        stages = [dict(zip(("stage", "runs", "mean_s", "p95_s", "total_s", "share"), r))
                  for r in con.execute(
            """SELECT stage, count(*), avg(duration_s), quantile_cont(duration_s, 0.95),
                      sum(duration_s), sum(duration_s) / sum(sum(duration_s)) OVER ()
               FROM stages WHERE run_id = ? GROUP BY stage ORDER BY sum(duration_s) DESC""",
            [run_id]).fetchall()]
        wall = con.execute(f"SELECT epoch(max(finished_at)) - epoch(min(started_at)), "
                           f"sum(wall_s), count(*) FROM attempts WHERE {where}",
                           [run_id]).fetchone()
        return {"run_id": run_id, "counts": counts, "failures": failures,
                "failures_by_stage": by_stage, "stages": stages,
                "wall_s": wall[0], "asset_seconds": wall[1], "total": wall[2]}
    finally:
        con.close()


def summary_markdown(s: dict[str, Any]) -> str:
    lines = [f"# Run {s.get('run_id')}", ""]
    counts = s.get("counts", {})
    lines.append("| status | assets |\n|---|---|")
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    if s.get("skipped"):
        lines.append(f"| up to date (skipped) | {s['skipped']} |")
    if s.get("failures"):
        lines += ["", "## Failures", "", "| sku | stage | error | fix |", "|---|---|---|---|"]
        lines += [f"| {f['sku']} | {f['stage']} | {f['error']} | {f['fix']} |"
                  for f in s["failures"]]
    if s.get("stages"):
        lines += ["", "## Stages (slowest first)", "",
                  "| stage | runs | mean s | p95 s | share |", "|---|---|---|---|---|"]
        lines += [f"| {r['stage']} | {r['runs']} | {r['mean_s']:.2f} | {r['p95_s']:.2f} | "
                  f"{100 * (r['share'] or 0):.0f}% |" for r in s["stages"]]
    return "\n".join(lines)
