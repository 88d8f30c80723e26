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


def _colour_range(result: SweepResult) -> tuple[float, float]:
    """Return the colour scale: the data's range, widened to end at 1 for shares."""
    finite = result.values[np.isfinite(result.values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if result.metric in SHARES:
        low, high = max(0.0, np.floor(low * 20) / 20), 1.0
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def heatmap_figure(result: SweepResult, *, mark: tuple[float, float] | None = None) -> Figure:
    """Draw the deterrence heatmap of ``result`` (§9) and return the figure.

    Args:
        result: a finished sweep.
        mark: an optional (P, p_eff) point to mark, e.g. a game's own parameters.
    """
    from matplotlib import patheffects
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    axes = figure.add_axes((0.095, 0.35, 0.74, 0.57))
    bar_axes = figure.add_axes((0.855, 0.35, 0.022, 0.57))
    metric = result.metric
    low, high = _colour_range(result)
    mesh = axes.pcolormesh(
        _edges(result.p),
        _edges(result.p_eff),
        result.values,
        cmap="cividis",
        vmin=low,
        vmax=high,
        shading="flat",
        rasterized=True,  # one image in the SVG, not thousands of rectangles
    )
    colour_bar = figure.colorbar(mesh, cax=bar_axes)
    colour_bar.set_label(METRIC_LABELS.get(metric, metric))
    if low <= result.threshold <= high:  # the level the flip line is read at
        colour_bar.ax.axhline(result.threshold, color="#000000", linewidth=3.0)
        colour_bar.ax.axhline(result.threshold, color=_FLIP_COLOUR, linewidth=1.4)
    outline = [patheffects.withStroke(linewidth=3.2, foreground="#000000")]
    light_outline = [patheffects.withStroke(linewidth=3.4, foreground="#ffffff")]

    # The theoretical flip: deterred exactly when p_eff·P >= g*, drawn over the whole P range.
    x_low, x_high = _edges(result.p)[[0, -1]]
    y_low, y_high = _edges(result.p_eff)[[0, -1]]
    fine = np.linspace(max(x_low, 1e-9), x_high, 400)
    gain = result.marginal_gain
    axes.plot(
        fine,
        gain / fine,
        color=_THEORY_COLOUR,
        linestyle=(0, (5, 2.5)),
        linewidth=1.8,
        path_effects=light_outline,
        label=f"theory: p_eff · P = g*, with g* = E[clearing price] + ρ = {gain:.3g}",
    )
    # The empirical flip: the first grid p_eff whose mean reaches the threshold, for each P.
    relation = "≤" if metric in FALLING_METRICS else "≥"
    reached = np.isfinite(result.flip)
    axes.plot(
        result.p[reached],
        result.flip[reached],
        color=_FLIP_COLOUR,
        linestyle="-",
        linewidth=1.6,
        marker="o",
        markersize=4,
        markeredgecolor="#000000",
        markeredgewidth=0.8,
        path_effects=outline,
        label=f"empirical flip: lowest grid p_eff with mean {relation} {result.threshold:g}",
    )
    if mark is not None:
        axes.plot(
            [mark[0]],
            [mark[1]],
            linestyle="none",
            marker="*",
            markersize=15,
            color=_MARK_COLOUR,
            markeredgecolor="#000000",
            markeredgewidth=1.0,
            label=f"marked point: P = {mark[0]:g}, p_eff = {mark[1]:g}",
            zorder=5,
        )
        x_low, x_high = min(x_low, mark[0]), max(x_high, mark[0])
        y_low, y_high = min(y_low, mark[1]), max(y_high, mark[1])
    axes.set_xlim(x_low, x_high)
    axes.set_ylim(y_low, y_high)
    axes.set_xlabel("Punishment if caught, P = K + φ + R (money units)")
    axes.set_ylabel("Effective detection probability, p_eff")
    axes.set_title(
        f"Deterrence heatmap: {result.scenario.name}", loc="left", fontsize=12, fontweight="bold"
    )
    figure.legend(
        *axes.get_legend_handles_labels(),
        loc="upper left",
        bbox_to_anchor=(0.085, 0.245),
        fontsize=8,
        frameon=False,
        handlelength=3,
    )
    figure.text(0.095, 0.018, _caption(result), fontsize=6.8, color="#333333", va="bottom")
    return figure


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
