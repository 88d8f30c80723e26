"""Game setup and per-round state (MODEL.md §1, §4, §11).

Here: ``Phase`` and ``Role``; ``GameSetup`` (the per-game draws: values when not redrawn, risk
profiles, each lab's strategy) made by ``make_setup``; ``round_values`` (a round's gross values,
from the setup or the round's own stream); ``GameState`` (what carries from one round to the
next: wealth, the last announced π1, the public tally of caught violators) made by
``initial_state``. Not here: playing a round (``round.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from sim_core.arrays import BoolArray, FloatArray, IntArray, frozen
from sim_core.market import grant_permits
from sim_core.params import STRATEGY_NAMES, Scenario
from sim_core.rng import Purpose, setup_stream, stream


class Phase(StrEnum):
    """The phases of a round (§4), in order. Bidding, compliance and audit wait for moves."""

    BIDDING = "bidding"
    ALLOCATION = "allocation"
    COMPLIANCE = "compliance"
    SIGNALS = "signals"
    AUDIT = "audit"
    SETTLEMENT = "settlement"
    RESULTS = "results"


class Role(StrEnum):
    """Who a seat plays."""

    LAB = "lab"
    GOVERNOR = "governor"


@dataclass(frozen=True, slots=True, kw_only=True)
class GameSetup:
    """Everything fixed for a whole game.

    Attributes:
        scenario: the frozen scenario.
        seed: the game's seed (every stream derives from it).
        strategies: (N,) strategy code per lab, an index into ``STRATEGY_NAMES``; for a human
            seat it is the fallback a bot plays while the human is away.
        risk_profile: (N,) r per lab.
        base_values: (N,) gross values v drawn once (used when values are not redrawn).
        human_governor: labs perceive the scenario's announced π1, π0 (§5) instead of the
            bot governor's policy.
        incumbent_keys: (N,) under §3b's ``incumbents`` grant, the setup stream's uniform keys
            that choose the incumbents (the Q smallest); None otherwise.
    """

    scenario: Scenario
    seed: int
    strategies: IntArray
    risk_profile: FloatArray
    base_values: FloatArray
    human_governor: bool = False
    incumbent_keys: FloatArray | None = None

    @property
    def lab_count(self) -> int:
        """N, the number of labs."""
        return self.scenario.labs.count

    def strategy_name(self, lab: int) -> str:
        """Return lab ``lab``'s strategy (its fallback when it is a human seat)."""
        return STRATEGY_NAMES[int(self.strategies[lab])]


@dataclass(frozen=True, slots=True, kw_only=True)
class GameState:
    """What carries over between rounds.

    Attributes:
        round_no: the round about to be played (from 1).
        wealth: (N,) each lab's wealth at the start of the round.
        announced_high_prob: the last π1 the governor announced (§6; used by bids under
            ``optimal``); ``high_prob`` before round 1.
        caught_total: violators caught so far (public news, §5 adaptive).
        violations_total: violations so far (public news).
    """

    round_no: int
    wealth: FloatArray
    announced_high_prob: float
    caught_total: int = 0
    violations_total: int = 0


def strategy_counts(mix: dict[str, float] | None, count: int) -> dict[str, int]:
    """Turn strategy shares into exact counts of labs by largest remainder (§10).

    Ties in the remainders go to the strategy listed first in ``STRATEGY_NAMES``.
    """
    shares = mix or {"rational": 1.0}
    quotas = {name: shares[name] * count for name in STRATEGY_NAMES if name in shares}
    counts = {name: int(np.floor(quota)) for name, quota in quotas.items()}
    leftover = count - sum(counts.values())
    by_remainder = sorted(quotas, key=lambda name: -(quotas[name] - counts[name]))
    for name in by_remainder[:leftover]:
        counts[name] += 1
    return counts


def make_setup(
    scenario: Scenario, *, seed: int | None = None, human_governor: bool = False
) -> GameSetup:
    """Draw the per-game quantities from the setup stream (§1, §11).

    Values are drawn even when they are redrawn each round, and the draw order is fixed
    (values, risk profiles, strategy order), so that nothing shifts another draw.

    Args:
        scenario: the scenario.
        seed: the game's seed; the scenario's when None.
        human_governor: whether a human plays the governor.
    """
    game_seed = scenario.seed if seed is None else seed
    labs = scenario.labs
    rng = setup_stream(game_seed)
    base_values = rng.uniform(*labs.gross_value, size=labs.count)
    risk_profile = rng.uniform(*labs.risk_profile, size=labs.count)
    counts = strategy_counts(dict(labs.strategy), labs.count)
    codes = np.concatenate(
        [np.full(counts[name], STRATEGY_NAMES.index(name), dtype=np.int64) for name in counts]
    )
    strategies = rng.permutation(codes)
    market = scenario.market
    incumbent_keys = None
    if market.grandfathered and market.grant == "incumbents":
        # §3b: drawn after everything else, so no earlier draw of the setup stream moves.
        incumbent_keys = frozen(rng.random(labs.count))
    return GameSetup(
        scenario=scenario,
        seed=game_seed,
        strategies=frozen(strategies),
        risk_profile=frozen(risk_profile),
        base_values=frozen(base_values),
        human_governor=human_governor,
        incumbent_keys=incumbent_keys,
    )


def initial_state(setup: GameSetup) -> GameState:
    """Return the state before round 1: every lab holds the endowment."""
    scenario = setup.scenario
    return GameState(
        round_no=1,
        wealth=frozen(np.full(setup.lab_count, scenario.labs.endowment)),
        announced_high_prob=scenario.audit.high_prob,
    )


def round_values(setup: GameSetup, round_no: int) -> FloatArray:
    """Return the gross values v of round ``round_no`` (redrawn each round or drawn once, §1)."""
    labs = setup.scenario.labs
    if not labs.redraw_values_each_round:
        return setup.base_values
    rng = stream(setup.seed, round_no, Purpose.VALUES)  # only this round's values stream
    return frozen(rng.uniform(*labs.gross_value, size=labs.count))


def grant_keys(setup: GameSetup, round_no: int) -> FloatArray:
    """Return the uniform keys that choose round ``round_no``'s grantees under §3b.

    ``incumbents``: the setup stream's keys (the same labs every round); ``lottery``: fresh keys
    from the round's own grant stream. The labs with the Q smallest keys are granted a permit.
    """
    market = setup.scenario.market
    if market.grant == "incumbents" and setup.incumbent_keys is not None:
        return setup.incumbent_keys
    return frozen(stream(setup.seed, round_no, Purpose.GRANT).random(setup.lab_count))


def granted_permits(setup: GameSetup, round_no: int) -> BoolArray | None:
    """Return the labs granted a permit at the start of round ``round_no`` (§3b).

    None under an auction (nothing is granted); with Q >= N every lab holds one.
    """
    market = setup.scenario.market
    if not market.grandfathered:
        return None
    return frozen(grant_permits(grant_keys(setup, round_no), market.token_cap or 0))
