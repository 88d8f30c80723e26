"""Server-rendered SVG charts for the instructor's console, projector and debrief.

Here: ``Chart`` (a named SVG with its data as CSV, so every chart on a page can be downloaded as
an image and as data), the generic ``line_chart``, ``bar_chart``, ``histogram`` and ``heatmap``,
and ``round_charts`` (the four per-round charts of a game). Charts are plain strings built from
numbers: no template, no database, no JavaScript library, nothing fetched from another host.
Every text is escaped here. The SVGs carry their own fonts, colours and white background, so the
console's "PNG" button can draw one onto a canvas as it is.

Colours are the Okabe-Ito palette (distinguishable with every common colour-vision deficiency);
the deterrence heatmap is sim_core's drawing (``sim_core.plot``: cividis, one look in the CLI
and the debrief).
Not here: what the numbers mean (sim_core) or which game they come from (selectors, debrief).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from sim_core import csv_table

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK = "#1b1f24"
MUTED = "#4a5562"
GRID = "#d5dae1"
BLUE = "#0072B2"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
GREEN = "#009E73"
SKY = "#56B4E9"
PURPLE = "#CC79A7"
GREY = "#8a94a3"


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: ``name`` (a slug for ids and file names), its title, SVG markup and data."""

    name: str
    title: str
    svg: str
    csv: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Series:
    """One line or one set of bars: a label for the legend, a value per x (None = no value)."""

    label: str
    values: Sequence[float | None]
    colour: str = BLUE
    dashed: bool = False
    colours: Sequence[str] = field(default_factory=tuple)  # bars only: one colour per bar


@dataclass(frozen=True, slots=True)
class Box:
    """The plotting area inside the SVG, in viewBox units."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


# ------------------------------------------------------------------------------ helpers


def _n(value: float) -> str:
    """Format a coordinate compactly."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Return round tick values covering [lo, hi] (about ``count`` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_label(value: float, *, percent: bool) -> str:
    if percent:
        return f"{value * 100:.0f}%"
    if abs(value - round(value)) < 1e-9:
        return f"{value:.0f}"
    if abs(value * 10 - round(value * 10)) < 1e-9:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _text(
    x: float,
    y: float,
    content: str,
    *,
    size: float = 14,
    anchor: str = "start",
    colour: str = INK,
    weight: str = "normal",
    rotate: float | None = None,
    baseline: str | None = None,
) -> str:
    attributes = [
        f'x="{_n(x)}"',
        f'y="{_n(y)}"',
        f'font-size="{_n(size)}"',
        f'text-anchor="{anchor}"',
        f'fill="{colour}"',
    ]
    if weight != "normal":
        attributes.append(f'font-weight="{weight}"')
    if rotate is not None:
        attributes.append(f'transform="rotate({_n(rotate)} {_n(x)} {_n(y)})"')
    if baseline is not None:
        attributes.append(f'dominant-baseline="{baseline}"')
    return f"<text {' '.join(attributes)}>{escape(content)}</text>"


def _open(name: str, title: str, description: str, width: float, height: float) -> list[str]:
    ident = f"chart-{escape(name)}"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'width="{_n(width)}" height="{_n(height)}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" font-family="{escape(FONT)}" '
        f'class="chart-svg" data-chart="{escape(name)}">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description or title)}</desc>',
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
        _text(16, 28, title, size=19, weight="600"),
    ]


def _legend(items: Sequence[tuple[str, str, bool]], right: float, y: float) -> list[str]:
    """Legend items (label, colour, dashed) laid out from the right edge leftwards."""
    parts: list[str] = []
    x = right
    for label, colour, dashed in reversed(items):
        width = 7.6 * len(label) + 34
        x -= width
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(
            f'<line x1="{_n(x)}" y1="{_n(y - 5)}" x2="{_n(x + 22)}" y2="{_n(y - 5)}" '
            f'stroke="{colour}" stroke-width="3.5"{dash}/>'
        )
        parts.append(_text(x + 28, y, label, size=14, colour=INK))
        x -= 10
    return parts


#: Rough widths of one character of the 14px legend and the 13px caption (system sans-serif),
#: to wrap text before it runs off the picture (an SVG cannot measure its own text).
LEGEND_CHAR = 7.8
CAPTION_CHAR = 7.0


def _wrap(text: str, separator: str, limit: float) -> list[str]:
    """Split ``text`` at ``separator`` into lines of at most about ``limit`` characters."""
    lines: list[str] = []
    for piece in text.split(separator) if text else []:
        if lines and len(lines[-1]) + len(separator) + len(piece) <= limit:
            lines[-1] += separator + piece
        else:
            lines.append(piece)
    return lines


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    return csv_table(header, rows)


def _y_axis(
    box: Box, lo: float, hi: float, label: str, *, percent: bool, ticks: Sequence[float]
) -> list[str]:
    parts: list[str] = []
    for tick in ticks:
        y = box.bottom - (tick - lo) / (hi - lo) * box.height
        parts.append(
            f'<line x1="{_n(box.left)}" y1="{_n(y)}" x2="{_n(box.right)}" y2="{_n(y)}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        parts.append(
            _text(
                box.left - 8, y, _tick_label(tick, percent=percent), anchor="end", baseline="middle"
            )
        )
    parts.append(
        _text(
            18,
            box.top + box.height / 2,
            label,
            size=15,
            anchor="middle",
            colour=MUTED,
            rotate=-90,
        )
    )
    return parts


def _x_axis_categories(box: Box, labels: Sequence[str], x_label: str) -> list[str]:
    parts = [
        f'<line x1="{_n(box.left)}" y1="{_n(box.bottom)}" x2="{_n(box.right)}" '
        f'y2="{_n(box.bottom)}" stroke="{MUTED}" stroke-width="1.5"/>'
    ]
    count = len(labels)
    step = box.width / max(1, count)
    every = max(1, math.ceil(count / 12))  # at most about 12 labels
    for index, label in enumerate(labels):
        if index % every and index != count - 1:
            continue
        x = box.left + step * (index + 0.5)
        parts.append(_text(x, box.bottom + 20, label, anchor="middle"))
    parts.append(
        _text(
            box.left + box.width / 2,
            box.bottom + 44,
            x_label,
            size=15,
            anchor="middle",
            colour=MUTED,
        )
    )
    return parts


def _range(values: Sequence[float | None], *, floor: float = 0.0, minimum: float = 1.0) -> float:
    present = [v for v in values if v is not None and math.isfinite(v)]
    top = max(present, default=0.0)
    return max(minimum, floor, top * 1.12)


# ------------------------------------------------------------------------------ chart types


def line_chart(
    *,
    name: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    y_max: float | None = None,
    percent: bool = False,
    description: str = "",
    width: float = 640,
    height: float = 360,
) -> Chart:
    """Lines over categories (rounds): one point per label, gaps where a value is None."""
    box = Box(70, 56, width - 70 - 20, height - 56 - 62)
    hi = y_max if y_max is not None else _range([v for s in series for v in s.values])
    ticks = nice_ticks(0.0, hi, 4)
    hi = max(hi, ticks[-1])
    parts = _open(name, title, description, width, height)
    parts += _y_axis(box, 0.0, hi, y_label, percent=percent, ticks=ticks)
    parts += _x_axis_categories(box, labels, x_label)
    step = box.width / max(1, len(labels))
    for one in series:
        points: list[list[tuple[float, float]]] = [[]]
        for index, value in enumerate(one.values):
            if value is None or not math.isfinite(value):
                points.append([])
                continue
            x = box.left + step * (index + 0.5)
            y = box.bottom - min(max(value, 0.0), hi) / hi * box.height
            points[-1].append((x, y))
        dash = ' stroke-dasharray="7 5"' if one.dashed else ""
        for run in points:
            if len(run) > 1:
                path = " ".join(f"{_n(x)},{_n(y)}" for x, y in run)
                parts.append(
                    f'<polyline points="{path}" fill="none" stroke="{one.colour}" '
                    f'stroke-width="3.5" stroke-linejoin="round"{dash}/>'
                )
            if not one.dashed:
                for x, y in run:
                    parts.append(
                        f'<circle cx="{_n(x)}" cy="{_n(y)}" r="4.5" fill="{one.colour}" '
                        f'stroke="#ffffff" stroke-width="1.5"/>'
                    )
    parts += _legend([(s.label, s.colour, s.dashed) for s in series], width - 16, 28)
    parts.append("</svg>")
    header = [x_label.lower(), *[s.label for s in series]]
    rows = [
        [label, *[s.values[index] if index < len(s.values) else None for s in series]]
        for index, label in enumerate(labels)
    ]
    return Chart(name, title, "".join(parts), _csv(header, rows), description)


def bar_chart(
    *,
    name: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    y_max: float | None = None,
    percent: bool = False,
    reference: tuple[str, float] | None = None,
    description: str = "",
    width: float = 640,
    height: float = 360,
) -> Chart:
    """Grouped bars over categories; ``reference`` draws a labelled horizontal line (a cap)."""
    box = Box(70, 56, width - 70 - 20, height - 56 - 62)
    values = [v for s in series for v in s.values]
    if reference is not None:
        values.append(reference[1])
    hi = y_max if y_max is not None else _range(values)
    ticks = nice_ticks(0.0, hi, 4)
    hi = max(hi, ticks[-1])
    parts = _open(name, title, description, width, height)
    parts += _y_axis(box, 0.0, hi, y_label, percent=percent, ticks=ticks)
    step = box.width / max(1, len(labels))
    group = step * 0.72
    bar = group / max(1, len(series))
    for position, one in enumerate(series):
        for index, value in enumerate(one.values):
            if value is None or not math.isfinite(value):
                continue
            colour = one.colours[index] if index < len(one.colours) else one.colour
            x = box.left + step * index + (step - group) / 2 + bar * position
            h = min(max(value, 0.0), hi) / hi * box.height
            tip = f"{labels[index]}: {one.label} {_tick_label(value, percent=percent)}"
            parts.append(
                f'<rect x="{_n(x + 1)}" y="{_n(box.bottom - h)}" width="{_n(max(bar - 2, 1))}" '
                f'height="{_n(h)}" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
    parts += _x_axis_categories(box, labels, x_label)
    legend = [(s.label, s.colour, False) for s in series]
    if reference is not None:
        label, level = reference
        y = box.bottom - min(level, hi) / hi * box.height
        parts.append(
            f'<line x1="{_n(box.left)}" y1="{_n(y)}" x2="{_n(box.right)}" y2="{_n(y)}" '
            f'stroke="{INK}" stroke-width="2.5" stroke-dasharray="7 5"/>'
        )
        legend.append((label, INK, True))
    parts += _legend(legend, width - 16, 28)
    parts.append("</svg>")
    header = [x_label.lower(), *[s.label for s in series]]
    rows = [
        [label, *[s.values[index] if index < len(s.values) else None for s in series]]
        for index, label in enumerate(labels)
    ]
    return Chart(name, title, "".join(parts), _csv(header, rows), description)


def histogram(
    *,
    name: str,
    title: str,
    samples: Sequence[float],
    value: float | None,
    value_label: str,
    x_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    bins: int = 20,
    percent: bool = True,
    description: str = "",
    width: float = 640,
    height: float = 360,
) -> Chart:
    """A histogram of ``samples`` with ``value`` (this class) marked by a labelled line."""
    lo, hi = x_range
    if hi <= lo:
        hi = lo + 1.0
    counts = [0] * bins
    for sample in samples:
        if not math.isfinite(sample):
            continue
        index = int((sample - lo) / (hi - lo) * bins)
        counts[min(max(index, 0), bins - 1)] += 1
    box = Box(70, 56, width - 70 - 24, height - 56 - 62)
    top = max(1.0, max(counts) * 1.15)
    ticks = nice_ticks(0.0, top, 4)
    top = max(top, ticks[-1])
    parts = _open(name, title, description, width, height)
    parts += _y_axis(box, 0.0, top, "simulated classes", percent=False, ticks=ticks)
    bin_width = box.width / bins
    for index, count in enumerate(counts):
        h = count / top * box.height
        left = lo + (hi - lo) * index / bins
        right = lo + (hi - lo) * (index + 1) / bins
        tip = (
            f"{_tick_label(left, percent=percent)} to {_tick_label(right, percent=percent)}: "
            f"{count} classes"
        )
        parts.append(
            f'<rect x="{_n(box.left + bin_width * index + 1)}" y="{_n(box.bottom - h)}" '
            f'width="{_n(bin_width - 2)}" height="{_n(h)}" fill="{SKY}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    parts.append(
        f'<line x1="{_n(box.left)}" y1="{_n(box.bottom)}" x2="{_n(box.right)}" '
        f'y2="{_n(box.bottom)}" stroke="{MUTED}" stroke-width="1.5"/>'
    )
    for tick in nice_ticks(lo, hi, 5):
        x = box.left + (tick - lo) / (hi - lo) * box.width
        parts.append(_text(x, box.bottom + 20, _tick_label(tick, percent=percent), anchor="middle"))
    parts.append(
        _text(
            box.left + box.width / 2,
            box.bottom + 44,
            x_label,
            size=15,
            anchor="middle",
            colour=MUTED,
        )
    )
    if value is not None and math.isfinite(value):
        x = box.left + (min(max(value, lo), hi) - lo) / (hi - lo) * box.width
        parts.append(
            f'<line x1="{_n(x)}" y1="{_n(box.top - 4)}" x2="{_n(x)}" y2="{_n(box.bottom)}" '
            f'stroke="{VERMILLION}" stroke-width="4"/>'
        )
        anchor = "end" if x > box.left + box.width * 0.5 else "start"
        offset = -8 if anchor == "end" else 8
        parts.append(
            _text(
                x + offset,
                box.top + 14,
                value_label,
                size=15,
                anchor=anchor,
                colour=VERMILLION,
                weight="700",
            )
        )
    parts.append("</svg>")
    rows = [
        [lo + (hi - lo) * index / bins, lo + (hi - lo) * (index + 1) / bins, count]
        for index, count in enumerate(counts)
    ]
    return Chart(name, title, "".join(parts), _csv(["from", "to", "classes"], rows), description)


#: The debrief's heatmap in inches: narrower than the command line's, so its text stays
#: legible when a 375 px phone shrinks it to the screen's width.
PHONE_SIZE = (5.6, 5.6)


def heatmap(
    *,
    name: str,
    title: str,
    p: Sequence[float],
    p_eff: Sequence[float],
    values: Sequence[Sequence[float | None]],
    flip: Sequence[float | None],
    marginal_gain: float | None,
    metric: str = "compliance_rate",
    threshold: float = 0.9,
    mark: tuple[float, float] | None = None,
    mark_label: str = "This class",
    metric_label: str = "compliance",
    caption: str = "",
    description: str = "",
    width: int = 760,
) -> Chart:
    """The deterrence heatmap (MODEL.md §9), drawn by sim_core's ``heatmap_svg``.

    The one drawing the command line's ``sweep`` also writes (cividis, the behaviour flip, the
    theory curve p_eff = g*/P and the marked point), wrapped here in the chart's accessible
    ``<svg>`` (title, description, data attributes) with the cells' data as CSV.

    Args:
        p: the P values (columns), ascending.
        p_eff: the p_eff values (rows), ascending.
        values: ``values[row][column]``, the metric (0..1) of each cell.
        flip: per P, the smallest p_eff reaching ``threshold`` (None where none does).
        marginal_gain: g*, for the theoretical curve p_eff = g*/P (None: no curve).
        metric: the §8 metric on the map; ``metric_label`` names it in the CSV.
        mark: (P, p_eff) of this game, drawn as a star named ``mark_label``.
        caption: the text under the plot (scenario and parameters).
    """
    from sim_core.plot import heatmap_svg  # matplotlib only when a heatmap is drawn

    mark_id = f"{name}-game-point"
    drawn = heatmap_svg(
        width=width,
        size=PHONE_SIZE,
        mark_gid=mark_id,
        p=p,
        p_eff=p_eff,
        values=values,
        flip=flip,
        marginal_gain=marginal_gain if marginal_gain is not None else math.nan,
        metric=metric,
        threshold=threshold,
        title=title,
        caption=caption,
        mark=mark if mark is not None and all(math.isfinite(v) for v in mark) else None,
        mark_label=mark_label,
    )
    ident = f"chart-{escape(name)}"
    opening, _, rest = drawn.partition(">")
    svg = (
        f'{opening} role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'class="chart-svg" data-chart="{escape(name)}">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(description or title)}</desc>'
        f"{rest}"
    )
    if mark is not None:
        svg = svg.replace(
            f'<g id="{mark_id}">',
            f'<g id="{mark_id}" class="game-point" data-p="{mark[0]:.4f}" '
            f'data-p-eff="{mark[1]:.4f}">',
            1,
        )
    csv_rows = [
        [punishment, level, values[row][column]]
        for row, level in enumerate(p_eff)
        for column, punishment in enumerate(p)
    ]
    return Chart(
        name,
        title,
        svg,
        _csv(["punishment", "p_eff", metric_label.replace(" ", "_")], csv_rows),
        description,
    )


# ------------------------------------------------------------------------------ a game's rounds


#: The price chart's description when permits are granted and traded (MODEL.md §3b).
TRADED_PRICE = "The price of each round's trades; none in a round without a trade."


def round_charts(
    results: Sequence[Mapping[str, float]],
    *,
    rounds: int,
    token_cap: int | None,
    lab_count: int,
    predicted_compliance: float | None = None,
    expected_price: float | Sequence[float] | None = None,
    expected_price_label: str = "model's expected price",
    traded: bool = False,
) -> list[Chart]:
    """Return the per-round charts of a game: price, permits, violations and caught, compliance.

    Args:
        results: one dict per settled round with ``round`` and the MODEL.md §8 metrics.
        rounds: the game's length (the x axis shows every round from the start).
        token_cap: Q, drawn over the permits (None: no line).
        lab_count: N, the top of the permits and violations axes.
        predicted_compliance: the model's prediction, drawn as a dashed line (debrief only).
        expected_price: the model's expected clearing price, dashed (debrief only): one number,
            or one per round (the bots' expected price moves when π1* follows the price).
        expected_price_label: the dashed line's name (which bots' price it is).
        traded: the permits were granted and traded (MODEL.md §3b): the price is the traded
            one (a gap in a round without a trade) and the permits chart shows the trades.
    """
    labels = [str(number) for number in range(1, max(rounds, len(results)) + 1)]
    by_round = {int(row["round"]): row for row in results}

    def column(metric: str) -> list[float | None]:
        values = [by_round[number].get(metric) if number in by_round else None
                  for number in range(1, len(labels) + 1)]  # fmt: skip
        return [None if value is None else float(value) for value in values]

    price_series = [Series("traded price" if traded else "clearing price", column("price"), BLUE)]
    if expected_price is not None:
        expected: list[float | None]
        if isinstance(expected_price, int | float):
            expected = [float(expected_price)] * len(labels)
        else:
            path = [float(price) for price in expected_price]
            expected = [path[min(i, len(path) - 1)] if path else None for i in range(len(labels))]
        price_series.append(Series(expected_price_label, expected, GREY, dashed=True))
    compliance_series = [Series("compliance", column("compliance_rate"), GREEN)]
    if predicted_compliance is not None:
        compliance_series.append(
            Series("model's prediction", [predicted_compliance] * len(labels), GREY, dashed=True)
        )
    count_top = float(max(lab_count, 1))
    permits_series = [Series("permits", column("permits"), BLUE)]
    if traded:
        permits_series = [
            Series("permits held", column("permits"), BLUE),
            Series("traded", column("trades"), ORANGE),
        ]
    return [
        line_chart(
            name="price",
            title="Traded price" if traded else "Clearing price",
            labels=labels,
            series=price_series,
            x_label="Round",
            y_label="price",
            description=TRADED_PRICE if traded else "The permit price of each round.",
        ),
        bar_chart(
            name="permits",
            title="Permits held and traded" if traded else "Permits sold",
            labels=labels,
            series=permits_series,
            x_label="Round",
            y_label="permits",
            y_max=count_top,
            reference=("cap Q", float(token_cap)) if token_cap is not None else None,
            description="Permits sold in each round, against the cap.",
        ),
        bar_chart(
            name="violations",
            title="Violations and caught",
            labels=labels,
            series=[
                Series("violations", column("violations"), VERMILLION),
                Series("caught", column("caught"), PURPLE),
            ],
            x_label="Round",
            y_label="labs",
            y_max=count_top,
            description="Labs that ran without a permit, and those caught, each round.",
        ),
        line_chart(
            name="compliance",
            title="Compliance rate",
            labels=labels,
            series=compliance_series,
            x_label="Round",
            y_label="share of labs",
            y_max=1.0,
            percent=True,
            description="The share of labs that did not run without a permit, each round.",
        ),
    ]
