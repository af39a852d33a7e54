"""Small server-rendered SVG charts (no chart library, no JavaScript, readable without colour).

Each bar carries a <title> with its figures, and each chart a text summary, so the numbers are
there for screen readers and for people who cannot tell the colours apart.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from reelwatch.attention import HourBar

WIDTH = 640
HEIGHT = 180
PAD = 32
OUTCOMES = (
    ("completed", "#2e7d32"),
    ("failed", "#c62828"),
    ("cancelled", "#757575"),
    ("active", "#1565c0"),
)


def hourly_svg(bars: list[HourBar]) -> Markup:
    """Stacked bars of generations created per hour, by outcome."""
    peak = max((b.total for b in bars), default=0) or 1
    step = (WIDTH - 2 * PAD) / max(1, len(bars))
    parts = [_frame("Generations per hour by outcome", peak)]
    for i, bar in enumerate(bars):
        x = PAD + i * step
        y = HEIGHT - PAD
        for name, colour in OUTCOMES:
            count = getattr(bar, name)
            if not count:
                continue
            h = (HEIGHT - 2 * PAD) * count / peak
            y -= h
            label = f"{bar.start:%H}:00 {name}: {count}"
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{step - 2:.1f}" height="{h:.1f}" '
                f'fill="{colour}" class="bar-{name}"><title>{escape(label)}</title></rect>'
            )
        if i % 4 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 10}" font-size="10">{bar.start:%H}:00</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every interpolated text above is escaped


def histogram_svg(
    bins: list[tuple[float, float, int]], label: str, values: list[float] | None = None
) -> Markup:
    """A histogram of (low, high, count) bins, with its p50 and p95 marked when `values`
    (the figures the bins count) are given."""
    if not bins:
        return Markup(f'<p class="empty">No {escape(label)} figures yet.</p>')  # noqa: S704
    peak = max(n for _, _, n in bins) or 1
    step = (WIDTH - 2 * PAD) / len(bins)
    parts = [_frame(f"Distribution of {label}", peak)]
    for i, (low, high, count) in enumerate(bins):
        h = (HEIGHT - 2 * PAD) * count / peak
        x = PAD + i * step
        title = f"{low:.1f}-{high:.1f} s: {count}"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{step - 2:.1f}" '
            f'height="{h:.1f}" class="fill-working"><title>{escape(title)}</title></rect>'
        )
    first, last = bins[0][0], bins[-1][1]
    for at in (0, len(bins) // 2, len(bins)):  # x axis: low, middle and high edges
        edge = bins[at][0] if at < len(bins) else last
        anchor = "start" if at == 0 else "end" if at == len(bins) else "middle"
        parts.append(
            f'<text x="{PAD + at * step:.1f}" y="{HEIGHT - 10}" font-size="10" '
            f'text-anchor="{anchor}">{edge:.1f} s</text>'
        )
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        if not values or last <= first:
            break
        mark = _quantile(sorted(values), q)
        x = PAD + (WIDTH - 2 * PAD) * (min(max(mark, first), last) - first) / (last - first)
        parts.append(
            f'<line x1="{x:.1f}" y1="{PAD - 6}" x2="{x:.1f}" y2="{HEIGHT - PAD}" '
            f'class="mark mark-{name}" stroke-dasharray="4 3"><title>{name}: {mark:.1f} s'
            f'</title></line><text x="{x + 3:.1f}" y="{PAD - 8}" font-size="10">'
            f"{name} {mark:.1f} s</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- numbers and escaped text only


def _quantile(ordered: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between closest ranks."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _frame(title: str, peak: int) -> str:
    """The SVG with its title and axes: a y axis with 0, half and the peak count."""
    levels = sorted({0, peak // 2, peak})  # whole counts only
    ticks = "".join(
        f'<line x1="{PAD - 3}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}" class="grid"/>'
        f'<text x="{PAD - 5}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{value}</text>'
        for value in levels
        for y in (HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / peak,)
    )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'class="chart"><title>{escape(title)}</title>{ticks}'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        f'class="axis"/>'
    )
