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
PAD = 28
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
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" font-size="10">{bar.start:%H}:00</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every interpolated text above is escaped


def histogram_svg(bins: list[tuple[float, float, int]], label: str) -> Markup:
    """A histogram of (low, high, count) bins."""
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
            f'height="{h:.1f}" fill="#1565c0"><title>{escape(title)}</title></rect>'
        )
    first, last = bins[0][0], bins[-1][1]
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="10">{first:.1f} s</text>')
    parts.append(
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">'
        f"{last:.1f} s</text></svg>"
    )
    return Markup("".join(parts))  # noqa: S704 -- numbers and escaped text only


def _frame(title: str, peak: int) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'class="chart" preserveAspectRatio="none"><title>{escape(title)}</title>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        f'stroke="#999"/><text x="4" y="{PAD}" font-size="10">{peak}</text>'
    )
