"""The deterrence heatmap as a figure (MODEL.md §9), drawn with matplotlib.

Here: ``heatmap_figure`` (a ``matplotlib.figure.Figure`` of a ``SweepResult``) and
``save_heatmap`` (PNG and SVG). matplotlib is imported inside these functions only, so importing
sim_core, or sweeping with ``--no-plot``, never loads it; no pyplot state is touched (a server
or a notebook can call this from any thread). Not here: the sweep itself (``sweep.py``).

The picture: cells coloured with cividis (perceptually uniform, readable by colour-blind viewers
and in greyscale), a colour bar, the empirical behaviour flip (the first grid p_eff reaching the
threshold, per P) and the theoretical curve p_eff = g*/P over it, told apart by line style and
marker as well as colour, an optional marked point, and a caption with the scenario's parameters.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim_core.arrays import FloatArray
from sim_core.sweep import FALLING_METRICS, SweepResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Figure size in inches and resolution of the PNG: 1440 x 1120 pixels.
FIGURE_SIZE = (7.2, 5.6)
DPI = 200

#: How each §8 metric is named on the colour bar.
METRIC_LABELS: dict[str, str] = {
    "price": "Permit price (money units)",
    "permits": "Permits sold per round",
    "violations": "Violations per round (labs)",
    "compliance_rate": "Compliance rate (share of labs)",
    "deterrence_rate": "Deterrence rate (share of tempted labs deterred)",
    "total_compute": "Training runs per round",
    "cap_overshoot": "Runs above the cap per round",
    "audits": "Audits per round",
    "false_positive_audits": "Audits of compliant labs per round",
    "caught": "Violators caught per round",
    "detection_rate": "Detection rate (share of violators caught)",
    "revenue": "Revenue per round (money units)",
    "welfare": "Welfare per round (money units)",
}
#: Metrics that are shares: their colour scale ends at 1 (and starts at the lowest mean, rounded
#: down to a multiple of 0.05), so full compliance always has the same colour.
SHARES = frozenset({"compliance_rate", "deterrence_rate", "detection_rate"})

_FLIP_COLOUR = "#ffffff"
_THEORY_COLOUR = "#d81b60"  # a magenta that stands apart from every cividis colour
_MARK_COLOUR = "#ff8c1a"
#: Room per caption character in points (the caption is wrapped to the figure's width).
CAPTION_CHAR = 3.4


def _edges(centres: FloatArray) -> FloatArray:
    """Return the cell edges around grid values (half a step beyond each end)."""
    if centres.size == 1:
        half = max(abs(float(centres[0])) * 0.05, 0.01)
        return np.array([centres[0] - half, centres[0] + half])
    middles = (centres[1:] + centres[:-1]) / 2
    first = centres[0] - (middles[0] - centres[0])
    last = centres[-1] + (centres[-1] - middles[-1])
    return np.concatenate([[first], middles, [last]])


def _caption(result: SweepResult) -> str:
    scenario = result.scenario
    labs, market = scenario.labs, scenario.market
    strategy = ", ".join(
        f"{name}" if share == 1 else f"{share:.0%} {name}" for name, share in labs.strategy.items()
    )
    if market.type == "clearing":
        market_text = f"clearing market with Q = {market.token_cap} permits a round"
    else:
        market_text = f"fixed permit price {market.fixed_price:g}"
    lo, hi = labs.gross_value
    risk_lo, risk_hi = labs.risk_profile
    risk = f"r = {risk_lo:g}" if risk_lo == risk_hi else f"r ~ U[{risk_lo:g}, {risk_hi:g}]"
    values = "drawn once" if not labs.redraw_values_each_round else "redrawn each round"
    return (
        f"{labs.count} {strategy} labs, {market_text}; {scenario.rounds} rounds, "
        f"{len(result.seeds)} replicates per cell (common random numbers, seed {scenario.seed}).\n"
        f"Values v ~ U[{lo:g}, {hi:g}] {values}, compute cost c = {labs.compute_cost:g}, {risk}, "
        f"ρ = {labs.racing_value:g}, endowment {labs.endowment:g}.\n"
        f"Each cell: P is the whole penalty (K = 0, φ = P, R = 0) and every violator is caught "
        f"with probability p_eff (MODEL.md §9);\ncolour = mean over rounds and replicates."
    )


def _colour_range(values: FloatArray, metric: str) -> tuple[float, float]:
    """Return the colour scale: the data's range, widened to end at 1 for shares."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if metric in SHARES:
        low, high = max(0.0, np.floor(low * 20) / 20), 1.0
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def _domain_edges(centres: FloatArray, *, upper: float | None = None) -> FloatArray:
    """Return the cell edges, cut at the model's domain: P >= 0, 0 <= p_eff <= ``upper``.

    A grid starting at P = 0 (or p_eff = 0) has its first cell drawn from 0, not from half a
    step below it: a negative punishment or detection chance does not exist (MODEL.md §9).
    """
    edges = _edges(centres)
    if centres.size > 1:
        edges = np.maximum(edges, 0.0)
        if upper is not None:
            edges = np.minimum(edges, upper)
    return edges


def heatmap_figure(
    result: SweepResult,
    *,
    mark: tuple[float, float] | None = None,
    mark_label: str = "marked point",
) -> Figure:
    """Draw the deterrence heatmap of ``result`` (§9) and return the figure.

    Args:
        result: a finished sweep.
        mark: an optional (P, p_eff) point to mark, e.g. a game's own parameters.
        mark_label: how the marked point is named in the legend.
    """
    return draw_heatmap(
        p=result.p,
        p_eff=result.p_eff,
        values=result.values,
        flip=result.flip,
        marginal_gain=result.marginal_gain,
        metric=result.metric,
        threshold=result.threshold,
        title=f"Deterrence heatmap: {result.scenario.name}",
        caption=_caption(result),
        mark=mark,
        mark_label=mark_label,
    )


def draw_heatmap(
    *,
    p: Sequence[float] | FloatArray,
    p_eff: Sequence[float] | FloatArray,
    values: Sequence[Sequence[float | None]] | FloatArray,
    flip: Sequence[float | None] | FloatArray,
    marginal_gain: float,
    metric: str,
    threshold: float,
    title: str,
    caption: str,
    mark: tuple[float, float] | None = None,
    mark_label: str = "marked point",
    mark_gid: str | None = None,
    size: tuple[float, float] = FIGURE_SIZE,
) -> Figure:
    """Draw a deterrence heatmap from plain numbers (the CLI's sweep or the debrief's cache).

    The one drawing of the map: ``heatmap_figure`` (the CLI) and ``heatmap_svg`` (the debrief)
    both come here, so both show one palette (cividis) and the same marks.

    Args:
        p: the grid's P values (columns), ascending.
        p_eff: the grid's p_eff values (rows), ascending.
        values: ``values[row][column]``, the metric's cell means (None or NaN: no value).
        flip: per P, the lowest grid p_eff reaching ``threshold`` (None or NaN: none does).
        marginal_gain: g*, for the theoretical curve p_eff = g*/P.
        metric: the §8 metric on the map (names the colour bar, decides the flip's direction).
        threshold: the level the flip is read at.
        title: the heading.
        caption: the text under the picture (wrapped here).
        mark: a (P, p_eff) point to mark.
        mark_label: its name in the legend.
        mark_gid: the SVG id of the marked point's group (so a page can find it).
        size: the figure's size in inches (a narrower figure has larger text on a phone).
    """
    from matplotlib import patheffects
    from matplotlib.figure import Figure

    p_values = np.asarray(p, dtype=float)
    p_eff_values = np.asarray(p_eff, dtype=float)
    cells = np.array(
        [[np.nan if v is None else v for v in row] for row in values], dtype=float
    ).reshape(p_eff_values.size, p_values.size)
    flips = np.array([np.nan if v is None else v for v in flip], dtype=float)

    figure = Figure(figsize=size, dpi=DPI)
    left = 0.095 * FIGURE_SIZE[0] / size[0]  # the same room for the y label at any width
    axes = figure.add_axes((left, 0.35, 0.835 - left - 0.02 * (size[0] < FIGURE_SIZE[0]), 0.57))
    bar_axes = figure.add_axes((0.855 - 0.02 * (size[0] < FIGURE_SIZE[0]), 0.35, 0.022, 0.57))
    low, high = _colour_range(cells, metric)
    x_edges = _domain_edges(p_values)
    y_edges = _domain_edges(p_eff_values, upper=1.0)
    mesh = axes.pcolormesh(
        x_edges,
        y_edges,
        cells,
        cmap="cividis",
        vmin=low,
        vmax=high,
        shading="flat",
        rasterized=True,  # one image in the SVG, not thousands of rectangles
    )
    colour_bar = figure.colorbar(mesh, cax=bar_axes)
    colour_bar.set_label(METRIC_LABELS.get(metric, metric))
    if low <= threshold <= high:  # the level the flip line is read at
        colour_bar.ax.axhline(threshold, color="#000000", linewidth=3.0)
        colour_bar.ax.axhline(threshold, color=_FLIP_COLOUR, linewidth=1.4)
    outline = [patheffects.withStroke(linewidth=3.2, foreground="#000000")]
    light_outline = [patheffects.withStroke(linewidth=3.4, foreground="#ffffff")]

    # The theoretical flip: deterred exactly when p_eff·P >= g*, drawn over the whole P range.
    x_low, x_high = x_edges[[0, -1]]
    y_low, y_high = y_edges[[0, -1]]
    fine = np.linspace(max(x_low, 1e-9), x_high, 400)
    axes.plot(
        fine,
        marginal_gain / fine,
        color=_THEORY_COLOUR,
        linestyle=(0, (5, 2.5)),
        linewidth=1.8,
        path_effects=light_outline,
        label=f"theory: p_eff · P = g*, with g* = E[clearing price] + ρ = {marginal_gain:.3g}",
    )
    # The empirical flip: the first grid p_eff whose mean reaches the threshold, for each P.
    relation = "≤" if metric in FALLING_METRICS else "≥"
    reached = np.isfinite(flips)
    axes.plot(
        p_values[reached],
        flips[reached],
        color=_FLIP_COLOUR,
        linestyle="-",
        linewidth=1.6,
        marker="o",
        markersize=4,
        markeredgecolor="#000000",
        markeredgewidth=0.8,
        path_effects=outline,
        label=(
            f"empirical flip, the behaviour flip (simulated): lowest p_eff with mean "
            f"{relation} {threshold:g}"
        ),
    )
    if mark is not None:
        (point,) = axes.plot(
            [mark[0]],
            [mark[1]],
            linestyle="none",
            marker="*",
            markersize=15,
            color=_MARK_COLOUR,
            markeredgecolor="#000000",
            markeredgewidth=1.0,
            label=f"{mark_label}: P = {mark[0]:.3g}, p_eff = {mark[1]:.3g}",
            zorder=5,
        )
        if mark_gid is not None:
            point.set_gid(mark_gid)
        x_low, x_high = min(x_low, mark[0]), max(x_high, mark[0])
        y_low, y_high = min(y_low, mark[1]), max(y_high, mark[1])
    axes.set_xlim(x_low, x_high)
    axes.set_ylim(y_low, y_high)
    axes.set_xlabel("Punishment if caught, P = K + φ + R (money units)")
    axes.set_ylabel("Effective detection probability, p_eff")
    # The title shrinks (to 9 pt at least) rather than run off a narrow figure's right edge.
    room = (0.98 - left) * size[0] * 72 / (0.62 * len(title) or 1)
    axes.set_title(title, loc="left", fontsize=max(9.0, min(12.0, room)), fontweight="bold")
    figure.legend(
        *axes.get_legend_handles_labels(),
        loc="upper left",
        bbox_to_anchor=(left - 0.01, 0.245),
        fontsize=8,
        frameon=False,
        handlelength=3,
    )
    limit = round((0.97 - left) * size[0] * 72 / CAPTION_CHAR)
    wrapped = "\n".join(textwrap.fill(line, limit) for line in caption.splitlines())
    figure.text(left, 0.018, wrapped, fontsize=6.8, color="#333333", va="bottom")
    return figure


_STYLE = re.compile(r'style="([^"]*)"')


def _presentation(match: re.Match[str]) -> str:
    """Return a ``style`` attribute as SVG presentation attributes (``fill="#fff"``, ...).

    A page whose Content-Security-Policy allows no inline styles ignores ``style`` attributes
    (every shape would turn black); presentation attributes are markup, not style, so they hold.
    """
    pairs = (part.split(":", 1) for part in match.group(1).split(";") if ":" in part)
    return " ".join(f'{name.strip()}="{value.strip()}"' for name, value in pairs)


def heatmap_svg(
    *,
    width: int = 760,
    mark_gid: str = "game-point",
    size: tuple[float, float] = FIGURE_SIZE,
    **drawing: Any,
) -> str:
    """Return the heatmap of ``draw_heatmap(**drawing)`` as inline SVG markup (no XML prolog).

    Text stays text (searchable, read by screen readers); the page-wide ``<style>`` matplotlib
    writes is dropped (inline, it would restyle the whole page) and its ``style`` attributes
    become presentation attributes (a strict Content-Security-Policy ignores inline styles); the
    outer ``<svg>`` gets a whole-pixel ``width``/``height`` and keeps matplotlib's viewBox, so it
    scales to any width.
    """
    import io

    from matplotlib import rc_context

    figure = draw_heatmap(mark_gid=mark_gid, size=size, **drawing)
    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": mark_gid}):
        figure.savefig(buffer, format="svg", dpi=DPI, metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    text = re.sub(r'<style type="text/css">.*?</style>', "", text, count=1, flags=re.S)
    text = _STYLE.sub(_presentation, text)
    height = round(width * size[1] / size[0])
    view = f"0 0 {size[0] * 72:g} {size[1] * 72:g}"
    opening = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{view}" width="{width}" height="{height}" '
        'stroke-linejoin="round" stroke-linecap="butt">'
    )
    return re.sub(r"<svg[^>]*>", opening, text, count=1)


def save_heatmap(
    result: SweepResult,
    directory: Path | str,
    *,
    mark: tuple[float, float] | None = None,
    stem: str = "heatmap",
) -> list[Path]:
    """Write ``directory/heatmap.png`` (1440 x 1120 pixels) and ``.svg``; return the paths."""
    figure = heatmap_figure(result, mark=mark)
    paths = [Path(directory) / f"{stem}.png", Path(directory) / f"{stem}.svg"]
    metadata: dict[str, Any] = {"Title": f"Deterrence heatmap: {result.scenario.name}"}
    for path in paths:
        figure.savefig(path, dpi=DPI, metadata=metadata)
    return paths
