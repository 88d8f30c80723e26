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
    # The same names as _ORIGINS, for the type checker (tests/sim_core/test_package.py keeps the
    # two equal). Explicit `X as X` re-exports: mypy sees these names and no others.
    from sim_core.batch import cell_scenario as cell_scenario
    from sim_core.csvtext import csv_records as csv_records
    from sim_core.csvtext import csv_table as csv_table
    from sim_core.enforcement import PayoffTerm as PayoffTerm
    from sim_core.enforcement import Settlement as Settlement
    from sim_core.enforcement import payoff_terms as payoff_terms
    from sim_core.errors import ActionError as ActionError
    from sim_core.errors import ScenarioError as ScenarioError
    from sim_core.errors import SimCoreError as SimCoreError
    from sim_core.governor import check_audits as check_audits
    from sim_core.market import MarketResult as MarketResult
    from sim_core.market import clear_bids as clear_bids
    from sim_core.market import clear_market as clear_market
    from sim_core.metrics import METRICS as METRICS
    from sim_core.metrics import MetricsRow as MetricsRow
    from sim_core.metrics import summarise as summarise
    from sim_core.params import POLICIES as POLICIES
    from sim_core.params import STRATEGY_NAMES as STRATEGY_NAMES
    from sim_core.params import AuditParams as AuditParams
    from sim_core.params import GovernorParams as GovernorParams
    from sim_core.params import LabParams as LabParams
    from sim_core.params import MarketParams as MarketParams
    from sim_core.params import Scenario as Scenario
    from sim_core.params import WelfareParams as WelfareParams
    from sim_core.params import parse_scenario as parse_scenario
    from sim_core.params import scenario_to_dict as scenario_to_dict
    from sim_core.perception import perceived_penalties as perceived_penalties
    from sim_core.presets import PRESETS as PRESETS
    from sim_core.presets import load_preset as load_preset
    from sim_core.presets import load_scenario as load_scenario
    from sim_core.round import RoundInputs as RoundInputs
    from sim_core.round import RoundProgress as RoundProgress
    from sim_core.round import check_bid as check_bid
    from sim_core.round import resolve_round as resolve_round
    from sim_core.simulate import AuditScore as AuditScore
    from sim_core.simulate import BotReplay as BotReplay
    from sim_core.simulate import GameRun as GameRun
    from sim_core.simulate import SetupWarning as SetupWarning
    from sim_core.simulate import TheorySummary as TheorySummary
    from sim_core.simulate import percentile_rank as percentile_rank
    from sim_core.simulate import replay_with_bots as replay_with_bots
    from sim_core.simulate import run_game as run_game
    from sim_core.simulate import score_audits as score_audits
    from sim_core.simulate import setup_warnings as setup_warnings
    from sim_core.simulate import signal_posterior as signal_posterior
    from sim_core.simulate import simulate_classes as simulate_classes
    from sim_core.simulate import theory_summary as theory_summary
    from sim_core.state import GameSetup as GameSetup
    from sim_core.state import GameState as GameState
    from sim_core.state import Phase as Phase
    from sim_core.state import Role as Role
    from sim_core.state import initial_state as initial_state
    from sim_core.state import make_setup as make_setup
    from sim_core.state import round_values as round_values
    from sim_core.strategies import STRATEGIES as STRATEGIES
    from sim_core.sweep import SweepError as SweepError
    from sim_core.sweep import SweepResult as SweepResult
    from sim_core.sweep import replicate_seed as replicate_seed
    from sim_core.sweep import run_sweep as run_sweep
    from sim_core.sweep import sweep_scenario as sweep_scenario
    from sim_core.theory import expected_bot_price as expected_bot_price
    from sim_core.theory import expected_bot_prices as expected_bot_prices
    from sim_core.theory import expected_clearing_price as expected_clearing_price
    from sim_core.theory import expected_penalty as expected_penalty
    from sim_core.theory import expected_trade_price as expected_trade_price
    from sim_core.theory import expected_trades as expected_trades
    from sim_core.theory import marginal_gain as marginal_gain
    from sim_core.theory import optimal_high_prob as optimal_high_prob
    from sim_core.theory import p_eff as p_eff
    from sim_core.theory import p_s as p_s
    from sim_core.theory import perceived_p_eff as perceived_p_eff
    from sim_core.theory import unpermitted_value as unpermitted_value

#: Public name -> the module that defines it.
_ORIGINS: dict[str, str] = {
    "AuditScore": "sim_core.simulate",
    "score_audits": "sim_core.simulate",
    "signal_posterior": "sim_core.simulate",
    "PayoffTerm": "sim_core.enforcement",
    "payoff_terms": "sim_core.enforcement",
    "BotReplay": "sim_core.simulate",
    "SetupWarning": "sim_core.simulate",
    "replay_with_bots": "sim_core.simulate",
    "setup_warnings": "sim_core.simulate",
    "expected_bot_price": "sim_core.theory",
    "expected_bot_prices": "sim_core.theory",
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
    "csv_records": "sim_core.csvtext",
    "csv_table": "sim_core.csvtext",
    "expected_clearing_price": "sim_core.theory",
    "expected_trade_price": "sim_core.theory",
    "expected_trades": "sim_core.theory",
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
    "perceived_penalties": "sim_core.perception",
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

__all__ = list(_ORIGINS)


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name as Any

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
