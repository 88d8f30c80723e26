"""The deterrence heatmap's sweep (MODEL.md §9): every (P, p_eff) cell of a grid, replicated.

Here: ``run_sweep`` and its ``SweepResult`` (arrays for notebooks and the debrief page, and the
JSON/CSV documents of the command line), ``grid_values``, ``replicate_seed``, ``sweep_scenario``
(the scenario with the sweep's population and length) and the two lines drawn over the map:
``behaviour_flip`` and ``theory_curve``. The play itself is ``batch.play_cells``. Not here:
drawing (``plot.py``) or the command line (``cli.py``).

Reproducibility: common random numbers. Replicate j of every cell is the game of that cell with
seed ``replicate_seed(seed, j)``: all cells of a replicate face the same values, tie keys and
catch draws, so they differ only by P and p_eff (which also makes the map smooth), and a cell's
numbers depend on its own P and p_eff, never on the grid around it or on how the work is split.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from sim_core.arrays import FloatArray, IntArray, frozen
from sim_core.batch import ReplicateDraws, play_cells, replicate_draws, wealth_plan
from sim_core.csvtext import csv_table
from sim_core.errors import SimCoreError
from sim_core.metrics import METRICS
from sim_core.parallel import fork_map
from sim_core.params import Scenario
from sim_core.theory import expected_clearing_price, expected_trade_price

Precision = Literal["float32", "float64"]
#: A callback told how many of the sweep's tasks are done, out of how many.
Progress = Callable[[int, int], None]

#: Metrics that fall as enforcement works: their flip is where they drop to the threshold or below.
FALLING_METRICS: frozenset[str] = frozenset({"violations", "total_compute", "cap_overshoot"})
#: The default grid of MODEL.md §9.
DEFAULT_P_RANGE = (0.2, 0.8)
DEFAULT_P_EFF_RANGE = (0.25, 0.75)
DEFAULT_GRID = (21, 21)
#: Grid values are rounded to this many decimals, so that the same P is the same float in any grid.
GRID_DECIMALS = 12
#: Labs x cells x replicates per block of work: large enough that numpy's cost per call is small
#: beside the arithmetic, small enough for a round's arrays to stay in the caches (2^16 to 2^18
#: measured alike on the reference machine, bench/RESULTS.md; 2^15 is slower).
BLOCK_ELEMENTS = 1 << 17


class SweepError(SimCoreError, ValueError):
    """A sweep that cannot be run: an empty or inverted range, a bad grid, an unknown metric."""


def grid_values(lo: float, hi: float, count: int) -> FloatArray:
    """Return ``count`` evenly spaced values from ``lo`` to ``hi`` (rounded, see GRID_DECIMALS)."""
    return frozen(np.round(np.linspace(lo, hi, count), GRID_DECIMALS))


def replicate_seed(seed: int, replicate: int) -> int:
    """Return the game seed of replicate ``replicate`` of a sweep seeded with ``seed``.

    Derived through ``SeedSequence`` (not ``seed + replicate``), so that the sweeps of two
    neighbouring seeds do not share games.
    """
    return int(np.random.SeedSequence([seed, replicate]).generate_state(1)[0])


def sweep_scenario(
    scenario: Scenario,
    *,
    labs: int | None = None,
    rounds: int | None = None,
    token_cap: int | None = None,
) -> Scenario:
    """Return ``scenario`` with the sweep's population size, game length and cap.

    Changing the number of labs keeps the scarcity of a clearing market: Q scales with N
    (rounded, at least 0) unless ``token_cap`` is given. A fixed-price market's reference cap
    scales the same way.

    Raises:
        SweepError: a count below 1 or a negative cap.
    """
    if labs is not None and labs < 1:
        raise SweepError(f"the number of labs must be at least 1, got {labs}")
    if rounds is not None and rounds < 1:
        raise SweepError(f"the number of rounds must be at least 1, got {rounds}")
    if token_cap is not None and token_cap < 0:
        raise SweepError(f"the cap must be at least 0, got {token_cap}")
    market = scenario.market
    cap = token_cap
    if cap is None and labs is not None and market.token_cap is not None:
        cap = round(market.token_cap * labs / scenario.labs.count)
    if cap is not None:
        market = replace(market, token_cap=cap)
    population = replace(scenario.labs, count=labs) if labs is not None else scenario.labs
    return replace(
        scenario,
        labs=population,
        market=market,
        rounds=scenario.rounds if rounds is None else rounds,
    )


def check_range(name: str, lo: float, hi: float, count: int, *, upper: float | None) -> None:
    """Check a swept range: finite, lo <= hi, within [0, upper], and lo < hi when count > 1.

    Raises:
        SweepError: with a one-line message naming the range.
    """
    bound = f"[0, {upper:g}]" if upper is not None else "[0, inf)"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise SweepError(f"{name} range must be finite numbers, got {lo:g}:{hi:g}")
    if lo < 0 or (upper is not None and hi > upper):
        raise SweepError(f"{name} range {lo:g}:{hi:g} must lie within {bound}")
    if lo > hi:
        raise SweepError(f"{name} range {lo:g}:{hi:g} is inverted (lo must be <= hi)")
    if count < 1:
        raise SweepError(f"the grid needs at least 1 value of {name}, got {count}")
    if count > 1 and lo == hi:
        raise SweepError(
            f"{name} range {lo:g}:{hi:g} is empty but the grid asks for {count} values"
        )


def theory_curve(scenario: Scenario, punishments: FloatArray) -> tuple[float, FloatArray]:
    """Return g* and the theoretical flip p_eff = g*/P for each P (§7, §9; inf where P = 0).

    g* = the expected truthful clearing price (E[Q-th highest u]) + rho: the marginal lab is
    deterred exactly when p_eff·P >= g*. Under §3b's grandfathering the price is the expected
    traded price (the midpoint of E[u(Q)] and E[u(Q+1)]).
    """
    price = expected_clearing_price(scenario)
    if scenario.market.grandfathered:  # §3b: the marginal lab meets the traded price
        traded = expected_trade_price(scenario)
        price = price if traded is None else traded
    gain = price + scenario.labs.racing_value
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = np.where(
            punishments > 0, gain / np.where(punishments > 0, punishments, 1.0), np.inf
        )
    return gain, frozen(curve)


def behaviour_flip(
    values: FloatArray, p_effs: FloatArray, *, threshold: float, falling: bool = False
) -> FloatArray:
    """Return, for each P, the smallest grid p_eff whose mean reaches ``threshold`` (NaN if none).

    Args:
        values: (len(p_effs), nP) cell means, p_eff ascending down the rows.
        p_effs: the grid's p_eff values, ascending.
        threshold: the level to reach.
        falling: reach means <= threshold (a metric that falls with enforcement), else >=.
    """
    reached = values <= threshold if falling else values >= threshold
    first = np.argmax(reached, axis=0)
    return frozen(np.where(reached.any(axis=0), p_effs[first], np.nan))


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResult:
    """A finished sweep: the grid, every metric's cell means and their standard errors.

    Arrays over cells are indexed ``[p_eff][P]`` (§9): rows are p_eff values, columns P values.

    Attributes:
        scenario: the swept scenario (with the sweep's labs, rounds and cap).
        metric: the metric on the map (§8 name).
        threshold: the level the behaviour flip is read at.
        p: (nP,) the P values.
        p_eff: (nE,) the p_eff values.
        values: (nE, nP) mean of ``metric`` over rounds and replicates.
        stderr: (nE, nP) its standard error over replicates (NaN with one replicate).
        counts: (nE, nP) replicates per cell.
        flip: (nP,) the empirical behaviour flip per P (NaN where no p_eff reaches the threshold).
        theory: (nP,) the theoretical flip g*/P (inf where P = 0).
        marginal_gain: g* = expected clearing price + rho.
        replicate_values: (R, nE, nP, len(METRICS)) each replicate's per-round means.
        seeds: each replicate's game seed.
        precision: float type of the computation.
    """

    scenario: Scenario
    metric: str
    threshold: float
    p: FloatArray
    p_eff: FloatArray
    values: FloatArray
    stderr: FloatArray
    counts: IntArray
    flip: FloatArray
    theory: FloatArray
    marginal_gain: float
    replicate_values: FloatArray = field(repr=False)
    seeds: tuple[int, ...]
    precision: Precision

    def mean_of(self, metric: str) -> FloatArray:
        """Return the (nE, nP) cell means of any §8 metric."""
        result: FloatArray = self.replicate_values[..., _metric_index(metric)].mean(axis=0)
        return result

    def stderr_of(self, metric: str) -> FloatArray:
        """Return the (nE, nP) standard errors of any §8 metric (NaN with one replicate)."""
        return _stderr(self.replicate_values[..., _metric_index(metric)])

    def with_metric(self, metric: str, threshold: float | None = None) -> SweepResult:
        """Return the same sweep mapped by another metric (and threshold): nothing is rerun."""
        threshold = self.threshold if threshold is None else threshold
        values = frozen(self.mean_of(metric))
        return replace(
            self,
            metric=metric,
            threshold=threshold,
            values=values,
            stderr=frozen(self.stderr_of(metric)),
            flip=behaviour_flip(
                values, self.p_eff, threshold=threshold, falling=metric in FALLING_METRICS
            ),
        )

    def document(self) -> dict[str, Any]:
        """Return the JSON document of ``--json``: grid, metric, values, stderr, flip, theory.

        Non-finite numbers (no flip, P = 0, one replicate) are null.
        """
        return {
            "p": _json_list(self.p),
            "p_eff": _json_list(self.p_eff),
            "metric": self.metric,
            "values": _json_list(self.values),
            "stderr": _json_list(self.stderr),
            "flip": _json_list(self.flip),
            "theory": _json_list(self.theory),
        }

    def record(self) -> dict[str, Any]:
        """Return ``sweep.json``: the ``document`` plus everything needed to rerun the sweep."""
        from sim_core.params import scenario_to_dict

        return {
            **self.document(),
            "threshold": self.threshold,
            "counts": self.counts.tolist(),
            "marginal_gain": self.marginal_gain,
            "replicates": len(self.seeds),
            "seeds": list(self.seeds),
            "precision": self.precision,
            "reproducibility": "common random numbers: replicate j of every cell is the game "
            "of that cell seeded with seeds[j]",
            "scenario": scenario_to_dict(self.scenario),
        }

    def csv_text(self) -> str:
        """Return the tidy CSV: one row per cell with its mean, standard error and replicates."""
        return csv_table(
            ["punishment", "p_eff", "metric", "mean", "stderr", "replicates"],
            (
                [
                    punishment,
                    p_eff,
                    self.metric,
                    float(self.values[row, column]),
                    float(self.stderr[row, column]),
                    int(self.counts[row, column]),
                ]
                for row, p_eff in enumerate(self.p_eff.tolist())
                for column, punishment in enumerate(self.p.tolist())
            ),
        )


def _metric_index(metric: str) -> int:
    if metric not in METRICS:
        raise SweepError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    return METRICS.index(metric)


def _stderr(samples: FloatArray) -> FloatArray:
    replicates = samples.shape[0]
    if replicates < 2:
        return np.full(samples.shape[1:], np.nan)
    result: FloatArray = samples.std(axis=0, ddof=1) / math.sqrt(replicates)
    return result


def _json_list(array: FloatArray) -> Any:
    """Return ``array`` as nested lists of floats, with None for NaN and infinities."""

    def convert(item: Any) -> Any:
        if isinstance(item, list):
            return [convert(element) for element in item]
        return item if math.isfinite(item) else None

    return convert(np.asarray(array, dtype=np.float64).tolist())


def run_sweep(
    scenario: Scenario,
    *,
    p_range: tuple[float, float] = DEFAULT_P_RANGE,
    p_eff_range: tuple[float, float] = DEFAULT_P_EFF_RANGE,
    grid: tuple[int, int] = DEFAULT_GRID,
    replicates: int = 20,
    metric: str = "compliance_rate",
    threshold: float = 0.9,
    seed: int | None = None,
    precision: Precision = "float32",
    workers: int | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Sweep ``scenario`` over a grid of P by p_eff and return every cell's metrics (§9).

    Each cell is played as ``batch.cell_scenario`` says (P the whole penalty, violators caught
    with probability p_eff), ``replicates`` games per cell under common random numbers.

    Args:
        scenario: the scenario; use ``sweep_scenario`` first to change its labs, rounds or cap.
        p_range: (lo, hi) of P.
        p_eff_range: (lo, hi) of p_eff, within [0, 1].
        grid: (number of P values, number of p_eff values).
        replicates: games per cell (R).
        metric: the §8 metric of ``values`` (every metric is kept in ``replicate_values``).
        threshold: the level of the behaviour flip.
        seed: the sweep's seed (the scenario's when None).
        precision: "float32" (fast; agrees with float64 within standard errors) or "float64"
            (every cell equals ``run_game`` of that cell, number for number).
        workers: processes (``parallel.fork_map``); the machine's CPU count when None.
        progress: called with (tasks done, tasks) as the sweep advances.

    Raises:
        SweepError: a bad range, grid, replicate count, metric or precision.
    """
    p_count, p_eff_count = grid
    check_range("P", *p_range, p_count, upper=None)
    check_range("p_eff", *p_eff_range, p_eff_count, upper=1.0)
    if replicates < 1:
        raise SweepError(f"the number of replicates must be at least 1, got {replicates}")
    _metric_index(metric)
    if precision not in ("float32", "float64"):
        raise SweepError(f"precision must be float32 or float64, got {precision!r}")
    punishments = grid_values(*p_range, p_count)
    p_effs = grid_values(*p_eff_range, p_eff_count)
    base_seed = scenario.seed if seed is None else seed
    seeds = tuple(replicate_seed(base_seed, j) for j in range(replicates))
    replicate_values = _play_grid(
        scenario,
        punishments,
        p_effs,
        seeds=seeds,
        dtype=np.dtype(precision),
        workers=workers or os.cpu_count() or 1,
        progress=progress,
    )
    gain, theory = theory_curve(scenario, punishments)
    result = SweepResult(
        scenario=scenario,
        metric=metric,
        threshold=threshold,
        p=punishments,
        p_eff=p_effs,
        values=frozen(np.zeros(0)),
        stderr=frozen(np.zeros(0)),
        counts=frozen(np.full((p_eff_count, p_count), replicates, dtype=np.int64)),
        flip=frozen(np.zeros(0)),
        theory=theory,
        marginal_gain=gain,
        replicate_values=frozen(replicate_values),
        seeds=seeds,
        precision=precision,
    )
    return result.with_metric(metric, threshold)


def _play_grid(
    scenario: Scenario,
    punishments: FloatArray,
    p_effs: FloatArray,
    *,
    seeds: Sequence[int],
    dtype: np.dtype[Any],
    workers: int,
    progress: Progress | None,
) -> FloatArray:
    """Play every cell of every replicate; return (R, nE, nP, len(METRICS)) per-round means.

    The replicates are split into one group per process; within a group, cells of one wealth
    plan are played in blocks of about BLOCK_ELEMENTS labs x cells x replicates, each block one
    job. Nothing a game computes depends on its block, its group or its process.
    """
    rounds = scenario.rounds
    cell_p, cell_p_eff = (axis.ravel() for axis in np.meshgrid(punishments, p_effs, indexing="ij"))
    group = -(-len(seeds) // workers)  # replicates per group: one group per process
    groups = [
        np.arange(start, min(start + group, len(seeds))) for start in range(0, len(seeds), group)
    ]
    # Cells of one wealth plan together (a block is then played in one go), by P within a plan.
    plan = wealth_plan(scenario, cell_p, cell_p_eff, rounds=rounds)
    order = np.lexsort((cell_p_eff, cell_p, plan))
    size = max(1, BLOCK_ELEMENTS // (scenario.labs.count * group))
    blocks: list[IntArray] = []
    for mode in sorted(set(plan.tolist())):  # not np.unique: it imports numpy.ma (~15 ms)
        members = order[plan[order] == mode]
        # Blocks of equal size (within one cell): no small leftover block at the end of a plan.
        blocks += np.array_split(members, -(-members.size // size))
    jobs = [(replicates, block) for replicates in groups for block in blocks]
    cache: dict[int, ReplicateDraws] = {}

    def play(job: tuple[IntArray, IntArray]) -> FloatArray:
        replicates, block = job
        key = int(replicates[0])
        if key not in cache:  # a process's jobs are consecutive: one group's draws at a time
            cache.clear()
            chosen = [seeds[index] for index in replicates.tolist()]
            cache[key] = replicate_draws(scenario, seeds=chosen, rounds=rounds, dtype=dtype)
        return play_cells(scenario, cache[key], punishments=cell_p[block], p_effs=cell_p_eff[block])

    def report(done: int) -> None:
        if progress is not None:
            progress(done, len(jobs))

    results = np.empty((len(seeds), cell_p.size, len(METRICS)))
    played = fork_map(play, jobs, workers=workers, on_done=report)
    for (replicates, block), values in zip(jobs, played, strict=True):
        results[np.ix_(replicates, block)] = values
    # Cells were P-major; the result is indexed [replicate][p_eff][P].
    by_cell = results.reshape(len(seeds), len(punishments), len(p_effs), len(METRICS))
    return np.ascontiguousarray(by_cell.transpose(0, 2, 1, 3))
