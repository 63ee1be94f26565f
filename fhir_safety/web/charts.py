"""Charts as inline SVG, drawn on the server: no JavaScript, no library, printable.

Every chart is an ``<svg role="img">`` named by its ``<title>`` and described by a ``<desc>``
that states every value in words (the text alternative), and each page also shows the same
numbers in a table. Colours come from the stylesheet (``tone-*`` classes), each with at least
3:1 contrast against white (WCAG 1.4.11); series in a stacked chart also differ in pattern, so
colour is never the only cue. Pure functions: data in, markup out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

__all__ = [
    "Bar",
    "Segment",
    "StackedColumn",
    "bar_chart",
    "column_chart",
    "nice_ceiling",
    "stacked_chart",
]

_FONT = 14
_ROW = 30
_LABEL_WIDTH = 250
_WIDTH = 720


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    tone: str = "blue"  # a tone-* class of the stylesheet


@dataclass(frozen=True, slots=True)
class Segment:
    series: str
    value: int
    tone: str
    pattern: str | None = None  # "hatch" draws diagonal lines over the fill


@dataclass(frozen=True, slots=True)
class StackedColumn:
    label: str
    segments: tuple[Segment, ...]

    @property
    def total(self) -> int:
        return sum(s.value for s in self.segments)


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (and at least 1)."""
    if value <= 1:
        return 1
    power = 1
    while power * 10 <= value:
        power *= 10
    for step in (1, 2, 5):
        if step * power >= value:
            return step * power
    return 10 * power


def _svg_open(chart_id: str, title: str, description: str, width: int, height: int) -> list[str]:
    return [
        f'<svg class="chart" id="{escape(chart_id)}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="{_FONT}">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]


def bar_chart(*, chart_id: str, title: str, bars: Sequence[Bar], unit: str = "patients") -> Markup:
    """Horizontal bars with the label on the left and the value at the end of each bar."""
    top = max((b.value for b in bars), default=0)
    scale_max = nice_ceiling(top)
    plot = _WIDTH - _LABEL_WIDTH - 60
    height = _ROW * max(len(bars), 1) + 10
    description = f"{title}. " + "; ".join(f"{b.label}: {b.value} {unit}" for b in bars) + "."
    parts = _svg_open(chart_id, title, description, _WIDTH, height)
    for index, bar in enumerate(bars):
        y = 5 + index * _ROW
        length = 0 if scale_max == 0 else round(plot * bar.value / scale_max)
        parts.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{y + 19}" text-anchor="end" class="chart-label">'
            f"{escape(bar.label)}</text>"
        )
        parts.append(
            f'<rect x="{_LABEL_WIDTH}" y="{y + 4}" width="{max(length, 1)}" height="{_ROW - 10}" '
            f'class="tone-{escape(bar.tone)}"/>'
        )
        parts.append(
            f'<text x="{_LABEL_WIDTH + max(length, 1) + 6}" y="{y + 19}" class="chart-value">'
            f"{bar.value}</text>"
        )
    parts.append(
        f'<line x1="{_LABEL_WIDTH}" y1="2" x2="{_LABEL_WIDTH}" y2="{height - 3}" class="axis"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(
    *,
    chart_id: str,
    title: str,
    columns: Sequence[Bar],
    x_label: str,
    y_label: str,
    legend: Sequence[tuple[str, str]] = (),
) -> Markup:
    """Vertical columns (a histogram), value above each column, labels below."""
    stacked = [StackedColumn(c.label, (Segment(y_label, c.value, c.tone),)) for c in columns]
    description = (
        f"{title}. "
        + "; ".join(f"{x_label} {c.label}: {c.value} {y_label.lower()}" for c in columns)
        + "."
    )
    return _columns(chart_id, title, description, stacked, x_label, y_label, legend)


def stacked_chart(
    *,
    chart_id: str,
    title: str,
    columns: Sequence[StackedColumn],
    x_label: str,
    y_label: str,
    legend: Sequence[tuple[str, str]] = (),
    label_every: int = 1,
) -> Markup:
    """Stacked columns (e.g. cards per day: accepted, overridden, no feedback)."""
    description = (
        f"{title}. "
        + "; ".join(
            f"{c.label}: " + ", ".join(f"{s.series} {s.value}" for s in c.segments) for c in columns
        )
        + "."
    )
    return _columns(
        chart_id, title, description, columns, x_label, y_label, legend, label_every=label_every
    )


def _columns(
    chart_id: str,
    title: str,
    description: str,
    columns: Sequence[StackedColumn],
    x_label: str,
    y_label: str,
    legend: Sequence[tuple[str, str]],
    *,
    label_every: int = 1,
) -> Markup:
    left, right, top_pad, bottom = 56, 10, 34 if legend else 14, 58
    plot_height = 220
    height = top_pad + plot_height + bottom
    count = max(len(columns), 1)
    slot = (_WIDTH - left - right) / count
    width = max(2.0, slot * 0.7)
    step = nice_ceiling(-(-max((c.total for c in columns), default=0) // 4))
    ticks = max(1, -(-max((c.total for c in columns), default=0) // step))
    scale_max = step * ticks
    parts = _svg_open(chart_id, title, description, _WIDTH, height)
    hatch_id = f"{escape(chart_id)}-hatch"
    parts.append(
        f'<defs><pattern id="{hatch_id}" patternUnits="userSpaceOnUse" width="6" height="6" '
        'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/>'
        "</pattern></defs>"
    )
    for tick in range(ticks + 1):  # gridlines and y ticks at whole steps of 1, 2 or 5 x 10^n
        value = step * tick
        y = top_pad + plot_height - plot_height * tick / ticks
        shown = str(value)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{_WIDTH - right}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 5:.1f}" text-anchor="end" class="chart-tick">{shown}</text>'
        )
    for index, column in enumerate(columns):
        x = left + slot * index + (slot - width) / 2
        base: float = top_pad + plot_height
        for segment in column.segments:
            if segment.value <= 0:
                continue
            h = plot_height * segment.value / scale_max
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'class="tone-{escape(segment.tone)}"/>'
            )
            if segment.pattern == "hatch":
                parts.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" height="{h:.1f}" '
                    f'fill="url(#{escape(chart_id)}-hatch)"/>'
                )
        if len(columns) <= 16:
            parts.append(
                f'<text x="{x + width / 2:.1f}" y="{base - 5:.1f}" text-anchor="middle" '
                f'class="chart-value">{column.total}</text>'
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x + width / 2:.1f}" y="{top_pad + plot_height + 18}" '
                f'text-anchor="middle" class="chart-label">{escape(column.label)}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{top_pad + plot_height}" x2="{_WIDTH - right}" '
        f'y2="{top_pad + plot_height}" class="axis"/>'
    )
    parts.append(
        f'<text x="{left + (_WIDTH - left - right) / 2:.0f}" y="{height - 12}" '
        f'text-anchor="middle" class="chart-axis-title">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="14" y="{top_pad + plot_height / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top_pad + plot_height / 2:.0f})" class="chart-axis-title">'
        f"{escape(y_label)}</text>"
    )
    x = left
    for name, tone in legend:
        hatch = tone.endswith(":hatch")
        tone_class = tone.removesuffix(":hatch")
        parts.append(
            f'<rect x="{x}" y="8" width="14" height="14" class="tone-{escape(tone_class)}"/>'
        )
        if hatch:
            parts.append(
                f'<rect x="{x}" y="8" width="14" height="14" fill="url(#{escape(chart_id)}-hatch)"/>'
            )
        parts.append(f'<text x="{x + 20}" y="20" class="chart-label">{escape(name)}</text>')
        x += 30 + 8 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))
