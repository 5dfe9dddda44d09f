"""Benchmark: PNG encoders on real texture maps: zlib levels 1, 6 (PIL's default) and 9 beside
the run-length strategy the pipeline uses (``core.artifacts.encode_png``), bytes and CPU
seconds per map, each checked to decode to the same pixels.

    .venv/bin/python benchmarks/png_encoding.py MAP.png [MAP.png ...]

Pass the maps of a converted asset (``texture/base_color``, ``texture/normal``,
``texture/orm`` of a demo product: the objects under its store's ``objects/`` that the
state's artifacts point to). CPU time, so that the machine's load moves it less.
"""

from __future__ import annotations

import io
import os
import sys
import time
import zlib

import numpy as np


def _encode(img: np.ndarray, level: int, strategy: int | None) -> bytes:
    """PNG bytes at zlib ``level``; ``strategy`` None is PIL's own choice (what the pipeline
    used before: ``compress_level`` alone)."""
    from PIL import Image

    buf = io.BytesIO()
    extra = {} if strategy is None else {"compress_type": strategy}
    Image.fromarray(img).save(buf, format="PNG", compress_level=level, **extra)
    return buf.getvalue()


CASES = {"level 1": (1, None), "level 6": (6, None), "level 9": (9, None),
         "run-length": (6, zlib.Z_RLE)}


def main(paths: list[str]) -> int:
    from assetfactory.core.artifacts import decode_png

    if not paths:
        print(__doc__)
        return 2
    load = os.getloadavg()
    print(f"load average: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| map | px | " + " | ".join(f"{c}: bytes / CPU s" for c in CASES) + " |")
    print("| --- | --- |" + " ---: |" * len(CASES))
    totals = {c: [0, 0.0] for c in CASES}
    for p in paths:
        with open(p, "rb") as fh:
            img = decode_png(fh.read())
        cells = []
        for name, (level, strategy) in CASES.items():
            t = time.process_time()
            data = _encode(img, level, strategy)
            dt = time.process_time() - t
            if not np.array_equal(decode_png(data), img):
                raise SystemExit(f"{name} did not round-trip {p}")
            totals[name][0] += len(data)
            totals[name][1] += dt
            cells.append(f"{len(data):,} / {dt:.2f}")
        print(f"| {os.path.basename(p)[:12]} | {img.shape[1]}x{img.shape[0]} | "
              + " | ".join(cells) + " |")
    print("| **all** | | " + " | ".join(f"**{b:,} / {s:.2f}**" for b, s in totals.values())
          + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
