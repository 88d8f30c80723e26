"""Bot lab strategies (MODEL.md §5), vectorised over labs.

Here: the ``STRATEGIES`` registry (name -> integer code), ``perceived_detection`` (each lab's
p_eff, the adaptive labs' learnt estimate included), ``lab_bids`` and ``lab_runs``. Every function
works on arrays of any leading batch shape with labs on the last axis, so one rule serves a game
and a whole sweep. Not here: the market or enforcement.
"""

from __future__ import annotations

import numpy as np

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


def lab_bids(
    strategies: IntArray,
    net_values: FloatArray,
    penalties: FloatArray,
    racing_value: float,
    wealth: FloatArray,
    uniforms: FloatArray,
) -> FloatArray:
    """Return every lab's bot bid, clipped to [0, wealth] (§5, §4 step 1).

    rational and adaptive bid max(0, min(u, E − rho)); truthful and compliant bid max(0, u);
    reckless bids 0; random bids uniform in [0, max(u, 0)].

    Args:
        strategies: strategy codes, shape (..., N).
        net_values: u = v − c, shape (..., N).
        penalties: perceived expected penalties E = r·p_eff·P, broadcastable to (..., N).
        racing_value: rho.
        wealth: wealth at the start of the round, broadcastable to (..., N).
        uniforms: uniform [0, 1) draws for every lab, shape (..., N) (only random uses them).
    """
    positive_value = np.maximum(net_values, 0.0)
    rational_bid = np.maximum(np.minimum(net_values, penalties - racing_value), 0.0)
    bids: FloatArray = np.select(
        [
            (strategies == RATIONAL) | (strategies == ADAPTIVE),
            (strategies == TRUTHFUL) | (strategies == COMPLIANT),
            strategies == RANDOM,
        ],
        [rational_bid, positive_value, uniforms * positive_value],
        default=0.0,
    )
    clipped: FloatArray = np.minimum(bids, np.maximum(wealth, 0.0))
    return clipped


def lab_runs(
    strategies: IntArray, unpermitted_values: FloatArray, uniforms: FloatArray
) -> BoolArray:
    """Return whether each lab would run without a permit (§5).

    rational, truthful and adaptive run iff d = u + rho − E > 0 (strict); compliant never runs;
    reckless always runs; random runs with probability 1/2.

    Args:
        strategies: strategy codes, shape (..., N).
        unpermitted_values: d, shape (..., N).
        uniforms: uniform [0, 1) draws for every lab, shape (..., N) (only random uses them).
    """
    by_value = unpermitted_values > 0
    return np.select(
        [strategies == COMPLIANT, strategies == RECKLESS, strategies == RANDOM],
        [False, True, uniforms < 0.5],
        default=by_value,
    ).astype(bool)
