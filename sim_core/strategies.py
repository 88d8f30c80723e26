"""Bot lab strategies (MODEL.md §5), vectorised over labs.

Here: the ``STRATEGIES`` registry (name -> integer code), ``perceived_detection`` (each lab's
p_eff, the adaptive labs' learnt estimate included), ``lab_bids`` and ``lab_runs``. Every function
works on arrays of any leading batch shape with labs on the last axis, so one rule serves a game
and a whole sweep. Not here: the market or enforcement.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from sim_core.arrays import BoolArray, FloatArray, IntArray
from sim_core.params import STRATEGY_NAMES

#: Strategy name -> code used in ``GameSetup.strategies``.
STRATEGIES: dict[str, int] = {name: code for code, name in enumerate(STRATEGY_NAMES)}
RATIONAL, TRUTHFUL, COMPLIANT, RECKLESS, ADAPTIVE, RANDOM = (STRATEGIES[n] for n in STRATEGY_NAMES)

#: Weight, in pseudo-observations, of the adaptive labs' prior on p_eff (§5).
ADAPTIVE_PRIOR_WEIGHT = 10.0


def adaptive_estimate(announced_p_eff: float, caught_total: int, violations_total: int) -> float:
    """Return the adaptive labs' shared estimate of p_eff (§5).

    A Beta prior centred on the announced p_eff with ``ADAPTIVE_PRIOR_WEIGHT`` pseudo-observations,
    updated with the public tally of violators caught out of violators: the posterior mean.
    """
    return (ADAPTIVE_PRIOR_WEIGHT * announced_p_eff + caught_total) / (
        ADAPTIVE_PRIOR_WEIGHT + violations_total
    )


def perceived_detection(
    strategies: IntArray, announced_p_eff: float, learnt_p_eff: float
) -> FloatArray:
    """Return each lab's p_eff: the announced one, or the learnt one for adaptive labs (§5)."""
    return np.where(strategies == ADAPTIVE, learnt_p_eff, announced_p_eff)


def _single_strategy(strategies: IntArray | int) -> int | None:
    """Return the strategy code every lab plays, or None for a mixed population."""
    if isinstance(strategies, int):
        return strategies
    codes = np.asarray(strategies)
    if codes.ndim == 0:
        return int(codes)
    if codes.size == 0:
        return None
    first = int(codes.min())
    return first if first == int(codes.max()) else None


def _full_shape(result: npt.NDArray[Any], *operands: npt.ArrayLike) -> npt.NDArray[Any]:
    """Return ``result`` broadcast to the shape of all ``operands``, as a fresh writable array."""
    shapes = [
        operand.shape if isinstance(operand, np.ndarray) else np.shape(operand)
        for operand in operands
    ]
    full_shape = _broadcast(result.shape, *shapes)
    if full_shape == result.shape:
        return result
    return np.broadcast_to(result, full_shape).copy()


@functools.lru_cache(maxsize=256)
def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    return np.broadcast_shapes(*shapes)


def lab_bids(
    strategies: IntArray | int,
    net_values: FloatArray,
    penalties: FloatArray,
    racing_value: float,
    wealth: FloatArray | float,
    uniforms: FloatArray,
) -> FloatArray:
    """Return every lab's bot bid, clipped to [0, wealth] (§5, §4 step 1).

    rational and adaptive bid max(0, min(u, E − rho)); truthful and compliant bid max(0, u);
    reckless bids 0; random bids uniform in [0, max(u, 0)]. Every bid is then clipped to the
    wealth floored at 0: max(0, min(b, wealth)), which equals min(b, max(wealth, 0)) since b >= 0.

    Args:
        strategies: strategy codes, broadcastable to (..., N) (one code: every lab plays it).
        net_values: u = v − c, shape (..., N).
        penalties: perceived expected penalties E = r·p_eff·P, broadcastable to (..., N).
        racing_value: rho.
        wealth: wealth at the start of the round, broadcastable to (..., N); ``math.inf`` when it
            cannot bind (a sweep proves that from the scenario, and skips the clip).
        uniforms: uniform [0, 1) draws for every lab, shape (..., N) (only random uses them).
    """
    strategy = _single_strategy(strategies)
    # max(0, min(a, b)) = min(max(a, 0), max(b, 0)): the floor at 0 is taken on u, which a sweep
    # shares across its cells (a small array), and on the caps only where one can be negative;
    # otherwise the final max(0, ·) pass over every bid is skipped.
    nonnegative = True
    if strategy in (RATIONAL, ADAPTIVE):
        capped = penalties - racing_value if racing_value else penalties
        bids: FloatArray = np.minimum(np.maximum(net_values, 0.0), capped)
        nonnegative = _all_nonnegative(capped)
    elif strategy in (TRUTHFUL, COMPLIANT):
        bids = np.maximum(net_values, 0.0)
    elif strategy == RECKLESS:
        bids = np.zeros_like(net_values)
    elif strategy == RANDOM:
        bids = uniforms * np.maximum(net_values, 0.0)
    else:
        positive_value = np.maximum(net_values, 0.0)
        bids = np.select(
            [
                (strategies == RATIONAL) | (strategies == ADAPTIVE),
                (strategies == TRUTHFUL) | (strategies == COMPLIANT),
                strategies == RANDOM,
            ],
            [
                np.minimum(net_values, penalties - racing_value),
                positive_value,
                uniforms * positive_value,
            ],
            default=0.0,
        )
        nonnegative = False
    if np.ndim(wealth) > 0 or wealth != math.inf:
        bids = np.minimum(bids, wealth, out=bids if bids.shape == np.shape(wealth) else None)
        nonnegative = nonnegative and _all_nonnegative(wealth)
    if not nonnegative:
        np.maximum(bids, np.zeros(bids.shape[-1:], bids.dtype), out=bids)  # a zero row: faster
    return _full_shape(bids, strategies, net_values, penalties, wealth, uniforms)


def lab_asks(
    strategies: IntArray | int,
    net_values: FloatArray,
    penalties: FloatArray,
    racing_value: float,
    uniforms: FloatArray,
) -> FloatArray:
    """Return every lab's bot ask under §3b: its strategy's bid formula, not clipped to wealth.

    A permit is worth the same to a lab whether it buys one or keeps one, so a holder asks what it
    would bid (``lab_bids`` without the wealth cap): reckless asks 0 (it runs anyway), random asks
    uniform in [0, max(u, 0)] with the same uniforms its bid would use.
    """
    return lab_bids(strategies, net_values, penalties, racing_value, math.inf, uniforms)


def _all_nonnegative(values: FloatArray | float) -> bool:
    """Return whether no value is below 0 (or NaN): one reduction, cheaper than a pass of max."""
    if isinstance(values, np.ndarray):
        return bool(values.min() >= 0) if values.size else True
    return bool(values >= 0)


def lab_runs(
    strategies: IntArray | int, unpermitted_values: FloatArray, uniforms: FloatArray
) -> BoolArray:
    """Return whether each lab would run without a permit (§5).

    rational, truthful and adaptive run iff d = u + rho − E > 0 (strict); compliant never runs;
    reckless always runs; random runs with probability 1/2.

    Args:
        strategies: strategy codes, broadcastable to (..., N) (one code: every lab plays it).
        unpermitted_values: d, shape (..., N).
        uniforms: uniform [0, 1) draws for every lab, shape (..., N) (only random uses them).
    """
    strategy = _single_strategy(strategies)
    if strategy in (RATIONAL, TRUTHFUL, ADAPTIVE):
        runs: BoolArray = unpermitted_values > 0
    elif strategy == COMPLIANT:
        runs = np.zeros(np.shape(unpermitted_values), dtype=bool)
    elif strategy == RECKLESS:
        runs = np.ones(np.shape(unpermitted_values), dtype=bool)
    elif strategy == RANDOM:
        runs = uniforms < 0.5
    else:
        runs = np.select(
            [strategies == COMPLIANT, strategies == RECKLESS, strategies == RANDOM],
            [False, True, uniforms < 0.5],
            default=unpermitted_values > 0,
        ).astype(bool)
    return _full_shape(runs, strategies, unpermitted_values, uniforms)
