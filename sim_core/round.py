"""The resolver: one round of the game, as far as the moves so far allow (MODEL.md §4).

Here: ``RoundInputs`` (moves given by humans, defaults or logged fallbacks), ``RoundProgress``
(everything known so far), ``check_bid`` and ``resolve_round``: the ONE function that plays a
round, for the live server and the batch simulator alike. It is pure: every draw comes from the
round's own streams (§11), so calling it again with more moves replays the earlier phases
exactly, and a human seat never shifts anyone else's draws (bots draw for every lab, then a
given move replaces the bot's). Not here: storing moves, clocks or who is connected.

Phase by phase. A caller drives a round by calling ``resolve_round`` with the moves it has:
- bidding: a lab in ``human_labs`` with no entry in ``bids`` stops the round in BIDDING; under
  §3b's grandfathering this is the trading phase: a human holder of a granted permit owes an
  entry in ``asks`` (a number, or None to keep), a human non-holder one in ``bids``;
- compliance: once the market has cleared, a human lab without a permit and with no entry in
  ``runs`` stops it in COMPLIANCE;
- audit: with ``human_governor`` set and ``audits`` None, it stops in AUDIT (signals are known);
- otherwise the round settles and ``next_state`` is the state of the next round.
A lab outside ``human_labs`` uses its entry in ``bids``/``runs`` if there is one (a logged
default or fallback move) and its strategy otherwise, so a server that lets a bot stand in for an
absent human reads the bot's move from the progress and logs it as a given move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sim_core.arrays import BoolArray, FloatArray, frozen
from sim_core.enforcement import Settlement, catch, draw_signals, settle, trade_transfers
from sim_core.errors import ActionError
from sim_core.governor import check_audits, choose_audits
from sim_core.market import MarketResult, TradeResult, clear_market, trade_permits
from sim_core.metrics import MetricsRow, round_metrics
from sim_core.perception import perceived_penalties
from sim_core.rng import round_streams
from sim_core.state import GameSetup, GameState, Phase, granted_permits, round_values
from sim_core.strategies import lab_asks, lab_bids, lab_runs
from sim_core.theory import (
    optimal_high_prob,
    perceived_p_eff,
    unpermitted_value,
)

BID_NOT_A_NUMBER = "A bid must be a number, got {bid!r}."
BID_NEGATIVE = "A bid cannot be negative (got {bid:.3f})."
BID_ABOVE_WEALTH = "A bid cannot exceed your wealth of {wealth:.3f} (got {bid:.3f})."
RUN_WITH_PERMIT = "Lab {lab} holds a permit this round: permit holders always run."
NO_SUCH_LAB = "There is no lab {lab}; labs are numbered 1 to {count}."
ASK_NOT_A_NUMBER = "An ask must be a number, or none to keep the permit; got {ask!r}."
ASK_NEGATIVE = "An ask cannot be negative (got {ask:.3f})."
BID_BY_HOLDER = "Lab {lab} holds a granted permit this round: it asks or keeps, it does not bid."
ASK_WITHOUT_PERMIT = "Lab {lab} holds no permit this round: only a permit holder can ask."
NO_TRADING = "Permits are auctioned in this game: there is nothing to ask or keep."


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundInputs:
    """The moves given for one round, keyed by 0-based lab index.

    Attributes:
        bids: lab -> sealed bid (§4 step 1; under §3b, only labs without a granted permit).
        asks: §3b only: holder of a granted permit -> its ask, or None to keep the permit.
        runs: lab without a permit -> runs unpermitted? (§4 step 3).
        audits: the governor's audit set, or None when not given (§4 step 5).
        human_labs: labs whose moves must be given: a missing one stops the round.
        human_governor: whether the audit set must be given.
    """

    bids: Mapping[int, float] = field(default_factory=dict)
    asks: Mapping[int, float | None] = field(default_factory=dict)
    runs: Mapping[int, bool] = field(default_factory=dict)
    audits: frozenset[int] | None = None
    human_labs: frozenset[int] = frozenset()
    human_governor: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundProgress:
    """How far a round got, and everything known up to there.

    Attributes:
        round_no: the round.
        awaiting: the phase waiting for moves, or None once the round has settled.
        waiting_for: the human labs that owe a move in ``awaiting`` (empty for AUDIT).
        values: (N,) gross values v this round.
        net_values: (N,) u = v − c.
        granted: §3b only: (N,) the labs granted a permit this round (known from the start).
        bids: (N,) every lab's bid (given or the bot's), once bidding is complete (§3b: 0 for
            holders).
        asks: §3b only: (N,) every holder's ask (inf: keeps; inf for non-holders).
        market: the market result, once bidding is complete (§3b: holders after trading).
        trade: §3b only: the call market's result (price, buyers, sellers).
        announced_high_prob: the π1 announced after clearing (π1* under ``optimal``).
        runs: (N,) who ran without a permit (False for permit holders), once chosen.
        signals: (N,) s per lab, once realised (the governor's information).
        audited: (N,) the audit set.
        settlement: payoffs, caught, wealth, once settled.
        metrics: the round's §8 metrics, once settled.
        next_state: the state of the next round, once settled.
    """

    round_no: int
    awaiting: Phase | None
    waiting_for: frozenset[int] = frozenset()
    values: FloatArray
    net_values: FloatArray
    granted: BoolArray | None = None
    bids: FloatArray | None = None
    asks: FloatArray | None = None
    market: MarketResult | None = None
    trade: TradeResult | None = None
    announced_high_prob: float | None = None
    runs: BoolArray | None = None
    signals: BoolArray | None = None
    audited: BoolArray | None = None
    settlement: Settlement | None = None
    metrics: MetricsRow | None = None
    next_state: GameState | None = None


def check_bid(bid: object, *, wealth: float) -> float:
    """Return ``bid`` as a float if the rules allow it: 0 <= b <= wealth, floored at 0 (§4 step 1).

    Raises:
        ActionError: not a finite number, negative, or above the wealth.
    """
    if isinstance(bid, bool) or not isinstance(bid, int | float) or not math.isfinite(bid):
        raise ActionError(BID_NOT_A_NUMBER.format(bid=bid))
    if bid < 0:
        raise ActionError(BID_NEGATIVE.format(bid=bid))
    cap = max(wealth, 0.0)
    if bid > cap + 1e-9:
        raise ActionError(BID_ABOVE_WEALTH.format(wealth=cap, bid=bid))
    return float(min(bid, cap))


def check_ask(ask: object) -> float | None:
    """Return a holder's ask as a float, or None to keep the permit (§3b): any a >= 0.

    Raises:
        ActionError: neither None nor a finite number, or negative.
    """
    if ask is None:
        return None
    if isinstance(ask, bool) or not isinstance(ask, int | float) or not math.isfinite(ask):
        raise ActionError(ASK_NOT_A_NUMBER.format(ask=ask))
    if ask < 0:
        raise ActionError(ASK_NEGATIVE.format(ask=ask))
    return float(ask)


def _check_labs(labs: Mapping[int, object], count: int) -> None:
    for lab in labs:
        if not 0 <= lab < count:
            raise ActionError(NO_SUCH_LAB.format(lab=lab + 1, count=count))


def _merge(bot: FloatArray | BoolArray, given: Mapping[int, float] | Mapping[int, bool]) -> None:
    for lab, move in given.items():
        bot[lab] = move


def resolve_round(setup: GameSetup, state: GameState, inputs: RoundInputs) -> RoundProgress:
    """Play round ``state.round_no`` as far as ``inputs`` allow (§4).

    Args:
        setup: the per-game draws.
        state: the state at the start of the round.
        inputs: the moves given so far, and which seats are human.

    Returns:
        The progress: the phase still waiting (and for whom), or the settled round.

    Raises:
        ActionError: a given move the rules do not allow (a bid outside [0, wealth], a run
            choice for a permit holder, an audit set over the cap or naming no lab).
    """
    scenario = setup.scenario
    labs, audit = scenario.labs, scenario.audit
    count = setup.lab_count
    streams = round_streams(setup.seed, state.round_no)
    values = round_values(setup, state.round_no)
    net_values = frozen(values - labs.compute_cost)
    progress = RoundProgress(
        round_no=state.round_no, awaiting=Phase.BIDDING, values=values, net_values=net_values
    )
    punishment = audit.punishment

    # Step 1: bids. Bots draw for every lab; given moves replace theirs.
    _check_labs(inputs.bids, count)
    announced = perceived_p_eff(
        scenario, announced_high_prob=state.announced_high_prob, human_governor=setup.human_governor
    )
    penalties = perceived_penalties(
        setup.strategies,
        setup.risk_profile,
        announced,
        punishment,
        caught_total=state.caught_total,
        violations_total=state.violations_total,
    )
    bid_uniforms = streams.bids.random(count)
    bids = lab_bids(
        setup.strategies, net_values, penalties, labs.racing_value, state.wealth, bid_uniforms
    )
    granted = granted_permits(setup, state.round_no)
    if granted is None:
        if inputs.asks:
            raise ActionError(NO_TRADING)
        asks = None
    else:  # §3b: holders ask (their bid formula, unclipped) or keep; the others bid
        _check_labs(inputs.asks, count)
        for lab in inputs.bids:
            if granted[lab]:
                raise ActionError(BID_BY_HOLDER.format(lab=lab + 1))
        for lab in inputs.asks:
            if not granted[lab]:
                raise ActionError(ASK_WITHOUT_PERMIT.format(lab=lab + 1))
        asks = lab_asks(setup.strategies, net_values, penalties, labs.racing_value, bid_uniforms)
        asks[~granted] = math.inf
        bids[granted] = 0.0
        for lab, ask in inputs.asks.items():
            checked = check_ask(ask)
            asks[lab] = math.inf if checked is None else checked
        progress = replace(progress, granted=granted)
    for lab, bid in inputs.bids.items():
        bids[lab] = check_bid(bid, wealth=float(state.wealth[lab]))
    given = set(inputs.bids) | set(inputs.asks)
    owed_bids = frozenset(inputs.human_labs - given)
    if owed_bids:
        return replace(progress, waiting_for=owed_bids)

    # Step 2: allocation (§3b: the call market among holders and bidders).
    trade = None
    if granted is None or asks is None:
        market = clear_market(frozen(bids), scenario.market, streams.tie_break)
    else:
        trade = trade_permits(frozen(bids), frozen(asks), granted, streams.tie_break)
        market = MarketResult(price=trade.price, won=trade.holders)
    high_prob = audit.high_prob
    optimal = scenario.governor.policy == "optimal" and not setup.human_governor
    if optimal and market.price is None:
        # §3b: a round without a trade has no price to compute π1* from: the last one stays.
        high_prob = state.announced_high_prob
    elif optimal and market.price is not None:
        high_prob = optimal_high_prob(
            price=market.price,
            racing_value=labs.racing_value,
            punishment=punishment,
            beta=audit.beta,
            base_prob=0.0,
            backcheck_prob=audit.backcheck_prob,
        )
    progress = replace(
        progress,
        awaiting=Phase.COMPLIANCE,
        bids=bids,
        asks=None if asks is None else frozen(asks),
        market=market,
        trade=trade,
        announced_high_prob=high_prob,
    )

    # Step 3: compliance choice of the labs without a permit.
    _check_labs(inputs.runs, count)
    for lab in inputs.runs:
        if market.won[lab]:
            raise ActionError(RUN_WITH_PERMIT.format(lab=lab + 1))
    announced = perceived_p_eff(
        scenario, announced_high_prob=high_prob, human_governor=setup.human_governor
    )
    penalties = perceived_penalties(
        setup.strategies,
        setup.risk_profile,
        announced,
        punishment,
        caught_total=state.caught_total,
        violations_total=state.violations_total,
    )
    unpermitted_values = unpermitted_value(net_values, labs.racing_value, penalties)
    runs = lab_runs(setup.strategies, unpermitted_values, streams.choices.random(count))
    _merge(runs, inputs.runs)
    runs &= ~market.won
    owed_runs = frozenset(
        lab for lab in inputs.human_labs - set(inputs.runs) if not market.won[lab]
    )
    if owed_runs:
        return replace(progress, waiting_for=owed_runs)
    violated = frozen(runs)

    # Step 4: signals for every lab.
    signals = draw_signals(violated, audit, streams.signals)
    progress = replace(progress, awaiting=Phase.AUDIT, runs=violated, signals=signals)

    # Step 5: audits, then backchecks of unaudited violators.
    if inputs.audits is not None:
        audited = check_audits(inputs.audits, lab_count=count, max_audits=audit.max_audits)
    elif inputs.human_governor:
        return progress
    else:
        audited = choose_audits(
            policy=scenario.governor.policy,
            signals=signals,
            won=market.won,
            audit=audit,
            optimal_high_prob=high_prob,
            rng=streams.audits,
        )
    audited = frozen(audited)
    caught = catch(violated, audited, streams.backcheck.random(count), audit.backcheck_prob)

    # Step 6: settlement.
    transfers = None
    if trade is not None:
        transfers = trade_transfers(
            0.0 if trade.price is None else trade.price, trade.bought, trade.sold
        )
    settlement = settle(
        net_values=net_values,
        won=market.won,
        violated=violated,
        caught=caught,
        price=0.0 if market.price is None else market.price,
        racing_value=labs.racing_value,
        audit=audit,
        wealth=state.wealth,
        transfers=transfers,
    )
    metrics = round_metrics(
        round_no=state.round_no,
        price=market.price,
        net_values=net_values,
        won=market.won,
        violated=violated,
        audited=audited,
        caught=caught,
        racing_value=labs.racing_value,
        reference_cap=scenario.market.token_cap,
        fine=audit.fine,
        collateral=audit.collateral,
        audit_cost=audit.audit_cost,
        harm_per_violation=scenario.welfare.harm_per_violation,
        bought=None if trade is None else trade.bought,
    )
    next_state = GameState(
        round_no=state.round_no + 1,
        wealth=settlement.wealth,
        announced_high_prob=high_prob,
        caught_total=state.caught_total + metrics.caught,
        violations_total=state.violations_total + metrics.violations,
    )
    return replace(
        progress,
        awaiting=None,
        audited=audited,
        settlement=settlement,
        metrics=metrics,
        next_state=next_state,
    )
