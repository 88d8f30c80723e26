"""Batch simulation of whole games, and the theory summary of a scenario (MODEL.md §7, §8).

Here: ``run_game`` (all-bot games through the one resolver, ``resolve_round``),
``simulate_classes`` and ``percentile_rank`` (where a real class sits among simulated ones) and
``theory_summary`` (p_s, p_eff, E, π1* and the predicted compliance). Not here: sweeps over
parameter grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_core.arrays import FloatArray
from sim_core.market import clear_market
from sim_core.metrics import METRICS, MetricsRow, summarise
from sim_core.params import Scenario
from sim_core.perception import perceived_penalties
from sim_core.rng import Purpose, stream
from sim_core.round import RoundInputs, resolve_round
from sim_core.state import GameSetup, initial_state, make_setup
from sim_core.strategies import lab_bids, lab_runs
from sim_core.theory import (
    expected_clearing_price,
    expected_penalty,
    marginal_gain,
    optimal_high_prob,
    p_eff,
    p_s,
    perceived_p_eff,
    unpermitted_value,
)

#: Mixed into the seeds of simulated reference classes so none replays the class's own game.
CLASS_SEED_SALT = 1_000_003


@dataclass(frozen=True, slots=True, kw_only=True)
class GameRun:
    """A finished all-bot game: its setup, one metrics row per round and their means."""

    setup: GameSetup
    rows: tuple[MetricsRow, ...]
    summary: dict[str, float]


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
class TheorySummary:
    """The model's closed-form view of a scenario (§2, §7)."""

    punishment: float
    p_s: float
    p_eff: float
    expected_penalty: float
    expected_price: float
    marginal_gain: float
    optimal_high_prob: float
    perceived_p_eff: float
    predicted_compliance: float

    def as_dict(self) -> dict[str, float]:
        """Return the fields as a plain dict."""
        return {name: getattr(self, name) for name in self.__slots__}


def predicted_compliance(scenario: Scenario) -> float:
    """Return the steady-state compliance rate of a rational population (§5, §6, §7).

    The population is made deterministic: values and risk profiles at the N quantile midpoints
    of their distributions, paired by a fixed permutation. It then plays the real rules (bids,
    the market with ties broken by a fixed stream, run choices) round after round with the
    announced policy; under ``optimal`` the π1 announced after each clearing feeds the next
    round's bids, until it settles (at most 50 rounds). A lab violates iff it holds no permit and
    d > 0.
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
    for _ in range(50):
        detection = perceived_p_eff(
            scenario, announced_high_prob=announced_high_prob, human_governor=False
        )
        penalties = perceived_penalties(rational, risk, detection, audit.punishment)
        bids = lab_bids(rational, net_values, penalties, labs.racing_value, wealth, quantiles)
        market = clear_market(bids, scenario.market, stream(0, 0, Purpose.TIE_BREAK))
        if scenario.governor.policy == "optimal":
            next_high_prob = optimal_high_prob(
                price=market.price,
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
        penalties = perceived_penalties(rational, risk, detection, audit.punishment)
        runs = lab_runs(
            rational, unpermitted_value(net_values, labs.racing_value, penalties), quantiles
        )
        compliance = 1.0 - int((runs & ~market.won).sum()) / labs.count
        if abs(next_high_prob - announced_high_prob) < 1e-9:
            break
        announced_high_prob = next_high_prob
    return compliance


def theory_summary(scenario: Scenario) -> TheorySummary:
    """Return p_s, p_eff, E (r = 1), π1* at the expected price and the predicted compliance.

    ``perceived_p_eff`` is what labs would perceive with π1* at the expected price under
    ``optimal``; the predicted compliance is the steady state of ``predicted_compliance``.
    """
    audit = scenario.audit
    signal_detection = p_s(audit.beta, audit.high_prob, audit.base_prob)
    detection = p_eff(audit.beta, audit.high_prob, audit.base_prob, audit.backcheck_prob)
    price = expected_clearing_price(scenario)
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
        expected_penalty=float(expected_penalty(np.ones(1), detection, audit.punishment)[0]),
        expected_price=price,
        marginal_gain=marginal_gain(price, scenario.labs.racing_value),
        optimal_high_prob=best_high_prob,
        perceived_p_eff=perceived,
        predicted_compliance=predicted_compliance(scenario),
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
    return {name: np.array([summary[name] for summary in summaries]) for name in METRICS}


def percentile_rank(value: float, sample: FloatArray) -> float:
    """Return where ``value`` sits in ``sample``, in percent (ties count half: the mid-rank)."""
    below = float(np.sum(sample < value))
    equal = float(np.sum(sample == value))
    return 100.0 * (below + equal / 2) / sample.size
