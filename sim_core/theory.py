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


def unpermitted_value(net_values: Real, racing_value: float, penalties: Real | float) -> Real:
    """Return d = u + rho − E, what running without a permit is worth on average (§5).

    Works on floats and on arrays of any shape (one penalty for all, or one each); a lab that
    may run runs iff d > 0. With no penalty (0) it is the gain from running, u + rho.
    """
    value: Real = net_values + racing_value - penalties
    return value


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


#: Points of the price grid of ``expected_bot_price`` and of each value / risk quadrature.
_PRICE_GRID = 1201
_QUADRATURE = 241


def _bid_survival(
    strategy: str, prices: FloatArray, scenario: Scenario, detection: float
) -> FloatArray:
    """Return P(bid > x) at each price x >= 0 for one bot of ``strategy`` (§5), by quadrature.

    Values v and risk profiles r are taken at the midpoints of ``_QUADRATURE`` equal slices of
    their uniform ranges; the bid rules are those of §5 (wealth is taken not to bind).
    """
    labs = scenario.labs
    midpoints = (np.arange(_QUADRATURE) + 0.5) / _QUADRATURE
    lo, hi = labs.gross_value
    net = np.maximum(lo + (hi - lo) * midpoints - labs.compute_cost, 0.0)
    if strategy in ("rational", "adaptive"):
        risk_lo, risk_hi = labs.risk_profile
        risk = risk_lo + (risk_hi - risk_lo) * midpoints
        caps = risk * detection * scenario.audit.punishment - labs.racing_value
        bids = np.minimum(net[:, None], caps[None, :]).ravel()
    elif strategy in ("truthful", "compliant"):
        bids = net
    elif strategy == "random":
        bids = (net[:, None] * midpoints[None, :]).ravel()
    else:  # reckless never bids
        bids = np.zeros(1)
    ordered = np.sort(np.maximum(bids, 0.0))
    above: FloatArray = 1.0 - np.searchsorted(ordered, prices, side="right") / ordered.size
    return above


def _count_at_least(groups: list[tuple[int, FloatArray]], needed: int) -> FloatArray:
    """Return P(at least ``needed`` labs bid above x) at each x, for independent groups of labs.

    ``groups``: (labs in the group, P(a lab of the group bids above x) at each x). The count is
    a sum of binomials, convolved group by group.
    """
    size = groups[0][1].size
    distribution = np.zeros((size, 1))
    distribution[:, 0] = 1.0
    for count, above in groups:
        k = np.arange(count + 1)
        log_choose = np.array(
            [math.lgamma(count + 1) - math.lgamma(i + 1) - math.lgamma(count - i + 1) for i in k]
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.log(np.clip(above, 0.0, 1.0))[:, None]
            log_q = np.log1p(-np.clip(above, 0.0, 1.0))[:, None]
            terms = log_choose[None, :] + np.where(k[None, :] > 0, k[None, :] * log_p, 0.0)
            terms = terms + np.where(k[None, :] < count, (count - k[None, :]) * log_q, 0.0)
        binomial = np.exp(terms)
        merged = np.zeros((size, distribution.shape[1] + count))
        for i in range(count + 1):
            merged[:, i : i + distribution.shape[1]] += distribution * binomial[:, i : i + 1]
        distribution = merged
    tail: FloatArray = distribution[:, needed:].sum(axis=1)
    return tail


def expected_bot_prices(
    scenario: Scenario,
    *,
    strategy: str | None = None,
    rounds: int | None = None,
    human_governor: bool = False,
) -> tuple[float, ...]:
    """Return the expected clearing price of each round when bots bid (§7).

    The price of a round is E[max(reserve, Q-th highest bid)]. Each bot bids by its strategy's
    rule of §5 (``rational``: ``max(0, min(u, E − rho))`` with E = r·p_eff·P, so weak enforcement
    caps the price; ``truthful``: ``max(0, u)``); the labs play the scenario's strategy mix in its
    exact counts, or all ``strategy`` when given. Values and risk profiles are independent across
    labs, so the number of bids above a price x is a sum of binomials, and the expected price is
    the reserve plus the integral over x above it of P(at least Q bids exceed x). Labs perceive
    p_eff from the policy as announced (§5). Under ``optimal`` bids use the π1 announced the round
    before (``high_prob`` in round 1) and π1* follows each round's price, so the price moves from
    round to round: round t's price is taken at the π1* of round t − 1's expected price. Adaptive
    bots are taken as rational (what they bid before they learn); wealth is taken not to bind.
    A fixed price returns itself every round.

    Args:
        scenario: the scenario.
        strategy: every lab's strategy (None: the scenario's mix).
        rounds: how many rounds (None: the scenario's).
        human_governor: labs face a student governor who announced the scenario's π1 and π0.
    """
    from sim_core.state import strategy_counts  # the exact counts of §10's mix

    market, labs, audit = scenario.market, scenario.labs, scenario.audit
    count = scenario.rounds if rounds is None else rounds
    if market.type == "fixed_price":
        return (market.fixed_price,) * count
    cap = market.token_cap or 0
    if cap == 0 or cap > labs.count:
        return (market.reserve_price,) * count
    mix = {strategy: 1.0} if strategy is not None else dict(labs.strategy)
    counts = {name: n for name, n in strategy_counts(mix, labs.count).items() if n}
    top = max(labs.gross_value[1] - labs.compute_cost, market.reserve_price, 0.0)
    prices = np.linspace(0.0, top, _PRICE_GRID) if top > 0 else np.zeros(1)
    step = prices[1] - prices[0] if prices.size > 1 else 0.0

    def price_at(high_prob: float) -> float:
        detection = perceived_p_eff(
            scenario, announced_high_prob=high_prob, human_governor=human_governor
        )
        groups = [
            (n, _bid_survival(name, prices, scenario, detection)) for name, n in counts.items()
        ]
        above = _count_at_least(groups, cap)  # P(Q-th highest bid > x)
        above = np.where(prices >= market.reserve_price, above, 0.0)
        # E[max(R, X)] = R + the integral from R of P(X > x) dx, by the trapezoid rule.
        integral = float(np.sum((above[1:] + above[:-1]) / 2) * step) if prices.size > 1 else 0.0
        return market.reserve_price + integral

    if scenario.governor.policy != "optimal" or human_governor:
        return (price_at(audit.high_prob),) * count
    path: list[float] = []
    high_prob = audit.high_prob
    for _ in range(count):
        path.append(price_at(high_prob))
        high_prob = optimal_high_prob(
            price=path[-1],
            racing_value=labs.racing_value,
            punishment=audit.punishment,
            beta=audit.beta,
            base_prob=0.0,
            backcheck_prob=audit.backcheck_prob,
        )
    return tuple(path)


def expected_bot_price(
    scenario: Scenario,
    *,
    strategy: str | None = None,
    rounds: int | None = None,
    human_governor: bool = False,
) -> float:
    """Return the mean over a game's rounds of ``expected_bot_prices`` (one number to show)."""
    path = expected_bot_prices(
        scenario, strategy=strategy, rounds=rounds, human_governor=human_governor
    )
    return float(np.mean(path)) if path else 0.0


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
