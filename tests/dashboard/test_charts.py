"""The inline SVG charts: right geometry, thresholds drawn, labels escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from assetfactory.dashboard.charts import Threshold, histogram, stage_bars, status_bar

NS = "{http://www.w3.org/2000/svg}"


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg.*</svg>", str(markup), re.DOTALL).group(0))


def test_histogram_counts_and_threshold_position():
    values = [0.1] * 5 + [0.5] * 3 + [0.9] * 2
    svg = _svg(histogram(values, "iou", [Threshold(0.5, "review below 0.5", "review")],
                         bins=10, width=300))
    heights = sorted(float(r.get("height")) for r in svg.iter(f"{NS}rect"))
    # three non-empty bins with heights in the ratio of their counts 2:3:5
    assert len(heights) == 3
    assert abs(heights[0] / heights[2] - 0.4) < 1e-6 and abs(heights[1] / heights[2] - 0.6) < 1e-6
    (line,) = [ln for ln in svg.iter(f"{NS}line") if "thr" in (ln.get("class") or "")]
    xs = [float(r.get("x")) for r in svg.iter(f"{NS}rect")]
    # the threshold sits between the first and the last bars, at 0.5 of the value range
    assert min(xs) < float(line.get("x1")) < max(xs)
    assert "thr-review" in line.get("class")


def test_histogram_threshold_outside_data_extends_axis():
    svg = _svg(histogram([1000, 2000, 3000], "tris", [Threshold(23000, "budget", "fail")]))
    line = next(ln for ln in svg.iter(f"{NS}line") if "thr" in (ln.get("class") or ""))
    bars = [float(r.get("x")) for r in svg.iter(f"{NS}rect")]
    assert float(line.get("x1")) > max(bars)


def test_empty_histogram_says_so():
    assert "no values" in histogram([], "x")


def test_labels_are_escaped():
    out = str(stage_bars([{"stage": "<script>x</script>", "mean_s": 1.0, "p95_s": 2.0,
                           "total_s": 1.0}]))
    assert "<script>" not in out and "&lt;script&gt;" in out
    out = str(histogram([1.0], "<b>t</b>", [Threshold(1.0, "<i>", "fail")]))
    assert "<b>" not in out and "<i>" not in out
    assert "<script>" not in str(status_bar({"<script>": 1}))


def test_stage_bars_widths_follow_means():
    svg = _svg(stage_bars([{"stage": "a", "mean_s": 1.0, "p95_s": None, "total_s": 1.0},
                           {"stage": "b", "mean_s": 3.0, "p95_s": None, "total_s": 3.0}]))
    w = [float(r.get("width")) for r in svg.iter(f"{NS}rect")]
    assert abs(w[1] / w[0] - 3.0) < 0.01   # widths are written to 0.1 px
    assert not [ln for ln in svg.iter(f"{NS}line") if ln.get("class") == "tick"]
