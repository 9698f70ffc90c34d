"""Charts as inline SVG, made at build time: no JavaScript library, no CDN. Colours come from CSS
classes (td-s0 ... td-s7), so the page's light or dark scheme applies."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence, Union

from .text import attr, esc, fmt_number

Number = Union[float, None]
WIDTH, HEIGHT = 420, 170
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 10, 30
SERIES_CLASSES = 8
MAX_POINTS = 150  # hover/link points per series; beyond, points closer than a pixel or two overlap anyway


class Point(NamedTuple):
    x: float
    y: Number
    url: Union[str, None] = None


class Series(NamedTuple):
    name: str
    points: Sequence[Point]


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 12))
    return ticks


def line_chart(title: str, series: Sequence[Series], fmt: Callable[[Number], str] = fmt_number,
               x_label: str = "step", zero: bool = False) -> str:
    """A line chart; every point with a URL is a link, and shows its value on hover."""
    values = [p.y for s in series for p in s.points if p.y is not None and math.isfinite(p.y)]
    xs = [p.x for s in series for p in s.points]
    if not values or not xs:
        return ""
    lo, hi = min(values), max(values)
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    ticks = nice_ticks(lo, hi)
    y0, y1 = ticks[0], ticks[-1]
    x0, x1 = min(xs), max(xs)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (plot_w * (x - x0) / (x1 - x0) if x1 > x0 else plot_w / 2)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - (y - y0) / (y1 - y0))

    parts = [f'<svg class="td-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{attr(title)}">']
    dots: list[str] = []
    labels = [fmt(tick) for tick in ticks]
    if len(set(labels)) < len(labels):  # a narrow range: more digits than the format gives
        labels = [f"{tick:.4g}" for tick in ticks]
    for tick, label in zip(ticks, labels):
        y = py(tick)
        parts.append(f'<line class="td-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="td-tick" x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end">{esc(label)}</text>')
    for x in sorted(set(nice_ticks(x0, x1, 5) if x1 > x0 else [x0])):
        if x0 <= x <= x1:
            parts.append(f'<text class="td-tick" x="{px(x):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">'
                         f'{esc(fmt_number(x))}</text>')
    parts.append(f'<text class="td-tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">{esc(x_label)}</text>')
    for n, s in enumerate(series):
        cls = f"td-s{n % SERIES_CLASSES}"
        run: list[str] = []
        for p in list(s.points) + [Point(math.nan, None)]:
            if p.y is None or not math.isfinite(p.y):
                if len(run) > 1:
                    parts.append(f'<polyline class="td-line {cls}" points="{" ".join(run)}"/>')
                run = []
            else:
                run.append(f"{px(p.x):.1f},{py(p.y):.1f}")
        for p in shown_points(s.points):
            label = f"{s.name} · {x_label} {fmt_number(p.x)}: {fmt(p.y)}" if len(series) > 1 else \
                f"{x_label} {fmt_number(p.x)}: {fmt(p.y)}"
            # points are HTML over the SVG (positions in % of it): real links for themes and keyboards
            where = (f'class="td-pt {cls}" style="left:{100 * px(p.x) / WIDTH:.1f}%;top:{100 * py(p.y) / HEIGHT:.1f}%" '
                     f'title="{attr(label)}" data-x="{p.x:g}" data-y="{p.y:.6g}"')
            dots.append(f'<a {where} href="{attr(p.url)}"></a>' if p.url else f'<span {where}></span>')
    parts.append("</svg>")
    legend = ""
    if len(series) > 1:
        keys = "".join(f'<span class="td-key td-s{n % SERIES_CLASSES}">{esc(s.name)}</span>' for n, s in enumerate(series))
        legend = f'<div class="td-legend-keys">{keys}</div>'
    return (f'<figure class="td-figure"><figcaption>{esc(title)}</figcaption>'
            f'<div class="td-plot">{"".join(parts)}{"".join(dots)}</div>{legend}</figure>')


def shown_points(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """The points that get a hover/link marker: all finite ones up to `limit`; beyond, evenly
    spaced ones plus the first, last, lowest and highest (the line itself keeps every point)."""
    finite = [p for p in points if p.y is not None and math.isfinite(p.y)]
    if len(finite) <= limit:
        return finite
    keep = {round(i * (len(finite) - 1) / (limit - 1)) for i in range(limit)}
    keep.update((0, len(finite) - 1, min(range(len(finite)), key=lambda i: finite[i].y),
                 max(range(len(finite)), key=lambda i: finite[i].y)))
    return [finite[i] for i in sorted(keep)]


def bar_chart(title: str, counts: Sequence[int], width: float, x_label: str) -> str:
    """Bars for histogram counts over bins of `width` starting at 0 (the last bin is open-ended)."""
    if not counts or not any(counts):
        return ""
    top = max(counts)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bar = plot_w / len(counts)
    parts = [f'<svg class="td-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{attr(title)}">']
    for tick in nice_ticks(0, top):
        if tick <= top and tick == int(tick):  # counts: whole numbers only
            y = TOP + plot_h * (1 - tick / top)
            parts.append(f'<line class="td-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                         f'<text class="td-tick" x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end">{fmt_number(tick)}</text>')
    for i, n in enumerate(counts):
        if not n:
            continue
        h = plot_h * n / top
        lo = i * width
        span = f"≥ {fmt_number(lo)}" if i == len(counts) - 1 else f"{fmt_number(lo)}–{fmt_number(lo + width)}"
        parts.append(f'<rect class="td-bar td-s0" x="{LEFT + i * bar:.1f}" y="{TOP + plot_h - h:.1f}" '
                     f'width="{max(bar - 1, 1):.1f}" height="{h:.1f}" data-count="{n}"><title>{span}: {n}</title></rect>')
    for i in range(0, len(counts), max(1, len(counts) // 5)):
        parts.append(f'<text class="td-tick" x="{LEFT + i * bar:.1f}" y="{HEIGHT - BOTTOM + 14}" '
                     f'text-anchor="middle">{fmt_number(i * width)}</text>')
    parts.append(f'<text class="td-tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">{esc(x_label)}</text></svg>')
    return f'<figure class="td-figure"><figcaption>{esc(title)}</figcaption>{"".join(parts)}</figure>'


def sparkline(values: Sequence[Number], width: int = 120, height: int = 22) -> str:
    """A small line of `values` (None or NaN: gaps); more values than pixels are averaged per pixel."""
    if len(values) > width:
        buckets = [[v for v in values[i * len(values) // width:(i + 1) * len(values) // width]
                    if v is not None and math.isfinite(v)] for i in range(width)]
        values = [sum(b) / len(b) if b else None for b in buckets]
    points = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(points) < 2:
        return ""
    lo = min(v for _, v in points)
    hi = max(v for _, v in points)
    span = (hi - lo) or 1.0
    n = max(1, len(values) - 1)
    coords = " ".join(f"{1 + (width - 2) * i / n:.1f},{height - 2 - (height - 4) * (v - lo) / span:.1f}" for i, v in points)
    return (f'<svg class="td-spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'aria-hidden="true"><polyline class="td-line td-s0" points="{coords}"/></svg>')
