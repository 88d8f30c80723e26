"""Batch simulation of whole games, and the theory summary of a scenario (MODEL.md §7, §8).

Here: ``run_game`` (all-bot games through the one resolver, ``resolve_round``),
``simulate_classes`` and ``percentile_rank`` (where a real class sits among simulated ones) and
``theory_summary`` (p_s, p_eff, E, π1* and the predicted compliance). Not here: sweeps over
parameter grids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sim_core.arrays import FloatArray
from sim_core.market import clear_market
from sim_core.metrics import METRICS, MetricsRow, summarise
from sim_core.params import Scenario
from sim_core.rng import Purpose, stream
from sim_core.round import RoundInputs, resolve_round
from sim_core.state import GameSetup, initial_state, make_setup
from sim_core.strategies import lab_bids, lab_runs
from sim_core.theory import (
    expected_clearing_price,
    expected_net_value_at_rank,
    expected_penalty,
    expected_trade_price,
    expected_trades,
    optimal_high_prob,
    p_eff,
    p_s,
    perceived_p_eff,
)

#: Mixed into the seeds of simulated reference classes so none replays the class's own game.
CLASS_SEED_SALT = 1_000_003


@dataclass(frozen=True, slots=True, kw_only=True)
class GameRun:
    """A finished all-bot game: its setup, one metrics row per round and their means."""

    setup: GameSetup
    rows: tuple[MetricsRow, ...]
    summary: dict[str, float | None]  # a price of None: no round traded (§3b)


def run_game(scenario: Scenario, *, seed: int | None = None, rounds: int | None = None) -> GameRun:
    """Play a whole game with bots in every seat, round by round through ``resolve_round``.

    Args:
        scenario: the scenario.
        seed: overrides the scenario's seed.
        rounds: overrides the scenario's number of rounds.
    """
    setup = make_setup(scenario, seed=seed)
    state = initial_state(setup)
    rows: list[MetricsRow] = []
    for _ in range(scenario.rounds if rounds is None else rounds):
        progress = resolve_round(setup, state, RoundInputs())
        assert progress.metrics is not None
        assert progress.next_state is not None
        rows.append(progress.metrics)
        state = progress.next_state
    return GameRun(setup=setup, rows=tuple(rows), summary=summarise(rows))


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeTheory:
    """What §3b's theory says of a grandfathered scenario, per round, with truthful labs.

    Coase: with no trading frictions the permits end with the Q labs that value them most, as
    under an auction, at about the auction's price, whoever they were granted to; what changes is
    who keeps the money.

    Attributes:
        expected_trade_price: (E[u(Q)] + E[u(Q+1)]) / 2, or None when no trade can happen.
        expected_trades: Q·(N − Q)/N, the permits expected to change hands.
        value_as_granted: Σ of u over the holders if nobody traded, Q·E[max(0, u)].
        value_after_trading: Σ of the Q highest u, the Coase (and auction) allocation's value.
        auction_revenue: the government's permit sales under an auction, Q·E[price].
        grandfathered_revenue: the government's permit sales when permits are granted: 0.
        incumbents_income: what the sellers receive, expected_trades · expected_trade_price.
    """

    expected_trade_price: float | None
    expected_trades: float
    value_as_granted: float
    value_after_trading: float
    auction_revenue: float
    grandfathered_revenue: float
    incumbents_income: float

    def as_dict(self) -> dict[str, float | None]:
        """Return the fields as a plain dict."""
        return {name: getattr(self, name) for name in self.__slots__}


def trade_theory(scenario: Scenario) -> TradeTheory:
    """Return §3b's predictions for ``scenario`` (read as grandfathered, whatever it says)."""
    labs = scenario.labs
    cap = min(scenario.market.token_cap or 0, labs.count)
    lo, hi = labs.gross_value
    mean_value = _mean_positive_value(lo - labs.compute_cost, hi - labs.compute_cost)
    top = sum(expected_net_value_at_rank(scenario, rank) for rank in range(1, cap + 1))
    trade_price = expected_trade_price(scenario)
    trades = expected_trades(scenario)
    auction_price = expected_clearing_price(scenario)  # the same Q-th highest value (§7)
    return TradeTheory(
        expected_trade_price=trade_price,
        expected_trades=trades,
        value_as_granted=cap * mean_value,
        value_after_trading=top,
        auction_revenue=cap * auction_price if cap else 0.0,
        grandfathered_revenue=0.0,
        incumbents_income=trades * (trade_price or 0.0),
    )


def _mean_positive_value(lo: float, hi: float) -> float:
    """Return E[max(0, u)] for u uniform on [lo, hi]."""
    if hi <= 0:
        return 0.0
    if hi == lo:
        return max(lo, 0.0)
    low = max(lo, 0.0)
    return (hi * hi - low * low) / (2 * (hi - lo))


@dataclass(frozen=True, slots=True, kw_only=True)
class TheorySummary:
    """The model's closed-form view of a scenario (§2, §7); ``trade`` only under §3b."""

    punishment: float
    p_s: float
    p_eff: float
    expected_penalty: float
    expected_price: float
    marginal_gain: float
    optimal_high_prob: float
    perceived_p_eff: float
    predicted_compliance: float
    trade: TradeTheory | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict (``trade`` as a nested one, and only under §3b)."""
        document: dict[str, Any] = {
            name: getattr(self, name) for name in self.__slots__ if name != "trade"
        }
        if self.trade is not None:
            document["trade"] = self.trade.as_dict()
        return document


def predicted_compliance(scenario: Scenario) -> float:
    """Return the steady-state compliance rate of a rational population (§5, §6, §7).

    The population is made deterministic: values and risk profiles at the N quantile midpoints
    of their distributions, paired by a fixed permutation. It then plays the real rules (bids,
    the market with ties broken by a fixed stream, run choices) round after round with the
    announced policy; under ``optimal`` the π1 announced after each clearing feeds the next
    round's bids, until it settles (at most 50 rounds). A lab violates iff it holds no permit and
    d > 0. Under §3b's grandfathering the same auction stands in for the trading: with rational
    labs, trading ends in the auction's allocation (Coase).
    """
    labs, audit = scenario.labs, scenario.audit
    quantiles = (np.arange(labs.count) + 0.5) / labs.count
    lo, hi = labs.gross_value
    net_values = lo + (hi - lo) * quantiles - labs.compute_cost
    risk_lo, risk_hi = labs.risk_profile
    pairing = stream(0, 0, Purpose.SETUP).permutation(labs.count)
    risk = risk_lo + (risk_hi - risk_lo) * quantiles[pairing]
    rational = np.zeros(labs.count, dtype=np.int64)
    wealth = np.full(labs.count, labs.endowment)
    announced_high_prob = audit.high_prob
    compliance = 1.0
    auction = replace(scenario.market, allocation="auction")
    for _ in range(50):
        detection = perceived_p_eff(
            scenario, announced_high_prob=announced_high_prob, human_governor=False
        )
        penalties = expected_penalty(risk, detection, audit.punishment)
        bids = lab_bids(rational, net_values, penalties, labs.racing_value, wealth, quantiles)
        market = clear_market(bids, auction, stream(0, 0, Purpose.TIE_BREAK))
        if scenario.governor.policy == "optimal":
            next_high_prob = optimal_high_prob(
                price=market.price or 0.0,
                racing_value=labs.racing_value,
                punishment=audit.punishment,
                beta=audit.beta,
                base_prob=0.0,
                backcheck_prob=audit.backcheck_prob,
            )
        else:
            next_high_prob = announced_high_prob
        detection = perceived_p_eff(
            scenario, announced_high_prob=next_high_prob, human_governor=False
        )
        penalties = expected_penalty(risk, detection, audit.punishment)
        runs = lab_runs(rational, net_values + labs.racing_value - penalties, quantiles)
        compliance = 1.0 - int((runs & ~market.won).sum()) / labs.count
        if abs(next_high_prob - announced_high_prob) < 1e-9:
            break
        announced_high_prob = next_high_prob
    return compliance


def theory_summary(scenario: Scenario) -> TheorySummary:
    """Return p_s, p_eff, E (r = 1), π1* at the expected price and the predicted compliance.

    Under §3b's grandfathering the expected price is the expected traded price, and ``trade``
    holds the Coase comparison (``trade_theory``).

    ``perceived_p_eff`` is what labs would perceive with π1* at the expected price under
    ``optimal``; the predicted compliance is the steady state of ``predicted_compliance``.
    """
    audit = scenario.audit
    signal_detection = p_s(audit.beta, audit.high_prob, audit.base_prob)
    detection = p_eff(audit.beta, audit.high_prob, audit.base_prob, audit.backcheck_prob)
    price = expected_clearing_price(scenario)
    trade = trade_theory(scenario) if scenario.market.grandfathered else None
    if trade is not None and trade.expected_trade_price is not None:
        price = trade.expected_trade_price  # §3b: the price labs meet is the traded one
    best_high_prob = optimal_high_prob(
        price=price,
        racing_value=scenario.labs.racing_value,
        punishment=audit.punishment,
        beta=audit.beta,
        base_prob=audit.base_prob,
        backcheck_prob=audit.backcheck_prob,
    )
    announced = audit.high_prob
    if scenario.governor.policy == "optimal":
        announced = optimal_high_prob(
            price=price,
            racing_value=scenario.labs.racing_value,
            punishment=audit.punishment,
            beta=audit.beta,
            base_prob=0.0,
            backcheck_prob=audit.backcheck_prob,
        )
    perceived = perceived_p_eff(scenario, announced_high_prob=announced, human_governor=False)
    return TheorySummary(
        punishment=audit.punishment,
        p_s=signal_detection,
        p_eff=detection,
        expected_penalty=detection * audit.punishment,
        expected_price=price,
        marginal_gain=price + scenario.labs.racing_value,
        optimal_high_prob=best_high_prob,
        perceived_p_eff=perceived,
        predicted_compliance=predicted_compliance(scenario),
        trade=trade,
    )


def simulate_classes(
    scenario: Scenario, *, classes: int = 300, rounds: int | None = None
) -> dict[str, FloatArray]:
    """Play ``classes`` all-bot games of ``scenario`` and return each game's mean of every metric.

    The games' seeds derive from the scenario's seed (never equal to it), so the same scenario
    always gives the same reference distribution: the "simulated classes" a real class is set
    beside in a debrief.

    Args:
        scenario: the scenario, as the class played it.
        classes: how many games.
        rounds: overrides the scenario's number of rounds.

    Returns:
        Metric name -> array of shape (classes,), one summary value per game.
    """
    seeds = np.random.SeedSequence([scenario.seed, CLASS_SEED_SALT]).generate_state(classes)
    summaries = [run_game(scenario, seed=int(seed), rounds=rounds).summary for seed in seeds]
    return {  # a mean price of None (§3b: no round traded) is NaN here
        name: np.array([summary[name] for summary in summaries], dtype=np.float64)
        for name in METRICS
    }


def percentile_rank(value: float, sample: FloatArray) -> float:
    """Return where ``value`` sits in ``sample``, in percent (ties count half: the mid-rank)."""
    below = float(np.sum(sample < value))
    equal = float(np.sum(sample == value))
    return 100.0 * (below + equal / 2) / sample.size
