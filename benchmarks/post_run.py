"""Benchmark: the driver's memory and time in a run's work after its last SKU.

When a conversion's last SKU is recorded, the driver compacts the run's asset and stage
fragments, judges the run's attempts (triage: one verdict row per attempt), compacts the
verdicts (building the run's latest-attempt table) and reads the run's summary
(``flows.convert.convert_catalog``). This script times that phase alone, and measures the memory
it takes, on a run directory of S SKUs made from a real run's rows, without the conversion:

    .venv/bin/python benchmarks/post_run.py --sizes 1000,10000
    .venv/bin/python benchmarks/post_run.py --sizes 1000,10000 --source DIR  # rows of DIR

The rows: a real conversion's compacted asset and stage rows (``--source``: a factory output
folder, e.g. one ``benchmarks/scale.py --workdir W`` leaves; without it, a 100-SKU conversion of
``scale.py``'s capsules is made first, under ``--work``), repeated to S SKUs, each copy its own
SKU, attempt, asset id, URIs and hashes, with its metrics scaled a little, written in the
runner's layout: one stage file and one asset file per task block, the blocks as the runner cuts
a shard of 1,000 on 2 CPUs (``--block``: 32 SKUs, the shard's last 2 x 32 in blocks of 8).
Each size is made once (cached under ``--work``) and measured on a hard-linked copy, in a fresh
interpreter per size (nothing else in it: an honest peak).

Measured per step (in the run's order): wall seconds, the process's peak RSS during the step
(sampled every 5 ms, and ``ru_maxrss`` after it), its RSS after the step, and the peak of
pyarrow's memory pool during the step; the phase's peak above the interpreter's RSS before it
("added") is the figure to compare between sizes. The run's rows are checked after the phase
(counts, distinct keys and an order-independent hash of every column of every kind), so two
versions of the code can be compared for identical output (``--check FILE`` writes them).

Prints a table; writes benchmarks/out/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RUN = "20260101-000000-postrun"


def load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


# ---------------------------------------------------------------------------- the rows


def source_rows(source: Path):
    """The real run's asset and stage rows (every row of its catalog, compacted or not)."""
    import duckdb
    import pyarrow as pa

    from assetfactory.catalog.views import arrow_table

    def rows(kind: str) -> pa.Table:
        files = [str(p) for p in source.glob(f"catalog/**/{kind}/**/*.parquet")
                 if "/derived/" not in str(p)]
        if not files:
            raise SystemExit(f"{source} holds no {kind} rows: give a factory output folder")
        con = duckdb.connect()
        lst = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        return arrow_table(con.execute(f"SELECT * FROM read_parquet([{lst}], union_by_name = "
                                       "true, hive_partitioning = false) ORDER BY sku, attempt_id"))

    return rows("assets"), rows("stages")


def blocks(n: int, shard: int = 1000, per_task: int = 32, cpus: int = 2) -> list[range]:
    """The task blocks of ``n`` SKUs as ``executor.task_blocks`` cuts each shard (a full
    shard of 1,000 on 2 CPUs: blocks of 32, the last 2 x 32 SKUs in blocks of 8)."""
    out = []
    for s0 in range(0, n, shard):
        m = min(shard, n - s0)
        per = max(1, min(per_task, m // (4 * cpus)))
        cut = max(0, m - cpus * per) if per > 2 else m
        small = max(1, per // 4)
        out += [range(s0 + i, s0 + min(i + per, cut)) for i in range(0, cut, per)]
        out += [range(s0 + i, s0 + min(i + small, m)) for i in range(cut, m, small)]
    return out


def synthesize(source: Path, root: Path, n: int) -> dict:
    """``n`` SKUs of run ``RUN`` under ``root`` from the source run's rows."""
    import hashlib

    import pyarrow as pa
    import pyarrow.compute as pc

    from assetfactory.catalog.fragments import block_name, parquet_bytes

    assets, stages = source_rows(source)
    k = assets.num_rows
    src_sku = assets["sku"].to_pylist()
    src_att = assets["attempt_id"].to_pylist()
    by_attempt: dict[str, list[int]] = {}
    for i, a in enumerate(stages["attempt_id"].to_pylist()):
        by_attempt.setdefault(a, []).append(i)
    numeric = [f.name for f in assets.schema if pa.types.is_floating(f.type)
               and f.name not in ("wall_s", "peak_rss_mb")]
    string_cols_a = ("glb_uri", "poster_uri", "usdz_uri", "input_hashes", "metrics")
    string_cols_s = ("inputs", "outputs")
    sha_cols = ("glb_sha256", "usdz_sha256", "poster_sha256")
    files = 0
    for b in blocks(n):
        idx = [j % k for j in b]
        skus = [f"box-{j:06d}" for j in b]
        atts = [f"20260101T000000-{j:012x}" for j in b]
        a = assets.take(pa.array(idx))
        olds = [src_sku[i] for i in idx]

        def swap(col: pa.ChunkedArray, olds=olds, skus=skus) -> pa.Array:
            return pa.array([None if v is None else v.replace(o, s)
                             for v, o, s in zip(col.to_pylist(), olds, skus)], pa.string())

        cols = {"sku": pa.array(skus), "attempt_id": pa.array(atts),
                "asset_id": pa.array([f"asset-{s}" for s in skus]),
                "run_id": pa.array([RUN] * len(b)), "row": pa.array(list(b), pa.int64())}
        for c in string_cols_a:
            if c in a.column_names:
                cols[c] = swap(a[c])
        for c in sha_cols:
            if c in a.column_names:
                cols[c] = pa.array([hashlib.sha256(f"{c}{s}".encode()).hexdigest()
                                    for s in skus])
        scale = pa.array([1.0 + ((j * 7919) % 1000) / 1e5 for j in b])
        for c in numeric:
            cols[c] = pc.multiply(a[c], scale)
        for c, v in cols.items():
            a = a.set_column(a.schema.get_field_index(c), a.schema.field(c), v)
        sidx = [i for j in idx for i in by_attempt.get(src_att[j], [])]
        per = [len(by_attempt.get(src_att[j], [])) for j in idx]
        s = stages.take(pa.array(sidx, pa.int64()))

        def rep(vals: list, per: list[int] = per) -> pa.Array:
            return pa.array([v for v, m in zip(vals, per) for _ in range(m)])

        solds = [o for o, m in zip(olds, per) for _ in range(m)]
        sskus = [x for x, m in zip(skus, per) for _ in range(m)]
        scols = {"sku": rep(skus), "attempt_id": rep(atts),
                 "asset_id": rep([f"asset-{x}" for x in skus]), "run_id": rep([RUN] * len(b))}
        for c in string_cols_s:
            scols[c] = swap(s[c], solds, sskus)
        for c, v in scols.items():
            s = s.set_column(s.schema.get_field_index(c), s.schema.field(c), v)
        name = block_name(atts)
        for kind, t in (("stages", s), ("assets", a)):
            p = root / f"catalog/{kind}/run={RUN}/{name}.parquet"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(parquet_bytes(t))
            files += 1
    return {"skus": n, "files": files, "source_skus": k}


def hardlink_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=os.link)


# ---------------------------------------------------------------------------- the phase


class Peak:
    """The process's RSS and pyarrow's pool, sampled every ``dt`` seconds."""

    def __init__(self, dt: float = 0.005) -> None:
        import pyarrow as pa

        self.pa = pa
        self.dt = dt
        self.rss = self.pool = 0
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def now(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def reset(self) -> None:
        self.rss, self.pool = self.now(), self.pa.total_allocated_bytes()

    def _run(self) -> None:
        while not self._stop.wait(self.dt):
            self.rss = max(self.rss, self.now())
            self.pool = max(self.pool, self.pa.total_allocated_bytes())

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def rows_check(root: str) -> dict:
    """Per kind: rows, distinct keys and an order-independent hash of every column."""
    from assetfactory.catalog.views import Catalog

    out = {}
    with Catalog(root) as cat:
        for view, key in (("attempts", "attempt_id"), ("stages", "(attempt_id, seq)"),
                          ("verdicts", "attempt_id")):
            cols = [c for c in cat.execute(f"SELECT * FROM {view} LIMIT 0").description]
            # verdict ids, times and actors differ from run to run: the verdicts' content
            skip = {"verdict_id", "computed_at", "computed_by"} if view == "verdicts" else set()
            names = ", ".join(f'"{c[0]}"' for c in cols if c[0] not in skip)
            out[view] = [str(v) for v in cat.execute(
                f"SELECT count(*), count(DISTINCT {key}), "
                f"sum(hash({names})::HUGEINT) FROM {view}").fetchone()]
        out["latest_tables"] = len(list(Path(root).glob("catalog/derived/latest/**/*.parquet")))
        out["files"] = {k: len(list(Path(root).glob(f"catalog/**/{k}/**/*.parquet")))
                        for k in ("assets", "stages", "verdicts")}
    return out


def measure(root: str) -> dict:
    """The post-run phase of ``convert_catalog`` on ``root`` in this (fresh) process."""
    import duckdb  # noqa: F401 - imported before the baseline, as in the driver
    import pyarrow  # noqa: F401

    from assetfactory.catalog.compact import compact
    from assetfactory.catalog.rules import load_rules
    from assetfactory.catalog.summary import run_summary
    from assetfactory.catalog.triage import record_verdicts
    from assetfactory.flows import convert as conv

    rules = load_rules(None)
    steps = [
        ("compact assets+stages", lambda: compact(root, ("assets", "stages"), runs=[RUN],
                                                  latest=False)),
        ("triage", lambda: record_verdicts(root, runs=[RUN], rules=rules)),
        ("compact verdicts+latest", lambda: compact(root, ("verdicts",), runs=[RUN])),
        ("run summary", lambda: run_summary(root, RUN)),
    ]
    post = getattr(conv, "post_run_steps", None)
    if post is not None:  # the code's own sequence, where it has one
        steps = [(name, (lambda f=f: f())) for name, f in post(root, RUN, rules)]
    peak = Peak()
    base = peak.now()
    out = {"baseline_mb": base / 2**20, "steps": []}
    t_all = time.perf_counter()
    for name, fn in steps:
        peak.reset()
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        time.sleep(0.02)
        out["steps"].append({"step": name, "s": dt, "peak_mb": peak.rss / 2**20,
                             "after_mb": peak.now() / 2**20, "pool_peak_mb": peak.pool / 2**20,
                             "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                             / 1024})
    out["s"] = time.perf_counter() - t_all
    peak.stop()
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["added_mb"] = out["peak_mb"] - out["baseline_mb"]
    out["check"] = rows_check(root)
    return out


def child(root: Path) -> dict:
    res = root.parent / (root.name + ".json")
    subprocess.run([sys.executable, __file__, "_child", str(root), str(res)], check=True)
    return json.loads(res.read_text())


def make_source(work: Path) -> Path:
    """A real 100-SKU conversion (``scale.py``'s capsules, 2 CPUs) to take rows from."""
    sys.path.insert(0, str(HERE))
    import scale

    wd = work / "source"
    outs = sorted(wd.glob("scale-100-2-*/catalog"))
    if not outs:
        scale.child("flow", 100, 2, wd)
        outs = sorted(wd.glob("scale-100-2-*/catalog"))
    return outs[-1].parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="SKUs per run, comma separated")
    ap.add_argument("--source", default="", help="a factory output folder to take rows from")
    ap.add_argument("--work", default="/tmp/post_run", help="where the runs are made (cached)")
    ap.add_argument("--name", default="post_run", help="benchmarks/out/<name>.json")
    ap.add_argument("--check", default="", help="also write the rows' check to this file")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    source = Path(args.source) if args.source else make_source(work)
    report = {"load_start": load(), "source": str(source), "runs": []}
    print(f"machine: {os.cpu_count()} cores, {load()}; rows from {source}")
    for n in (int(x) for x in args.sizes.split(",")):
        made = work / f"run-{n}"
        if not (made / "done.json").exists():
            if made.exists():
                shutil.rmtree(made)
            info = synthesize(source, made, n)
            (made / "done.json").write_text(json.dumps(info))
        info = json.loads((made / "done.json").read_text())
        copy = work / f"measure-{n}"
        hardlink_copy(made, copy)
        before = load()
        r = child(copy)
        r.update(skus=n, fragments=info["files"], load_before=before, load_after=load())
        report["runs"].append(r)
        shutil.rmtree(copy)
    print("\npost-run phase (compaction, triage, verdicts' compaction, summary) in a fresh "
          "interpreter; MB = MiB of RSS")
    print(f"{'SKUs':>7s} {'fragments':>9s} {'step':26s} {'s':>7s} {'peak MB':>8s} "
          f"{'after MB':>8s} {'arrow MB':>8s}")
    for r in report["runs"]:
        for st in r["steps"]:
            print(f"{r['skus']:7d} {r['fragments']:9d} {st['step']:26s} {st['s']:7.2f} "
                  f"{st['peak_mb']:8.0f} {st['after_mb']:8.0f} {st['pool_peak_mb']:8.0f}")
        print(f"{r['skus']:7d} {r['fragments']:9d} {'whole phase':26s} {r['s']:7.2f} "
              f"{r['peak_mb']:8.0f}  baseline {r['baseline_mb']:.0f}, added "
              f"{r['added_mb']:.0f}  ({r['load_before']} -> {r['load_after']})")
    if len(report["runs"]) >= 2:
        a, b = report["runs"][0], report["runs"][-1]
        report["added_ratio"] = b["added_mb"] / a["added_mb"]
        print(f"added peak at {b['skus']} vs {a['skus']} SKUs: {report['added_ratio']:.2f}x")
    for r in report["runs"]:
        print(f"rows at {r['skus']}: {json.dumps(r['check'])}")
    if args.check:
        Path(args.check).write_text(json.dumps({r["skus"]: r["check"] for r in report["runs"]},
                                               indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {OUT / (args.name + '.json')}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        Path(sys.argv[3]).write_text(json.dumps(measure(sys.argv[2])))
    else:
        main()
