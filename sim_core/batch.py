"""Many games of one scenario at once: a sweep's cells, batched on a leading axis (MODEL.md §9).

Here: ``cell_scenario`` (a heatmap cell as an ordinary scenario), ``ReplicateDraws`` and
``replicate_draws`` (the random numbers of a set of replicates; every cell of a replicate shares
them), ``WealthBound``/``wealth_plan`` (when wealth can be left untracked) and ``play_cells``
(play cells x replicates through whole games; return each one's per-round metric means).

A cell at (P, p_eff) is the scenario with P as the whole penalty (K = 0, φ = P, R = 0), no audits
and every violator caught independently with probability p_eff, which is exactly governor policy
``none`` with backcheck probability p_eff: labs then perceive p_eff (§5) and nothing else changes.
So a cell IS a game, and ``play_cells`` plays it with the game's own rule functions (``lab_bids``,
``clear_bids``, ``lab_runs``, ``catch``, ``payoffs``, ``lab_tallies`` and
``metrics_from_tallies``) on arrays of shape (replicates, cells, N), with the game's own random
streams. Under common random numbers every cell of a replicate faces the same draws, so they are
drawn once per replicate and broadcast over the cells, never copied per cell.

Not here: grids, replicates, threads and statistics (``sweep.py``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from sim_core.arrays import BoolArray, FloatArray, IntArray
from sim_core.enforcement import catch, payoffs, trade_transfers
from sim_core.market import clear_bids, clear_trades, grant_permits
from sim_core.metrics import METRICS, TALLIES, lab_tallies, metrics_from_tallies
from sim_core.params import GovernorParams, Scenario
from sim_core.perception import perceived_penalties
from sim_core.rng import Purpose, stream
from sim_core.state import grant_keys as grant_keys_of
from sim_core.state import make_setup, round_values
from sim_core.strategies import ADAPTIVE, RANDOM, lab_bids, lab_runs
from sim_core.theory import unpermitted_value


def cell_scenario(scenario: Scenario, *, punishment: float, p_eff: float) -> Scenario:
    """Return the heatmap cell (P, p_eff) of ``scenario`` as an ordinary scenario (§9).

    P is the whole penalty (K = 0, φ = P, R = 0); every violator is caught independently with
    probability p_eff (policy ``none`` with ``backcheck_prob`` = p_eff, so no audits, no audit cost,
    and labs perceive p_eff). Everything else is the scenario's.
    """
    audit = replace(
        scenario.audit,
        collateral=0.0,
        fine=punishment,
        reputation_penalty=0.0,
        high_prob=0.0,
        base_prob=0.0,
        backcheck_prob=p_eff,
        audit_cost=0.0,
        max_audits=None,
    )
    return replace(scenario, audit=audit, governor=GovernorParams(policy="none"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicateDraws:
    """The random numbers of R replicates, drawn from the game's own streams (§11).

    Every cell of a replicate plays with that replicate's numbers (common random numbers): a
    cell's game with seed ``seeds[j]`` draws exactly the same numbers, whatever its P and p_eff.

    Attributes:
        seeds: (R,) the replicates' game seeds.
        risk_profile: (R, N) r of each lab.
        strategies: (R, N) strategy codes.
        net_values: (T, R, N) u = v − c of each round.
        tie_keys: (T, R, N) the market's tie-break keys.
        catch_uniforms: (T, R, N) the backcheck uniforms (a violator is caught iff below p_eff).
        bid_uniforms: (T, R, N) the random strategy's bid uniforms, or None when no lab is random.
        choice_uniforms: (T, R, N) the random strategy's coins, or None when no lab is random.
        grant_keys: §3b only: the keys that choose the grantees, (1, R, N) for incumbents (the
            same every round) or (T, R, N) for a lottery; None under an auction.
    """

    seeds: tuple[int, ...]
    risk_profile: FloatArray
    strategies: IntArray
    net_values: FloatArray
    tie_keys: FloatArray
    catch_uniforms: FloatArray
    bid_uniforms: FloatArray | None
    choice_uniforms: FloatArray | None
    grant_keys: FloatArray | None = None

    def take(self, replicates: IntArray) -> ReplicateDraws:
        """Return the draws of the given replicates (indices, repeats allowed), in that order."""

        def pick(draws: FloatArray | None) -> FloatArray | None:
            return None if draws is None else draws[:, replicates]

        return ReplicateDraws(
            seeds=tuple(self.seeds[index] for index in replicates.tolist()),
            risk_profile=self.risk_profile[replicates],
            strategies=self.strategies[replicates],
            net_values=self.net_values[:, replicates],
            tie_keys=self.tie_keys[:, replicates],
            catch_uniforms=self.catch_uniforms[:, replicates],
            bid_uniforms=pick(self.bid_uniforms),
            choice_uniforms=pick(self.choice_uniforms),
            grant_keys=pick(self.grant_keys),
        )


def replicate_draws(
    scenario: Scenario, *, seeds: Sequence[int], rounds: int, dtype: npt.DTypeLike = np.float64
) -> ReplicateDraws:
    """Draw what a game of any cell of ``scenario`` draws, for each seed (one per replicate).

    Args:
        scenario: the swept scenario (any cell of it: P and p_eff draw nothing).
        seeds: the replicates' game seeds.
        rounds: T.
        dtype: float type of the values and uniforms (float32 halves the memory traffic).
    """
    count = scenario.labs.count
    setups = [make_setup(scenario, seed=seed) for seed in seeds]
    random_labs = any(bool(np.any(setup.strategies == RANDOM)) for setup in setups)
    compute_cost = scenario.labs.compute_cost
    steps = range(1, rounds + 1)

    def uniforms(purpose: Purpose) -> FloatArray:
        return np.array([[stream(seed, t, purpose).random(count) for seed in seeds] for t in steps])

    net_values = np.array([[round_values(setup, t) for setup in setups] for t in steps])
    grant_keys = None
    market = scenario.market
    if market.grandfathered:  # §3b: the grantees, from the streams a game draws them from
        grant_rounds = [1] if market.grant == "incumbents" else steps
        grant_keys = np.array([[grant_keys_of(setup, t) for setup in setups] for t in grant_rounds])
    return ReplicateDraws(
        seeds=tuple(seeds),
        risk_profile=np.array([setup.risk_profile for setup in setups]),
        strategies=np.array([setup.strategies for setup in setups]),
        net_values=(net_values - compute_cost).astype(dtype),
        tie_keys=uniforms(Purpose.TIE_BREAK),
        catch_uniforms=uniforms(Purpose.BACKCHECK).astype(dtype),
        bid_uniforms=uniforms(Purpose.BIDS).astype(dtype) if random_labs else None,
        choice_uniforms=uniforms(Purpose.CHOICES).astype(dtype) if random_labs else None,
        grant_keys=grant_keys,
    )


@dataclass(frozen=True, slots=True)
class WealthBound:
    """When the wealth cap of §4 step 1 provably never binds, so wealth need not be tracked.

    A bid never exceeds ``highest_bid`` = max(0, hi − c) (every strategy bids at most max(0, u)).
    A round lowers a lab's wealth only if it is caught (by P, R = 0 in a cell) or violates at a
    loss: a winner pays at most its bid, hence at most u; a rational, truthful or adaptive lab
    violates only when u + rho > E >= 0; any other violator gains u + rho >= lo − c + rho, a loss
    of at most ``violation_loss``; under §3b a seller gains, a buyer pays at most its bid, and a
    holder that keeps runs at a loss of at most max(0, c − lo), counted as a violation here. So
    wealth >= endowment − P·(times caught) − violation_loss·
    (violations), and while that stays above the highest bid no bid is ever clipped.
    """

    endowment: float
    highest_bid: float
    violation_loss: float

    #: Slack for the rounding of float32 wealth (relative to the endowment).
    SLACK = 1e-6

    @staticmethod
    def of(scenario: Scenario) -> WealthBound:
        """Return the bound for ``scenario``'s population of bots."""
        labs = scenario.labs
        lo, hi = labs.gross_value
        by_value = set(labs.strategy) <= {"rational", "truthful", "adaptive", "compliant"}
        loss = 0.0 if by_value else max(labs.compute_cost - lo - labs.racing_value, 0.0)
        if scenario.market.grandfathered:
            # §3b: a holder nobody buys from runs even at u < 0 (counted with the violations).
            loss = max(loss, labs.compute_cost - lo, 0.0)
        return WealthBound(
            endowment=labs.endowment,
            highest_bid=max(hi - labs.compute_cost, 0.0),
            violation_loss=loss,
        )

    def holds(
        self, punishments: FloatArray, caught: FloatArray, violations: FloatArray
    ) -> BoolArray:
        """Return, per cell, whether labs caught and violating that often never had a bid clipped.

        ``caught`` and ``violations`` are counts per lab (..., N) over the rounds before the last
        (or more: the bound only gets safer), or worst cases.
        """
        floor = self.endowment - punishments[..., None] * caught - self.violation_loss * violations
        margin = self.highest_bid + self.SLACK * max(1.0, self.endowment)
        holding: BoolArray = np.all(floor >= margin, axis=-1)
        return holding


#: How ``play_cells`` treats a cell's wealth (see ``wealth_plan``).
FREE, WATCHED, TRACKED = 0, 1, 2


def wealth_plan(
    scenario: Scenario, punishments: FloatArray, p_effs: FloatArray, *, rounds: int
) -> IntArray:
    """Return, per cell, how its wealth is handled: FREE, WATCHED or TRACKED.

    FREE: ``WealthBound`` holds even if a lab were caught in every round, so wealth never caps a
    bid and is not tracked. TRACKED: a lab caught in about a share p_eff of the rounds (two
    standard deviations more) would already break the bound, so the counts of a WATCHED play
    would often fail to rule a capped bid out: the wealth is tracked from the start. WATCHED:
    played without wealth, counting catches and violations per lab; replayed TRACKED if the
    counts do not rule a capped bid out. The plan only decides speed: every cell's numbers are
    those of the full rules.
    """
    bound = WealthBound.of(scenario)
    worst = np.full((len(punishments), 1), float(rounds - 1))
    free = bound.holds(punishments, worst, worst)
    # The most a lab caught in about a share p_eff of the rounds is caught (mean + 2 sd).
    mean = p_effs * (rounds - 1)
    likely = bound.holds(punishments, (mean + 2 * np.sqrt(mean * (1 - p_effs)))[:, None], worst)
    plan: IntArray = np.where(free, FREE, np.where(likely, WATCHED, TRACKED))
    return plan


def play_cells(
    scenario: Scenario,
    draws: ReplicateDraws,
    *,
    punishments: FloatArray,
    p_effs: FloatArray,
) -> FloatArray:
    """Play every cell (P, p_eff) of ``scenario`` with every replicate of ``draws``, whole games.

    Replicates and cells are the leading axes of every array, (R, C, N) for the labs. The rules
    are the game's: the same functions, in the same order, as ``resolve_round`` under policy
    ``none`` (see the module docstring). With float64 draws each (replicate, cell) equals
    ``run_game(cell_scenario(...), seed=draws.seeds[j])`` (a test checks it).

    Wealth only matters when it caps a bid; ``wealth_plan`` decides per cell whether to track it
    (a sweep hands over blocks of one plan, which are then played in one go).

    Args:
        scenario: the swept scenario.
        draws: the replicates' random numbers (their dtype is the computation's).
        punishments: (C,) P of each cell.
        p_effs: (C,) p_eff of each cell.

    Returns:
        (R, C, len(METRICS)) float64: each game's metrics averaged over its rounds (§8).
    """
    punishments = np.asarray(punishments, dtype=np.float64)
    p_effs = np.asarray(p_effs, dtype=np.float64)
    bound = WealthBound.of(scenario)
    plan = wealth_plan(scenario, punishments, p_effs, rounds=draws.net_values.shape[0])
    values = np.empty((len(draws.seeds), len(punishments), len(METRICS)))
    for mode in (FREE, TRACKED):
        cells = np.flatnonzero(plan == mode)
        if cells.size:
            values[:, cells], _ = _play(
                scenario,
                draws,
                punishments[None, cells],
                p_effs[None, cells],
                tracked=mode == TRACKED,
                counted=False,
            )
    watched = np.flatnonzero(plan == WATCHED)
    if watched.size:
        values[:, watched], (caught, violations) = _play(
            scenario,
            draws,
            punishments[None, watched],
            p_effs[None, watched],
            tracked=False,
            counted=True,
            bound_needs_violations=bound.violation_loss > 0,
        )
        unsure = ~bound.holds(punishments[None, watched], caught, violations)
        for replicate in np.flatnonzero(unsure.any(axis=-1)):  # replay just those games
            cells = watched[unsure[replicate]]
            replayed, _ = _play(
                scenario,
                draws.take(np.array([replicate])),
                punishments[None, cells],
                p_effs[None, cells],
                tracked=True,
                counted=False,
            )
            values[replicate, cells] = replayed[0]
    return values


def _play(
    scenario: Scenario,
    draws: ReplicateDraws,
    punishments: FloatArray,
    p_effs: FloatArray,
    *,
    tracked: bool,
    counted: bool,
    bound_needs_violations: bool = True,
) -> tuple[FloatArray, tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    """Play games on a (R, C) layout through all rounds; return round means and per-lab counts.

    ``punishments`` and ``p_effs`` are (1, C) (every replicate plays every cell) or (R, 1) (one
    cell per replicate row). With ``tracked`` the wealth caps the bids; with ``counted`` the
    catches and violations of each lab before the last round are counted, for ``WealthBound``.
    """
    labs, market = scenario.labs, scenario.market
    dtype = draws.net_values.dtype
    rounds, replicates, count = draws.net_values.shape
    rho = labs.racing_value
    codes = draws.strategies[:, None, :]  # (R, 1, N)
    adaptive = bool(np.any(codes == ADAPTIVE))
    # One code for a population playing one strategy: the rule functions then skip the others.
    strategies: IntArray | int = int(codes.flat[0]) if (codes == codes.flat[0]).all() else codes
    shape = np.broadcast_shapes((replicates, 1), punishments.shape)
    games = (*shape, count)
    # One number per game, as (R, C, 1) for the closed forms and full (R, C, N) for the per-lab
    # operations (numpy is several times slower with an operand broadcast along an axis).
    punishment = punishments[..., None]
    announced = p_effs[..., None]
    risk = draws.risk_profile[:, None, :]
    catch_prob = np.broadcast_to(announced, games).astype(dtype)
    cell_punishment = np.broadcast_to(punishment, games).astype(dtype) if tracked else punishment
    # Before any tally the adaptive labs' estimate is the announcement: one E for every lab.
    penalties = np.broadcast_to(perceived_penalties(strategies, risk, announced, punishment), games)
    penalties = penalties.astype(dtype)
    wealth: FloatArray | float = np.full(games, labs.endowment, dtype) if tracked else math.inf
    counter = np.uint8 if rounds <= 255 else np.uint16 if rounds <= 65535 else np.int64
    caught_counts = np.zeros(games if counted else (0,), dtype=counter)
    violation_counts = np.zeros_like(caught_counts)
    caught_total = np.zeros((*shape, 1))
    violations_total = np.zeros((*shape, 1))
    grant_keys = draws.grant_keys
    cap = market.token_cap or 0
    tallies = np.empty((rounds, *shape, len(TALLIES)), dtype=dtype)
    prices = np.empty((rounds, *shape), dtype=np.float64)
    for t in range(rounds):
        net_values = draws.net_values[t][:, None, :]  # (R, 1, N): shared by a replicate's cells
        if adaptive:  # the public tally moves the adaptive labs' estimate of p_eff every round
            penalties = perceived_penalties(
                codes,
                risk,
                announced,
                punishment,
                caught_total=caught_total,
                violations_total=violations_total,
            ).astype(dtype)
        bid_uniforms = net_values if draws.bid_uniforms is None else draws.bid_uniforms[t][:, None]
        bids = lab_bids(strategies, net_values, penalties, rho, wealth, bid_uniforms)
        if grant_keys is None:
            price, won = clear_bids(bids, draws.tie_keys[t][:, None, :], market)
            transfers = bought = None
        else:  # §3b: granted permits, then the call market (asks: the bids without the wealth)
            granted = grant_permits(grant_keys[min(t, len(grant_keys) - 1)], cap)[:, None, :]
            asks = lab_bids(strategies, net_values, penalties, rho, math.inf, bid_uniforms)
            price, bought, sold = clear_trades(bids, asks, granted, draws.tie_keys[t][:, None, :])
            won = (granted & ~sold) | bought
            transfers = trade_transfers(price[..., None].astype(dtype), bought, sold)
        unpermitted_values = unpermitted_value(net_values, rho, penalties)
        choices = net_values if draws.choice_uniforms is None else draws.choice_uniforms[t][:, None]
        violated = np.greater(lab_runs(strategies, unpermitted_values, choices), won)  # runs & ~won
        caught = catch(violated, None, draws.catch_uniforms[t][:, None, :], catch_prob)
        if tracked:
            wealth += payoffs(
                net_values=net_values,
                won=won,
                violated=violated,
                caught=caught,
                price=price[..., None].astype(dtype),
                racing_value=rho,
                punishment=cell_punishment,
                transfers=transfers,
            )
        if counted and t < rounds - 1:  # the last round's losses cannot cap a bid
            caught_counts += caught
            if bound_needs_violations:
                violation_counts += violated if grant_keys is None else violated | won
        tallies[t] = lab_tallies(
            net_values=net_values,
            won=won,
            violated=violated,
            audited=None,
            caught=caught,
            racing_value=rho,
            bought=bought,
        )
        prices[t] = price
        if adaptive:
            caught_total += tallies[t, ..., TALLIES.index("caught"), None]
            violations_total += tallies[t, ..., TALLIES.index("violations"), None]
    values = metrics_from_tallies(
        tallies,
        price=prices,
        labs=count,
        reference_cap=market.token_cap,
        fine=np.broadcast_to(punishments, shape),
        collateral=0.0,
        audit_cost=0.0,
        harm_per_violation=scenario.welfare.harm_per_violation,
        auctioned=grant_keys is None,
    )
    means = values.mean(axis=0)
    if grant_keys is not None:  # §3b: rounds without a trade have no price (NaN if none traded)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a game in which nothing traded
            price_index = METRICS.index("price")
            means[..., price_index] = np.nanmean(values[..., price_index], axis=0)
    return means, (caught_counts, violation_counts)
