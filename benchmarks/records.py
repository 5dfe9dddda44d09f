"""Benchmark: what a SKU's catalog record costs, recorded alone or in its task's block.

    .venv/bin/python benchmarks/records.py              # 320 SKUs, blocks of 1, 8 and 16

Each SKU is a state with nine stage records (as the ``web`` recipe leaves); "alone" writes
two Parquet fragments per SKU (``runner.record_attempt``, what the executor did per SKU),
"block of k" writes two per k SKUs (``runner.record_attempts``, what each task does now). Files
are fsynced before their rename as in a run (``ASSETFACTORY_FSYNC``). Wall and CPU time per
SKU, in this process, to a temporary folder beside this script (the disk runs write to).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from assetfactory.core.types import AssetState, SkuSpec, StageRecord
from assetfactory.flows.runner import AttemptMeta, record_attempt, record_attempts

STAGES = ("ingest", "generate", "cleanup", "simplify", "uv", "bake", "texture", "export",
          "metrics")


def states(root: str, n: int, tag: str) -> list[AssetState]:
    now = time.time()
    out = []
    for i in range(n):
        recs = tuple(StageRecord(st, "1", f"h{k}", {"size": 128}, {"mesh": f"{i:064x}"},
                                 {"mesh": f"{i + 1:064x}"}, now + k, 0.01, "host", "cpu", 300.0)
                     for k, st in enumerate(STAGES))
        out.append(AssetState(sku=f"s{i:05d}", spec=SkuSpec(sku=f"s{i:05d}"), store_uri=root,
                              run_id=f"bench-{tag}", attempt_id=f"{tag}-{i:05d}",
                              asset_id=f"id{i}", metrics={"tris": 12, "iou_mean": 0.9},
                              records=recs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skus", type=int, default=320)
    ap.add_argument("--blocks", default="1,8,16", help="block sizes; 1 = each SKU alone")
    args = ap.parse_args()
    meta = AttemptMeta(time.time(), {"p": 1}, "rh", {"mesh": "x"}, "")
    print(f"load {os.getloadavg()[0]:.1f}; {args.skus} SKUs; fsync "
          f"{os.environ.get('ASSETFACTORY_FSYNC', '1')}")
    print(f"{'record':>12} | {'wall ms/SKU':>11} | {'CPU ms/SKU':>10} | files")
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        record_attempt(states(tmp, 1, "warm")[0], meta)  # imports, library versions
        for k in (int(x) for x in args.blocks.split(",")):
            sts = states(tmp, args.skus, f"k{k}")
            w0, c0 = time.perf_counter(), time.process_time()
            if k == 1:
                for st in sts:
                    record_attempt(st, meta)
            else:
                for i in range(0, len(sts), k):
                    record_attempts([(st, meta) for st in sts[i:i + k]])
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            files = sum(1 for _ in Path(tmp, "catalog").rglob(f"run=bench-k{k}/*.parquet"))
            label = "alone" if k == 1 else f"block of {k}"
            print(f"{label:>12} | {1000 * wall / args.skus:11.2f} | "
                  f"{1000 * cpu / args.skus:10.2f} | {files}")


if __name__ == "__main__":
    main()
