"""Charts drawn on the server, bars as HTML and time columns as SVG: no script, no CDN, nothing to vendor; they
print, they work offline, and a test can read them. Each chart has one scale. Each function returns markup that is
safe to put in a template; every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# One colour per status kind, the same on every chart (and readable by the colour-blind: blue/orange contrast).
COLOURS = {
    "delivered": "#2b83ba",
    "assumed": "#abd9e9",
    "failed": "#d7191c",
    "pending": "#fdae61",
    "other": "#bbbbbb",
}


def n(value: float) -> str:
    """A coordinate as SVG text (format_html escapes its arguments, so they are formatted first)."""
    return f"{value:.1f}"


@dataclass(frozen=True)
class Segment:
    label: str
    value: float
    colour: str
    link: str = ""


@dataclass(frozen=True)
class Bar:
    label: str
    segments: Sequence[Segment]
    note: str = ""  # printed right of the bar (a rate, a count)
    link: str = ""


def stacked_bars(bars: Sequence[Bar]) -> SafeString:
    """One horizontal bar a row, all drawn to the chart's one scale (the largest bar fills the width, so 5 and 1
    look five times apart), split into segments by share. HTML, not SVG: the label sits whole above its bar and
    wraps rather than being cut, and text keeps its size on a phone (an SVG's text shrinks with the drawing).
    The label and each segment link to the list behind."""
    if not bars:
        return mark_safe('<p class="chart-empty">No messages in this window.</p>')
    top = max(sum(s.value for s in bar.segments) for bar in bars) or 1
    rows = []
    for bar in bars:
        total = sum(s.value for s in bar.segments)
        segments = format_html_join(
            "",
            '<a class="segment" href="{}" style="width:{}%;background:{}" title="{}: {}"></a>',
            (
                (s.link or bar.link or "#", f"{100 * s.value / total:.3f}", s.colour, s.label, f"{s.value:,.0f}")
                for s in bar.segments
                if s.value > 0
            ),
        )
        rows.append(
            format_html(
                '<div class="bar-row"><div class="bar-head"><a class="bar-label" href="{}">{}</a>'
                '<span class="bar-note">{}</span></div>'
                '<div class="bar-track"><span class="bar" style="width:{}%">{}</span></div></div>',
                bar.link or "#",
                bar.label,
                bar.note,
                f"{100 * total / top:.3f}",
                segments,
            )
        )
    return format_html('<div class="chart bars">{}</div>', mark_safe("".join(rows)))  # noqa: S308 - format_html


def columns(
    points: Sequence[tuple[str, Sequence[Segment]]], width: int = 640, height: int = 160, every: int = 1
) -> SafeString:
    """Stacked columns over time: one column a point (hour or day), split by status; ``every``-th label shown."""
    if not points:
        return mark_safe('<p class="chart-empty">No messages in this window.</p>')
    top = max(sum(s.value for s in segments) for _, segments in points) or 1
    axis = 18
    step = (width - 40) / len(points)
    parts = [format_html('<text x="0" y="12" class="chart-note">{}</text>', f"{top:,.0f}")]
    for i, (label, segments) in enumerate(points):
        x = 40 + i * step
        y = float(height - axis)
        for segment in segments:
            if segment.value <= 0:
                continue
            h = (height - axis - 14) * segment.value / top
            y -= h
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} {}: {}</title></rect>',
                    n(x),
                    n(y),
                    n(max(step - 1, 0.5)),
                    n(h),
                    segment.colour,
                    label,
                    segment.label,
                    f"{segment.value:,.0f}",
                )
            )
        if i % every == 0:
            parts.append(format_html('<text x="{}" y="{}" class="chart-axis">{}</text>', n(x), height - 4, label))
    return format_html(
        '<svg class="chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}">{}</svg>',
        width,
        height,
        width,
        height,
        mark_safe("".join(parts)),  # noqa: S308 - each part built by format_html above
    )


def legend(colours: dict[str, str]) -> SafeString:
    return format_html(
        '<p class="chart-legend">{}</p>',
        format_html_join(
            " ", '<span><i style="background:{}"></i>{}</span>', ((c, name) for name, c in colours.items())
        ),
    )
