"""Batch simulation of whole games, and the theory summary of a scenario (MODEL.md §7, §8).

Here: ``run_game`` (all-bot games through the one resolver, ``resolve_round``),
``simulate_classes`` and ``percentile_rank`` (where a real class sits among simulated ones) and
``theory_summary`` (p_s, p_eff, E, π1* and the predicted compliance). Not here: sweeps over
parameter grids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sim_core.arrays import FloatArray
from sim_core.market import clear_market
from sim_core.metrics import METRICS, MetricsRow, summarise
from sim_core.params import Scenario
from sim_core.perception import perceived_penalties
from sim_core.rng import Purpose, stream
from sim_core.round import RoundInputs, RoundProgress, resolve_round
from sim_core.state import GameSetup, GameState, initial_state, make_setup
from sim_core.strategies import STRATEGIES, lab_bids, lab_runs
from sim_core.theory import (
    expected_clearing_price,
    expected_net_value_at_rank,
    expected_penalty,
    expected_trade_price,
    expected_trades,
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
class BotReplay:
    """A game played again with bots in every seat: one metrics row and payoffs per round."""

    rows: tuple[MetricsRow, ...]
    payoffs: tuple[FloatArray, ...]
    prices: tuple[float | None, ...]


def replay_with_bots(
    setup: GameSetup, *, rounds: int, strategies: Mapping[int, str] | None = None
) -> BotReplay:
    """Play ``rounds`` rounds of a game's setup with a bot in every seat (the counterfactual).

    The same setup means the same draws (§11): values, risk profiles, tie-breaks, signals,
    audits' and backchecks' uniforms. Every lab plays its setup strategy (a human seat's is its
    fallback) unless ``strategies`` names another for it (lab index -> strategy name); the
    governor is the scenario's bot policy. No moves are given, so each round goes through
    ``resolve_round`` exactly as in ``run_game``: with no replacement the result equals
    ``run_game`` of the same scenario and seed.
    """
    if strategies:
        codes = np.array(setup.strategies, copy=True)
        for lab, name in strategies.items():
            codes[lab] = STRATEGIES[name]
        codes.setflags(write=False)
        setup = replace(setup, strategies=codes)
    state = initial_state(setup)
    rows: list[MetricsRow] = []
    payoffs: list[FloatArray] = []
    prices: list[float | None] = []
    for _ in range(rounds):
        progress = resolve_round(setup, state, RoundInputs())
        assert progress.metrics is not None and progress.next_state is not None
        assert progress.settlement is not None and progress.market is not None
        rows.append(progress.metrics)
        payoffs.append(progress.settlement.payoffs)
        price = progress.market.price
        prices.append(None if price is None else float(price))
        state = progress.next_state
    return BotReplay(rows=tuple(rows), payoffs=tuple(payoffs), prices=tuple(prices))


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
        penalties = perceived_penalties(rational, risk, detection, audit.punishment)
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
        expected_penalty=float(expected_penalty(np.ones(1), detection, audit.punishment)[0]),
        expected_price=price,
        marginal_gain=marginal_gain(price, scenario.labs.racing_value),
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


#: ``setup_warnings``: the share of values that gain from violating whatever the risk profile,
#: above which a class is warned that (almost) every lab violates.
EVERYONE_VIOLATES = 0.9


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupWarning:
    """A setup that teaches nothing (or little), and what to change (``setup_warnings``)."""

    code: str
    message: str


def setup_warnings(scenario: Scenario, *, human_governor: bool = False) -> tuple[SetupWarning, ...]:
    """Return what makes ``scenario`` a class that teaches nothing, each saying what to change.

    The judgments use the model's own numbers: the labs' range of gains from violating,
    u + rho, against their range of perceived expected penalties E = r·p_eff·P (p_eff as the
    labs perceive it from the announced policy, §5; π1* at the bots' expected price under
    ``optimal``), the cap against N (§3) and the fixed price against the expected penalty.
    """
    from sim_core.theory import expected_bot_price

    labs, market, audit = scenario.labs, scenario.market, scenario.audit
    found: list[SetupWarning] = []

    def warn(code: str, message: str) -> None:
        found.append(SetupWarning(code=code, message=message))

    count, cap = labs.count, market.token_cap
    half = max(1, count // 2)
    if market.type == "clearing" and cap is not None and cap >= count:
        warn(
            "cap_covers_all",
            f"The cap Q = {cap} gives every one of the {count} labs a permit: nobody needs to run "
            f"without one and the price falls to the reserve. Set the token cap below {count}, "
            f"about half of the labs (Q = {half}).",
        )
    elif market.type == "clearing" and cap == 0:
        warn(
            "cap_zero",
            "The cap Q = 0 sells no permit: every lab must violate or idle, and the market "
            f"teaches nothing. Set the token cap to about half of the labs (Q = {half}).",
        )
    announced = audit.high_prob
    if scenario.governor.policy == "optimal" and not human_governor:
        announced = optimal_high_prob(
            price=expected_bot_price(scenario),
            racing_value=labs.racing_value,
            punishment=audit.punishment,
            beta=audit.beta,
            base_prob=0.0,
            backcheck_prob=audit.backcheck_prob,
        )
    detection = perceived_p_eff(
        scenario, announced_high_prob=announced, human_governor=human_governor
    )
    lo, hi = labs.gross_value
    gain_lo = lo - labs.compute_cost + labs.racing_value
    gain_hi = hi - labs.compute_cost + labs.racing_value
    risk_lo, risk_hi = labs.risk_profile
    penalty_lo = risk_lo * detection * audit.punishment
    penalty_hi = risk_hi * detection * audit.punishment
    # The share of values that gain from violating whatever the lab's risk profile.
    spread = gain_hi - gain_lo
    tempted = 1.0 if spread <= 0 else min(max((gain_hi - penalty_hi) / spread, 0.0), 1.0)
    if audit.punishment <= 0:
        warn(
            "no_penalty",
            "The penalty P = K + φ is 0: a caught lab loses nothing. Set a fine or a collateral.",
        )
    elif gain_hi <= penalty_lo:
        warn(
            "nobody_violates",
            f"No lab can gain from running without a permit: the largest gain, {gain_hi:.2f}, "
            f"is below the smallest expected penalty, {penalty_lo:.2f} (p_eff {detection:.2f} "
            f"× P {audit.punishment:.2f}). Lower the fine or collateral, or the audit "
            "probabilities, so that some labs are tempted.",
        )
    elif tempted >= EVERYONE_VIOLATES and scenario.governor.policy != "none":
        # Under the "none" policy that is the lesson itself (Scenario 1): no warning there.
        warn(
            "everyone_violates",
            f"Almost every lab without a permit gains from violating ({tempted * 100:.0f}% of "
            f"values beat the largest expected penalty, {penalty_hi:.2f}). Raise the fine or "
            "collateral, or the audit probabilities, so that some labs are deterred.",
        )
    if market.type == "fixed_price" and market.fixed_price < penalty_lo:
        warn(
            "price_below_penalty",
            f"The fixed price, {market.fixed_price:.2f}, is below the expected penalty "
            f"({penalty_lo:.2f} or more): buying a permit always beats violating, so nobody "
            f"runs without one. Raise the fixed price above {penalty_hi:.2f}, or lower the "
            "penalty or detection.",
        )
    return tuple(found)


def signal_posterior(alpha: float, beta: float, violation_rate: float) -> tuple[float, float]:
    """Return P(violating | signal) and P(violating | no signal) for a lab without a permit.

    Bayes with the prior ``violation_rate`` v: P(V | s=1) = βv / (βv + α(1 − v)) and
    P(V | s=0) = (1 − β)v / ((1 − β)v + (1 − α)(1 − v)) (§4 step 4's signal law). A zero
    denominator (a signal that cannot happen) gives the prior.
    """
    v = min(max(violation_rate, 0.0), 1.0)
    loud = beta * v + alpha * (1 - v)
    quiet = (1 - beta) * v + (1 - alpha) * (1 - v)
    return (beta * v / loud if loud > 0 else v, (1 - beta) * v / quiet if quiet > 0 else v)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditScore:
    """One audit set's result in a round: violators caught, compliant labs audited, welfare."""

    policy: str
    audits: int
    caught: int
    false_positives: int
    welfare: float


def score_audits(
    setup: GameSetup, state: GameState, inputs: RoundInputs
) -> tuple[AuditScore, AuditScore, AuditScore]:
    """Score a settled round's audit set against the ``optimal`` and ``none`` policies.

    The round is resolved three times on the same draws (§11) with the same bids and run
    choices (``inputs`` holds every lab's move): with the given audit set, with the bot
    governor under ``optimal`` (π0 = 0, π1* at this round's price) and with no audits (a
    backcheck still applies). Only the audit set differs, so the scores compare the audits.

    Returns:
        (the given audits, optimal, none).
    """

    def score(policy: str, progress: RoundProgress) -> AuditScore:
        metrics = progress.metrics
        assert metrics is not None
        return AuditScore(
            policy=policy,
            audits=metrics.audits,
            caught=metrics.caught,
            false_positives=metrics.false_positive_audits,
            welfare=metrics.welfare,
        )

    moves = RoundInputs(bids=inputs.bids, asks=inputs.asks, runs=inputs.runs)  # §3b: asks too
    chosen = inputs.audits or frozenset()
    given = resolve_round(setup, state, replace(moves, audits=chosen))
    scenario = setup.scenario
    optimal_setup = replace(
        setup,
        scenario=scenario.with_changes(governor=replace(scenario.governor, policy="optimal")),
        human_governor=False,
    )
    optimal = resolve_round(optimal_setup, state, moves)
    nobody = resolve_round(setup, state, replace(moves, audits=frozenset()))
    return score("yours", given), score("optimal", optimal), score("none", nobody)
