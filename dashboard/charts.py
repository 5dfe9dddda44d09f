"""Charts as inline SVG, drawn on the server: no JavaScript chart library, no build step.

Two shapes cover the runs page: horizontal bars (time per stage, with the p95 as a tick) and a
histogram with threshold lines (the triage rules' limits drawn over a metric's distribution).
Every label is escaped here, since the result is inserted into the page as markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
from markupsafe import Markup


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str
    verdict: str = "review"       # pass | review | fail: the line's colour


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def stage_bars(stages: Sequence[dict], width: int = 520, bar_h: int = 18) -> Markup:
    """Mean seconds per stage as bars, the p95 as a tick, the total share as text."""
    if not stages:
        return Markup('<p class="muted">no stage rows in this run</p>')
    label_w, right_w = 90, 120
    plot_w = width - label_w - right_w
    top = max(max((s.get("p95_s") or 0.0), (s.get("mean_s") or 0.0)) for s in stages) or 1.0
    total = sum((s.get("total_s") or 0.0) for s in stages) or 1.0
    h = bar_h * len(stages) + 24
    parts = [(f'<svg class="chart" role="img" viewBox="0 0 {width} {h}" width="{width}" '
             f'height="{h}" xmlns="http://www.w3.org/2000/svg">'),
             '<title>time per stage: mean (bar) and p95 (tick), seconds</title>']
    for i, s in enumerate(stages):
        y = i * bar_h + 4
        mean = s.get("mean_s") or 0.0
        p95 = s.get("p95_s")
        w = plot_w * mean / top
        share = 100.0 * (s.get("total_s") or 0.0) / total
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" '
                     f'class="lbl">{escape(str(s.get("stage")))}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 5}" '
                     f'class="bar"><title>{escape(str(s.get("stage")))}: mean {mean:.3g} s, '
                     f'{"" if p95 is None else f"p95 {p95:.3g} s, "}{share:.0f}% of stage time</title></rect>')
        if p95 is not None:
            x95 = label_w + plot_w * p95 / top
            parts.append(f'<line x1="{x95:.1f}" x2="{x95:.1f}" y1="{y + 1}" y2="{y + bar_h - 2}" '
                         'class="tick"/>')
        parts.append(f'<text x="{label_w + plot_w + 6}" y="{y + bar_h * 0.7:.1f}" class="val">'
                     f'{mean:.2f} s · {share:.0f}%</text>')
    axis_y = len(stages) * bar_h + 8
    parts.append(f'<text x="{label_w}" y="{axis_y + 12}" class="axis">0</text>')
    parts.append(f'<text x="{label_w + plot_w}" y="{axis_y + 12}" text-anchor="end" '
                 f'class="axis">{_fmt(top)} s</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(values: Sequence[float], title: str, thresholds: Sequence[Threshold] = (),
              bins: int = 24, width: int = 340, height: int = 150) -> Markup:
    """A histogram of ``values`` with vertical lines at each threshold (labelled)."""
    vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    head = f'<figure class="hist"><figcaption>{escape(title)} <span class="muted">' \
           f'(n = {len(vals)})</span></figcaption>'
    if len(vals) == 0:
        return Markup(head + '<p class="muted">no values</p></figure>')
    lo, hi = float(vals.min()), float(vals.max())
    for t in thresholds:
        lo, hi = min(lo, t.value), max(hi, t.value)
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    pad = 0.02 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    ml, mr, mt, mb = 34, 8, 16, 22
    pw, ph = width - ml - mr, height - mt - mb
    cmax = max(int(counts.max()), 1)

    def x(v: float) -> float:
        return ml + pw * (v - lo) / (hi - lo)

    parts = [head, (f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
                   f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'),
             f'<title>{escape(title)}</title>']
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c == 0:
            continue
        bh = ph * c / cmax
        parts.append(f'<rect x="{x(a) + 0.5:.1f}" y="{mt + ph - bh:.1f}" '
                     f'width="{max(x(b) - x(a) - 1, 1):.1f}" height="{bh:.1f}" class="bar">'
                     f'<title>{_fmt(a)} – {_fmt(b)}: {c}</title></rect>')
    parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}" class="axisline"/>')
    parts.append(f'<text x="{ml}" y="{height - 6}" class="axis">{_fmt(lo + pad)}</text>')
    parts.append(f'<text x="{ml + pw}" y="{height - 6}" text-anchor="end" class="axis">'
                 f'{_fmt(hi - pad)}</text>')
    parts.append(f'<text x="{ml - 4}" y="{mt + 8}" text-anchor="end" class="axis">{cmax}</text>')
    for i, t in enumerate(thresholds):
        tx = x(t.value)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{mt - 4}" y2="{mt + ph}" '
                     f'class="thr thr-{escape(t.verdict)}"><title>{escape(t.label)}</title></line>')
        anchor = "end" if tx > ml + pw * 0.6 else "start"
        dx = -3 if anchor == "end" else 3
        parts.append(f'<text x="{tx + dx:.1f}" y="{mt + 4 + 11 * i}" text-anchor="{anchor}" '
                     f'class="thrlbl thr-{escape(t.verdict)}">{escape(t.label)}</text>')
    parts.append("</svg></figure>")
    return Markup("".join(parts))


def status_bar(counts: dict[str, int], width: int = 220, height: int = 12) -> Markup:
    """A thin stacked bar of counts (status or verdict), coloured by class name."""
    total = sum(counts.values())
    if total == 0:
        return Markup("")
    parts = [(f'<svg class="stack" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" xmlns="http://www.w3.org/2000/svg">')]
    x0 = 0.0
    for k, n in counts.items():
        w = width * n / total
        parts.append(f'<rect x="{x0:.1f}" y="0" width="{w:.1f}" height="{height}" '
                     f'class="st-{escape(k)}"><title>{escape(k)}: {n}</title></rect>')
        x0 += w
    parts.append("</svg>")
    return Markup("".join(parts))
