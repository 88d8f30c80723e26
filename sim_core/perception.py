"""What a lab expects to pay for running without a permit: the perceived-penalty chain (§2, §5).

Here: ``perceived_penalties``, the one place the chain is written: the announced p_eff, the
adaptive labs' estimate learnt from the public tally of caught violators, each lab's p_eff by its
strategy, then E = r·p_eff·P. The resolver, the batch engine and the theory summary call it;
``unpermitted_value`` (theory) turns E into d = u + rho − E.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim_core.arrays import FloatArray, IntArray
from sim_core.strategies import adaptive_estimate, perceived_detection
from sim_core.theory import expected_penalty


def perceived_penalties(
    strategies: IntArray | int,
    risk_profile: FloatArray | float,
    announced_p_eff: Any,
    punishment: Any,
    *,
    caught_total: Any = 0,
    violations_total: Any = 0,
) -> FloatArray:
    """Return each lab's perceived expected penalty E = r·p̂·P (§2, §5).

    p̂ is the announced p_eff for every lab but the adaptive ones, whose p̂ is the estimate learnt
    from the public tally (``caught_total`` violators caught out of ``violations_total``).

    Args:
        strategies: each lab's strategy code (an array), or one code for every lab.
        risk_profile: each lab's risk profile r.
        announced_p_eff: the p_eff the labs were told (a float, or an array that broadcasts
            against the labs, e.g. one per game of a batch).
        punishment: P (a float, or an array like ``announced_p_eff``).
        caught_total: violators caught so far (a number, or one per game).
        violations_total: violators so far (a number, or one per game).

    Returns:
        E, broadcast over the labs (and the games, for arrays).
    """
    learnt = adaptive_estimate(announced_p_eff, caught_total, violations_total)
    detection = perceived_detection(np.asarray(strategies), announced_p_eff, learnt)
    return expected_penalty(np.asarray(risk_profile), detection, punishment)
