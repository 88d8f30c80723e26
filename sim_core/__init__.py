"""sim_core: the compute-permit model (../MODEL.md), pure Python and numpy.

The public API is re-exported here. Names of derived quantities, used verbatim everywhere:
``punishment`` (P = K + φ + R), ``p_s``, ``p_eff``, ``expected_penalty`` (E = r·p_eff·P),
``net_value`` (u = v − c), ``unpermitted_value`` (d = u + rho − E), ``marginal_gain``
(g* = price + rho), ``optimal_high_prob`` (π1*).

One function, ``resolve_round``, plays a round; the live server and ``run_game`` both call it.
Nothing here imports Django, Channels or the server.

Names are imported on first use (PEP 562), so that ``import sim_core`` and the command line
(``python -m sim_core``) load only the modules they need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim_core.batch import cell_scenario
    from sim_core.enforcement import PayoffTerm, Settlement, payoff_terms
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
    from sim_core.round import RoundInputs, RoundProgress, check_bid, resolve_round
    from sim_core.simulate import (
        BotReplay,
        GameRun,
        SetupWarning,
        TheorySummary,
        percentile_rank,
        replay_with_bots,
        run_game,
        setup_warnings,
        simulate_classes,
        theory_summary,
    )
    from sim_core.state import (
        GameSetup,
        GameState,
        Phase,
        Role,
        initial_state,
        make_setup,
        round_values,
    )
    from sim_core.strategies import STRATEGIES
    from sim_core.sweep import SweepError, SweepResult, replicate_seed, run_sweep, sweep_scenario
    from sim_core.theory import (
        expected_bot_price,
        expected_bot_prices,
        expected_clearing_price,
        expected_penalty,
        marginal_gain,
        optimal_high_prob,
        p_eff,
        p_s,
        perceived_p_eff,
    )

#: Public name -> the module that defines it.
_ORIGINS: dict[str, str] = {
    "METRICS": "sim_core.metrics",
    "POLICIES": "sim_core.params",
    "PRESETS": "sim_core.presets",
    "STRATEGIES": "sim_core.strategies",
    "STRATEGY_NAMES": "sim_core.params",
    "ActionError": "sim_core.errors",
    "AuditParams": "sim_core.params",
    "GameRun": "sim_core.simulate",
    "GameSetup": "sim_core.state",
    "GameState": "sim_core.state",
    "GovernorParams": "sim_core.params",
    "LabParams": "sim_core.params",
    "MarketParams": "sim_core.params",
    "MarketResult": "sim_core.market",
    "MetricsRow": "sim_core.metrics",
    "Phase": "sim_core.state",
    "Role": "sim_core.state",
    "RoundInputs": "sim_core.round",
    "RoundProgress": "sim_core.round",
    "Scenario": "sim_core.params",
    "ScenarioError": "sim_core.errors",
    "Settlement": "sim_core.enforcement",
    "SimCoreError": "sim_core.errors",
    "SweepError": "sim_core.sweep",
    "SweepResult": "sim_core.sweep",
    "TheorySummary": "sim_core.simulate",
    "WelfareParams": "sim_core.params",
    "cell_scenario": "sim_core.batch",
    "check_audits": "sim_core.governor",
    "check_bid": "sim_core.round",
    "clear_bids": "sim_core.market",
    "clear_market": "sim_core.market",
    "expected_clearing_price": "sim_core.theory",
    "expected_bot_price": "sim_core.theory",
    "expected_bot_prices": "sim_core.theory",
    "payoff_terms": "sim_core.enforcement",
    "PayoffTerm": "sim_core.enforcement",
    "replay_with_bots": "sim_core.simulate",
    "setup_warnings": "sim_core.simulate",
    "SetupWarning": "sim_core.simulate",
    "BotReplay": "sim_core.simulate",
    "expected_penalty": "sim_core.theory",
    "unpermitted_value": "sim_core.theory",
    "initial_state": "sim_core.state",
    "load_preset": "sim_core.presets",
    "load_scenario": "sim_core.presets",
    "make_setup": "sim_core.state",
    "marginal_gain": "sim_core.theory",
    "optimal_high_prob": "sim_core.theory",
    "p_eff": "sim_core.theory",
    "p_s": "sim_core.theory",
    "parse_scenario": "sim_core.params",
    "perceived_p_eff": "sim_core.theory",
    "percentile_rank": "sim_core.simulate",
    "replicate_seed": "sim_core.sweep",
    "resolve_round": "sim_core.round",
    "round_values": "sim_core.state",
    "run_game": "sim_core.simulate",
    "run_sweep": "sim_core.sweep",
    "scenario_to_dict": "sim_core.params",
    "simulate_classes": "sim_core.simulate",
    "summarise": "sim_core.metrics",
    "sweep_scenario": "sim_core.sweep",
    "theory_summary": "sim_core.simulate",
}

__all__ = [
    "METRICS",
    "POLICIES",
    "PRESETS",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "ActionError",
    "AuditParams",
    "BotReplay",
    "GameRun",
    "GameSetup",
    "GameState",
    "GovernorParams",
    "LabParams",
    "MarketParams",
    "MarketResult",
    "MetricsRow",
    "PayoffTerm",
    "Phase",
    "Role",
    "RoundInputs",
    "RoundProgress",
    "Scenario",
    "ScenarioError",
    "Settlement",
    "SetupWarning",
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
    "expected_bot_price",
    "expected_bot_prices",
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
    "payoff_terms",
    "perceived_p_eff",
    "percentile_rank",
    "replay_with_bots",
    "replicate_seed",
    "resolve_round",
    "round_values",
    "run_game",
    "run_sweep",
    "scenario_to_dict",
    "setup_warnings",
    "simulate_classes",
    "summarise",
    "sweep_scenario",
    "theory_summary",
    "unpermitted_value",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, then keep it here."""
    origin = _ORIGINS.get(name)
    if origin is None:
        raise AttributeError(f"module 'sim_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(origin), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the module's attributes, the names not imported yet included."""
    return sorted({*globals(), *__all__})
