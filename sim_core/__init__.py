"""sim_core: the compute-permit model (../MODEL.md), pure Python and numpy.

The public API is re-exported here. Names of derived quantities, used verbatim everywhere:
``punishment`` (P = K + φ + R), ``p_s``, ``p_eff``, ``expected_penalty`` (E = r·p_eff·P),
``net_value`` (u = v − c), ``unpermitted_value`` (d = u + rho − E), ``marginal_gain``
(g* = price + rho), ``optimal_high_prob`` (π1*).

One function, ``resolve_round``, plays a round; the live server and ``run_game`` both call it.
Nothing here imports Django, Channels or the server.
"""

from sim_core.batch import cell_scenario
from sim_core.enforcement import Settlement
from sim_core.errors import ActionError, ScenarioError, SimCoreError
from sim_core.governor import check_audits
from sim_core.market import MarketResult, clear_bids, clear_market
from sim_core.metrics import METRICS, MetricsRow, summarise
from sim_core.params import (
    POLICIES,
    STRATEGY_NAMES,
    AuditParams,
    GovernorParams,
    LabParams,
    MarketParams,
    Scenario,
    WelfareParams,
    parse_scenario,
    scenario_to_dict,
)
from sim_core.presets import PRESETS, load_preset, load_scenario
from sim_core.round import RoundInputs, RoundProgress, check_bid, resolve_round, round_values
from sim_core.simulate import (
    GameRun,
    TheorySummary,
    percentile_rank,
    run_game,
    simulate_classes,
    theory_summary,
)
from sim_core.state import GameSetup, GameState, Phase, Role, initial_state, make_setup
from sim_core.strategies import STRATEGIES
from sim_core.sweep import SweepError, SweepResult, replicate_seed, run_sweep, sweep_scenario
from sim_core.theory import (
    expected_clearing_price,
    expected_penalty,
    marginal_gain,
    optimal_high_prob,
    p_eff,
    p_s,
    perceived_p_eff,
)

__all__ = [
    "METRICS",
    "POLICIES",
    "PRESETS",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "ActionError",
    "AuditParams",
    "GameRun",
    "GameSetup",
    "GameState",
    "GovernorParams",
    "LabParams",
    "MarketParams",
    "MarketResult",
    "MetricsRow",
    "Phase",
    "Role",
    "RoundInputs",
    "RoundProgress",
    "Scenario",
    "ScenarioError",
    "Settlement",
    "SimCoreError",
    "SweepError",
    "SweepResult",
    "TheorySummary",
    "WelfareParams",
    "cell_scenario",
    "check_audits",
    "check_bid",
    "clear_bids",
    "clear_market",
    "expected_clearing_price",
    "expected_penalty",
    "initial_state",
    "load_preset",
    "load_scenario",
    "make_setup",
    "marginal_gain",
    "optimal_high_prob",
    "p_eff",
    "p_s",
    "parse_scenario",
    "perceived_p_eff",
    "percentile_rank",
    "replicate_seed",
    "resolve_round",
    "round_values",
    "run_game",
    "run_sweep",
    "scenario_to_dict",
    "simulate_classes",
    "summarise",
    "sweep_scenario",
    "theory_summary",
]
