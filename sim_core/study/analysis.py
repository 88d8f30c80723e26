"""What a finished study says: its grid as an xarray Dataset, Sobol indices, and figures.

Here: ``grid_dataset`` (a grid study as ``xarray.Dataset``, one dimension per factor plus the
replicate), ``sobol_indices`` (first-order and total Sobol indices of each metric to each factor,
with confidence intervals, by SALib), ``ranked_table`` (them as text), ``sensitivity_figure``
(bar charts), ``grid_figure`` (small multiples of the heatmap over a third factor) and
``write_analysis`` (all of it into the output directory). Not here: running the study.

Every library (xarray, SALib, matplotlib) is imported inside the function that needs it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim_core.study.document import StudyError, require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sim_core.study.engine import StudyResult

#: Resamples of SALib's bootstrap and the level of its confidence intervals.
BOOTSTRAP_RESAMPLES = 200
CONFIDENCE = 0.95
DPI = 150


def grid_dataset(result: StudyResult) -> Any:
    """Return a grid study as an ``xarray.Dataset``.

    One data variable per metric, of dimensions (one per factor, in document order, then
    ``replicate``); the factors' levels are the coordinates (a non-numeric level as its JSON
    text), and ``seed`` (per replicate) is a coordinate too.

    Raises:
        StudyError: the study is not a grid.
    """
    study = result.study
    if study.design.type != "grid":
        raise StudyError("design.type", "a Dataset is made of grid designs only")
    xr = require("xarray")
    table = result.table().sort_values(["point", "replicate"])
    shape = (*study.grid_shape(), study.replicates)
    dims = [factor.key for factor in study.factors] + ["replicate"]
    coords: dict[str, Any] = {
        factor.key: [factor.label(level) for level in factor.levels()] for factor in study.factors
    }
    coords["replicate"] = np.arange(study.replicates)
    coords["seed"] = ("replicate", table["seed"].to_numpy()[: study.replicates])
    data = {name: (dims, table[name].to_numpy().reshape(shape)) for name in study.metrics}
    return xr.Dataset(
        data,
        coords=coords,
        attrs={"study": study.name, "digest": study.digest(), "design": "grid"},
    )


def sobol_indices(result: StudyResult) -> Any:
    """Return Sobol indices of each metric to each factor (a pandas DataFrame).

    Columns: ``metric``, ``factor``, ``S1`` and ``S1_conf`` (first order and the half-width of
    its 95 % confidence interval), ``ST`` and ``ST_conf`` (total order); rows of a metric are
    ranked by ST. The output is each point's mean over replicates; a metric that does not vary
    over the points has NaN indices.

    Raises:
        StudyError: the study's design is not sobol.
    """
    study = result.study
    if study.design.type != "sobol":
        raise StudyError("design.type", "Sobol indices need a sobol design")
    pd = require("pandas")
    analyze = require("SALib.analyze.sobol")
    means = result.point_means().sort_values("point")
    rows = []
    for metric in study.metrics:
        output = means[metric].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(output)) or np.ptp(output) == 0:
            indices = {name: [math.nan] * len(study.factors) for name in _INDEX_COLUMNS}
        else:
            indices = analyze.analyze(
                study.salib_problem(),
                output,
                calc_second_order=False,
                num_resamples=BOOTSTRAP_RESAMPLES,
                conf_level=CONFIDENCE,
                seed=study.design.seed,
            )
        for position, factor in enumerate(study.factors):
            row: dict[str, Any] = {"metric": metric, "factor": factor.key}
            row |= {name: float(indices[name][position]) for name in _INDEX_COLUMNS}
            rows.append(row)
    frame = pd.DataFrame(rows, columns=["metric", "factor", *_INDEX_COLUMNS])
    frame["order"] = frame["metric"].map({name: i for i, name in enumerate(study.metrics)})
    frame = frame.sort_values(["order", "ST"], ascending=[True, False], na_position="last")
    return frame.drop(columns="order").reset_index(drop=True)


_INDEX_COLUMNS = ("S1", "S1_conf", "ST", "ST_conf")


def ranked_table(indices: Any) -> str:
    """Return the Sobol indices as text: per metric, factors ranked by total index."""
    lines = []
    width = max([len(str(name)) for name in indices["factor"]] + [6])
    for metric, rows in indices.groupby("metric", sort=False):
        lines.append(f"{metric}")
        lines.append(f"  {'factor':<{width}}  {'S1':>7} {'± 95%':>7}  {'ST':>7} {'± 95%':>7}")
        for row in rows.itertuples():
            cells = " ".join(
                f"{value:>7.3f}" if math.isfinite(value) else f"{'-':>7}"
                for value in (row.S1, row.S1_conf)
            )
            totals = " ".join(
                f"{value:>7.3f}" if math.isfinite(value) else f"{'-':>7}"
                for value in (row.ST, row.ST_conf)
            )
            lines.append(f"  {row.factor:<{width}}  {cells}  {totals}")
    return "\n".join(lines)


def sensitivity_figure(indices: Any) -> Figure:
    """Return bar charts of S1 and ST with their confidence intervals, one panel per metric."""
    from matplotlib.figure import Figure

    metrics = list(dict.fromkeys(indices["metric"]))
    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    factors = len(set(indices["factor"]))
    figure = Figure(figsize=(4.2 * columns, (0.9 + 0.45 * factors) * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(metrics) :]:
        axis.set_visible(False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        part = indices[indices["metric"] == metric].iloc[::-1]
        positions = np.arange(len(part))
        total = np.nan_to_num(part["ST"].to_numpy())
        first = np.nan_to_num(part["S1"].to_numpy())
        axis.barh(
            positions + 0.2,
            total,
            0.38,
            xerr=np.nan_to_num(part["ST_conf"].to_numpy()),
            color="#1f4e79",
            label="total (ST)",
            capsize=2,
        )
        axis.barh(
            positions - 0.2,
            first,
            0.38,
            xerr=np.nan_to_num(part["S1_conf"].to_numpy()),
            color="#e69f00",
            label="first order (S1)",
            capsize=2,
        )
        axis.set_yticks(positions, list(part["factor"]))
        axis.set_xlim(min(0.0, float(first.min()) - 0.05), 1.05)
        axis.axvline(0, color="#444444", linewidth=0.6)
        axis.set_title(metric, fontsize=10)
        axis.tick_params(labelsize=8)
    axes.flat[0].legend(fontsize=8, loc="lower right")
    figure.suptitle("Sobol indices with 95 % confidence intervals", fontsize=11)
    return figure


def grid_figure(result: StudyResult, metric: str | None = None) -> Figure:
    """Return small multiples of the heatmap of a grid study: one panel per third-factor level.

    x is the first factor, y the second, one panel per level of the third; the colour is the
    metric's mean over replicates and over any further factor. A shared colour scale (cividis).

    Raises:
        StudyError: not a grid, or fewer than two factors.
    """
    from matplotlib.figure import Figure

    study = result.study
    if study.design.type != "grid" or len(study.factors) < 2:
        raise StudyError("factors", "small multiples need a grid design of at least two factors")
    metric = metric or study.metrics[0]
    dataset = grid_dataset(result)
    keys = [factor.key for factor in study.factors]
    mean = dataset[metric].mean(dim=["replicate", *keys[3:]])
    panels = list(mean[keys[2]].values) if len(keys) > 2 else [None]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(3.4 * columns + 1.0, 3.0 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    low, high = float(mean.min()), float(mean.max())
    mesh = None
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, level in zip(axes.flat, panels, strict=False):
        frame = mean if level is None else mean.sel({keys[2]: level})
        frame = frame.transpose(keys[1], keys[0])
        x = np.arange(frame.shape[1])
        y = np.arange(frame.shape[0])
        mesh = axis.pcolormesh(
            x, y, frame.values, cmap="cividis", vmin=low, vmax=high, shading="nearest"
        )
        axis.set_xticks(x, [_short(v) for v in frame[keys[0]].values], fontsize=7, rotation=45)
        axis.set_yticks(y, [_short(v) for v in frame[keys[1]].values], fontsize=7)
        axis.set_xlabel(keys[0], fontsize=8)
        axis.set_ylabel(keys[1], fontsize=8)
        if level is not None:
            axis.set_title(f"{keys[2]} = {_short(level)}", fontsize=9)
    if mesh is not None:
        figure.colorbar(mesh, ax=axes, label=metric, shrink=0.9)
    figure.suptitle(f"{study.name}: mean {metric} over {study.replicates} replicates", fontsize=10)
    return figure


def _short(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.3g}"
    return str(value)


def write_analysis(result: StudyResult) -> tuple[list[Path], str]:
    """Write what fits the design into the output directory; return the paths and a text.

    Sobol: ``sensitivity.csv`` and ``sensitivity.png`` (text: the ranked table). Grid:
    ``dataset.nc`` (netCDF, by scipy) and, with two factors or more, ``heatmaps.png``.
    """
    directory = result.directory
    design = result.study.design.type
    written: list[Path] = []
    text = ""
    if design == "sobol":
        indices = sobol_indices(result)
        indices.to_csv(directory / "sensitivity.csv", index=False)
        sensitivity_figure(indices).savefig(directory / "sensitivity.png", dpi=DPI)
        written += [directory / "sensitivity.csv", directory / "sensitivity.png"]
        text = ranked_table(indices)
    elif design == "grid":
        dataset = grid_dataset(result)
        dataset.to_netcdf(directory / "dataset.nc", engine="scipy")
        written.append(directory / "dataset.nc")
        if len(result.study.factors) >= 2:
            grid_figure(result).savefig(directory / "heatmaps.png", dpi=DPI)
            written.append(directory / "heatmaps.png")
    return written, text
