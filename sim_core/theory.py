"""Closed forms of the deterrence model (MODEL.md §2, §7).

Here: ``p_s``, ``p_eff``, ``expected_penalty``, ``unpermitted_value``, ``marginal_gain``,
``optimal_high_prob``,
``perceived_p_eff`` (what labs take p_eff to be under each governor) and
``expected_clearing_price`` (E[Q-th highest u], the g* of the heatmap's theory curve),
``expected_trade_price`` and ``expected_trades`` (§3b's call market). The first
three work elementwise on floats or numpy arrays. Not here: anything random.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

from sim_core.arrays import FloatArray
from sim_core.params import Scenario

Real = TypeVar("Real", float, FloatArray)


def p_s(beta: Real, high_prob: Real, base_prob: Real) -> Real:
    """Return the signal-triggered detection of a violator, p_s = β·π1 + (1−β)·π0 (§2)."""
    return beta * high_prob + (1 - beta) * base_prob


def p_eff(beta: Real, high_prob: Real, base_prob: Real, backcheck_prob: Real) -> Real:
    """Return the effective detection, p_eff = p_s + (1 − p_s)·p_b (§2)."""
    signal_detection = p_s(beta, high_prob, base_prob)
    return signal_detection + (1 - signal_detection) * backcheck_prob


def expected_penalty(
    risk_profile: FloatArray, detection: FloatArray | float, punishment: FloatArray | float
) -> FloatArray:
    """Return each lab's perceived expected penalty E = r·p_eff·P (§2)."""
    penalties: FloatArray = risk_profile * detection * punishment
    return penalties


def unpermitted_value(net_values: Real, racing_value: float, penalties: Real) -> Real:
    """Return d = u + rho − E, what running without a permit is worth on average (§5).

    Works on floats and on arrays of any shape; a lab that may run runs iff d > 0.
    """
    return net_values + racing_value - penalties


def marginal_gain(price: float, racing_value: float) -> float:
    """Return g* = price + rho, the marginal lab's gain from violating instead of buying (§7)."""
    return price + racing_value


def optimal_high_prob(
    *,
    price: float,
    racing_value: float,
    punishment: float,
    beta: float,
    base_prob: float,
    backcheck_prob: float,
) -> float:
    """Return π1*, the smallest π1 that deters the marginal lab with r = 1 (§7).

    π1* = clip((p_s* − (1−β)·π0) / β, 0, 1) with p_s* = (g*/P − p_b) / (1 − p_b) and
    g* = price + rho. In the degenerate cases (P = 0, β = 0, p_b = 1) π1 cannot change whether the
    marginal lab is deterred: the answer is 0 if it is deterred already and 1 if it cannot be.

    Args:
        price: this round's permit price.
        racing_value: rho.
        punishment: P = K + φ + R.
        beta: the true-positive rate β.
        base_prob: π0, the audit probability without a signal.
        backcheck_prob: p_b.
    """
    gain = marginal_gain(price, racing_value)
    if punishment <= 0 or beta <= 0 or backcheck_prob >= 1:
        detection = p_eff(beta, 1.0, base_prob, backcheck_prob)
        return 0.0 if detection * punishment >= gain else 1.0
    needed_signal_detection = (gain / punishment - backcheck_prob) / (1 - backcheck_prob)
    return float(np.clip((needed_signal_detection - (1 - beta) * base_prob) / beta, 0.0, 1.0))


def perceived_p_eff(
    scenario: Scenario, *, announced_high_prob: float, human_governor: bool
) -> float:
    """Return the p_eff labs perceive from the policy as announced (§5).

    ``policy`` and a human governor: the scenario's π1, π0 and p_b. ``none``: p_b alone.
    ``optimal``: π0 = 0 and the announced π1 (``announced_high_prob``).
    """
    audit = scenario.audit
    policy = "policy" if human_governor else scenario.governor.policy
    if policy == "none":
        return audit.backcheck_prob
    if policy == "optimal":
        return p_eff(audit.beta, announced_high_prob, 0.0, audit.backcheck_prob)
    return p_eff(audit.beta, audit.high_prob, audit.base_prob, audit.backcheck_prob)


def expected_net_value_at_rank(scenario: Scenario, rank: int) -> float:
    """Return E[max(0, u(rank))], the expected ``rank``-th highest truthful value of a permit.

    With N labs and values uniform on [lo, hi], the rank-th highest value is lo + (hi − lo)·X with
    X ~ Beta(N − rank + 1, rank); truthful bids are max(0, u), u = v − c. The expectation is taken
    by quadrature. ``rank`` runs from 1 to N.
    """
    labs = scenario.labs
    lo, hi = labs.gross_value
    a, b = labs.count - rank + 1, rank
    grid = (np.arange(4000) + 0.5) / 4000
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    density = np.exp(log_norm + (a - 1) * np.log(grid) + (b - 1) * np.log1p(-grid))
    net_values = np.maximum(lo + (hi - lo) * grid - labs.compute_cost, 0.0)
    return float(np.sum(density * net_values) / np.sum(density))


def expected_clearing_price(scenario: Scenario) -> float:
    """Return the expected truthful price: E[max(0, Q-th highest u)] for a clearing market (§9).

    With N labs and values uniform on [lo, hi], the Q-th highest value is lo + (hi − lo)·X with
    X ~ Beta(N − Q + 1, Q); truthful bids are max(0, u), u = v − c. The expectation is taken by
    quadrature. A fixed-price market returns its fixed price; Q = 0 or Q > N clears at the
    reserve price (Q = N clears at the lowest eligible bid, §3); the result is never below the
    reserve price.
    """
    market = scenario.market
    if market.type == "fixed_price":
        return market.fixed_price
    labs = scenario.labs
    cap = market.token_cap or 0
    if cap == 0 or cap > labs.count:
        return market.reserve_price
    price = expected_net_value_at_rank(scenario, cap)
    return max(price, market.reserve_price)


def expected_trade_price(scenario: Scenario) -> float | None:
    """Return the expected price of §3b's call market under truthful asks and bids.

    With distinct values, whoever was granted the permits, the k trades leave the Q highest values
    holding them and the clearing interval is [u(Q+1), u(Q)]: the price is their midpoint, so
    its expectation is (E[u(Q)] + E[u(Q+1)]) / 2 (values floored at 0, as bids are). None when no
    trade can happen: Q = 0 (nothing granted) or Q >= N (every lab holds a permit).
    """
    cap = scenario.market.token_cap or 0
    if cap == 0 or cap >= scenario.labs.count:
        return None
    upper = expected_net_value_at_rank(scenario, cap)
    lower = expected_net_value_at_rank(scenario, cap + 1)
    return (upper + lower) / 2


def expected_trades(scenario: Scenario) -> float:
    """Return the expected number of trades per round under §3b with truthful labs: Q·(N − Q)/N.

    The grant is independent of this round's values, so the number of holders outside the Q
    highest values (each sells to a non-holder inside them) is hypergeometric with that mean.
    """
    cap = min(scenario.market.token_cap or 0, scenario.labs.count)
    count = scenario.labs.count
    return cap * (count - cap) / count
