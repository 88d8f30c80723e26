"""Many games of one scenario at once: a sweep's cells, batched on a leading axis (MODEL.md §9).

Here: ``cell_scenario`` (a heatmap cell as an ordinary scenario), ``ReplicateDraws`` and
``replicate_draws`` (one replicate's random numbers, which every cell shares) and ``play_cells``
(play a batch of cells through a whole game and return each cell's per-round metric means).

A cell at (P, p_eff) is the scenario with P as the whole penalty (K = 0, φ = P, R = 0), no audits
and every violator caught independently with probability p_eff, which is exactly governor policy
``none`` with backcheck probability p_eff: labs then perceive p_eff (§5) and nothing else changes.
So a cell IS a game, and ``play_cells`` plays it with the game's own rule functions (``lab_bids``,
``clear_bids``, ``lab_runs``, ``catch``, ``payoffs``, ``metric_values``) on arrays of shape
(cells, N), with the game's own random streams. Under common random numbers every cell of a
replicate faces the same draws, so they are drawn once per replicate, not once per cell.

Not here: grids, replicates, threads and statistics (``sweep.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from sim_core.arrays import BoolArray, FloatArray, IntArray
from sim_core.enforcement import catch, payoffs
from sim_core.market import clear_bids
from sim_core.metrics import METRICS, TALLIES, lab_tallies, metrics_from_tallies
from sim_core.params import GovernorParams, Scenario
from sim_core.rng import Purpose, stream
from sim_core.round import round_values
from sim_core.state import GameSetup, make_setup
from sim_core.strategies import (
    ADAPTIVE,
    COMPLIANT,
    RANDOM,
    RATIONAL,
    TRUTHFUL,
    adaptive_estimate,
    lab_bids,
    lab_runs,
    perceived_detection,
)
from sim_core.theory import expected_penalty


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
    """One replicate's random numbers, drawn from the game's own streams (§11).

    Every cell of the replicate plays with these (common random numbers): a cell's game with
    seed ``setup.seed`` draws exactly the same numbers, whatever its P and p_eff.

    Attributes:
        setup: the per-game draws (risk profiles, strategies, values when not redrawn).
        net_values: (T, N) u = v − c of each round.
        tie_keys: (T, N) the market's tie-break keys.
        catch_uniforms: (T, N) the backcheck uniforms (a violator is caught iff below p_eff).
        bid_uniforms: (T, N) the random strategy's bid uniforms, or None when no lab is random.
        choice_uniforms: (T, N) the random strategy's coins, or None when no lab is random.
    """

    setup: GameSetup
    net_values: FloatArray
    tie_keys: FloatArray
    catch_uniforms: FloatArray
    bid_uniforms: FloatArray | None
    choice_uniforms: FloatArray | None


def replicate_draws(
    scenario: Scenario, *, seed: int, rounds: int, dtype: npt.DTypeLike = np.float64
) -> ReplicateDraws:
    """Draw one replicate's numbers: what a game of any cell of ``scenario`` with ``seed`` draws.

    Args:
        scenario: the swept scenario (any cell of it: P and p_eff draw nothing).
        seed: the replicate's game seed.
        rounds: T.
        dtype: float type of the values and uniforms (float32 halves the memory traffic).
    """
    setup = make_setup(scenario, seed=seed)
    count = scenario.labs.count
    random_labs = bool(np.any(setup.strategies == RANDOM))
    compute_cost = scenario.labs.compute_cost

    def uniforms(purpose: Purpose) -> FloatArray:
        return np.stack([stream(seed, t, purpose).random(count) for t in range(1, rounds + 1)])

    net_values = np.stack([round_values(setup, t) - compute_cost for t in range(1, rounds + 1)])
    return ReplicateDraws(
        setup=setup,
        net_values=net_values.astype(dtype),
        tie_keys=uniforms(Purpose.TIE_BREAK),
        catch_uniforms=uniforms(Purpose.BACKCHECK).astype(dtype),
        bid_uniforms=uniforms(Purpose.BIDS).astype(dtype) if random_labs else None,
        choice_uniforms=uniforms(Purpose.CHOICES).astype(dtype) if random_labs else None,
    )


@dataclass(frozen=True, slots=True)
class WealthBound:
    """When the wealth cap of §4 step 1 provably never binds, so wealth need not be tracked.

    A bid never exceeds ``highest_bid`` = max(0, hi − c) (every strategy bids at most max(0, u)).
    A round lowers a lab's wealth only if it is caught (by P, R = 0 in a cell) or violates at a
    loss: a winner pays at most its bid, hence at most u; a rational, truthful or adaptive lab
    violates only when u + rho > E >= 0; any other violator gains u + rho >= lo − c + rho, a loss
    of at most ``violation_loss``. So wealth >= endowment − P·(times caught) − violation_loss·
    (violations), and while that stays above the highest bid no bid is ever clipped.
    """

    endowment: float
    highest_bid: float
    violation_loss: float

    #: Slack for the rounding of float32 wealth (relative to the endowment).
    SLACK = 1e-6

    @staticmethod
    def of(scenario: Scenario, strategies: IntArray) -> WealthBound:
        """Return the bound for ``scenario``'s population of bots."""
        labs = scenario.labs
        lo, hi = labs.gross_value
        by_value = np.isin(strategies, [RATIONAL, TRUTHFUL, ADAPTIVE, COMPLIANT]).all()
        loss = 0.0 if by_value else max(labs.compute_cost - lo - labs.racing_value, 0.0)
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


def play_cells(
    scenario: Scenario,
    draws: ReplicateDraws,
    *,
    punishments: FloatArray,
    p_effs: FloatArray,
) -> FloatArray:
    """Play the cells (P, p_eff) of ``scenario`` through a whole game with one replicate's draws.

    The cells are on the leading axis of every array; the labs' arrays are (cells, N). The rules
    are the game's: the same functions, in the same order, as ``resolve_round`` under policy
    ``none`` (see the module docstring). With float64 draws a cell's rows equal those of
    ``run_game(cell_scenario(...), seed=draws.setup.seed)`` (a test checks it).

    Wealth only matters when it caps a bid. Cells where ``WealthBound`` shows it cannot, even in
    the worst case, are played without it; the others are played without it while counting
    catches and violations per lab, and any cell whose counts do not rule out a capped bid is
    played again with its wealth tracked. Every cell's numbers are those of the full rules.

    Args:
        scenario: the swept scenario.
        draws: the replicate's random numbers (their dtype is the computation's).
        punishments: (C,) P of each cell.
        p_effs: (C,) p_eff of each cell.

    Returns:
        (C, len(METRICS)) float64: each cell's metrics averaged over the rounds (§8).
    """
    punishments = np.asarray(punishments, dtype=np.float64)
    p_effs = np.asarray(p_effs, dtype=np.float64)
    rounds = draws.net_values.shape[0]
    bound = WealthBound.of(scenario, draws.setup.strategies)
    values = np.empty((len(punishments), len(METRICS)))
    worst = np.full((len(punishments), 1), float(rounds - 1))
    free = bound.holds(punishments, worst, worst)
    # Where a lab caught in a share p_eff of all rounds would already break the bound, the
    # counts would rarely rule a capped bid out: track the wealth from the start (only speed).
    likely = p_effs[:, None] * (rounds - 1)
    direct = ~free & ~bound.holds(punishments, likely, worst)
    watched = ~free & ~direct
    for cells, tracked in ((free, False), (direct, True)):
        if cells.any():
            values[cells], _ = _play(
                scenario, draws, punishments[cells], p_effs[cells], tracked=tracked, counted=False
            )
    if watched.any():
        values[watched], (caught, violations) = _play(
            scenario,
            draws,
            punishments[watched],
            p_effs[watched],
            tracked=False,
            counted=True,
            bound_needs_violations=bound.violation_loss > 0,
        )
        unsure = np.flatnonzero(watched)[~bound.holds(punishments[watched], caught, violations)]
        if unsure.size:
            values[unsure], _ = _play(
                scenario, draws, punishments[unsure], p_effs[unsure], tracked=True, counted=False
            )
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
    """Play the cells through all rounds; return their round means and per-lab counts.

    With ``tracked`` the wealth caps the bids; with ``counted`` the catches and violations of each
    lab before the last round are counted, for ``WealthBound``.
    """
    labs, market = scenario.labs, scenario.market
    setup = draws.setup
    dtype = draws.net_values.dtype
    rounds, count = draws.net_values.shape
    rho = labs.racing_value
    codes = setup.strategies
    adaptive = bool(np.any(codes == ADAPTIVE))
    # One code for a population playing one strategy: the rule functions then skip the others.
    strategies = codes[0] if (codes == codes[0]).all() else codes
    cells = (len(punishments), count)
    # One number per cell, as (C, 1) for the closed forms and full (C, N) for the per-lab
    # operations (numpy is several times slower with an operand broadcast along an axis).
    punishment = punishments[:, None]
    announced = p_effs[:, None]
    catch_prob = np.broadcast_to(announced, cells).astype(dtype)
    cell_punishment = np.broadcast_to(punishment, cells).astype(dtype)
    penalties = expected_penalty(setup.risk_profile, announced, punishment).astype(dtype)
    wealth: FloatArray | float = np.full(cells, labs.endowment, dtype) if tracked else math.inf
    counter = np.uint8 if rounds <= 255 else np.uint16 if rounds <= 65535 else np.int64
    caught_counts = np.zeros(cells if counted else (0, count), dtype=counter)
    violation_counts = np.zeros_like(caught_counts)
    caught_total = np.zeros(punishment.shape)
    violations_total = np.zeros(punishment.shape)
    tallies = np.empty((rounds, *cells[:1], len(TALLIES)), dtype=dtype)
    prices = np.empty((rounds, *cells[:1]), dtype=np.float64)
    for t in range(rounds):
        net_values = draws.net_values[t]
        if adaptive:  # the public tally moves the adaptive labs' estimate of p_eff every round
            learnt = adaptive_estimate(announced, caught_total, violations_total)  # type: ignore[arg-type]
            detection = perceived_detection(codes, announced, learnt)  # type: ignore[arg-type]
            penalties = expected_penalty(setup.risk_profile, detection, punishment).astype(dtype)
        bid_uniforms = draws.bid_uniforms[t] if draws.bid_uniforms is not None else net_values
        bids = lab_bids(strategies, net_values, penalties, rho, wealth, bid_uniforms)
        price, won = clear_bids(bids, draws.tie_keys[t], market)
        unpermitted_values = net_values + rho - penalties
        choices = draws.choice_uniforms[t] if draws.choice_uniforms is not None else net_values
        violated = np.greater(lab_runs(strategies, unpermitted_values, choices), won)  # runs & ~won
        caught = catch(violated, None, draws.catch_uniforms[t], catch_prob)
        if tracked:
            wealth += payoffs(
                net_values=net_values,
                won=won,
                violated=violated,
                caught=caught,
                price=price[:, None].astype(dtype),
                racing_value=rho,
                punishment=cell_punishment,
            )
        if counted and t < rounds - 1:  # the last round's losses cannot cap a bid
            caught_counts += caught
            if bound_needs_violations:
                violation_counts += violated
        tallies[t] = lab_tallies(
            net_values=net_values,
            won=won,
            violated=violated,
            audited=None,
            caught=caught,
            racing_value=rho,
        )
        prices[t] = price
        if adaptive:
            caught_total += tallies[t, :, TALLIES.index("caught"), None]
            violations_total += tallies[t, :, TALLIES.index("violations"), None]
    values = metrics_from_tallies(
        tallies,
        price=prices,
        labs=count,
        reference_cap=market.token_cap,
        fine=punishments,
        collateral=0.0,
        audit_cost=0.0,
        harm_per_violation=scenario.welfare.harm_per_violation,
    )
    return values.mean(axis=0), (caught_counts, violation_counts)
